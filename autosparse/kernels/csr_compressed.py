"""Compressed-CSR kernels: per-row base column + narrow unsigned offsets.

Row i's narrow entries are ``k in [ip1[i-1], ip1[i])`` with columns
``base[i] + off[k]``; entries whose offset does not fit the narrow width
are a remainder in COO form ``(rrow, rcol, rdata)``, sorted by row, ending
with a sentinel row ``m``.  Each kernel walks both with running pointers
(``k`` into the narrow entries, ``p`` into the remainder), so a row costs
one pointer load, one base load and one compare against the cached next
remainder row - and no per-row remainder pointer is stored.  Without a
remainder the kernels get ``rrow = rcol = rdata = None`` and the remainder
code is compiled out (~10% on in-cache Poisson).  Values go
through ``value``/``cvalue`` so one source serves full values and tables.

Each row is summed from 0 in ascending column order (exact IEEE, as SciPy).
"""

import numpy as np
from numba import prange

from ._runtime import jit, pjit
from ._values import cvalue, value
from .compressed import _1, buffer_size, combine, combine2, slot, zero_own, zero_own2


# -- conversion -------------------------------------------------------------

@jit
def split_rows(indptr, indices, limit):
    """Per row: base (first column) and the number of leading entries with
    ``col - base < limit`` (columns are sorted, so the narrow ones are a prefix)."""
    m = indptr.size - 1
    base = np.zeros(m, np.int64)
    counts = np.zeros(m, np.int64)
    for i in range(m):
        a = indptr[i]
        b = indptr[i + 1]
        if b > a:
            f = np.int64(indices[a])
            base[i] = f
            c = a + 1
            while c < b and np.int64(indices[c]) - f < limit:
                c += 1
            counts[i] = c - a
    return base, counts


@jit
def fill_split(indptr, indices, base, counts, off, rrow, rcol, mask):
    """Narrow offsets into ``off``; remainder rows/columns into ``rrow``/``rcol``
    (sentinel slot left alone); ``mask[k]`` = entry k is narrow (if given)."""
    m = indptr.size - 1
    k = 0
    p = 0
    for i in range(m):
        a = indptr[i]
        c = a + counts[i]
        b = indptr[i + 1]
        f = base[i]
        for q in range(a, c):
            off[k] = np.int64(indices[q]) - f
            k += 1
        for q in range(c, b):
            rrow[p] = i
            rcol[p] = indices[q]
            p += 1
        if mask.size:
            for q in range(a, c):
                mask[q] = True


@jit
def merge_rows(indptr, base, off, rrow, rcol, cols, src):
    """Canonical CSR columns of each row (narrow part, then remainder) and the
    source of each value in ``concatenate([narrow values, remainder values])``."""
    m = indptr.size - 1
    nn = off.size
    p = 0
    q = 0
    for i in range(m):
        b = base[i]
        for k in range(indptr[i], indptr[i + 1]):
            cols[q] = b + off[k]
            src[q] = k
            q += 1
        while rrow[p] == i:
            cols[q] = rcol[p]
            src[q] = nn + p
            q += 1
            p += 1


# -- A x ---------------------------------------------------------------------

@jit
def _matvec_rows(i0, i1, k, p, ip1, base, off, data, rrow, rcol, rdata, table, x, out):
    for i in range(i0, i1):
        e = ip1[i]
        b = base[i]
        s = out.dtype.type(0)
        while k < e:
            s += value(data, table, k) * x[b + off[k]]
            k += _1
        if rrow is not None:                    # compiled out when there is no remainder
            while rrow[p] == i:                 # remainder columns follow the narrow ones
                s += value(rdata, table, p) * x[rcol[p]]
                p += _1
        out[i] = s


@jit
def matvec(ip1, base, off, data, rrow, rcol, rdata, table, x, out):
    z = np.uint64(0)
    _matvec_rows(z, np.uint64(ip1.size), z, z, ip1, base, off, data, rrow, rcol, rdata, table, x, out)


@pjit
def matvec_par(bounds, kstart, pstart, ip1, base, off, data, rrow, rcol, rdata, table, x, out):
    for t in prange(bounds.size - 1):
        _matvec_rows(bounds[t], bounds[t + 1], kstart[t], pstart[t],
                     ip1, base, off, data, rrow, rcol, rdata, table, x, out)


# -- A X ---------------------------------------------------------------------

@jit
def _matmat_rows(i0, i1, k, p, ip1, base, off, data, rrow, rcol, rdata, table, X, out):
    nk = X.shape[1]
    acc = np.empty(nk, out.dtype)
    for i in range(i0, i1):
        e = ip1[i]
        b = base[i]
        for c in range(nk):
            acc[c] = 0
        while k < e:
            v = value(data, table, k)
            col = b + off[k]
            for c in range(nk):
                acc[c] += v * X[col, c]
            k += _1
        if rrow is not None:
            while rrow[p] == i:
                v = value(rdata, table, p)
                col = rcol[p]
                for c in range(nk):
                    acc[c] += v * X[col, c]
                p += _1
        for c in range(nk):
            out[i, c] = acc[c]


@jit
def matmat(ip1, base, off, data, rrow, rcol, rdata, table, X, out):
    z = np.uint64(0)
    _matmat_rows(z, np.uint64(ip1.size), z, z, ip1, base, off, data, rrow, rcol, rdata, table, X, out)


