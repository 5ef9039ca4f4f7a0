"""Training driver shared by every optimizer: logging, time budget, checkpoints.

Records (one per step) hold at least: optimizer, iteration, data_passes, time,
loss (full training loss, all ranks; None on the mini-batch steps between two
evaluations, see ``eval_every``), grad_norm, cg_iterations. ``time`` counts the
optimizer's own work; evaluating the full loss for the log is not counted.
"""
import json
import math
import time

import numpy as np

from ..matrix.io import atomic_write, write_npz_atomically
from ..mlp.optimizers import make_optimizer
from ..util.validation import check_float
from .lbfgs import LBFGS

CHECKPOINT_FORMAT = "hsspetsc-checkpoint"
CHECKPOINT_VERSION = 1

SECOND_ORDER = ("newton-hss", "newton-cg", "newton-hf", "newton-kfac")
QUASI_NEWTON = ("lbfgs",)
FIRST_ORDER = ("sgd", "momentum", "nag", "adagrad", "rmsprop", "adam")
OPTIMIZER_NAMES = SECOND_ORDER + QUASI_NEWTON + FIRST_ORDER
# where a Newton step's time goes; the keys of its record, adding up to the step
TIME_SPLIT = ("time_grad", "time_compress", "time_refresh", "time_factor", "time_cg",
              "time_other")


