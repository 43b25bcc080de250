"""SELL-C-σ kernels: chunks of C rows, column-major within a chunk.

Layout.  Chunk ``c`` holds rows ``c*C .. c*C+C-1`` of the (possibly
row-sorted) matrix in slots ``cptr[c] .. cptr[c+1]``: slot ``j`` of lane
``r`` at ``cptr[c] + j*C + r``.  The chunk's width is
``(cptr[c+1] - cptr[c]) / C``.  Padding slots hold value 0 (code 0 with a
value table) and a valid column.  The last chunk is padded to C lanes with
empty rows.  ``perm[p]`` is the original row of sorted position ``p``
(``None`` when rows are unsorted, sigma = 1); results are written to
``out[perm[p]]`` so they land in original order.

``C`` is a compile-time literal: the C lanes of a chunk are summed in SIMD
registers (``lane_accumulate``: vector loads of values or codes and indices,
gathers from the value table and ``x``), real dtypes at least; complex ones
take a scalar loop over the C lanes.
Arithmetic is exact (no fastmath): each row is summed in column order, as
SciPy does, and the serial transposed products scatter row by row (in
sorted order: SciPy's order when sigma = 1).

A x prefetches the slots' values and columns 8 KB ahead, once per line
(``_simd.prefetch``), when they do not fit in the caches (``ahead`` > 0):
1.15-1.5x on streaming-bound matrices, ~0.9x on a gather-bound power-law
one (one thread).

Parallel kernels take ``bounds`` over chunks balanced by stored slots.
Every kernel returns a count that is non-zero whenever padding may have
produced a NaN (padded-format contract; see ``kernels/ell.py``).
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from ._runtime import FASTMATH
from ._values import cvalue, value
from ._runtime import jit, pjit
from ._simd import CACHE_LINE, prefetch
from .ell import lane_accumulate, lanes, nonfinite_row


def row_of(perm, p):  # pragma: no cover - replaced by the overload in jitted code
    return p if perm is None else perm[p]


@overload(row_of, jit_options={"fastmath": FASTMATH})
def _row_of_impl(perm, p):
    if isinstance(perm, types.NoneType):
        return lambda perm, p: p
    return lambda perm, p: perm[p]


@jit
def _mv_chunks(C, c0, c1, cptr, cols, data, table, perm, ahead, x, out):
    m = np.uint64(out.size)
    uC = np.uint64(C)
    nan = 0
    step = np.uint64(CACHE_LINE // max(data.itemsize, cols.itemsize))
    uahead = np.uint64(ahead)
    p = cptr[c0] if c1 > c0 else np.uint64(0)          # slots below p + ahead were prefetched
    for c in range(np.uint64(c0), np.uint64(c1)):
        acc = lanes(C, out.dtype)
        lane_accumulate(C, acc, data, table, cols, x, cptr[c], uC, (cptr[c + 1] - cptr[c]) // uC)
        if ahead:
            while p < cptr[c + 1]:                       # see _simd.prefetch
                prefetch(data, p + uahead)
                prefetch(cols, p + uahead)
                p += step
        base = c * uC
        if base + uC <= m:             # constant trip count: stores straight from registers
            for r in range(uC):
                v = acc[r]
                out[row_of(perm, base + r)] = v
                nan += v != v
        else:
            for r in range(m - base):
                v = acc[r]
                out[row_of(perm, base + r)] = v
                nan += v != v
    return nan


@pjit
def matvec_par(C, bounds, cptr, cols, data, table, perm, ahead, x, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _mv_chunks(C, bounds[t], bounds[t + 1], cptr, cols, data, table, perm, ahead, x, out)
    return nan


@jit
def _mm_chunks(C, c0, c1, cptr, cols, data, table, perm, X, out):
    """Row by row within a chunk (each out row stays in L1 while its slots add up).

    Counts zero slots that met a non-finite row of X (see ``kernels/ell.py``).
    """
    m = np.uint64(out.shape[0])
    nk = X.shape[1]
    uC = np.uint64(C)
    nan = 0
    for c in range(np.uint64(c0), np.uint64(c1)):
        base = c * uC
        width = (cptr[c + 1] - cptr[c]) // uC
        for r in range(min(uC, m - base)):
            i = row_of(perm, base + r)
            for t in range(nk):
                out[i, t] = 0
            o = cptr[c] + r
            for j in range(width):
                v = value(data, table, o)
                col = cols[o]
                if v == 0:                      # padding (or an explicit zero) times inf/NaN?
                    nan += nonfinite_row(X, col)
                for t in range(nk):
                    out[i, t] += v * X[col, t]
                o += uC
    return nan


@pjit
def matmat_par(C, bounds, cptr, cols, data, table, perm, X, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _mm_chunks(C, bounds[t], bounds[t + 1], cptr, cols, data, table, perm, X, out)
    return nan


@jit
def _rmv_chunks(C, c0, c1, cptr, cols, data, table, perm, whole, conj, x, w):
    """Scatter the chunks' rows into ``w``; ``whole``: w is the output (zero it, count NaN results)."""
    if whole:
        w[:] = 0
    m = np.uint64(x.size)
    uC = np.uint64(C)
    for c in range(np.uint64(c0), np.uint64(c1)):
        base = c * uC
        width = (cptr[c + 1] - cptr[c]) // uC
        for r in range(min(uC, m - base)):
            xi = x[row_of(perm, base + r)]
            o = cptr[c] + r
            for j in range(width):
                w[cols[o]] += cvalue(data, table, o, conj) * xi
                o += uC
    nan = 0
    if whole:
        for i in range(w.size):
            nan += w[i] != w[i]
    return nan


