"""DIA kernels: pure functions on (offsets, data[, table]) arrays.

Layout: ``data[k, i] = A[i, i + offsets[k]]`` for the occupied diagonals in
ascending offset order, every diagonal stored row-aligned over all m rows
(zeros where the diagonal leaves the matrix or has no entry).  ``data`` is a
C-contiguous (n_diagonals, m) array of values, or of uint8/uint16 codes when
``table`` is given.  ``table`` is

* ``None``: ``data`` holds the values,
* an array: codes index it (a vector gather per 4 slots),
* a 4-tuple of scalars: codes are 0..3 and the value is picked by compares
  (no gather; the scalars live in registers).  Stencil matrices have 1-3
  distinct values plus the zero of the padding, so this is the common case.

For transposed products with ``conj`` the caller passes the conjugated table;
``conj`` then only acts on full values.

How the loops are shaped, and why (measured on 3-D Poisson 100^3):

* Row blocks.  Every kernel walks blocks of rows (columns for the transposed
  products).  Inside a block each diagonal is one contiguous run:
  ``out[i] += d[k, i] * x[i + o]`` - unit stride in ``data``, ``x`` and
  ``out``, so it vectorises without knowing how many diagonals there are,
  while the block of ``out`` stays in L1.  A^T needs no scatter: it is DIA
  with negated offsets, ``out[j] += d[k, j - o] * x[j - o]``.
* ``*_lit`` kernels take the diagonal count as a compile-time literal: rows
  whose diagonals all lie inside the matrix are summed with the diagonal loop
  fully unrolled (one store per row instead of one per slot); blocks touching
  the matrix edge call the per-diagonal loop (``_*_edge``, serial functions
  compiled once per dtype rather than once per diagonal count: a literal
  kernel then compiles in ~2 s instead of ~3.5 s).
* Parallel kernels use ``prange`` over blocks with no array views and no
  ``for`` loops inside the parallel body (``while`` loops, 2-D indexing):
  numba then finds no aliases and compiles the body with ``noalias``
  arguments, which is what lets LLVM vectorise without runtime overlap checks
  and turn table look-ups into gathers.  Unsigned (uint64) loop indices keep
  negative-index wraparound code out of the loops.
* Each source is compiled twice, serial (``prange`` is ``range``) and
  parallel, under different names so the disk cache keeps them apart.

Exact IEEE arithmetic (no fastmath): every result sums its terms from 0 in
SciPy's order - A x in ascending column order (diagonals ascending), Aᵀx in
ascending row order (diagonals descending) - and padding adds exact zeros,
so with finite operands the results equal SciPy's bit for bit.

Kernels return the number of NaN results (padding multiplies ``x`` too, see
``formats/_base.py``).
"""

import types as _pytypes

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._runtime import FASTMATH, jit, pjit
from ._values import value

U = np.uint64

# Block helpers are inlined into their callers (numba IR inlining): one source
# serves the generic kernels and the edge blocks of the literal ones, and no
# call passing arrays (a refcount pair each) sits in the block loop
inl = njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
SMALL_TABLE = 4          # tables up to this size are passed as a tuple and decoded by compares


def _pair(fn):
    """(serial, parallel) dispatchers of one kernel source."""
    par = _pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_par",
                                fn.__defaults__, fn.__closure__)
    par.__qualname__ = fn.__qualname__ + "_par"
    par.__doc__ = fn.__doc__
    return jit(fn), pjit(par)


# -- value access ------------------------------------------------------------

def dval(data, table, k, i):  # pragma: no cover - replaced by the overload in jitted code
    raise NotImplementedError


@overload(dval, jit_options={"fastmath": FASTMATH})
def _dval_impl(data, table, k, i):
    if isinstance(table, types.UniTuple):
        def impl(data, table, k, i):
            c = data[k, i]
            v = table[1] if c == 1 else table[0]
            v = table[2] if c == 2 else v
            return table[3] if c == 3 else v
        return impl
    return lambda data, table, k, i: value(data, table, (k, i))