def strict_records(records):
    """Records as strict JSON values: a NaN or an infinity becomes null, and the
    record lists those keys under "nonfinite"."""
    out = []
    for r in records:
        bad = [k for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            r = {k: (None if k in bad else v) for k, v in r.items()}
            r["nonfinite"] = bad
        out.append(r)
    return out


def write_log(path, records):
    """Write the records as a strict JSON list, atomically (a temporary file beside
    it, then a rename: a valid file at any moment). Nothing is written while there
    are no records, so a run that fails before its first step never replaces an
    existing log."""
    if path is None or not records:
        return
    text = json.dumps(strict_records(records), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


class Trainer:
    """Run one optimizer on a :class:`ShardedProblem`.

    Parameters
    ----------
    optimizer : one of OPTIMIZER_NAMES (``newton-*``: :class:`NewtonKrylov`; lbfgs:
        :class:`~hsspetsc.training.lbfgs.LBFGS`; the rest first order)
    lr, batch_size : the learning rate (first order); the mini-batch (None = full
        batch): per rank for first-order methods, in all for Newton methods
    newton : dict of NewtonKrylov keyword arguments (second order)
    seed : shuffling seed (first order)
    validation : (X, Y) held-out data or None: every record then has ``val_loss``
        (and ``val_accuracy`` for a cross-entropy classifier) at the state it
        describes; not counted as optimizer time or data passes
    eval_every : seconds of optimizer time between two evaluations of the full
        training (and validation) loss for the log when the steps use mini-batches
        (0: every step). Each evaluation reads the whole training set, which on
        60 000 images costs more than a hundred Adam steps; the steps between
        evaluations have ``loss`` None (their mini-batch loss is ``loss_step``). The
        first step and the final state are always evaluated; the trajectory does not
        depend on it.
    """

    def __init__(self, problem, optimizer, lr=1e-3, batch_size=None, newton=None, seed=0,
                 prefix=None, validation=None, eval_every=0.0):
        if optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"The 'optimizer' parameter must be one of {OPTIMIZER_NAMES}. "
                             f"Got {optimizer!r} instead.")
        self.eval_every = check_float(eval_every, "eval_every", "Trainer", lo=0.0)
        self.last_eval = -math.inf          # optimizer time of the last evaluation
        self.problem = problem
        self.name = optimizer
        self.theta = problem.model.params
        self.records = []
        self.step_count = 0
        self.elapsed = 0.0
        self.rng = np.random.default_rng(seed)
        self.batch_size = batch_size
        self.nk = None
        self.opt = None
        self.validation = None
        if validation is not None:
            Xv, Yv = problem.model.check_data(*validation, where="Trainer validation")
            self.validation = (Xv, Yv)
        if optimizer in QUASI_NEWTON:
            self.nk = LBFGS(problem)
        elif optimizer in SECOND_ORDER:
            from .newton import NewtonKrylov, options_for
            kw = dict(newton or {})
            kw["precond"] = {"newton-hss": "hss", "newton-cg": "none", "newton-hf": "hf",
                             "newton-kfac": "kfac"}[optimizer]
            kw = options_for(kw, kw["precond"])
            kw.setdefault("prefix", prefix or (optimizer.replace("-", "_") + "_"))
            kw.setdefault("batch_size", batch_size)     # in all: one stream, any ranks
            self.nk = NewtonKrylov(problem, **kw)
        else:
            self.opt = make_optimizer(optimizer, lr)

    def destroy(self):
        if self.nk is not None and hasattr(self.nk, "destroy"):
            self.nk.destroy()
        self.nk = None

    def _validation_figures(self, theta):
        """Held-out loss (and accuracy of a classifier) at ``theta`` (every rank
        holds the validation data: no communication)."""
        if self.validation is None:
            return {}
        Xv, Yv = self.validation
        model = self.problem.model
        with np.errstate(over="ignore", invalid="ignore"):
            out = {"val_loss": float(model.loss(Xv, Yv, theta))}
            if model.loss_name == "cross_entropy":
                labels = Yv if Yv.ndim == 1 else np.argmax(Yv, axis=1)
                pred = np.argmax(model.forward(Xv, theta), axis=1)
                out["val_accuracy"] = float(np.mean(pred == labels))
        return out

    # --------------------------------------------------------------- steps
    def _first_order_step(self):
        pb = self.problem
        if self.batch_size is None or self.batch_size >= pb.n_local:
            with np.errstate(over="ignore", invalid="ignore"):
                loss, g = pb.loss_grad(self.theta)
        else:
            idx = self.rng.choice(pb.n_local, self.batch_size, replace=False)

            def local():
                loss, g = pb.model.loss_grad(pb.X[idx], pb.Y[idx], self.theta)
                return np.r_[loss, g]
            tot = pb.comm.sum(local)
            loss, g = tot[0] / pb.comm.size, tot[1:] / pb.comm.size
            pb.passes += self.batch_size * pb.comm.size / pb.n_total
        with np.errstate(over="ignore", invalid="ignore"):
            new = self.opt.step(self.theta, g)
        rec = {"optimizer": self.name, "loss_step": float(loss),
               "grad_norm": float(np.linalg.norm(g)), "cg_iterations": 0}
        if self.batch_size is None or self.batch_size >= pb.n_local:
            rec["loss"] = float(loss)          # full batch: the loss at theta
        return new, rec

    def step(self, time_left=None):
        """One optimizer step. The record describes the state the step started from
        (its loss on the full training set, the time and data passes spent before
        it) and the step's own figures (CG iterations, lambda ...). Raises
        FloatingPointError, keeping the last good parameters, on NaN/Inf."""
        before_time, before_passes = self.elapsed, self.problem.passes
        t = time.perf_counter()
        if self.nk is not None:
            # a time budget ends CG within one iteration of running out
            self.nk.deadline = None if time_left is None else t + time_left
            new, rec = self.nk.step(self.theta)
        else:
            new, rec = self._first_order_step()
        spent = time.perf_counter() - t
        self.elapsed += spent
        if "time_cg" in rec:
            # the rest of a Newton step: line search, model reduction, bookkeeping
            rec["time_other"] = max(spent - sum(rec[k] for k in TIME_SPLIT[:-1]), 0.0)
        evaluate = before_time - self.last_eval >= self.eval_every
        if "loss" not in rec or self.batch_size is not None:
            # mini-batch: the full loss for the log (not counted as optimizer work)
            rec["loss"] = None
            if evaluate:
                p0 = self.problem.passes
                with np.errstate(over="ignore", invalid="ignore"):
                    rec["loss"] = self.problem.loss(self.theta)
                self.problem.passes = p0
        if not np.all(np.isfinite(new)) or not np.isfinite(rec.get("loss_step", 0.0)):
            raise FloatingPointError(
                f"{self.name}: step {self.step_count + 1} produced NaN/Inf (learning rate "
                f"too large?); stopped, the last good parameters are kept.")
        rec.update({"optimizer": self.name, "iteration": self.step_count,
                    "data_passes": before_passes, "time": before_time,
                    "loss": None if rec["loss"] is None else float(rec["loss"])})
        if rec["loss"] is not None:
            self.last_eval = before_time
            rec.update(self._validation_figures(self.theta))
        self.records.append(rec)
        self.theta = new
        self.step_count += 1
        return rec

    def final_record(self):
        """The state after the last step (one loss evaluation, not counted)."""
        p0 = self.problem.passes
        with np.errstate(over="ignore", invalid="ignore"):
            loss = self.problem.loss(self.theta)
        self.problem.passes = p0
        if not np.isfinite(loss):
            raise FloatingPointError(f"{self.name}: the loss is NaN/Inf after step "
                                     f"{self.step_count}; stopped.")
        rec = {"optimizer": self.name, "iteration": self.step_count,
               "data_passes": self.problem.passes, "time": self.elapsed,
               "loss": float(loss), "grad_norm": float("nan"), "cg_iterations": 0,
               "final": True}
        rec.update(self._validation_figures(self.theta))
        return rec

    # ---------------------------------------------------------- checkpoint
    def state(self):
        return {"optimizer": self.name, "theta": self.theta, "step": self.step_count,
                "elapsed": self.elapsed, "passes": self.problem.passes,
                "records": list(self.records), "rng": self.rng.bit_generator.state,
                "opt": None if self.opt is None else self.opt.state_dict(),
                "newton": None if self.nk is None else self.nk.state_dict(),
                "widths": self.problem.model.widths}

    def save(self, path):
        """Write a checkpoint (rank 0; every rank learns of a failure): parameters,
        optimizer and Newton state, the random state and the records, as a
        versioned .npz (no pickle). The compressed matrix is not saved: resuming
        rebuilds it from the parameters it was built at, bit for bit."""
        def write():
            if self.problem.comm.rank != 0:
                return
            st = self.state()
            arrays = {"format": np.array(CHECKPOINT_FORMAT),
                      "version": np.int64(CHECKPOINT_VERSION),
                      "theta": np.asarray(st["theta"], dtype=np.float64)}
            meta = {k: st[k] for k in ("optimizer", "step", "elapsed", "passes", "rng",
                                       "widths")}
            meta["records"] = strict_records(st["records"])
            if st["opt"] is not None:
                meta["opt"] = {k: v for k, v in st["opt"].items() if k != "state"}
                for k, v in st["opt"]["state"].items():
                    arrays[f"opt_{k}"] = np.asarray(v, dtype=np.float64)
            if self.nk is not None and hasattr(self.nk, "state_arrays"):
                for k, v in self.nk.state_arrays().items():
                    arrays[f"nk_{k}"] = np.asarray(v, dtype=np.float64)
            if st["newton"] is not None:
                nw = dict(st["newton"])
                origin = nw.pop("hss_theta", None)
                if origin is not None:
                    arrays["hss_theta"] = np.asarray(origin, dtype=np.float64)
                meta["newton"] = nw
            arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
            write_npz_atomically(path, arrays)
        comm = self.problem.comm
        comm.run(write)
        comm.agree()

    def load(self, path):
        """Read a checkpoint written by :meth:`save` (every rank reads it); a clear
        error naming the file when it cannot be read or does not match."""
        def bad(why):
            return ValueError(f"checkpoint {path}: {why}")
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise bad("no such file") from None
        except Exception as exc:  # noqa: BLE001 - any unreadable file, one message
            raise bad(f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
        if str(a.get("format", "")) != CHECKPOINT_FORMAT:
            raise bad("not an hsspetsc checkpoint (no 'format' entry)")
        if int(a["version"]) > CHECKPOINT_VERSION:
            raise bad(f"format version {int(a['version'])} is newer than this hsspetsc "
                      f"reads ({CHECKPOINT_VERSION})")
        try:
            meta = json.loads(str(a["meta"]))
            theta = a["theta"]
        except (KeyError, ValueError) as exc:
            raise bad(f"incomplete ({exc})") from None
        if meta["optimizer"] != self.name:
            raise bad(f"it is of optimizer {meta['optimizer']}, not {self.name}")
        if list(meta["widths"]) != list(self.problem.model.widths):
            raise bad(f"it is of a net {meta['widths']}, not {self.problem.model.widths}")
        if theta.shape != (self.problem.model.n_params,) or not np.all(np.isfinite(theta)):
            raise bad("its parameters have the wrong size or are not finite")
        self.theta = np.asarray(theta, dtype=np.float64)
        self.step_count, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        self.problem.passes = float(meta["passes"])
        self.records = [dict(r) for r in meta["records"]]
        # the last evaluation is the last record with a full loss
        self.last_eval = max((r["time"] for r in self.records if r.get("loss") is not None),
                             default=-math.inf)
        self.rng.bit_generator.state = meta["rng"]
        if self.opt is not None:
            d = dict(meta["opt"])
            d["state"] = {k[4:]: v for k, v in a.items() if k.startswith("opt_")}
            self.opt.load_state_dict(d)
        if self.nk is not None:
            nw = dict(meta["newton"])
            nw["hss_theta"] = a.get("hss_theta")
            self.nk.load_state_dict(nw)
            if hasattr(self.nk, "load_state_arrays"):
                self.nk.load_state_arrays({k[3:]: v for k, v in a.items()
                                           if k.startswith("nk_")})


def choose_learning_rate(make_trainer, grid, **trial):
    """The rate of ``grid`` whose trial run (``make_trainer(lr)`` run with the
    ``trial`` limits of :func:`run`) ends with the lowest training loss; a rate that
    diverges loses. Returns (best, [(lr, final loss), ...])."""
    results = []
    for lr in grid:
        tr = make_trainer(lr)
        try:
            loss = run(tr, printer=None, **trial)[-1]["loss"]
        except FloatingPointError:
            loss = float("inf")                  # diverged
        finally:
            tr.destroy()
        results.append((lr, loss))
    return min(results, key=lambda t: t[1])[0], results


def run(trainer, max_steps=None, time_budget=None, log=None, checkpoint=None,
        printer=print, max_passes=None):
    """Step until ``max_steps``, ``max_passes`` data passes (epochs) or
    ``time_budget`` (seconds of optimizer time; a Newton step's CG stops within one
    iteration of it), then
    append the final state. Rank 0 rewrites the log (a strict JSON list)
    atomically after every step (every n/200 steps once it holds n > 400 records)
    and at the end, and never while it has no record;
    on Ctrl-C, SIGTERM or a NaN step the log (and checkpoint) hold the last good
    step, and the exception is re-raised. An error on any rank is raised on every
    rank (see :class:`hsspetsc.mpi.comm.Comm`)."""
    comm = trainer.problem.comm

    def write(records):
        comm.run(write_log, log if comm.rank == 0 else None, records)
        comm.agree()

    finished, written = False, 0
    try:
        while True:
            if max_steps is not None and trainer.step_count >= max_steps:
                break
            # rank 0's clock decides for everyone (the ranks must stop in step)
            if time_budget is not None and comm.bcast(trainer.elapsed >= time_budget):
                break
            if max_passes is not None and trainer.problem.passes >= max_passes:
                break                  # the same count on every rank
            budget_left = () if time_budget is None else (time_budget - trainer.elapsed,)
            rec = comm.run(trainer.step, *budget_left)
            if checkpoint:
                trainer.save(checkpoint)
            # every step while the log is short; then every n/200 steps, so that
            # rewriting it costs O(1) per step (about 1 ms); an interruption or
            # an error still writes every record (below)
            n_rec = len(trainer.records)
            if log and n_rec - written >= max(1, n_rec // 200):
                write(trainer.records)
                written = n_rec
            if printer is not None:
                extra = (f" cg {rec['cg_iterations']:>3} lambda {rec['lambda']:.1e}"
                         if "lambda" in rec else "")
                loss = (f"loss {rec['loss']:.6g}" if rec["loss"] is not None else
                        f"batch loss {rec['loss_step']:.6g}")
                printer(f"{rec['optimizer']:<11} step {rec['iteration']:>4}  {loss}"
                        f"  |g| {rec['grad_norm']:.2e}{extra}  passes "
                        f"{rec['data_passes']:.1f}  {rec['time']:.2f} s")
        final = comm.run(trainer.final_record)
        trainer.records.append(final)
        if printer is not None:
            printer(f"{trainer.name:<11} final loss {final['loss']:.6g} after "
                    f"{final['iteration']} steps, {final['data_passes']:.1f} passes, "
                    f"{final['time']:.2f} s")
        finished = True
    finally:
        if not finished and comm.rank == 0:
            # interrupted or failed: keep what was done, locally (the other ranks
            # may be gone), without masking the error
            try:
                write_log(log, trainer.records)
            except Exception:  # noqa: BLE001 - the original error goes on
                pass
    if log:
        write(trainer.records)
    trainer.problem.model.params = trainer.theta
    return trainer.records
