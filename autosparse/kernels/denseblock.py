"""Dense-block hybrid kernels: dense T×T tiles plus a CSR remainder, fused.

Arrays (index arrays as unsigned views): tiles ``tptr`` (per tile row),
``tidx`` (tile columns), ``tdata`` (flat, tile q at ``q*T*T``, column-major:
``tdata[(q*T + cc)*T + rr]`` is A[i0 + rr, j0 + cc]);
remainder ``rptr`` (per row), ``ridx``, ``rdata``; ``table`` None (or a
value table, see ``_values``).  Dense tiles are full tiles inside the matrix
(edge tiles that stick out always go to the remainder), so the tile loops
need no guards.  One pass per tile row does the tiles and then the
remainder of the same rows: the outputs are written once.

Exact IEEE arithmetic (no reassociation): the tile product for matvec runs
down the tile's columns with one accumulator per row, so it vectorises
across rows; the transposed products take dot products down the columns.
``T`` is a runtime argument: one compile serves every tile size.

Padding: stored zeros in tiles are padding, so kernels return the number of
NaN results (int64) and the format redoes the product exactly for non-finite x.
"""

import numpy as np
from numba import prange

from ._runtime import jit, pjit
from ._values import cvalue, value

U0, U1, U2, U3, U4 = (np.uint64(i) for i in range(5))
from .bsr import _reduce, sort_run


@jit
def _rows_mv(T, b0, b1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, x, out, acc):
    Tu = np.uint64(T)
    TTu = Tu * Tu
    nan = 0
    for ti in range(b0, b1):
        acc[:] = 0
        for q in range(tptr[ti], tptr[ti + 1]):
            j0 = np.uint64(tidx[q]) * Tu
            base = q * TTu
            for r0 in range(U0, Tu, U4):            # 4 rows at a time, down the tile's columns:
                a0 = acc[r0]                       # the 4 sums stay in registers (one SIMD
                a1 = acc[r0 + U1]                  # register: the column's 4 values are
                a2 = acc[r0 + U2]                  # contiguous), each summed in column order
                a3 = acc[r0 + U3]
                for cc in range(Tu):
                    xc = x[j0 + cc]
                    cb = base + cc * Tu + r0
                    a0 = a0 + value(tdata, table, cb) * xc
                    a1 = a1 + value(tdata, table, cb + U1) * xc
                    a2 = a2 + value(tdata, table, cb + U2) * xc
                    a3 = a3 + value(tdata, table, cb + U3) * xc
                acc[r0] = a0
                acc[r0 + U1] = a1
                acc[r0 + U2] = a2
                acc[r0 + U3] = a3
        i0 = ti * T
        for i in range(i0, min(m, i0 + T)):
            s = acc[i - i0]
            for k in range(rptr[i], rptr[i + 1]):
                s += value(rdata, table, k) * x[ridx[k]]
            out[i] = s
            nan += s != s
    return nan


@jit
def _rows_rmv(T, b0, b1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, x, out, lo):
    """Scatter of tile rows [b0, b1) into out[j - lo] (out pre-zeroed)."""
    Tu = np.uint64(T)
    TTu = Tu * Tu
    lou = np.uint64(lo)
    for ti in range(b0, b1):
        i0 = ti * T
        i1 = min(m, i0 + T)
        xt = x[i0:i0 + T]
        for q in range(tptr[ti], tptr[ti + 1]):
            j0 = np.uint64(tidx[q]) * Tu - lou
            base = q * TTu
            for c0 in range(U0, Tu, U4):            # 4 columns at a time: 4 independent dot
                b0 = base + c0 * Tu                 # products down the columns with x
                t0 = out[j0 + c0]
                t1 = out[j0 + c0 + U1]
                t2 = out[j0 + c0 + U2]
                t3 = out[j0 + c0 + U3]
                for rr in range(Tu):
                    xr = xt[rr]
                    t0 = t0 + cvalue(tdata, table, b0 + rr, conj) * xr
                    t1 = t1 + cvalue(tdata, table, b0 + Tu + rr, conj) * xr
                    t2 = t2 + cvalue(tdata, table, b0 + U2 * Tu + rr, conj) * xr
                    t3 = t3 + cvalue(tdata, table, b0 + U3 * Tu + rr, conj) * xr
                out[j0 + c0] = t0
                out[j0 + c0 + U1] = t1
                out[j0 + c0 + U2] = t2
                out[j0 + c0 + U3] = t3
        for i in range(i0, i1):
            xi = x[i]
            for k in range(rptr[i], rptr[i + 1]):
                out[np.uint64(ridx[k]) - lou] += cvalue(rdata, table, k, conj) * xi
    return 0