def dcval(data, table, k, i, conj):  # pragma: no cover
    raise NotImplementedError


@overload(dcval, jit_options={"fastmath": FASTMATH})
def _dcval_impl(data, table, k, i, conj):
    if isinstance(table, types.NoneType) and isinstance(data.dtype, types.Complex):
        def impl(data, table, k, i, conj):
            v = data[k, i]
            return v.conjugate() if conj else v
        return impl
    return lambda data, table, k, i, conj: dval(data, table, k, i)


# -- A x -------------------------------------------------------------------------

def _matvec(offsets, data, table, n, B, x, out):
    m = data.shape[1]
    nb = (m + B - 1) // B
    nan = 0
    for b in prange(nb):
        i0 = b * B
        nan += _mv_rows(offsets, data, table, n, i0, min(i0 + B, m), x, out)
    return nan


matvec, matvec_par = _pair(_matvec)


@inl
def _mv_rows(offsets, data, table, n, i0, i1, x, out):
    """Rows ``i0:i1`` diagonal by diagonal: each block of ``matvec``, and the
    edge blocks of ``matvec_lit_par``.

    A separate (serial) function, so the literal kernels stay small: it is
    compiled once per dtype, not once per diagonal count."""
    nd = data.shape[0]
    i = U(i0)
    while i < U(i1):
        out[i] = 0
        i += U(1)
    k = U(0)
    while k < U(nd):
        o = np.int64(offsets[k])
        uo = U(o)
        i = U(max(i0, -o))
        hi = U(max(min(i1, n - o), 0))
        while i < hi:
            out[i] += dval(data, table, k, i) * x[i + uo]
            i += U(1)
        k += U(1)
    return _count_vec(out, i0, i1)


@pjit
def matvec_lit_par(offsets, data, table, n, ND, B, x, out):
    """``matvec_par`` with the diagonal count ``ND`` a literal (>= 1)."""
    m = data.shape[1]
    nb = (m + B - 1) // B
    ilo = max(0, -np.int64(offsets[0]))            # rows with every diagonal inside
    ihi = min(m, n - np.int64(offsets[ND - 1]))
    nan = 0
    for b in prange(nb):
        i0 = b * B
        i1 = min(i0 + B, m)
        if i0 >= ilo and i1 <= ihi:
            i = U(i0)
            while i < U(i1):
                s = out.dtype.type(0)
                for k in range(ND):
                    s += dval(data, table, k, i) * x[i + U(np.int64(offsets[k]))]
                out[i] = s
                i += U(1)
            nan += _count_vec(out, i0, i1)
        else:
            nan += _mv_rows(offsets, data, table, n, i0, i1, x, out)
    return nan


# -- A^T x / A^H x: DIA with negated offsets ---------------------------------------

def _rmatvec(offsets, data, table, B, conj, x, out):
    n = out.size
    nb = (n + B - 1) // B
    nan = 0
    for b in prange(nb):
        j0 = b * B
        nan += _rmv_rows(offsets, data, table, j0, min(j0 + B, n), conj, x, out)
    return nan


rmatvec, rmatvec_par = _pair(_rmatvec)


@inl
def _rmv_rows(offsets, data, table, j0, j1, conj, x, out):
    """Columns ``j0:j1`` diagonal by diagonal: each block of ``rmatvec``, and the edge blocks of
    ``rmatvec_lit_par``."""
    nd, m = data.shape
    j = U(j0)
    while j < U(j1):
        out[j] = 0
        j += U(1)
    k = U(nd)
    while k > U(0):                                  # rows i = j - o ascending, as SciPy sums
        k -= U(1)
        o = np.int64(offsets[k])
        mo = U(-o)                                   # j - o, wrapping
        j = U(max(j0, o))
        hi = U(max(min(j1, m + o), 0))
        while j < hi:
            out[j] += dcval(data, table, k, j + mo, conj) * x[j + mo]
            j += U(1)
    return _count_vec(out, j0, j1)


