"""Training driver shared by every optimizer: logging, time budget, checkpoints.

Records (one per step) hold at least: optimizer, iteration, data_passes, time,
loss (full training loss, all ranks), grad_norm, cg_iterations. ``time`` counts the
optimizer's own work; evaluating the full loss for the log is not counted.
"""
import json
import os
import pickle
import time

import numpy as np

from ..mlp.optimizers import make_optimizer

SECOND_ORDER = ("newton-hss", "newton-cg")
FIRST_ORDER = ("sgd", "momentum", "nag", "adagrad", "rmsprop", "adam")
OPTIMIZER_NAMES = SECOND_ORDER + FIRST_ORDER


def write_log(path, records):
    """Write the records as a JSON list, atomically (a valid file at any moment)."""
    if path is None:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(records, f, indent=1)
    os.replace(tmp, path)


class Trainer:
    """Run one optimizer on a :class:`ShardedProblem`.

    Parameters
    ----------
    optimizer : one of OPTIMIZER_NAMES
    lr, batch_size : first-order settings (batch_size per rank; None = full batch)
    newton : dict of NewtonKrylov keyword arguments (second order)
    seed : shuffling seed (first order)
    """

    def __init__(self, problem, optimizer, lr=1e-3, batch_size=None, newton=None, seed=0,
                 prefix=None):
        if optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"The 'optimizer' parameter must be one of {OPTIMIZER_NAMES}. "
                             f"Got {optimizer!r} instead.")
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
        if optimizer in SECOND_ORDER:
            from .newton import NewtonKrylov
            kw = dict(newton or {})
            kw["precond"] = "hss" if optimizer == "newton-hss" else "none"
            kw.setdefault("prefix", prefix or (optimizer.replace("-", "_") + "_"))
            self.nk = NewtonKrylov(problem, **kw)
        else:
            self.opt = make_optimizer(optimizer, lr)

    def destroy(self):
        if self.nk is not None:
            self.nk.destroy()
            self.nk = None

    # --------------------------------------------------------------- steps
    def _first_order_step(self):
        pb = self.problem
        if self.batch_size is None or self.batch_size >= pb.n_local:
            with np.errstate(over="ignore", invalid="ignore"):
                loss, g = pb.loss_grad(self.theta)
        else:
            idx = self.rng.choice(pb.n_local, self.batch_size, replace=False)
            loss, g = pb.model.loss_grad(pb.X[idx], pb.Y[idx], self.theta)
            tot = pb.comm.sum(np.r_[loss, g])
            loss, g = tot[0] / pb.comm.size, tot[1:] / pb.comm.size
            pb.passes += self.batch_size * pb.comm.size / pb.n_total
        with np.errstate(over="ignore", invalid="ignore"):
            new = self.opt.step(self.theta, g)
        rec = {"optimizer": self.name, "loss_step": float(loss),
               "grad_norm": float(np.linalg.norm(g)), "cg_iterations": 0}
        if self.batch_size is None or self.batch_size >= pb.n_local:
            rec["loss"] = float(loss)          # full batch: the loss at theta
        return new, rec

    def step(self):
        """One optimizer step. The record describes the state the step started from
        (its loss on the full training set, the time and data passes spent before
        it) and the step's own figures (CG iterations, lambda ...). Raises
        FloatingPointError, keeping the last good parameters, on NaN/Inf."""
        before_time, before_passes = self.elapsed, self.problem.passes
        t = time.perf_counter()
        if self.nk is not None:
            new, rec = self.nk.step(self.theta)
        else:
            new, rec = self._first_order_step()
        self.elapsed += time.perf_counter() - t
        if "loss" not in rec or self.batch_size is not None:
            # mini-batch: the full loss for the log (not counted as optimizer work)
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
                    "loss": float(rec["loss"])})
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
        if self.problem.comm.rank == 0:
            tmp = f"{path}.tmp"
            with open(tmp, "wb") as f:
                pickle.dump(self.state(), f)
            os.replace(tmp, path)

    def load(self, path):
        with open(path, "rb") as f:
            st = pickle.load(f)
        if st["optimizer"] != self.name:
            raise ValueError(f"checkpoint {path} is of optimizer {st['optimizer']}, not "
                             f"{self.name}")
        if list(st["widths"]) != list(self.problem.model.widths):
            raise ValueError(f"checkpoint {path} is of a net {st['widths']}, not "
                             f"{self.problem.model.widths}")
        self.theta = np.asarray(st["theta"], dtype=np.float64)
        self.step_count, self.elapsed = st["step"], st["elapsed"]
        self.problem.passes = st["passes"]
        self.records = list(st["records"])
        self.rng.bit_generator.state = st["rng"]
        if self.opt is not None:
            self.opt.load_state_dict(st["opt"])
        if self.nk is not None:
            self.nk.load_state_dict(st["newton"])


def run(trainer, max_steps=None, time_budget=None, log=None, checkpoint=None,
        printer=print, log_every_s=1.0):
    """Step until ``max_steps`` or ``time_budget`` (seconds of optimizer time), then
    append the final state. The log (a JSON list) is rewritten atomically at most
    every ``log_every_s`` seconds and at the end; on Ctrl-C or a NaN step the log
    (and checkpoint) hold the last good step, and the exception is re-raised."""
    last_write = time.perf_counter()
    try:
        while True:
            if max_steps is not None and trainer.step_count >= max_steps:
                break
            # rank 0's clock decides for everyone (the ranks must stop in step)
            if time_budget is not None and trainer.problem.comm.bcast(
                    trainer.elapsed >= time_budget):
                break
            rec = trainer.step()
            if checkpoint:
                trainer.save(checkpoint)
            if log and time.perf_counter() - last_write > log_every_s:
                write_log(log, trainer.records)
                last_write = time.perf_counter()
            if printer is not None:
                extra = (f" cg {rec['cg_iterations']:>3} lambda {rec['lambda']:.1e}"
                         if "lambda" in rec else "")
                printer(f"{rec['optimizer']:<10} step {rec['iteration'] + 1:>4}  loss "
                        f"{rec['loss']:.6f}  |g| {rec['grad_norm']:.2e}{extra}  passes "
                        f"{rec['data_passes']:.1f}  {rec['time']:.2f} s")
        final = trainer.final_record()
        trainer.records.append(final)
        if printer is not None:
            printer(f"{trainer.name:<10} final loss {final['loss']:.6f} after "
                    f"{final['iteration']} steps, {final['data_passes']:.1f} passes, "
                    f"{final['time']:.2f} s")
    finally:
        write_log(log, trainer.records)
    trainer.problem.model.params = trainer.theta
    return trainer.records
