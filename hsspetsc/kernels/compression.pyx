# cython: language_level=3
"""Construction kernels: one ``prange`` over the nodes of a tree level (private).

Python orchestrates per level (hsspetsc/compression/driver.py, tree.py,
neighbors.py, skeleton.py, sketch.py); every loop over nodes or
indices is here. Entries are read between kernel calls, a level (or a
memory-bounded chunk of it) at a time, by ``util.blocks.BlockReader``; the kernels
only see flat buffers. Kernels check nothing; arguments are labelled IN / OUT /
WORK. BLAS/LAPACK run single-threaded inside the parallel regions (the caller
holds OpenBLAS to one thread).

Random choices come from the counter-based streams of ``rng.pxd``: node ``a``
uses the key ``node_key(phase_key, a)``, so results do not depend on the thread
count or the order nodes are processed in.

Sections: tree splits (column picks, arg-max, median reorder), the distance
transform, neighbour merging, row sampling, the interpolative decomposition
(entries and sketch variants).
"""
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, fabs
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from .blas cimport dgemm, dtrsm, dgeqrf, dgeqp3
from .rng cimport node_key, draw_below
from .sort cimport KeyIdx, cmp_keyidx, select_smallest, sort_keyidx


def node_keys(uint64_t key,
              const int64_t[::1] nodes,    # IN  node ids
              uint64_t[::1] out):          # OUT stream key of each node
    cdef Py_ssize_t t
    for t in range(nodes.shape[0]):
        out[t] = node_key(key, nodes[t])


# ------------------------------------------------------------ tree splits
def pick_columns(const int64_t[::1] node_off,   # IN  first tree position of each node
                 const int64_t[::1] node_size,  # IN
                 const int64_t[::1] perm,       # IN  tree position -> original index
                 const uint64_t[::1] keys,      # IN  stream key per node
                 const int64_t[::1] col_ptr,    # IN  node t picks col_ptr[t+1]-col_ptr[t]
                 int64_t[::1] col_idx,          # OUT original indices, distinct per node
                 int n_threads):
    """Distinct positions of each node drawn uniformly (the sampled columns of a
    split, or the random p and q of a randomized split)."""
    cdef Py_ssize_t t, c, e, nn = node_off.shape[0]
    cdef int64_t k, pos, ctr
    cdef bint dup
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="static"):
        k = col_ptr[t + 1] - col_ptr[t]
        ctr = 0
        c = 0
        while c < k:
            pos = node_off[t] + draw_below(keys[t], ctr, node_size[t])
            ctr = ctr + 1
            dup = False
            for e in range(c):
                if col_idx[col_ptr[t] + e] == perm[pos]:
                    dup = True
            if not dup:
                col_idx[col_ptr[t] + c] = perm[pos]
                c = c + 1


def row_sum_argmax(const double[::1] D,         # IN  node t: node_size[t] x ncol[t] row-major at D_off[t]
                   const int64_t[::1] D_off,
                   const int64_t[::1] node_off,
                   const int64_t[::1] node_size,
                   const int64_t[::1] ncol,
                   const int64_t[::1] perm,
                   int64_t[::1] best,           # OUT original index of the row with the largest sum
                   int n_threads):
    """Per node: the row whose entries sum highest (first one on ties)."""
    cdef Py_ssize_t t, i, j, nn = node_off.shape[0]
    cdef double s, top
    cdef int64_t arg
    cdef const double* row
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="static"):
        top = -1.0
        arg = 0
        for i in range(node_size[t]):
            row = &D[D_off[t] + i * ncol[t]]
            s = 0.0
            for j in range(ncol[t]):
                s = s + row[j]
            if s > top:
                top = s
                arg = i
        best[t] = perm[node_off[t] + arg]