@pjit
def rmatvec_lit_par(offsets, data, table, ND, B, conj, x, out):
    """``rmatvec_par`` with the diagonal count ``ND`` a literal (>= 1)."""
    m = data.shape[1]
    n = out.size
    nb = (n + B - 1) // B
    jlo = max(0, np.int64(offsets[ND - 1]))        # columns with every diagonal inside
    jhi = min(n, m + np.int64(offsets[0]))
    nan = 0
    for b in prange(nb):
        j0 = b * B
        j1 = min(j0 + B, n)
        if j0 >= jlo and j1 <= jhi:
            j = U(j0)
            while j < U(j1):
                s = out.dtype.type(0)
                for kk in range(ND):
                    k = ND - 1 - kk
                    r = j - U(np.int64(offsets[k]))
                    s += dcval(data, table, k, r, conj) * x[r]
                out[j] = s
                j += U(1)
            nan += _count_vec(out, j0, j1)
        else:
            nan += _rmv_rows(offsets, data, table, j0, j1, conj, x, out)
    return nan


# -- A X and A^H X ------------------------------------------------------------------

def _matmat(offsets, data, table, n, B, X, out):
    m = data.shape[1]
    nb = (m + B - 1) // B
    nan = 0
    for b in prange(nb):
        i0 = b * B
        nan += _mm_rows(offsets, data, table, n, i0, min(i0 + B, m), X, out)
    return nan


matmat, matmat_par = _pair(_matmat)


@inl
def _mm_rows(offsets, data, table, n, i0, i1, X, out):
    """Rows ``i0:i1`` diagonal by diagonal: each block of ``matmat``, and the edge blocks of ``matmat_lit_par``."""
    nd = data.shape[0]
    nk = U(X.shape[1])
    i = U(i0)
    while i < U(i1):
        c = U(0)
        while c < nk:
            out[i, c] = 0
            c += U(1)
        i += U(1)
    k = U(0)
    while k < U(nd):
        o = np.int64(offsets[k])
        uo = U(o)
        i = U(max(i0, -o))
        hi = U(max(min(i1, n - o), 0))
        while i < hi:
            v = dval(data, table, k, i)
            r = i + uo
            c = U(0)
            while c < nk:
                out[i, c] += v * X[r, c]
                c += U(1)
            i += U(1)
        k += U(1)
    return _count_rows(out, i0, i1)


@inl
def _count_vec(out, i0, i1):
    """NaNs in ``out[i0:i1]``."""
    c = 0
    i = U(i0)
    while i < U(i1):
        c += out[i] != out[i]
        i += U(1)
    return c


@inl
def _count_rows(out, i0, i1):
    """NaNs in rows ``i0:i1`` of a 2-D ``out``."""
    nk = U(out.shape[1])
    cnt = 0
    i = U(i0)
    while i < U(i1):
        c = U(0)
        while c < nk:
            cnt += out[i, c] != out[i, c]
            c += U(1)
        i += U(1)
    return cnt


@pjit
def matmat_lit_par(offsets, data, table, n, ND, B, X, out):
    """``matmat_par`` with the diagonal count ``ND`` a literal (>= 1): interior
    rows sum their ``ND`` terms per column in registers and store once."""
    m = data.shape[1]
    nk = U(X.shape[1])
    nb = (m + B - 1) // B
    ilo = max(0, -np.int64(offsets[0]))
    ihi = min(m, n - np.int64(offsets[ND - 1]))
    nan = 0
    for b in prange(nb):
        i0 = b * B
        i1 = min(i0 + B, m)
        if i0 >= ilo and i1 <= ihi:
            i = U(i0)
            while i < U(i1):
                c = U(0)
                while c < nk:
                    s = out.dtype.type(0)
                    for k in range(ND):
                        s += dval(data, table, k, i) * X[i + U(np.int64(offsets[k])), c]
                    out[i, c] = s
                    c += U(1)
                i += U(1)
            nan += _count_rows(out, i0, i1)
        else:
            nan += _mm_rows(offsets, data, table, n, i0, i1, X, out)
    return nan