@pjit
def matmat_par(bounds, kstart, pstart, ip1, base, off, data, rrow, rcol, rdata, table, X, out):
    for t in prange(bounds.size - 1):
        _matmat_rows(bounds[t], bounds[t + 1], kstart[t], pstart[t],
                     ip1, base, off, data, rrow, rcol, rdata, table, X, out)


# -- Aᴴx: scatter ------------------------------------------------------------

@jit
def rmatvec(ip1, base, off, data, rrow, rcol, rdata, table, conj, x, out):
    for j in range(out.size):
        out[j] = 0
    k = np.uint64(0)
    p = np.uint64(0)
    for i in range(np.uint64(ip1.size)):
        e = ip1[i]
        b = base[i]
        xi = x[i]
        while k < e:
            out[b + off[k]] += cvalue(data, table, k, conj) * xi
            k += _1
        if rrow is not None:
            while rrow[p] == i:
                out[rcol[p]] += cvalue(rdata, table, p, conj) * xi
                p += _1


@jit
def _scatter_rows(plan, t, i0, i1, k, p, ip1, base, off, data, rrow, rcol, rdata, table, conj, x, out, buf):
    lo, elo, ehi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 4], plan[t, 5]
    for i in range(i0, i1):
        e = ip1[i]
        b = base[i]
        xi = x[i]
        if k < e:
            if b >= elo and b + off[e - _1] < ehi:         # the row's narrow part is owned
                while k < e:
                    out[b + off[k]] += cvalue(data, table, k, conj) * xi
                    k += _1
            else:
                while k < e:
                    direct, r = slot(lo, elo, ehi, oa, ob, b + off[k])
                    if direct:
                        out[r] += cvalue(data, table, k, conj) * xi
                    else:
                        buf[r] += cvalue(data, table, k, conj) * xi
                    k += _1
        if rrow is not None:
            while rrow[p] == i:
                direct, r = slot(lo, elo, ehi, oa, ob, rcol[p])
                if direct:
                    out[r] += cvalue(rdata, table, p, conj) * xi
                else:
                    buf[r] += cvalue(rdata, table, p, conj) * xi
                p += _1


@pjit
def rmatvec_par(bounds, kstart, pstart, plan, items, ip1, base, off, data, rrow, rcol, rdata, table, conj, x, out):
    buf = np.empty(buffer_size(plan), out.dtype)
    for t in prange(bounds.size - 1):
        zero_own(plan, t, out, buf)
        _scatter_rows(plan, t, bounds[t], bounds[t + 1], kstart[t], pstart[t],
                      ip1, base, off, data, rrow, rcol, rdata, table, conj, x, out, buf)
    for w in range(items.shape[0]):          # serial: one fork-join per product
        combine(plan, items, w, buf, out)


@jit
def rmatmat(ip1, base, off, data, rrow, rcol, rdata, table, conj, X, out):
    nk = X.shape[1]
    for j in range(out.shape[0]):
        for c in range(nk):
            out[j, c] = 0
    k = np.uint64(0)
    p = np.uint64(0)
    for i in range(np.uint64(ip1.size)):
        e = ip1[i]
        b = base[i]
        while k < e:
            v = cvalue(data, table, k, conj)
            col = b + off[k]
            for c in range(nk):
                out[col, c] += v * X[i, c]
            k += _1
        if rrow is not None:
            while rrow[p] == i:
                v = cvalue(rdata, table, p, conj)
                col = rcol[p]
                for c in range(nk):
                    out[col, c] += v * X[i, c]
                p += _1


@jit
def _scatter_rows2(plan, t, i0, i1, k, p, ip1, base, off, data, rrow, rcol, rdata, table, conj, X, out, buf):
    nk = X.shape[1]
    lo, elo, ehi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 4], plan[t, 5]
    for i in range(i0, i1):
        e = ip1[i]
        b = base[i]
        while k < e:
            v = cvalue(data, table, k, conj)
            direct, r = slot(lo, elo, ehi, oa, ob, b + off[k])
            if direct:
                for c in range(nk):
                    out[r, c] += v * X[i, c]
            else:
                for c in range(nk):
                    buf[r, c] += v * X[i, c]
            k += _1
        if rrow is not None:
            while rrow[p] == i:
                v = cvalue(rdata, table, p, conj)
                direct, r = slot(lo, elo, ehi, oa, ob, rcol[p])
                if direct:
                    for c in range(nk):
                        out[r, c] += v * X[i, c]
                else:
                    for c in range(nk):
                        buf[r, c] += v * X[i, c]
                p += _1


@pjit
def rmatmat_par(bounds, kstart, pstart, plan, items, ip1, base, off, data, rrow, rcol, rdata, table, conj, X, out):
    buf = np.empty((buffer_size(plan), X.shape[1]), out.dtype)
    for t in prange(bounds.size - 1):
        zero_own2(plan, t, out, buf)
        _scatter_rows2(plan, t, bounds[t], bounds[t + 1], kstart[t], pstart[t],
                       ip1, base, off, data, rrow, rcol, rdata, table, conj, X, out, buf)
    for w in range(items.shape[0]):          # serial: one fork-join per product
        combine2(plan, items, w, buf, out)
