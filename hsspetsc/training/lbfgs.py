"""L-BFGS, the classical quasi-Newton reference for the Newton-CG trainers.

Full-batch, two-loop recursion over the last ``memory`` curvature pairs, a
backtracking (Armijo) line search from the unit step (the first direction, without
pairs, is the steepest-descent direction scaled to unit length). A pair (s, y) is kept only when s.y > 1e-10 |s| |y|
(curvature condition), so the inverse-Hessian model stays positive definite.
Every number is a sum over all ranks' samples (:class:`ShardedProblem`), so every
rank takes the same steps.
"""
import time
from collections import deque

import numpy as np

from ..util.validation import check_int


class LBFGS:
    """One L-BFGS step per call of :meth:`step` (the NewtonKrylov interface)."""

    name = "lbfgs"

    def __init__(self, problem, memory=10):
        self.problem = problem
        self.memory = check_int(memory, "memory", "LBFGS", lo=1)
        self.pairs = deque(maxlen=self.memory)
        self.prev = None            # (theta, gradient) of the last step's start
        self.it = 0

    def _direction(self, g):
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * (s @ q)
            alphas.append(a)
            q -= a * y
        if self.pairs:
            s, y, _ = self.pairs[-1]
            q *= (s @ y) / (y @ y)
        else:
            q /= max(np.linalg.norm(g), 1e-300)      # no pairs yet: unit length
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * (y @ q)
            q += (a - b) * s
        return -q

    def step(self, theta):
        """Returns (new theta, record)."""
        pb = self.problem
        t0 = time.perf_counter()
        loss, g = pb.loss_grad(theta)
        t_grad = time.perf_counter() - t0
        if self.prev is not None:
            s, y = theta - self.prev[0], g - self.prev[1]
            sy = float(s @ y)
            if sy > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y):
                self.pairs.append((s, y, 1.0 / sy))
        p = self._direction(g)
        slope = float(g @ p)
        if not slope < 0:                   # lost descent: restart from steepest descent
            self.pairs.clear()
            p = -g / max(np.linalg.norm(g), 1e-300)
            slope = float(g @ p)
        alpha, new_loss, tries = 1.0, np.inf, 0
        for tries in range(1, 31):
            new_loss = pb.loss(theta + alpha * p)
            if np.isfinite(new_loss) and new_loss <= loss + 1e-4 * alpha * slope:
                break
            alpha *= 0.5
        ok = np.isfinite(new_loss) and new_loss <= loss
        self.prev = (theta, g)
        self.it += 1
        rec = {"optimizer": self.name, "loss": float(loss),
               "grad_norm": float(np.linalg.norm(g)), "cg_iterations": 0,
               "step": alpha if ok else 0.0, "line_search_losses": tries,
               "pairs": len(self.pairs), "time_grad": t_grad}
        if not ok:
            self.pairs.clear()
        return (theta + alpha * p if ok else theta), rec

    def state_dict(self):
        return {"name": self.name, "it": self.it, "memory": self.memory}

    def load_state_dict(self, d):
        self.it = int(d["it"])

    def state_arrays(self):
        """The curvature pairs and the last step's start, for a checkpoint (a
        resumed run continues bit for bit)."""
        n = self.problem.model.n_params
        S = np.array([s for s, _, _ in self.pairs]).reshape(-1, n)
        Y = np.array([y for _, y, _ in self.pairs]).reshape(-1, n)
        prev = (np.zeros((0, n)) if self.prev is None
                else np.vstack([self.prev[0], self.prev[1]]))
        return {"S": S, "Y": Y, "prev": prev}

    def load_state_arrays(self, a):
        self.pairs.clear()
        for s, y in zip(a["S"], a["Y"]):
            self.pairs.append((s.copy(), y.copy(), 1.0 / float(s @ y)))
        p = a["prev"]
        self.prev = None if p.shape[0] == 0 else (p[0].copy(), p[1].copy())