@jit
def _rows_mm(T, b0, b1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, X, out):
    Tu = np.uint64(T)
    TTu = Tu * Tu
    nk = X.shape[1]
    nan = 0
    for ti in range(b0, b1):
        i0 = ti * T
        i1 = min(m, i0 + T)
        out[i0:i1, :] = 0
        for q in range(tptr[ti], tptr[ti + 1]):
            j0 = np.uint64(tidx[q]) * Tu
            base = q * TTu
            for cc in range(Tu):
                xrow = X[j0 + cc]
                cb = base + cc * Tu
                for rr in range(Tu):
                    v = value(tdata, table, cb + rr)
                    row = out[np.uint64(i0) + rr]
                    for j in range(nk):
                        row[j] += v * xrow[j]
        for i in range(i0, i1):
            row = out[i]
            for k in range(rptr[i], rptr[i + 1]):
                v = value(rdata, table, k)
                xrow = X[ridx[k]]
                for j in range(nk):
                    row[j] += v * xrow[j]
            for j in range(nk):
                nan += row[j] != row[j]
    return nan


@jit
def _rows_rmm(T, b0, b1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, X, out, lo):
    Tu = np.uint64(T)
    TTu = Tu * Tu
    nk = X.shape[1]
    lou = np.uint64(lo)
    for ti in range(b0, b1):
        i0 = ti * T
        i1 = min(m, i0 + T)
        for q in range(tptr[ti], tptr[ti + 1]):
            j0 = np.uint64(tidx[q]) * Tu - lou
            base = q * TTu
            for cc in range(Tu):
                row = out[j0 + cc]
                cb = base + cc * Tu
                for rr in range(Tu):
                    v = cvalue(tdata, table, cb + rr, conj)
                    xrow = X[np.uint64(i0) + rr]
                    for j in range(nk):
                        row[j] += v * xrow[j]
        for i in range(i0, i1):
            xrow = X[i]
            for k in range(rptr[i], rptr[i + 1]):
                v = cvalue(rdata, table, k, conj)
                row = out[np.uint64(ridx[k]) - lou]
                for j in range(nk):
                    row[j] += v * xrow[j]
    return 0


# -- entry points: (T, m, [bounds, lo, hi,] tptr, tidx, tdata, rptr, ridx, rdata, table, [conj,] x, out)

@jit
def matvec(T, m, tptr, tidx, tdata, rptr, ridx, rdata, table, x, out):
    acc = np.empty(T, out.dtype)
    return _rows_mv(T, 0, tptr.size - 1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, x, out, acc)


@pjit
def matvec_par(T, m, bounds, tptr, tidx, tdata, rptr, ridx, rdata, table, x, out):
    nan = 0
    for t in prange(bounds.size - 1):
        acc = np.empty(T, out.dtype)
        nan += _rows_mv(T, bounds[t], bounds[t + 1], m, tptr, tidx, tdata, rptr, ridx, rdata, table, x, out, acc)
    return nan


@jit
def matmat(T, m, tptr, tidx, tdata, rptr, ridx, rdata, table, X, out):
    return _rows_mm(T, 0, tptr.size - 1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, X, out)


