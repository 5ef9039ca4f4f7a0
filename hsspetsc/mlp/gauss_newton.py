"""Gauss-Newton Hessian H = (1/n) sum_i J_i^T G_i J_i of an MLP.

J_i = d f(x_i) / d theta (d x N; f = outputs for MSE, logits for cross-entropy),
G_i = I (MSE) or diag(p_i) - p_i p_i^T (softmax cross-entropy).

- ``matvec`` / ``matmat``: matrix-free, forward-mode J v then back-propagated
  J^T (G J v), O(n N) per column, over all samples.
- ``entries(I, J)``: without forming J. Column (l, p, q) of J_i is
  c^l_{p,i} x^{l-1}_{q,i}, with c^l_{p,i} (in R^d) the sensitivity of the outputs
  to the pre-activation p of layer l; so H_ab = (1/n) sum_i x_q x_q' <s_p, s_p'>
  with s = L_i^T c, G_i = L_i L_i^T. One pass stores x and s; an entry costs
  O(n) in a Cython prange kernel (the per-sample inner products <s_p, s_p'> are
  formed once per pair of layers, n * out_l * out_l' numbers). ``entry_samples`` < n uses a random subset of
  the samples for the entries (``sampling_error`` measures what that costs).
- ``diagonal()`` exact over the entry samples.
- ``projections=r``: each sample's output curvature G_i is replaced by its
  unbiased estimate R_i R_i^T, R_i = G_i^{1/2} Omega_i / sqrt(r) with Omega_i a
  d x r Gaussian drawn from a stream keyed by the sample's global index
  (``sample_ids``), so one image gets the same projections on any number of ranks.
  Entries, diagonal and products are then all those of
  H_r = (1/n) sum_i J_i^T R_i R_i^T J_i. Its entries factor over the n r
  (sample, projection) pairs: H_r[a, b] = (1/n) sum_k u_a[k] u_b[k], so no
  per-pair buffer is formed (sum_l (in_l + 1 + r out_l) numbers per sample instead
  of sum_{l <= l'} out_l out_l'), and a block is a GEMM of gathered rows. It is how
  a preconditioner can take the curvature of CG's own mini-batch.
It is a :class:`hsspetsc.Source`, so ``hsspetsc.compress(GaussNewton(...))`` works.
"""
import numpy as np
from scipy.sparse.linalg import LinearOperator

from ..kernels.gauss_newton import GNEvaluator, ProjectedGNEvaluator
from ..sources import Source, evaluate_block
from ..util.blocks import exclusive_cumsum
from ..util.validation import as_float_array, check_finite, check_float, check_int
from .model import act_deriv, softmax