@pjit
def rmatvec_par(C, bounds, cptr, cols, data, table, perm, conj, x, out):
    nparts = bounds.size - 1
    n = out.size
    work = np.zeros((nparts, n), dtype=out.dtype)
    for t in prange(nparts):
        _rmv_chunks(C, bounds[t], bounds[t + 1], cptr, cols, data, table, perm, False, conj, x, work[t])
    nan = 0
    for j in prange(n):
        s = work[0, j]
        for t in range(1, nparts):
            s += work[t, j]
        out[j] = s
        nan += s != s
    return nan


@jit
def _rmm_chunks(C, c0, c1, cptr, cols, data, table, perm, whole, conj, X, w):
    if whole:
        w[:, :] = 0
    m = np.uint64(X.shape[0])
    nk = X.shape[1]
    uC = np.uint64(C)
    nan = 0
    for c in range(np.uint64(c0), np.uint64(c1)):
        base = c * uC
        width = (cptr[c + 1] - cptr[c]) // uC
        for r in range(min(uC, m - base)):
            i = row_of(perm, base + r)
            o = cptr[c] + r
            for j in range(width):
                v = cvalue(data, table, o, conj)
                col = cols[o]
                if v == 0:
                    nan += nonfinite_row(X, i)
                for t in range(nk):
                    w[col, t] += v * X[i, t]
                o += uC
    return nan


@pjit
def rmatmat_par(C, bounds, cptr, cols, data, table, perm, conj, X, out):
    nparts = bounds.size - 1
    n, nk = out.shape
    work = np.zeros((nparts, n, nk), dtype=out.dtype)
    nan = 0
    for t in prange(nparts):
        nan += _rmm_chunks(C, bounds[t], bounds[t + 1], cptr, cols, data, table, perm, False, conj, X, work[t])
    for r in prange(n):
        for j in range(nk):
            s = work[0, r, j]
            for t in range(1, nparts):
                s += work[t, r, j]
            out[r, j] = s
    return nan


matvec, matmat, rmatvec, rmatmat = _mv_chunks, _mm_chunks, _rmv_chunks, _rmm_chunks
KERNELS = {"matvec": (matvec, matvec_par), "matmat": (matmat, matmat_par),
           "rmatvec": (rmatvec, rmatvec_par), "rmatmat": (rmatmat, rmatmat_par)}
TRANSPOSED = ("rmatvec", "rmatmat")      # serial calls take the ``whole`` flag before ``conj``


# -- conversion -----------------------------------------------------------------

@pjit
def fill_slots(indptr, indices, values, perm, C, cptr, cols, vals):
    """``cols`` and ``vals`` of every slot of a chunked layout, chunks in parallel.

    Chunk ``c`` holds sorted positions ``c*C .. c*C+C-1`` (row ``perm[p]``, or ``p``
    without a permutation) in slots ``cptr[c] + j*C + r``; ELL is one chunk of ``C = m``
    rows.  Padding takes the row's last column (entry 0's for empty rows and lanes past
    the last row) and value 0.  Walking the slots in order writes sequentially and reads
    each row's entries in order: one pass writing the layout itself (an int64 source per
    slot for NumPy to gather through cost 4x as long)."""
    m = indptr.size - 1
    for c in prange(cptr.size - 1):
        o = cptr[c]
        width = (cptr[c + 1] - o) // C
        for j in range(width):
            for r in range(C):
                p = c * C + r
                if p < m:
                    i = row_of(perm, p)
                    start = indptr[i]
                    length = indptr[i + 1] - start
                    if j < length:
                        cols[o] = indices[start + j]
                        vals[o] = values[start + j]
                    else:
                        cols[o] = indices[start + length - 1] if length > 0 else indices[0]
                        vals[o] = 0
                else:
                    cols[o] = indices[0]
                    vals[o] = 0
                o += 1


@jit
def explicit_zero_slots(indptr, values, perm, C, cptr, out):
    """Slots (ascending) holding an entry whose value is 0: the input's explicit zeros,
    which padding must not be mistaken for.  ``out`` has room for all of them."""
    m = indptr.size - 1
    nz = 0
    for c in range(cptr.size - 1):
        o = cptr[c]
        width = (cptr[c + 1] - o) // C
        for j in range(width):
            for r in range(C):
                p = c * C + r
                if p < m:
                    i = row_of(perm, p)
                    start = indptr[i]
                    if j < indptr[i + 1] - start and values[start + j] == 0:
                        out[nz] = o
                        nz += 1
                o += 1
    return nz