def reorder_level(int64_t[::1] perm,           # IN/OUT tree position -> original index
                  const int64_t[::1] node_off,
                  const int64_t[::1] node_size,
                  const double[::1] dp,         # IN  d(i, p) at tree position of i
                  const double[::1] dq,         # IN  d(i, q)
                  int64_t[::1] failed,          # OUT failed[0] = 1 when out of memory
                  int n_threads):
    """Split each node at the median of d(i, p) - d(i, q) (ties by position): the
    ceil(size/2) smallest go to the left child; both halves keep their order."""
    cdef Py_ssize_t t, i, nn = node_off.shape[0]
    cdef int64_t o, s, half, nl, nr
    cdef KeyIdx* v
    cdef int64_t* old
    cdef char* left
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="dynamic"):
        o = node_off[t]
        s = node_size[t]
        half = (s + 1) // 2
        v = <KeyIdx*>malloc(<size_t>s * sizeof(KeyIdx))
        old = <int64_t*>malloc(<size_t>s * sizeof(int64_t))
        left = <char*>malloc(<size_t>s * sizeof(char))
        if v == NULL or old == NULL or left == NULL:
            failed[0] = 1
            free(v)
            free(old)
            free(left)
            continue
        for i in range(s):
            v[i].key = dp[o + i] - dq[o + i]
            v[i].idx = i
            old[i] = perm[o + i]
            left[i] = 0
        select_smallest(v, s, half)
        for i in range(half):
            left[v[i].idx] = 1
        nl = 0
        nr = half
        for i in range(s):
            if left[i]:
                perm[o + nl] = old[i]
                nl = nl + 1
            else:
                perm[o + nr] = old[i]
                nr = nr + 1
        free(v)
        free(old)
        free(left)


# --------------------------------------------------------------- distances
def to_distance(double[::1] data,                # IN/OUT entries -> distances
                const int64_t[::1] out_off,
                const int64_t[::1] row_start, const int64_t[::1] row_len,
                const int64_t[::1] row_idx,
                const int64_t[::1] col_start, const int64_t[::1] col_len,
                const int64_t[::1] col_idx,
                const double[::1] diag,
                int kind,                        # 0: angle, 1: kernel
                int n_threads):
    """angle: 1 - K_ij^2 / (K_ii K_jj) (1, the largest, where a diagonal entry is
    0: a zero row is close to nothing); kernel: K_ii + K_jj - 2 K_ij; clipped at 0."""
    cdef Py_ssize_t b, i, j, nb = out_off.shape[0]
    cdef int64_t nr, nc
    cdef double di, dj, v
    cdef double* blk
    for b in prange(nb, nogil=True, num_threads=n_threads, schedule="dynamic"):
        nr = row_len[b]
        nc = col_len[b]
        blk = &data[out_off[b]]
        for i in range(nr):
            di = diag[row_idx[row_start[b] + i]]
            for j in range(nc):
                v = blk[i * nc + j]
                if kind == 0:
                    dj = di * diag[col_idx[col_start[b] + j]]
                    v = 1.0 - v * v / dj if dj > 0.0 else 1.0
                else:
                    v = di + diag[col_idx[col_start[b] + j]] - 2.0 * v
                blk[i * nc + j] = v if v > 0.0 else 0.0


