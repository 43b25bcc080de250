"""COO: coordinate triplets, sorted by row then column (canonical).

Every entry carries its row: more bytes than CSR (one index per entry
instead of one pointer per row) but no per-row pointer chase, which can pay
for matrices with many empty rows.  A x runs row-disjoint parallel chunks;
Aᴴx scatters through the race-free scatter plan of ``kernels/compressed.py``.

Parameters
----------
index_dtype : "int16" | "int32" | "int64"
    Width of both the row and the column indices (both per entry).
values : "full" | "table"
    As for CSR.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for, unsigned
from ..kernels import coo as K
from ..kernels._runtime import balanced_bounds
from ..kernels.compressed import scatter_plan
from ._base import MATMAT, MATVEC, RMATVEC, Format
from .csr import _encode, value_bytes, values_options, width_and_values_configurations, width_and_values_space

NAME = "coo"


class COO(Format):
    name = NAME

    def __init__(self, shape, row, col, data, table, params, indptr=None):
        dtype = data.dtype if table is None else table.dtype
        super().__init__(shape, dtype, row.size, params)
        self.row, self.col, self.data, self.table = row, col, data, table
        self._row, self._col = unsigned(row), unsigned(col)
        if indptr is None:
            indptr = np.zeros(shape[0] + 1, np.int64)
            np.cumsum(np.bincount(row, minlength=shape[0]), out=indptr[1:])
        bounds = balanced_bounds(indptr)
        self.bounds = bounds.astype(np.uint64)                 # row ranges of the chunks
        self.kbounds = indptr[bounds].astype(np.uint64)        # their entry ranges
        self._plan = None

    def _scatter_plan(self):
        if self._plan is None:
            self._plan = scatter_plan(self.kbounds.astype(np.int64), self.col, self.shape[1])
        return self._plan

    def _kernel(self, op, parallel, conj):
        arrays = (self._row, self._col, self.data, self.table)
        if op in (MATVEC, MATMAT):
            serial, par = (K.matvec, K.matvec_par) if op == MATVEC else (K.matmat, K.matmat_par)
            return (par, (self.bounds, self.kbounds) + arrays, ()) if parallel else (serial, arrays, ())
        serial, par = (K.rmatvec, K.rmatvec_par) if op == RMATVEC else (K.rmatmat, K.rmatmat_par)
        if not parallel:
            return serial, arrays, ()
        plan, items = self._scatter_plan()
        return par, (self.kbounds, plan, items) + arrays, ()

    def arrays(self):
        return {"row": self.row, "col": self.col, "data": self.data, "table": self.table}

    def to_csr(self):
        m, _ = self.shape
        data = self.data if self.table is None else self.table[self.data]
        idx = index_dtype_for(max(self.shape[1], self.nnz))
        indptr = np.zeros(m + 1, idx)
        np.cumsum(np.bincount(self.row, minlength=m), out=indptr[1:])
        return sp.csr_array((data, self.col.astype(idx), indptr), shape=self.shape)


def from_csr(A, index_dtype=None, values="full") -> COO:
    """COO (row-major sorted) from any SciPy sparse matrix, explicit zeros kept."""
    A = as_csr(A)
    m, n = A.shape
    idx = index_dtype_for(max(m, n, 1) - 1, index_dtype, what="row and column indices")
    row = np.repeat(np.arange(m, dtype=idx), np.diff(A.indptr))
    data, table = _encode(A.data, values)
    params = {"index_dtype": idx.name, "values": values}
    return COO(A.shape, row, A.indices.astype(idx, copy=False), data, table, params, indptr=A.indptr)


def estimate_nbytes(profile, index_dtype="int32", values="full") -> int:
    vb, tb = value_bytes(profile, values)
    return int(profile.nnz * (2 * np.dtype(index_dtype).itemsize + vb) + tb)


def _index_span(profile) -> int:
    """Index widths are offered for values up to the larger dimension."""
    return max(max(profile.shape), 1)


def configurations(profile) -> list[dict]:
    return width_and_values_configurations(profile, _index_span(profile))


def space(trial, profile) -> dict:
    return width_and_values_space(trial, profile, _index_span(profile), NAME)
