"""Dense kernels: a C-contiguous row-major (m, n) array ``A``.

Exact IEEE arithmetic, in SciPy's order: every result is summed from 0 over
the stored columns (rows, for Aᵀ) in ascending order, and padding adds exact
zeros, so with finite operands the results equal SciPy's bit for bit.  SIMD
comes from vectorising across independent sums, never from reassociating
one:

* ``A x``: eight rows at a time, eight independent running sums (a sum's
  additions are a latency chain; eight of them keep the adders busy and the
  loads stream eight rows);
* ``Aᵀ x``: ``out[j] += A[i, j] * x[i]`` over a stripe of columns that stays
  in L1, vectorised across ``j``, four rows per pass (``((out + t0) + t1) +
  ...`` is still SciPy's order, and ``out`` is loaded and stored once per
  four terms);
* ``A X`` / ``Aᵀ X``: ``out[i, :] += A[i, j] * X[j, :]``, vectorised across
  the k columns of ``X``, four terms per pass likewise.

BLAS (gemv/gemm) was measured too: equal to these loops for ``A x``, faster
for ``Aᵀx`` and ``A X``, but it reorders sums and fuses multiply-adds (and
complex BLAS turns ``inf`` into NaN through its ``alpha = 1 + 0j`` scaling),
so its results are not SciPy's.

Parallel bodies use ``while`` loops and 2-D indexing (no views) so numba
compiles them with ``noalias`` arguments (see ``kernels/dia.py``).  Every
kernel returns the number of NaN results: stored zeros are padding and
``0 * inf`` must not leak into the result (see ``formats/_base.py``).
"""

import numpy as np
from numba import prange

from .dia import _pair

U = np.uint64
ROWS = 8          # row group of A x


def _matvec(A, x, out):
    m, n = A.shape
    un = U(n)
    ng = (m + ROWS - 1) // ROWS
    nan = 0
    for g in prange(ng):
        i0 = g * ROWS
        i1 = min(i0 + ROWS, m)
        if i1 - i0 == ROWS:
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = out.dtype.type(0)
            a = U(i0)
            j = U(0)
            while j < un:
                xj = x[j]
                s0 += A[a, j] * xj
                s1 += A[a + U(1), j] * xj
                s2 += A[a + U(2), j] * xj
                s3 += A[a + U(3), j] * xj
                s4 += A[a + U(4), j] * xj
                s5 += A[a + U(5), j] * xj
                s6 += A[a + U(6), j] * xj
                s7 += A[a + U(7), j] * xj
                j += U(1)
            out[a] = s0
            out[a + U(1)] = s1
            out[a + U(2)] = s2
            out[a + U(3)] = s3
            out[a + U(4)] = s4
            out[a + U(5)] = s5
            out[a + U(6)] = s6
            out[a + U(7)] = s7
        else:
            i = U(i0)
            while i < U(i1):
                s = out.dtype.type(0)
                j = U(0)
                while j < un:
                    s += A[i, j] * x[j]
                    j += U(1)
                out[i] = s
                i += U(1)
        c = 0
        i = U(i0)
        while i < U(i1):
            c += out[i] != out[i]
            i += U(1)
        nan += c
    return nan


matvec, matvec_par = _pair(_matvec)