def _rmatmat(offsets, data, table, B, conj, X, out):
    n = out.shape[0]
    nb = (n + B - 1) // B
    nan = 0
    for b in prange(nb):
        j0 = b * B
        nan += _rmm_rows(offsets, data, table, j0, min(j0 + B, n), conj, X, out)
    return nan


rmatmat, rmatmat_par = _pair(_rmatmat)


@inl
def _rmm_rows(offsets, data, table, j0, j1, conj, X, out):
    """Rows ``j0:j1`` of ``out`` diagonal by diagonal: each block of ``rmatmat``, and the edge
    blocks of ``rmatmat_lit_par``."""
    nd, m = data.shape
    nk = U(X.shape[1])
    j = U(j0)
    while j < U(j1):
        c = U(0)
        while c < nk:
            out[j, c] = 0
            c += U(1)
        j += U(1)
    k = U(nd)
    while k > U(0):
        k -= U(1)
        o = np.int64(offsets[k])
        mo = U(-o)
        j = U(max(j0, o))
        hi = U(max(min(j1, m + o), 0))
        while j < hi:
            r = j + mo
            v = dcval(data, table, k, r, conj)
            c = U(0)
            while c < nk:
                out[j, c] += v * X[r, c]
                c += U(1)
            j += U(1)
    return _count_rows(out, j0, j1)


@pjit
def rmatmat_lit_par(offsets, data, table, ND, B, conj, X, out):
    """``rmatmat_par`` with the diagonal count ``ND`` a literal (>= 1)."""
    m = data.shape[1]
    n = out.shape[0]
    nk = U(X.shape[1])
    nb = (n + B - 1) // B
    jlo = max(0, np.int64(offsets[ND - 1]))
    jhi = min(n, m + np.int64(offsets[0]))
    nan = 0
    for b in prange(nb):
        j0 = b * B
        j1 = min(j0 + B, n)
        if j0 >= jlo and j1 <= jhi:
            j = U(j0)
            while j < U(j1):
                c = U(0)
                while c < nk:
                    s = out.dtype.type(0)
                    for kk in range(ND):
                        k = ND - 1 - kk
                        r = j - U(np.int64(offsets[k]))
                        s += dcval(data, table, k, r, conj) * X[r, c]
                    out[j, c] = s
                    c += U(1)
                j += U(1)
            nan += _count_rows(out, j0, j1)
        else:
            nan += _rmm_rows(offsets, data, table, j0, j1, conj, X, out)
    return nan


# -- conversion ------------------------------------------------------------------

@pjit
def layout(indptr, indices, n):
    """(offsets, slot): the occupied diagonals (ascending) and ``slot[j - i + m]``,
    the row of diagonal ``j - i`` in the (n_diagonals, m) array (-1: unoccupied).

    Rows are marked in parallel: threads may store the same 1 to one slot, which is
    the only write there is, so the marks are the same in any interleaving."""
    m = indptr.size - 1
    slot = np.zeros(m + n, np.int64)               # diagonal j - i, shifted by m
    for i in prange(m):
        for p in range(indptr[i], indptr[i + 1]):
            d = np.int64(indices[p]) - i + m
            if slot[d] == 0:                       # a read where the mark is set: no line ping-pong
                slot[d] = 1
    nd = 0
    for d in range(m + n):
        if slot[d]:
            slot[d] = nd
            nd += 1
        else:
            slot[d] = -1
    offsets = np.empty(nd, np.int64)
    for d in range(m + n):
        if slot[d] >= 0:
            offsets[slot[d]] = d - m
    return offsets, slot


@pjit
def fill(indptr, indices, values, slot, out):
    """``out[slot[j - i + m], i] = values[p]`` for every entry p = (i, j); rows in parallel
    (each writes its own column of ``out``)."""
    m = indptr.size - 1
    for i in prange(m):
        for p in range(indptr[i], indptr[i + 1]):
            out[slot[np.int64(indices[p]) - i + m], i] = values[p]