class GaussNewton(Source):
    """The Gauss-Newton matrix of ``model`` at ``params`` on data (X, Y).

    Parameters
    ----------
    model : MLP
    X, Y : data (Y targets; one-hot or labels for cross-entropy)
    params : flat parameters (default: the model's)
    entry_samples : int or None; number of samples used by ``entries`` and
        ``diagonal`` (random subset, ``seed``); None = all.
    damping : float >= 0; the source is H + damping * I (entries, diagonal and
        products). Parameters that never move the outputs (weights of always-zero
        pixels, dead units) give zero rows; a tiny damping keeps the diagonal positive
        for the default angle distance.
    projections : int >= 1 or None; the curvature of each sample estimated by this
        many Gaussian projections of its outputs (see the module docstring).
    sample_ids : int array (len n) or None; the global index of each row of X, which
        keys its projections (default: 0 .. n - 1).
    projection_seed : int; the stream of the projections.
    """

    def __init__(self, model, X, Y, params=None, entry_samples=None, seed=0,
                 damping=0.0, n_threads=None, projections=None, sample_ids=None,
                 projection_seed=0):
        X, Y = model.check_data(X, Y, "GaussNewton")
        self.model = model
        self.params_vec = model._check_params(params).copy()
        self.X, self.Y = X, Y
        self.n = model.n_params
        self.n_samples = X.shape[0]
        self.n_threads = n_threads
        self.ce = model.loss_name == "cross_entropy"
        self.damping = check_float(damping, "damping", "GaussNewton", lo=0.0)
        self._layers = model.unpack(self.params_vec)
        self._zs, self._acts = model.forward_cache(X, self.params_vec)
        if entry_samples is None or entry_samples >= self.n_samples:
            self.sample_idx = np.arange(self.n_samples)
        else:
            m = check_int(entry_samples, "entry_samples", "GaussNewton", lo=1)
            rng = np.random.default_rng(seed)
            self.sample_idx = np.sort(rng.choice(self.n_samples, m, replace=False))
        self._m = self.sample_idx.size
        self.projections = None if projections is None else check_int(
            projections, "projections", "GaussNewton", lo=1)
        self._R = None
        if self.projections is not None:
            if sample_ids is None:
                sample_ids = np.arange(self.n_samples)
            sample_ids = np.asarray(sample_ids)
            if sample_ids.shape != (self.n_samples,) or sample_ids.dtype.kind not in "iu":
                raise ValueError(f"The 'sample_ids' parameter of GaussNewton must be "
                                 f"{self.n_samples} integers (one per row of X). Got "
                                 f"{sample_ids.dtype} of shape {sample_ids.shape} "
                                 f"instead.")
            self.sample_ids = sample_ids.astype(np.int64)
            self.projection_seed = int(projection_seed)
            self._R = self._projections()
        self._built = False          # entry factors are formed on first use
        self._pairs_built = False

    def __getattr__(self, name):
        # _S, _xs, _diag ... exist after _build_factors, the per-sample inner
        # products _Gbuf/_goff after _build_pairs (lazy: products alone need neither,
        # the diagonal and KFAC need no pairs)
        if name in ("_Gbuf", "_goff") and not self.__dict__.get("_pairs_built", True):
            self._build_pairs()
            return getattr(self, name)
        if name.startswith("_") and not self.__dict__.get("_built", True):
            self._build_factors()
            return getattr(self, name)
        raise AttributeError(name)

    # ------------------------------------------------------------ factors
    @staticmethod
    def projection_of(sample_id, d, r, seed=0):
        """The d x r Gaussian Omega of the sample with global index ``sample_id``
        (one stream per sample: the same on any rank)."""
        rng = np.random.default_rng(np.random.SeedSequence(
            [0x70726F6A, int(seed), int(sample_id)]))
        return rng.standard_normal((d, r))

    def _projections(self):
        """R_i = G_i^{1/2} Omega_i / sqrt(r) for every sample: (n, d, r)."""
        d, r = self.model.widths[-1], self.projections
        Om = np.stack([self.projection_of(i, d, r, self.projection_seed)
                       for i in self.sample_ids]) / np.sqrt(r)
        if not self.ce:
            return Om
        # G_i = diag(p) - p p^T = L L^T with L = diag(sqrt p) - p sqrt(p)^T
        p = softmax(self._acts[-1])
        sq = np.sqrt(p)
        return sq[:, :, None] * Om - p[:, :, None] * np.einsum("id,idr->ir", sq, Om)[:, None]

    def _build_factors(self):
        self._built = True
        if self.projections is not None:
            return self._build_projected_factors()
        model = self.model
        idx = self.sample_idx
        m = idx.size
        L = model.n_layers
        d = model.widths[-1]
        zs = [z[idx] for z in self._zs]
        acts = [a[idx] for a in self._acts]
        out = acts[-1]
        if self.ce:
            p = softmax(out)
            sq = np.sqrt(p)
            # L_i = diag(sqrt p) - p sqrt(p)^T ; s = c L
            Lfac = np.einsum("ij,jk->ijk", sq, np.eye(d)) - p[:, :, None] * sq[:, None, :]
            dout = np.ones((m, d))
        else:
            Lfac = None
            dout = act_deriv(model.activations[-1], zs[-1], out)
        self.diag_last = not self.ce            # MSE: last-layer s is diagonal
        S = [None] * L
        # c^L_i = diag(dout_i) (d x d); c^{l-1} = diag(sigma'_{l-1}) W_l^T c^l
        if self.ce:
            C = dout[:, :, None] * np.eye(d)[None, :, :]
            S[L - 1] = np.einsum("ipk,ikj->ipj", C, Lfac)
        else:
            C = None                            # c^L = diag(dout): never formed
            S[L - 1] = dout.copy()              # diagonal storage (m, d)
        for l in range(L - 1, 0, -1):
            W = self._layers[l][0]              # out_l x in_l  (layer l+1 in 1-based terms)
            sig = act_deriv(model.activations[l - 1], zs[l - 1], acts[l])
            if C is None:                       # W^T diag(dout): (m, in_l, d)
                C = W.T[None, :, :] * dout[:, None, :] * sig[:, :, None]
            else:
                C = np.matmul(W.T, C) * sig[:, :, None]        # W^T C_i per sample
            S[l - 1] = np.einsum("ipk,ikj->ipj", C, Lfac) if self.ce else C.copy()
        self._store_factors(S, [np.hstack([acts[l], np.ones((m, 1))]) for l in range(L)])

    def _store_factors(self, S, xs):
        """Keep the sensitivities S (kept for KFAC and the pairs) and the activations
        xs = [x, 1] per layer, flat Xt[l] = (in_l + 1, m) for the evaluators, the
        parameter index maps, and the exact diagonal over the entry samples."""
        model, m, L = self.model, self._m, self.model.n_layers
        self._xoff = exclusive_cumsum([x.size for x in xs])
        self._Xbuf = np.ascontiguousarray(np.concatenate([x.T.ravel() for x in xs]))
        self._S = S
        self._xs = xs
        self._outs = np.array(model.widths[1:], np.int64)
        self._d = model.widths[-1]
        self._index_parameters()
        diag = np.empty(self.n)
        for l, (w0, b0, e0) in enumerate(model.layer_slices):
            if self.diag_last and l == L - 1:
                ns = S[l] ** 2                                   # (m, out)
            else:
                ns = np.einsum("ipk,ipk->ip", S[l], S[l])
            blk = ns.T @ (xs[l] ** 2) / m                        # out x (in + 1)
            i_ = model.widths[l]
            diag[w0:b0] = blk[:, :i_].ravel()
            diag[b0:e0] = blk[:, i_]
        self._diag = diag

    def _build_projected_factors(self):
        """x and the projected sensitivities s = c R (out_l x r per sample), back-
        propagated from R like r extra output tangents; the exact diagonal of H_r."""
        model = self.model
        idx = self.sample_idx
        m, L = idx.size, model.n_layers
        zs = [z[idx] for z in self._zs]
        acts = [a[idx] for a in self._acts]
        R = self._R[idx]
        self.diag_last = False
        S = [None] * L
        if self.ce:
            C = R                                      # c^L = I for the logits
        else:
            C = act_deriv(model.activations[-1], zs[-1], acts[-1])[:, :, None] * R
        S[L - 1] = C
        for l in range(L - 1, 0, -1):
            W = self._layers[l][0]
            sig = act_deriv(model.activations[l - 1], zs[l - 1], acts[l])
            C = np.matmul(W.T, C) * sig[:, :, None]    # (m, in_l, r)
            S[l - 1] = C
        # per layer (out_l, m r): the row of unit p is its (sample, projection) pairs
        self._soff = exclusive_cumsum([s_.size for s_ in S])
        self._Sbuf = np.ascontiguousarray(np.concatenate(
            [s_.transpose(1, 0, 2).ravel() for s_ in S]))
        self._store_factors(S, [np.hstack([acts[l], np.ones((m, 1))]) for l in range(L)])

    def _index_parameters(self):
        """parameter index -> (layer, output unit p, input q; q = in_l: the bias)."""
        model = self.model
        layer = np.empty(self.n, np.int64)
        pidx = np.empty(self.n, np.int64)
        qidx = np.empty(self.n, np.int64)
        for l, (w0, b0, e0) in enumerate(model.layer_slices):
            i_, o_ = model.widths[l], model.widths[l + 1]
            layer[w0:e0] = l
            pq = np.arange(o_ * i_)
            pidx[w0:b0], qidx[w0:b0] = pq // i_, pq % i_
            pidx[b0:e0], qidx[b0:e0] = np.arange(o_), i_
        self._layer, self._pidx, self._qidx = layer, pidx, qidx

    def _build_pairs(self):
        """Per pair of layers (la <= lb) the per-sample inner products
        <s^la_p, s^lb_p'> (out_la x out_lb x m), flat in _Gbuf at _goff: what an
        entry reads. The costly part for wide outputs (O(m d sum out^2))."""
        self._pairs_built = True
        S, L = self._S, self.model.n_layers
        # one buffer, filled pair by pair: one pair's block is the only temporary
        self._goff, size = self.pair_offsets(self.model.widths, self._m, self.diag_last)
        self._Gbuf = np.empty(size)
        for la in range(L):
            for lb in range(la, L):
                last_a = self.diag_last and la == L - 1
                last_b = self.diag_last and lb == L - 1
                if last_a and last_b:
                    g = (S[la] ** 2).T                                  # (d, m)
                elif last_b:                       # s^L_{i,p'} = sL[i, p'] e_p'
                    g = np.transpose(S[la] * S[lb][:, None, :], (1, 2, 0))
                else:                              # batched GEMM over samples
                    g = np.matmul(S[la], S[lb].transpose(0, 2, 1)).transpose(1, 2, 0)
                pos = self._goff[la * L + lb]
                self._Gbuf[pos:pos + g.size].reshape(g.shape)[...] = g

    @staticmethod
    def pair_offsets(widths, m, diag_last):
        """(offsets of each layer pair's block in _Gbuf, its total length) for ``m``
        samples: out_la x out_lb x m per pair la <= lb (d x m for the diagonal last
        layer with itself)."""
        outs = list(widths[1:])
        L = len(outs)
        goff, pos = np.zeros(L * L, np.int64), 0
        for la in range(L):
            for lb in range(la, L):
                goff[la * L + lb] = pos
                if diag_last and la == lb == L - 1:
                    pos += outs[la] * m
                else:
                    pos += outs[la] * outs[lb] * m
        return goff, pos

    # ------------------------------------------------------------ source API
    def evaluator(self):
        """The nogil entry evaluator (damping included), or None for a subclass that
        overrides ``_block``."""
        if type(self)._block is not GaussNewton._block:
            return None
        return self._gn_evaluator()

    def _gn_evaluator(self):
        if self.projections is not None:
            return ProjectedGNEvaluator(
                self._layer, self._pidx, self._qidx, self._Xbuf, self._xoff, self._Sbuf,
                self._soff, self._outs, self._m, self.projections, 1.0 / self._m,
                self.damping)
        return GNEvaluator(self._layer, self._pidx, self._qidx, self._Xbuf, self._xoff,
                           self._Gbuf, self._goff, self._outs, self._m,
                           self.model.n_layers, self.diag_last, 1.0 / self._m, self.damping)

    def _block(self, I, J):
        return evaluate_block(self._gn_evaluator(), I, J, self.n_threads)

    def diagonal(self):
        return self._diag + self.damping

    # ------------------------------------------------------------ products
    def jvp(self, v):
        """J v for all samples: (n, d) output tangents (logit tangents for CE)."""
        model = self.model
        dlayers = model.unpack(v)
        da = np.zeros_like(self.X)
        for l, ((W, _), (dW, db)) in enumerate(zip(self._layers, dlayers)):
            dz = da @ W.T + self._acts[l] @ dW.T + db
            if self.ce and l == model.n_layers - 1:
                return dz
            da = act_deriv(model.activations[l], self._zs[l], self._acts[l + 1]) * dz
        return da

    def vjp(self, U):
        """J^T U summed over samples (U: (n, d)), as a flat parameter vector."""
        model = self.model
        L = model.n_layers
        delta = U if self.ce else U * act_deriv(model.activations[-1], self._zs[-1],
                                                self._acts[-1])
        g = np.empty(self.n)
        for l in range(L - 1, -1, -1):
            w0, b0, e0 = model.layer_slices[l]
            g[w0:b0] = (delta.T @ self._acts[l]).ravel()
            g[b0:e0] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ self._layers[l][0]) * act_deriv(
                    model.activations[l - 1], self._zs[l - 1], self._acts[l])
        return g

    def _apply_G(self, U):
        """G_i applied to the output tangents U (..., n, d) of every sample (R_i R_i^T
        with projections)."""
        if self._R is not None:
            return np.einsum("...ir,idr->...id", np.einsum("...id,idr->...ir", U, self._R),
                             self._R)
        if not self.ce:
            return U
        p = softmax(self._acts[-1])
        return p * U - p * np.sum(p * U, axis=-1, keepdims=True)

    def matvec(self, v):
        """H v (exact, all samples)."""
        v = as_float_array(v, "v", "GaussNewton.matvec", ndim=1)
        if v.shape != (self.n,):
            raise ValueError(f"The 'v' parameter of GaussNewton.matvec must have length "
                             f"{self.n}. Got shape {v.shape} instead.")
        check_finite(v, "v", "GaussNewton.matvec")
        out = self.vjp(self._apply_G(self.jvp(v))) / self.n_samples
        if self.damping:
            out += self.damping * v
        return out

    def matmat(self, V):
        """H V for a block V (N x k): the products of ``matvec`` for all columns at
        once (each layer's forward and backward step is one GEMM over the block),
        in chunks that keep the (k, n, width) intermediates near 8 MB (cache-sized: larger
        chunks were slower, page faults and strided passes over big temporaries)."""
        V = as_float_array(V, "V", "GaussNewton.matmat", ndim=2)
        if V.shape[0] != self.n:
            raise ValueError(f"The 'V' parameter of GaussNewton.matmat must have "
                             f"{self.n} rows. Got shape {V.shape} instead.")
        check_finite(V, "V", "GaussNewton.matmat")
        k = V.shape[1]
        out = np.empty((self.n, k))
        width = max(self.model.widths)
        chunk = max(1, int(1e6 // (self.n_samples * width)))
        for c in range(0, k, chunk):
            Vc = V[:, c:c + chunk]
            out[:, c:c + chunk] = self._vjp_block(self._apply_G(self._jvp_block(Vc))) \
                / self.n_samples
        if self.damping:
            out += self.damping * V
        return out

    def _jvp_block(self, V):
        """J V for a block: (k, n, d) output tangents (logits for CE)."""
        model = self.model
        k, n = V.shape[1], self.n_samples
        da = None
        for l, (W, _) in enumerate(self._layers):
            w0, b0, e0 = model.layer_slices[l]
            o, i = W.shape
            # a contiguous copy: a chunk narrower than the block is a strided view,
            # which would send the GEMM below to numpy's loop instead of BLAS
            dW = np.ascontiguousarray(V[w0:b0].T).reshape(k * o, i)
            dz = (self._acts[l] @ dW.T).reshape(n, k, o).transpose(1, 0, 2)
            dz += V[b0:e0].T[:, None, :]
            if da is not None:
                dz += (da.reshape(k * n, i) @ W.T).reshape(k, n, o)
            if self.ce and l == model.n_layers - 1:
                return dz
            da = act_deriv(model.activations[l], self._zs[l], self._acts[l + 1])[None] * dz
        return da

    def _vjp_block(self, U):
        """J^T U for a block U (k, n, d): (N, k)."""
        model = self.model
        L = model.n_layers
        k, n = U.shape[0], U.shape[1]
        delta = U if self.ce else U * act_deriv(model.activations[-1], self._zs[-1],
                                                self._acts[-1])[None]
        g = np.empty((self.n, k))
        for l in range(L - 1, -1, -1):
            w0, b0, e0 = model.layer_slices[l]
            W = self._layers[l][0]
            o, i = W.shape
            dT = np.ascontiguousarray(delta.transpose(0, 2, 1)).reshape(k * o, n)
            g[w0:b0] = (dT @ self._acts[l]).reshape(k, o * i).T
            g[b0:e0] = delta.sum(axis=1).T
            if l > 0:
                delta = (delta.reshape(k * n, o) @ W).reshape(k, n, i) * act_deriv(
                    model.activations[l - 1], self._zs[l - 1], self._acts[l])[None]
        return g

    def __matmul__(self, V):
        V = np.asarray(V)
        return self.matvec(V) if V.ndim == 1 else self.matmat(V)

    def as_linear_operator(self):
        return LinearOperator((self.n, self.n), matvec=self.matvec, rmatvec=self.matvec,
                              matmat=self.matmat, dtype=np.float64)

    def neuron_order(self):
        """A permutation of the parameters that puts each neuron's bias right after
        its incoming weights: per layer, per output unit p, [W[p, :], b[p]].

        The flat layout keeps a layer's biases after all its weights; a tree that
        bisects that order separates every bias from the weights it couples with
        (the output layer's block is I (x) A per unit, bias included), which costs
        one rank per unit at the split. Pass it as ``order=`` to
        :func:`hsspetsc.compress_sketch`."""
        return self.neuron_order_of(self.model)

    @staticmethod
    def neuron_order_of(model):
        """:meth:`neuron_order` of any GaussNewton matrix of ``model``."""
        parts = []
        for l, (w0, b0, _) in enumerate(model.layer_slices):
            i, o = model.widths[l], model.widths[l + 1]
            W = w0 + np.arange(o * i, dtype=np.int64).reshape(o, i)
            parts.append(np.column_stack([W, b0 + np.arange(o, dtype=np.int64)]).ravel())
        return np.concatenate(parts)

    def sampling_error(self, nrows=20, seed=0):
        """Relative error of sampled-entry rows against exact rows (H e_a by matvec):
        mean over ``nrows`` random rows of |H_s[a, :] - H[a, :]| / |H[a, :]|."""
        rng = np.random.default_rng(seed)
        rows = rng.choice(self.n, min(nrows, self.n), replace=False)
        errs = []
        for a in rows:
            e = np.zeros(self.n)
            e[a] = 1.0
            exact = self.matvec(e)
            approx = self._block(np.array([a]), np.arange(self.n))[0]
            nrm = np.linalg.norm(exact)
            if nrm > 0:
                errs.append(np.linalg.norm(approx - exact) / nrm)
        return float(np.mean(errs)) if errs else 0.0

    def __repr__(self):
        proj = "" if self.projections is None else f", projections={self.projections}"
        return (f"GaussNewton(N={self.n}, samples={self.n_samples}, entry samples="
                f"{self._m}, loss={self.model.loss_name!r}{proj})")