def _rmatvec(A, W, conj, x, out):
    """out = Aᴴx (conj) or Aᵀx over stripes of ``W`` columns, four rows per pass."""
    m, n = A.shape
    um = U(m)
    ns = (n + W - 1) // W
    nan = 0
    for t in prange(ns):
        j0 = U(t * W)
        j1 = U(min(t * W + W, n))
        j = j0
        while j < j1:
            out[j] = 0
            j += U(1)
        i = U(0)
        while i + U(4) <= um:                  # ((out + a0 x0) + a1 x1) + ...: SciPy's order
            x0 = x[i]
            x1 = x[i + U(1)]
            x2 = x[i + U(2)]
            x3 = x[i + U(3)]
            j = j0
            if conj:
                while j < j1:
                    out[j] = (out[j] + np.conj(A[i, j]) * x0 + np.conj(A[i + U(1), j]) * x1
                              + np.conj(A[i + U(2), j]) * x2 + np.conj(A[i + U(3), j]) * x3)
                    j += U(1)
            else:
                while j < j1:
                    out[j] = (out[j] + A[i, j] * x0 + A[i + U(1), j] * x1
                              + A[i + U(2), j] * x2 + A[i + U(3), j] * x3)
                    j += U(1)
            i += U(4)
        while i < um:
            xi = x[i]
            j = j0
            while j < j1:
                out[j] += (np.conj(A[i, j]) if conj else A[i, j]) * xi
                j += U(1)
            i += U(1)
        c = 0
        j = j0
        while j < j1:
            c += out[j] != out[j]
            j += U(1)
        nan += c
    return nan


rmatvec, rmatvec_par = _pair(_rmatvec)


def _matmat(A, X, out):
    m, n = A.shape
    un = U(n)
    nk = U(X.shape[1])
    nan = 0
    for i in prange(m):
        ui = U(i)
        c = U(0)
        while c < nk:
            out[ui, c] = 0
            c += U(1)
        j = U(0)
        while j + U(4) <= un:                  # four columns per pass, summed in order
            a0 = A[ui, j]
            a1 = A[ui, j + U(1)]
            a2 = A[ui, j + U(2)]
            a3 = A[ui, j + U(3)]
            c = U(0)
            while c < nk:
                out[ui, c] = (out[ui, c] + a0 * X[j, c] + a1 * X[j + U(1), c]
                              + a2 * X[j + U(2), c] + a3 * X[j + U(3), c])
                c += U(1)
            j += U(4)
        while j < un:
            a = A[ui, j]
            c = U(0)
            while c < nk:
                out[ui, c] += a * X[j, c]
                c += U(1)
            j += U(1)
        cnt = 0
        c = U(0)
        while c < nk:
            cnt += out[ui, c] != out[ui, c]
            c += U(1)
        nan += cnt
    return nan


matmat, matmat_par = _pair(_matmat)


def _rmatmat(A, W, conj, X, out):
    """out = Aᴴ X (conj) or Aᵀ X over stripes of ``W`` rows of ``out``, four rows of A per pass."""
    m, n = A.shape
    um = U(m)
    nk = U(X.shape[1])
    ns = (n + W - 1) // W
    nan = 0
    for t in prange(ns):
        j0 = U(t * W)
        j1 = U(min(t * W + W, n))
        j = j0
        while j < j1:
            c = U(0)
            while c < nk:
                out[j, c] = 0
                c += U(1)
            j += U(1)
        i = U(0)
        while i + U(4) <= um:
            j = j0
            while j < j1:
                a0 = np.conj(A[i, j]) if conj else A[i, j]
                a1 = np.conj(A[i + U(1), j]) if conj else A[i + U(1), j]
                a2 = np.conj(A[i + U(2), j]) if conj else A[i + U(2), j]
                a3 = np.conj(A[i + U(3), j]) if conj else A[i + U(3), j]
                c = U(0)
                while c < nk:
                    out[j, c] = (out[j, c] + a0 * X[i, c] + a1 * X[i + U(1), c]
                                 + a2 * X[i + U(2), c] + a3 * X[i + U(3), c])
                    c += U(1)
                j += U(1)
            i += U(4)
        while i < um:
            j = j0
            while j < j1:
                a = np.conj(A[i, j]) if conj else A[i, j]
                c = U(0)
                while c < nk:
                    out[j, c] += a * X[i, c]
                    c += U(1)
                j += U(1)
            i += U(1)
        cnt = 0
        j = j0
        while j < j1:
            c = U(0)
            while c < nk:
                cnt += out[j, c] != out[j, c]
                c += U(1)
            j += U(1)
        nan += cnt
    return nan


rmatmat, rmatmat_par = _pair(_rmatmat)