# -------------------------------------------------------------- neighbours
def merge_leaf_neighbors(const double[::1] D,      # IN  leaf t: size x size distances at D_off[t]
                         const int64_t[::1] D_off,
                         const int64_t[::1] leaf_off,
                         const int64_t[::1] leaf_size,
                         const int64_t[::1] perm,
                         int64_t[:, ::1] idx,      # IN/OUT k best so far (original indices, -1: none)
                         double[:, ::1] dist,      # IN/OUT their distances, ascending (inf: none)
                         int64_t[::1] failed,      # OUT failed[0] = 1 when out of memory
                         int n_threads):
    """Merge each leaf's exhaustive distances into the running k-best lists of its
    members (leaves are disjoint, so each list is written by one thread). Only
    candidates strictly closer than the current k-th are taken (a tie with it
    keeps the entry already there)."""
    cdef Py_ssize_t t, r, c, e, nn = leaf_off.shape[0], k = idx.shape[1]
    cdef int64_t s, i, j, ncand, a, b, w
    cdef double worst
    cdef KeyIdx* cand
    cdef KeyIdx* cur
    cdef bint dup
    if k == 0:
        return
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="dynamic"):
        s = leaf_size[t]
        cand = <KeyIdx*>malloc(<size_t>(s + 1) * sizeof(KeyIdx))
        cur = <KeyIdx*>malloc(<size_t>(k + 1) * sizeof(KeyIdx))
        if cand == NULL or cur == NULL:
            failed[0] = 1
            free(cand)
            free(cur)
            continue
        for r in range(s):
            i = perm[leaf_off[t] + r]
            worst = dist[i, k - 1]
            ncand = 0
            for c in range(s):
                if c == r:
                    continue
                j = perm[leaf_off[t] + c]
                if D[D_off[t] + r * s + c] < worst:
                    dup = False
                    for e in range(k):
                        if idx[i, e] == j:
                            dup = True
                            break
                    if not dup:
                        cand[ncand].key = D[D_off[t] + r * s + c]
                        cand[ncand].idx = j
                        ncand = ncand + 1
            if ncand == 0:
                continue
            if ncand > k:
                select_smallest(cand, ncand, k)
                ncand = k
            sort_keyidx(cand, ncand)
            for e in range(k):
                cur[e].key = dist[i, e]
                cur[e].idx = idx[i, e]
            # merge two ascending lists, keep the k smallest in (key, idx) order
            # (empty slots have key inf: every candidate is finite and goes first)
            a = 0
            b = 0
            for w in range(k):
                if b < ncand and (a >= k or cmp_keyidx(&cand[b], &cur[a]) < 0):
                    dist[i, w] = cand[b].key
                    idx[i, w] = cand[b].idx
                    b = b + 1
                else:
                    dist[i, w] = cur[a].key
                    idx[i, w] = cur[a].idx
                    a = a + 1
        free(cand)
        free(cur)


# ------------------------------------------------------------ row sampling
cdef inline int64_t _leaf_of(const int64_t[::1] leaf_off, int64_t pos) noexcept nogil:
    """Leaf number holding tree position pos (leaf_off: n_leaves + 1 boundaries)."""
    cdef int64_t lo = 0, hi = leaf_off.shape[0] - 1, mid
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if leaf_off[mid] <= pos:
            lo = mid
        else:
            hi = mid
    return lo


cdef inline bint _excluded(int64_t i, int64_t lo, int64_t hi, int64_t llo, int64_t lhi,
                           const int64_t[::1] iperm, const int64_t[::1] leaf_off,
                           const int64_t[::1] near_ptr, const int64_t[::1] near_idx,
                           bint has_near) noexcept nogil:
    """Row i is inside the node (positions [lo, hi)) or in a leaf near one of the
    node's leaves [llo, lhi)."""
    cdef int64_t pos = iperm[i], leaf, e
    if pos >= lo and pos < hi:
        return True
    if has_near:
        leaf = _leaf_of(leaf_off, pos)
        for e in range(near_ptr[leaf], near_ptr[leaf + 1]):
            if near_idx[e] >= llo and near_idx[e] < lhi:
                return True
    return False


cdef inline int64_t _allowed_leaves_rows(int64_t llo, int64_t lhi,
                                         const int64_t[::1] leaf_off,
                                         const int64_t[::1] near_ptr,
                                         const int64_t[::1] near_idx, bint has_near,
                                         const int64_t[::1] perm,
                                         int64_t* out) noexcept nogil:
    """Write every row outside the node's leaves [llo, lhi) and their near leaves;
    return how many. O(leaves + near pairs + rows)."""
    cdef int64_t leaf, e, p, cnt = 0, nl = leaf_off.shape[0] - 1
    cdef bint skip
    for leaf in range(nl):
        if leaf >= llo and leaf < lhi:
            continue
        skip = False
        if has_near:
            for e in range(near_ptr[leaf], near_ptr[leaf + 1]):
                if near_idx[e] >= llo and near_idx[e] < lhi:
                    skip = True
                    break
        if skip:
            continue
        for p in range(leaf_off[leaf], leaf_off[leaf + 1]):
            out[cnt] = perm[p]
            cnt = cnt + 1
    return cnt


