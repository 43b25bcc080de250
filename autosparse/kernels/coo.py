"""COO kernels on (row, col, data[, table]) sorted by row, then column.

A x walks the entries keeping one running sum per row: it writes each row
once when the row number changes, and zeroes the empty rows it steps over.
Parallel chunks are entry ranges cut at row boundaries (``kbounds``), so
each owns a disjoint range of rows ``[bounds[t], bounds[t + 1])``.  Aᴴx and
Aᴴ X are scatters into the columns, parallelised with the race-free scatter
plan of ``kernels/compressed.py``.
"""

import numpy as np
from numba import prange

from ._runtime import jit, pjit
from ._values import cvalue, value
from .compressed import _1, buffer_size, combine, combine2, slot, zero_own, zero_own2


@jit
def _rows(k0, k1, r0, r1, row, col, data, table, x, out):
    """out[r0:r1] from entries k0..k1 (all with rows in [r0, r1))."""
    r = r0
    s = out.dtype.type(0)
    for k in range(k0, k1):
        rk = row[k]
        if rk != r:
            out[r] = s
            r += _1
            while r < rk:
                out[r] = 0
                r += _1
            s = out.dtype.type(0)
        s += value(data, table, k) * x[col[k]]
    if r < r1:
        out[r] = s
        r += _1
    while r < r1:
        out[r] = 0
        r += _1


@jit
def matvec(row, col, data, table, x, out):
    _rows(np.uint64(0), np.uint64(row.size), np.uint64(0), np.uint64(out.size), row, col, data, table, x, out)


@pjit
def matvec_par(bounds, kbounds, row, col, data, table, x, out):
    for t in prange(bounds.size - 1):
        _rows(kbounds[t], kbounds[t + 1], bounds[t], bounds[t + 1], row, col, data, table, x, out)


@jit
def _rows2(k0, k1, r0, r1, row, col, data, table, X, out):
    nk = X.shape[1]
    acc = np.zeros(nk, out.dtype)
    r = r0
    for k in range(k0, k1):
        rk = row[k]
        if rk != r:
            for c in range(nk):
                out[r, c] = acc[c]
                acc[c] = 0
            r += _1
            while r < rk:
                for c in range(nk):
                    out[r, c] = 0
                r += _1
        v = value(data, table, k)
        ck = col[k]
        for c in range(nk):
            acc[c] += v * X[ck, c]
    if r < r1:
        for c in range(nk):
            out[r, c] = acc[c]
        r += _1
    while r < r1:
        for c in range(nk):
            out[r, c] = 0
        r += _1


@jit
def matmat(row, col, data, table, X, out):
    _rows2(np.uint64(0), np.uint64(row.size), np.uint64(0), np.uint64(out.shape[0]), row, col, data, table, X, out)


@pjit
def matmat_par(bounds, kbounds, row, col, data, table, X, out):
    for t in prange(bounds.size - 1):
        _rows2(kbounds[t], kbounds[t + 1], bounds[t], bounds[t + 1], row, col, data, table, X, out)


@jit
def rmatvec(row, col, data, table, conj, x, out):
    for j in range(out.size):
        out[j] = 0
    for k in range(np.uint64(row.size)):
        out[col[k]] += cvalue(data, table, k, conj) * x[row[k]]


@jit
def _scatter_chunk(plan, t, k0, k1, row, col, data, table, conj, x, out, buf):
    lo, elo, ehi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 4], plan[t, 5]
    for k in range(k0, k1):
        direct, r = slot(lo, elo, ehi, oa, ob, col[k])
        if direct:
            out[r] += cvalue(data, table, k, conj) * x[row[k]]
        else:
            buf[r] += cvalue(data, table, k, conj) * x[row[k]]


@pjit
def rmatvec_par(kbounds, plan, items, row, col, data, table, conj, x, out):
    buf = np.empty(buffer_size(plan), out.dtype)
    for t in prange(kbounds.size - 1):
        zero_own(plan, t, out, buf)
        _scatter_chunk(plan, t, kbounds[t], kbounds[t + 1], row, col, data, table, conj, x, out, buf)
    for w in range(items.shape[0]):          # serial: one fork-join per product
        combine(plan, items, w, buf, out)


@jit
def rmatmat(row, col, data, table, conj, X, out):
    nk = X.shape[1]
    for j in range(out.shape[0]):
        for c in range(nk):
            out[j, c] = 0
    for k in range(np.uint64(row.size)):
        v = cvalue(data, table, k, conj)
        ck = col[k]
        rk = row[k]
        for c in range(nk):
            out[ck, c] += v * X[rk, c]


@jit
def _scatter_chunk2(plan, t, k0, k1, row, col, data, table, conj, X, out, buf):
    nk = X.shape[1]
    lo, elo, ehi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 4], plan[t, 5]
    for k in range(k0, k1):
        v = cvalue(data, table, k, conj)
        rk = row[k]
        direct, r = slot(lo, elo, ehi, oa, ob, col[k])
        if direct:
            for c in range(nk):
                out[r, c] += v * X[rk, c]
        else:
            for c in range(nk):
                buf[r, c] += v * X[rk, c]


@pjit
def rmatmat_par(kbounds, plan, items, row, col, data, table, conj, X, out):
    buf = np.empty((buffer_size(plan), X.shape[1]), out.dtype)
    for t in prange(kbounds.size - 1):
        zero_own2(plan, t, out, buf)
        _scatter_chunk2(plan, t, kbounds[t], kbounds[t + 1], row, col, data, table, conj, X, out, buf)
    for w in range(items.shape[0]):          # serial: one fork-join per product
        combine2(plan, items, w, buf, out)