@pjit
def matmat_par(T, m, bounds, tptr, tidx, tdata, rptr, ridx, rdata, table, X, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _rows_mm(T, bounds[t], bounds[t + 1], m, tptr, tidx, tdata, rptr, ridx, rdata, table, X, out)
    return nan


@jit
def _count_nan(out):
    nan = 0
    for v in out.ravel():
        nan += v != v
    return nan


@jit
def rmatvec(T, m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, x, out):
    out[:] = 0
    _rows_rmv(T, 0, tptr.size - 1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, x, out, 0)
    return _count_nan(out)


@jit
def rmatmat(T, m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, X, out):
    out[:, :] = 0
    _rows_rmm(T, 0, tptr.size - 1, m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, X, out, 0)
    return _count_nan(out)


@pjit
def rmatvec_par(T, m, bounds, lo, hi, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, x, out):
    nparts = bounds.size - 1
    off = np.zeros(nparts + 1, np.int64)
    for t in range(nparts):
        off[t + 1] = off[t] + (hi[t] - lo[t])
    work = np.empty(off[nparts], dtype=out.dtype)
    for t in prange(nparts):
        w = work[off[t]:off[t + 1]]
        w[:] = 0
        _rows_rmv(T, bounds[t], bounds[t + 1], m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, x, w, lo[t])
    return _reduce(lo, hi, off, work.reshape((-1, 1)), out.reshape((-1, 1)))


@pjit
def rmatmat_par(T, m, bounds, lo, hi, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, X, out):
    nparts = bounds.size - 1
    nk = X.shape[1]
    off = np.zeros(nparts + 1, np.int64)
    for t in range(nparts):
        off[t + 1] = off[t] + (hi[t] - lo[t])
    work = np.empty((off[nparts], nk), dtype=out.dtype)
    for t in prange(nparts):
        w = work[off[t]:off[t + 1]]
        w[:, :] = 0
        _rows_rmm(T, bounds[t], bounds[t + 1], m, tptr, tidx, tdata, rptr, ridx, rdata, table, conj, X, w, lo[t])
    return _reduce(lo, hi, off, work, out)


@jit
def chunk_columns(T, m, n, bounds, tptr, tidx, rptr, ridx):
    """Column range [lo, hi) each chunk of tile rows touches (lo = hi = 0 when none)."""
    nparts = bounds.size - 1
    lo = np.zeros(nparts, np.int64)
    hi = np.zeros(nparts, np.int64)
    for t in range(nparts):
        a = n
        b = 0
        for q in range(tptr[bounds[t]], tptr[bounds[t + 1]]):
            j = np.int64(tidx[q]) * T
            a = min(a, j)
            b = max(b, j + T)
        for k in range(rptr[min(m, bounds[t] * T)], rptr[min(m, bounds[t + 1] * T)]):
            j = np.int64(ridx[k])
            a = min(a, j)
            b = max(b, j + 1)
        if b > a:
            lo[t] = a
            hi[t] = b
    return lo, hi


# -- conversion -------------------------------------------------------------
# One pass per tile row: count the entries of each full tile (a counter over
# tile columns, reset through the entries again); tiles with at least
# ``need`` entries are dense, the other entries go to the remainder in CSR
# order.  Values travel as their bits (``bsr.value_words``): one compile per
# index width and word size, none per value dtype.  Tiles are powers of two,
# so tile columns are shifts (``sh`` = log2 T), not divisions.

@jit
def _tile_counts(indptr, indices, i0, i1, sh, ntc, cnt):
    for i in range(i0, i1):
        for k in range(indptr[i], indptr[i + 1]):
            tj = indices[k] >> sh
            if tj < ntc:
                cnt[tj] += 1


@jit
def _tile_reset(indptr, indices, i0, i1, sh, ntc, cnt):
    for i in range(i0, i1):
        for k in range(indptr[i], indptr[i + 1]):
            tj = indices[k] >> sh
            if tj < ntc:
                cnt[tj] = 0


@jit
def count_tiles(indptr, indices, m, sh, ntc, need):
    """Dense tiles per tile row (full tile rows only)."""
    T = 1 << sh
    tiles = np.zeros((m + T - 1) // T, np.int64)
    cnt = np.zeros(max(ntc, 1), np.int64)
    for ti in range(m // T):
        i0 = ti * T
        _tile_counts(indptr, indices, i0, i0 + T, sh, ntc, cnt)
        nt = 0
        for i in range(i0, i0 + T):
            for k in range(indptr[i], indptr[i + 1]):
                tj = indices[k] >> sh
                if tj < ntc and cnt[tj] >= need:
                    nt += 1
                    cnt[tj] = -1                   # counted
        tiles[ti] = nt
        _tile_reset(indptr, indices, i0, i0 + T, sh, ntc, cnt)
    return tiles


@jit
def place_tiles(indptr, indices, words, zmask, m, sh, ntc, need, tptr, tidx, twords, rptr, ridx, rwords, zpos):
    """Tile columns sorted per tile row into ``tidx``, tile values (words,
    column-major tiles) into ``twords``, the remainder into ``rptr, ridx,
    rwords`` and the flat tile positions of explicit zeros into ``zpos``."""
    T = 1 << sh
    mtf = m // T
    nw = words.shape[1]
    cnt = np.zeros(max(ntc, 1), np.int64)
    slot = np.zeros(max(ntc, 1), np.int64)
    w = 0
    nz = 0
    rptr[0] = 0
    for ti in range((m + T - 1) // T):
        i0 = ti * T
        i1 = min(m, i0 + T)
        full = ti < mtf
        if full:
            _tile_counts(indptr, indices, i0, i1, sh, ntc, cnt)
            p = tptr[ti]
            for i in range(i0, i1):                # dense tiles, first-seen order
                for k in range(indptr[i], indptr[i + 1]):
                    tj = indices[k] >> sh
                    if tj < ntc and cnt[tj] >= need:
                        tidx[p] = tj
                        p += 1
                        cnt[tj] = -1               # negative: dense
            sort_run(tidx, tptr[ti], p)
            for q in range(tptr[ti], p):
                slot[tidx[q]] = q
        for i in range(i0, i1):
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                tj = j >> sh
                if full and tj < ntc and cnt[tj] < 0:
                    pos = ((slot[tj] << sh) + (j - (tj << sh)) << sh) + (i - i0)
                    zero = True
                    for u in range(nw):
                        v = words[k, u]
                        twords[pos, u] = v
                        zero = zero and (v & zmask) == 0
                    if zero:
                        zpos[nz] = pos
                        nz += 1
                else:
                    ridx[w] = j
                    for u in range(nw):
                        rwords[w, u] = words[k, u]
                    w += 1
            rptr[i + 1] = w
        if full:
            _tile_reset(indptr, indices, i0, i1, sh, ntc, cnt)
    return nz