cdef class RowPool:
    """Where the rows of a node's ID come from, the same for every level: the tree
    order (perm, iperm), the leaves' position boundaries (leaf_off, n_leaves + 1),
    the near leaves of each leaf (CSR near_ptr/near_idx; has_near: any besides the
    leaf itself), the neighbour lists ((n, k) nbr_idx, -1: none, and nbr_dist) and
    the largest share of the rows taken from neighbours (nbr_share)."""
    cdef const int64_t[::1] perm, iperm, leaf_off, near_ptr, near_idx
    cdef bint has_near
    cdef const int64_t[:, ::1] nbr_idx
    cdef const double[:, ::1] nbr_dist
    cdef double nbr_share

    def __init__(self, perm, iperm, leaf_off, near_ptr, near_idx, bint has_near,
                 nbr_idx, nbr_dist, double nbr_share):
        self.perm, self.iperm, self.leaf_off = perm, iperm, leaf_off
        self.near_ptr, self.near_idx, self.has_near = near_ptr, near_idx, has_near
        self.nbr_idx, self.nbr_dist, self.nbr_share = nbr_idx, nbr_dist, nbr_share


def sample_rows(const int64_t[::1] node_lo, const int64_t[::1] node_hi,   # IN positions of each node
                const int64_t[::1] leaf_lo, const int64_t[::1] leaf_hi,   # IN its leaves
                const int64_t[::1] col_ptr, const int64_t[::1] col_idx,   # IN its columns
                const int64_t[::1] n_rows,       # IN  rows wanted per node
                const int64_t[::1] n_allowed,    # IN  rows outside the node and its near leaves
                const uint64_t[::1] keys,        # IN  stream key per node
                RowPool where,                   # IN  the tree order, near leaves, neighbours
                const int64_t[::1] rows_off,     # IN  node t writes rows[rows_off[t]: + n_rows[t]]
                int64_t[::1] rows,               # OUT sampled rows (original indices)
                int64_t[::1] rows_cnt,           # OUT how many were found (-1: out of memory)
                signed char[:, ::1] mark,        # WORK (threads, n) zeros, left zero
                int n_threads):
    """Rows for each node's interpolative decomposition, outside the node and its
    near leaves. When they all fit, all of them; else the columns' neighbours
    closest first (up to ``nbr_share``), then uniform draws among the allowed rows:
    from an explicit list when they are few (a partial Fisher-Yates shuffle), by
    rejection otherwise. O(rows + columns * k) per node, plus O(leaves + allowed
    rows) when the allowed rows are few."""
    cdef const int64_t[::1] perm = where.perm, iperm = where.iperm
    cdef const int64_t[::1] leaf_off = where.leaf_off
    cdef const int64_t[::1] near_ptr = where.near_ptr, near_idx = where.near_idx
    cdef bint has_near = where.has_near
    cdef const int64_t[:, ::1] nbr_idx = where.nbr_idx
    cdef const double[:, ::1] nbr_dist = where.nbr_dist
    cdef double nbr_share = where.nbr_share
    cdef Py_ssize_t t, c, e, nn = node_lo.shape[0], k = nbr_idx.shape[1]
    cdef int64_t n = perm.shape[0], lo, hi, llo, lhi, cap, cnt, nmax, ncand, i, p, j
    cdef int64_t n_out, ctr, attempts, max_att, th, npool
    cdef KeyIdx* cand
    cdef int64_t* out
    cdef int64_t* pool
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="dynamic"):
        th = threadid()
        lo = node_lo[t]
        hi = node_hi[t]
        llo = leaf_lo[t]
        lhi = leaf_hi[t]
        cap = n_rows[t]
        out = &rows[rows_off[t]]
        cnt = 0
        n_out = n - (hi - lo)
        if n_allowed[t] <= cap:
            rows_cnt[t] = _allowed_leaves_rows(llo, lhi, leaf_off, near_ptr, near_idx,
                                               has_near, perm, out)
            continue
        # neighbours of the columns, closest first
        nmax = <int64_t>(nbr_share * cap)
        if k > 0 and nmax > 0:
            ncand = 0
            cand = <KeyIdx*>malloc(<size_t>((col_ptr[t + 1] - col_ptr[t]) * k + 1)
                                   * sizeof(KeyIdx))
            if cand == NULL:
                rows_cnt[t] = -1
                continue
            for c in range(col_ptr[t], col_ptr[t + 1]):
                for e in range(k):
                    i = nbr_idx[col_idx[c], e]
                    if i < 0:
                        continue
                    if _excluded(i, lo, hi, llo, lhi, iperm, leaf_off, near_ptr,
                                 near_idx, has_near):
                        continue
                    cand[ncand].key = nbr_dist[col_idx[c], e]
                    cand[ncand].idx = i
                    ncand = ncand + 1
            sort_keyidx(cand, ncand)
            for e in range(ncand):
                if cnt >= nmax:
                    break
                i = cand[e].idx
                if mark[th, i] == 0:
                    mark[th, i] = 1
                    out[cnt] = i
                    cnt = cnt + 1
            free(cand)
        ctr = 0
        if n_allowed[t] <= 8 * cap:
            # few allowed rows: draw without replacement from their list
            pool = <int64_t*>malloc(<size_t>(n_allowed[t] + 1) * sizeof(int64_t))
            if pool == NULL:
                for e in range(cnt):
                    mark[th, out[e]] = 0
                rows_cnt[t] = -1
                continue
            npool = _allowed_leaves_rows(llo, lhi, leaf_off, near_ptr, near_idx,
                                         has_near, perm, pool)
            j = 0
            while cnt < cap and j < npool:
                p = j + draw_below(keys[t], ctr, npool - j)
                ctr = ctr + 1
                i = pool[p]
                pool[p] = pool[j]
                pool[j] = i
                j = j + 1
                if mark[th, i] == 0:
                    mark[th, i] = 1
                    out[cnt] = i
                    cnt = cnt + 1
            free(pool)
        else:
            # many: uniform positions outside the node, the near ones rejected
            attempts = 0
            max_att = 4 * (cap - cnt) * (n_out // n_allowed[t] + 1) + 256
            while cnt < cap and attempts < max_att:
                p = draw_below(keys[t], ctr, n_out)
                ctr = ctr + 1
                attempts = attempts + 1
                if p >= lo:
                    p = p + (hi - lo)
                i = perm[p]
                if mark[th, i] != 0:
                    continue
                if has_near and _excluded(i, lo, hi, llo, lhi, iperm, leaf_off, near_ptr,
                                          near_idx, has_near):
                    continue
                mark[th, i] = 1
                out[cnt] = i
                cnt = cnt + 1
        for e in range(cnt):
            mark[th, out[e]] = 0
        rows_cnt[t] = cnt


# ------------------------------------------------- interpolative decomposition
cdef int _column_id(double* A, int m, int n, int lda, double tol, double atol,
                    int max_rank, double* tau, double* work, int lwork, int* jpvt,
                    double* tails, double* P, int64_t* piv,
                    double* achieved) noexcept nogil:
    """Adaptive column ID of A (m x n, column-major, destroyed): A ~= A[:, piv] P.

    QR of a tall A first (BLAS-3), then the pivoted QR of R (same column choices,
    the column norms are kept). The rank r is the smallest k with
    |R[k:, k:]|_F <= tol |R_11| (relative), or, when atol > 0 (shift-aware), the
    smallest k whose pivot |R_kk| -- the largest column norm left, a lower estimate
    of |R[k:, k:]|_2 -- is at most atol; capped by max_rank. P (r x n, row-major)
    has the identity on the pivot columns and R11^-1 R12 on the others. Returns r;
    writes the first r pivots (0-based) and what was dropped, in units of the
    criterion times tol: |R[r:, r:]|_F / |R_11|, or tol |R_rr| / atol."""
    cdef int info = 0, kmax, r, nr, ldr = lda, mr = m
    cdef Py_ssize_t i, j
    cdef double total, s, one = 1.0     # total: |R_11|, the largest pivot
    cdef char side = b'L', uplo = b'U', trans = b'N', diag = b'N'
    achieved[0] = 0.0
    if n == 0 or m == 0:
        return 0
    if m > n + n // 4:
        dgeqrf(&m, &n, A, &lda, tau, work, &lwork, &info)
        for j in range(n):              # keep R: zero the Householder vectors below it
            for i in range(j + 1, n):
                A[i + j * lda] = 0.0
        mr = n
    for j in range(n):
        jpvt[j] = 0
    dgeqp3(&mr, &n, A, &ldr, jpvt, tau, work, &lwork, &info)
    kmax = mr if mr < n else n
    total = fabs(A[0])
    if total == 0.0:
        return 0
    r = kmax
    if atol > 0.0:
        for i in range(kmax):
            if fabs(A[i + i * ldr]) <= atol:
                r = i
                break
        if r > max_rank:
            r = max_rank
        achieved[0] = tol * fabs(A[r + r * ldr]) / atol if r < kmax else 0.0
    else:
        # tails[k] = |R[k:, k:]|_F
        tails[kmax] = 0.0
        for i in range(kmax - 1, -1, -1):
            s = 0.0
            for j in range(i, n):
                s = s + A[i + j * ldr] * A[i + j * ldr]
            tails[i] = tails[i + 1] + s
        for i in range(kmax + 1):
            if sqrt(tails[i]) <= tol * total:
                r = i
                break
        if r > max_rank:
            r = max_rank
        achieved[0] = sqrt(tails[r]) / total
    for i in range(r):
        piv[i] = jpvt[i] - 1
    if r == 0:
        return 0
    nr = n - r
    if nr > 0:                          # T = R11^-1 R12, in place
        dtrsm(&side, &uplo, &trans, &diag, &r, &nr, &one, A, &ldr, &A[r * ldr], &ldr)
    memset(P, 0, <size_t>r * n * sizeof(double))
    for i in range(r):
        P[i * n + jpvt[i] - 1] = 1.0
        for j in range(nr):
            P[i * n + jpvt[r + j] - 1] = A[i + (r + j) * ldr]
    return r


cdef inline int _lwork(int n) noexcept nogil:
    return 64 * (n + 1) + 3 * n + 1


cdef class IDs:
    """What the interpolative decompositions of a set of nodes write, and their rank
    rule. Node t: its rank and the relative size of the dropped part (achieved), P
    (rank x ncols, row-major) at proj_off[t] in proj (room for min(max_rank, ncols)
    x ncols), its skeleton positions among its columns at pos_off[t] in pos (room
    for min(max_rank, ncols)). The rank is the smallest that meets tol (or the
    absolute threshold atol[t], shift-aware; atol may be empty), at most max_rank."""
    cdef int64_t[::1] rank, pos
    cdef double[::1] achieved, proj
    cdef const int64_t[::1] proj_off, pos_off
    cdef const double[::1] atol
    cdef double tol
    cdef int max_rank

    def __init__(self, double tol, int max_rank, atol, rank, achieved, proj, proj_off,
                 pos, pos_off):
        self.tol, self.max_rank, self.atol = tol, max_rank, atol
        self.rank, self.achieved = rank, achieved
        self.proj, self.proj_off, self.pos, self.pos_off = proj, proj_off, pos, pos_off


cdef class Sketch:
    """Sketch rows of a set of nodes: node t's rows of Y and of Omega (row-major,
    s columns each) start at row off[t] of Y and Om. At the leaves, Y = K Omega and
    Omega themselves (tree order, a node's rows at its position); above, the
    reduced sketches of the children (child c's at off[c])."""
    cdef double[::1] Y, Om
    cdef const int64_t[::1] off

    def __init__(self, Y, Om, off):
        self.Y, self.Om, self.off = Y, Om, off


def column_ids(double[::1] B,                  # IN/WORK node t: nrows[t] x ncols[t] column-major at B_off[t]
               const int64_t[::1] B_off,
               const int64_t[::1] nrows,
               const int64_t[::1] ncols,
               IDs ids,                        # OUT the IDs (and the rank rule)
               int n_threads):
    """Interpolative decompositions of the sampled blocks of a level, one per node."""
    cdef Py_ssize_t t, nn = B_off.shape[0]
    cdef double tol = ids.tol
    cdef int max_rank = ids.max_rank
    cdef const double[::1] atol = ids.atol
    cdef int64_t[::1] rank = ids.rank, pos = ids.pos
    cdef double[::1] achieved = ids.achieved, proj = ids.proj
    cdef const int64_t[::1] proj_off = ids.proj_off, pos_off = ids.pos_off
    cdef int m, n, lw
    cdef double* tau
    cdef double* work
    cdef double* tails
    cdef int* jpvt
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="dynamic"):
        m = <int>nrows[t]
        n = <int>ncols[t]
        lw = _lwork(n)
        tau = <double*>malloc(<size_t>(n + 1) * sizeof(double))
        tails = <double*>malloc(<size_t>(n + 2) * sizeof(double))
        work = <double*>malloc(<size_t>lw * sizeof(double))
        jpvt = <int*>malloc(<size_t>(n + 1) * sizeof(int))
        if tau == NULL or tails == NULL or work == NULL or jpvt == NULL:
            rank[t] = -1
        else:
            rank[t] = _column_id(&B[B_off[t]], m, n, m if m > 0 else 1, tol,
                                 atol[t] if atol.shape[0] > 0 else 0.0, max_rank, tau,
                                 work, lw, jpvt, tails, &proj[proj_off[t]],
                                 &pos[pos_off[t]], &achieved[t])
        free(tau)
        free(tails)
        free(work)
        free(jpvt)


