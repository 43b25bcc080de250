"""CSRC: CSR with compressed column indices (per-row base + narrow offsets).

Each row stores its first column as ``base`` (int32/int64 per row), and
each entry the offset ``col - base`` as a 1- or 2-byte unsigned integer.
Entries whose offset does not fit go to a remainder kept as sorted COO
triplets with a sentinel, walked by the same fused kernel; so every matrix
is accepted, and banded / mesh matrices have no remainder at all.  Nothing
is padded: every stored value is an entry of A.

The point is bandwidth: a product streams ``offset bytes + value bytes`` per
entry, e.g. 3 bytes on Poisson 100³ with int16 offsets and a value table,
against 12 for CSR with int32 indices and float64 values.

Parameters
----------
offset_dtype : "int8" | "int16"
    Width of the per-entry offsets: 1 byte (offsets < 256) or 2 bytes
    (offsets < 65536), stored unsigned.
values : "full" | "table"
    As for CSR: ``"table"`` stores uint8/uint16 codes into a table of the
    distinct values (remainder values too).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for, unsigned
from ..kernels import csr_compressed as K
from ..kernels._runtime import balanced_bounds
from ..kernels.compressed import scatter_plan_spans
from ._base import MATMAT, MATVEC, RMATVEC, Format
from ._grids import CSRC_OFFSETS
from .csr import _encode, value_bytes, values_options

NAME = "csrc"
_WIDTHS = {"int8": (np.dtype(np.uint8), 1 << 8), "int16": (np.dtype(np.uint16), 1 << 16)}


class CSRC(Format):
    name = NAME

    def __init__(self, shape, indptr, base, offsets, data, rrow, rcol, rdata, table, params, total_indptr=None):
        dtype = data.dtype if table is None else table.dtype
        super().__init__(shape, dtype, offsets.size + rcol.size, params)
        self.indptr, self.base, self.offsets, self.data = indptr, base, offsets, data
        self.rrow, self.rcol, self.rdata, self.table = rrow, rcol, rdata, table
        self._ip1, self._base = unsigned(indptr)[1:], unsigned(base)
        self._rrow, self._rcol = unsigned(rrow), unsigned(rcol)
        if total_indptr is None:
            total_indptr = indptr.astype(np.int64)
            if rcol.size:
                total_indptr = total_indptr + np.searchsorted(rrow[:-1], np.arange(self.shape[0] + 1))
        bounds = balanced_bounds(total_indptr)
        self.bounds = bounds.astype(np.uint64)
        self._kstart = indptr[bounds].astype(np.uint64)
        self._pstart = np.searchsorted(rrow[:-1], bounds).astype(np.uint64)
        self._plan = None

    @property
    def narrow_fraction(self) -> float:
        return self.offsets.size / self.nnz if self.nnz else 1.0

    def _arrays(self):
        if self.rcol.size == 0:                       # kernels compile the remainder out
            return (self._ip1, self._base, self.offsets, self.data, None, None, None, self.table)
        return (self._ip1, self._base, self.offsets, self.data, self._rrow, self._rcol, self.rdata, self.table)

    def _scatter_plan(self):
        if self._plan is None:
            nparts = self.bounds.size - 1
            lo = np.zeros(nparts, np.int64)
            hi = np.zeros(nparts, np.int64)
            counts = np.diff(self.indptr)
            for t in range(nparts):                          # loop over chunks, not rows
                r0, r1 = int(self.bounds[t]), int(self.bounds[t + 1])
                k0, k1 = int(self._kstart[t]), int(self._kstart[t + 1])
                p0, p1 = int(self._pstart[t]), int(self._pstart[t + 1])
                cand_lo, cand_hi = [], []
                if k1 > k0:
                    has = counts[r0:r1] > 0
                    b = self.base[r0:r1][has].astype(np.int64)
                    last = self.offsets[self.indptr[r0 + 1:r1 + 1][has] - 1].astype(np.int64)
                    cand_lo.append(b.min())
                    cand_hi.append((b + last).max() + 1)
                if p1 > p0:
                    seg = self.rcol[p0:p1]
                    cand_lo.append(int(seg.min()))
                    cand_hi.append(int(seg.max()) + 1)
                if cand_lo:
                    lo[t], hi[t] = min(cand_lo), max(cand_hi)
            self._plan = scatter_plan_spans(lo, hi, self.shape[1])
        return self._plan

    def _kernel(self, op, parallel, conj):
        arrays = self._arrays()
        if op in (MATVEC, MATMAT):
            serial, par = (K.matvec, K.matvec_par) if op == MATVEC else (K.matmat, K.matmat_par)
            return (par, (self.bounds, self._kstart, self._pstart) + arrays, ()) if parallel else (serial, arrays, ())
        serial, par = (K.rmatvec, K.rmatvec_par) if op == RMATVEC else (K.rmatmat, K.rmatmat_par)
        if not parallel:
            return serial, arrays, ()
        plan, items = self._scatter_plan()
        return par, (self.bounds, self._kstart, self._pstart, plan, items) + arrays, ()

    def arrays(self):
        return {"indptr": self.indptr, "base": self.base, "offsets": self.offsets, "data": self.data,
                "rrow": self.rrow, "rcol": self.rcol, "rdata": self.rdata, "table": self.table}

    def to_csr(self):
        m, n = self.shape
        idx = index_dtype_for(max(n, self.nnz))
        decode = (lambda d: d) if self.table is None else (lambda d: self.table[d])
        if self.rcol.size == 0:
            cols = np.repeat(self.base.astype(idx), np.diff(self.indptr)) + self.offsets.astype(idx)
            return sp.csr_array((decode(self.data), cols, self.indptr.astype(idx)), shape=self.shape)
        cols = np.empty(self.nnz, idx)
        src = np.empty(self.nnz, np.int64)
        K.merge_rows(self.indptr, self.base, self.offsets, self.rrow, self.rcol, cols, src)
        vals = decode(np.concatenate([self.data, self.rdata])[src])
        total = self.indptr.astype(np.int64) + np.searchsorted(self.rrow[:-1], np.arange(m + 1))
        return sp.csr_array((vals, cols, total.astype(idx)), shape=self.shape)


def from_csr(A, offset_dtype="int16", values="full") -> CSRC:
    """Compressed CSR from any SciPy sparse matrix; every matrix is accepted."""
    A = as_csr(A)
    if offset_dtype not in _WIDTHS:
        raise ValueError(f"offset_dtype must be one of {', '.join(CSRC_OFFSETS)}, got {offset_dtype!r}")
    m, n = A.shape
    odt, limit = _WIDTHS[offset_dtype]
    data, table = _encode(A.data, values)
    base, counts = K.split_rows(A.indptr, A.indices, limit)
    narrow = int(counts.sum())
    wide = A.nnz - narrow
    ridx = index_dtype_for(max(m, n))                 # remainder rows end with the sentinel m
    offsets = np.empty(narrow, odt)
    rrow = np.empty(wide + 1, ridx)
    rrow[-1] = m
    rcol = np.empty(wide, ridx)
    mask = np.zeros(A.nnz if wide else 0, np.bool_)
    K.fill_split(A.indptr, A.indices, base, counts, offsets, rrow, rcol, mask)
    if wide:
        ndata, rdata = data[mask], data[~mask]
    else:
        ndata, rdata = data, data[:0].copy()
    indptr = np.zeros(m + 1, index_dtype_for(narrow))
    np.cumsum(counts, out=indptr[1:])
    base = base.astype(index_dtype_for(max(n - 1, 0)))
    params = {"offset_dtype": offset_dtype, "values": values}
    return CSRC(A.shape, indptr, base, offsets, ndata, rrow, rcol, rdata, table, params,
                total_indptr=A.indptr)


def estimate_nbytes(profile, offset_dtype="int16", values="full") -> int:
    if offset_dtype not in _WIDTHS:
        raise ValueError(f"offset_dtype must be one of {', '.join(CSRC_OFFSETS)}, got {offset_dtype!r}")
    m, n = profile.shape
    nnz = profile.nnz
    narrow = int(round(profile.narrow_fraction[offset_dtype] * nnz))
    wide = nnz - narrow
    vb, tb = value_bytes(profile, values)
    ob = _WIDTHS[offset_dtype][0].itemsize
    rb = index_dtype_for(max(m, n)).itemsize
    ptr = index_dtype_for(narrow).itemsize
    bb = index_dtype_for(max(n - 1, 0)).itemsize
    return int(narrow * (ob + vb) + wide * (2 * rb + vb) + rb + (m + 1) * ptr + m * bb + tb)


def offset_dtypes(profile) -> list[str]:
    """Offset widths that keep at least half the entries narrow."""
    return [w for w in CSRC_OFFSETS if profile.narrow_fraction[w] >= 0.5]


def configurations(profile) -> list[dict]:
    return [{"offset_dtype": w, "values": v} for w in offset_dtypes(profile) for v in values_options(profile)]


def space(trial, profile) -> dict:
    widths = offset_dtypes(profile) or list(CSRC_OFFSETS)
    return {"offset_dtype": trial.suggest_categorical("csrc_offset_dtype", widths),
            "values": trial.suggest_categorical("csrc_values", values_options(profile))}