def sketch_ids(bint leaf, int s,
               Sketch inp,                                     # IN  leaf: Y, Omega at the leaves' positions; inner: the children's reduced sketches
               const double[::1] blk, const int64_t[::1] blk_off,   # IN leaf: K(I, I); inner: K(skel_l, skel_r)
               const int64_t[::1] ncols,                       # IN  columns of each node
               const int64_t[::1] rank_l, const int64_t[::1] rank_r,   # IN children's ranks (inner)
               int certified,                                  # IN  larger ranks are not certified
               IDs ids,                                        # OUT the IDs (and the rank rule)
               Sketch out,                                     # OUT reduced sketches (rank x s per node)
               int n_threads):
    """Row IDs of the sketched off-diagonal block rows of a level (Martinsson 2011):
    leaf: Y_a = Y(I) - K(I, I) Om(I); inner: Y_a = [Yh_l - B Oh_r; Yh_r - B^T Oh_l]
    with B = K(skel_l, skel_r), Om_a = [Oh_l; Oh_r]; then Y_a ~= P^T Y_a[piv],
    Yh_a = Y_a[piv], Oh_a = P Om_a."""
    cdef Py_ssize_t t, i, nn = ncols.shape[0]
    # leaf level: Y, Om at node_off; above: the children's Yh_prev, Oh_prev at prev_off
    cdef const double[::1] Y = inp.Y, Om = inp.Om, Yh_prev = inp.Y, Oh_prev = inp.Om
    cdef const int64_t[::1] node_off = inp.off, prev_off = inp.off
    cdef double[::1] Yh = out.Y, Oh = out.Om
    cdef const int64_t[::1] new_off = out.off
    cdef double tol = ids.tol
    cdef int max_rank = ids.max_rank
    cdef const double[::1] atol = ids.atol
    cdef int64_t[::1] rank = ids.rank, pos = ids.pos
    cdef double[::1] achieved = ids.achieved, proj = ids.proj
    cdef const int64_t[::1] proj_off = ids.proj_off, pos_off = ids.pos_off
    cdef int n, lw, r, rl, rr, ss = s
    cdef double one = 1.0, mone = -1.0, zero = 0.0
    cdef char N = b'N', T = b'T'
    cdef double* Ya
    cdef double* A
    cdef double* Oa
    cdef double* tau
    cdef double* work
    cdef double* tails
    cdef int* jpvt
    cdef const double* B
    for t in prange(nn, nogil=True, num_threads=n_threads, schedule="dynamic"):
        n = <int>ncols[t]
        if n == 0:
            rank[t] = 0
            achieved[t] = 0.0
            continue
        lw = _lwork(n if n > ss else ss)
        Ya = <double*>malloc(<size_t>n * ss * sizeof(double))
        A = <double*>malloc(<size_t>n * ss * sizeof(double))
        Oa = <double*>malloc(<size_t>n * ss * sizeof(double))
        tau = <double*>malloc(<size_t>(n + ss + 1) * sizeof(double))
        tails = <double*>malloc(<size_t>(n + 2) * sizeof(double))
        work = <double*>malloc(<size_t>lw * sizeof(double))
        jpvt = <int*>malloc(<size_t>(n + 1) * sizeof(int))
        if (Ya == NULL or A == NULL or Oa == NULL or tau == NULL or tails == NULL
                or work == NULL or jpvt == NULL):
            rank[t] = -1
            free(Ya)
            free(A)
            free(Oa)
            free(tau)
            free(tails)
            free(work)
            free(jpvt)
            continue
        B = &blk[blk_off[t]]
        if leaf:
            # Ya^T (s x n, col-major) = Y(I)^T - Om(I)^T K(I, I)
            memcpy(Ya, &Y[node_off[t] * ss], <size_t>n * ss * sizeof(double))
            memcpy(Oa, &Om[node_off[t] * ss], <size_t>n * ss * sizeof(double))
            dgemm(&N, &N, &ss, &n, &n, &mone, Oa, &ss, <double*>B, &n, &one, Ya, &ss)
        else:
            rl = <int>rank_l[t]
            rr = <int>rank_r[t]
            memcpy(Ya, &Yh_prev[prev_off[2 * t] * ss], <size_t>rl * ss * sizeof(double))
            memcpy(&Ya[rl * ss], &Yh_prev[prev_off[2 * t + 1] * ss], <size_t>rr * ss * sizeof(double))
            memcpy(Oa, &Oh_prev[prev_off[2 * t] * ss], <size_t>rl * ss * sizeof(double))
            memcpy(&Oa[rl * ss], &Oh_prev[prev_off[2 * t + 1] * ss], <size_t>rr * ss * sizeof(double))
            # top: Yh_l - B Oh_r  (B: rl x rr row-major = rr x rl col-major = B^T)
            if rl > 0 and rr > 0:
                dgemm(&N, &N, &ss, &rl, &rr, &mone, &Oa[rl * ss], &ss, <double*>B, &rr,
                      &one, Ya, &ss)
                # bottom: Yh_r - B^T Oh_l
                dgemm(&N, &T, &ss, &rr, &rl, &mone, Oa, &ss, <double*>B, &rr, &one,
                      &Ya[rl * ss], &ss)
        memcpy(A, Ya, <size_t>n * ss * sizeof(double))
        r = _column_id(A, ss, n, ss, tol, atol[t] if atol.shape[0] > 0 else 0.0, max_rank,
                       tau, work, lw, jpvt, tails,
                       &proj[proj_off[t]], &pos[pos_off[t]], &achieved[t])
        if r > certified and r < n:    # too close to the samples to trust: unknown
            achieved[t] = 2.0 * tol if 2.0 * tol > 1.0 else 1.0
        rank[t] = r
        for i in range(r):
            memcpy(&Yh[(new_off[t] + i) * ss], &Ya[pos[pos_off[t] + i] * ss],
                   ss * sizeof(double))
        if r > 0:
            # Oh^T (s x r) = Oa^T (s x n) P^T (P row-major r x n = n x r col-major)
            dgemm(&N, &N, &ss, &r, &n, &one, Oa, &ss, &proj[proj_off[t]], &n, &zero,
                  &Oh[new_off[t] * ss], &ss)
        free(Ya)
        free(A)
        free(Oa)
        free(tau)
        free(tails)
        free(work)
        free(jpvt)
