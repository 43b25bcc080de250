"""CSR: compressed sparse rows, the baseline layout.

Parameters
----------
index_dtype : "int16" | "int32" | "int64"
    Width of the column indices (the per-entry index array).  Row pointers
    are int32 when nnz fits, else int64: they are per row, not per entry.
values : "full" | "table"
    ``"table"`` stores a uint8/uint16 code per entry into a table of the
    distinct values (graph and stencil matrices have a handful), cutting the
    bytes a product streams from 8-16 per value to 1-2.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for, unsigned
from ..kernels import csr as K
from ..kernels._runtime import balanced_bounds
from ..kernels._values import value_table
from ._base import MATMAT, MATVEC, RMATMAT, RMATVEC, Format
from ._grids import MAX_TABLE

NAME = "csr"



class CSR(Format):
    name = NAME

    def __init__(self, shape, indptr, indices, data, table, params):
        dtype = data.dtype if table is None else table.dtype
        super().__init__(shape, dtype, indices.size, params)
        self.indptr, self.indices, self.data, self.table = indptr, indices, data, table
        self._ip, self._ix = unsigned(indptr), unsigned(indices)
        self.bounds = balanced_bounds(indptr)

    def _kernel(self, op, parallel, conj):
        args = (self._ip, self._ix, self.data, self.table)
        serial, par = {MATVEC: (K.matvec, K.matvec_par), MATMAT: (K.matmat, K.matmat_par),
                       RMATVEC: (K.rmatvec, K.rmatvec_par), RMATMAT: (K.rmatmat, K.rmatmat_par)}[op]
        return (par, (self.bounds,) + args, ()) if parallel else (serial, args, ())

    def arrays(self):
        return {"indptr": self.indptr, "indices": self.indices, "data": self.data, "table": self.table}

    def to_csr(self):
        data = self.data if self.table is None else self.table[self.data]
        idx = index_dtype_for(max(self.shape[1], self.nnz))
        return sp.csr_array((data, self.indices.astype(idx, copy=False), self.indptr.astype(idx, copy=False)),
                            shape=self.shape)


def from_csr(A, index_dtype=None, values="full") -> CSR:
    """CSR from any SciPy sparse matrix; shares A's arrays when nothing changes."""
    A = as_csr(A)
    idx = index_dtype_for(max(A.shape[1] - 1, 0), index_dtype, what="column indices")
    ptr = index_dtype_for(A.nnz)
    data, table = _encode(A.data, values)
    params = {"index_dtype": idx.name, "values": values}
    return CSR(A.shape, A.indptr.astype(ptr, copy=False), A.indices.astype(idx, copy=False), data, table, params)


def _encode(data, values, include_zero=False):
    if values == "full":
        return data, None
    if values != "table":
        raise ValueError(f"values must be 'full' or 'table', got {values!r}")
    enc = value_table(data, MAX_TABLE, include_zero)
    if enc is None:
        raise ValueError(f"values='table' needs at most {MAX_TABLE} distinct values; this matrix has more")
    return enc


def value_bytes(profile, values):
    """Bytes per stored value and the table's bytes, from the profile."""
    itemsize = np.dtype(profile.dtype).itemsize
    if values == "full":
        return itemsize, 0
    distinct = profile.n_distinct_values
    return (1 if distinct <= 256 else 2), distinct * itemsize


def estimate_nbytes(profile, index_dtype="int32", values="full") -> int:
    m, _ = profile.shape
    vb, tb = value_bytes(profile, values)
    ptr = index_dtype_for(profile.nnz).itemsize
    return int(profile.nnz * (np.dtype(index_dtype).itemsize + vb) + (m + 1) * ptr + tb)


def index_dtypes(profile, span):
    """Index dtypes able to hold values below ``span``."""
    return [d for d in ("int16", "int32", "int64") if span - 1 <= np.iinfo(d).max]


def values_options(profile):
    return ["full", "table"] if profile.n_distinct_values <= MAX_TABLE and not profile.distinct_capped else ["full"]


def configurations(profile) -> list[dict]:
    """Every parameter setting that applies to a matrix with this profile."""
    return [{"index_dtype": d, "values": v}
            for d in index_dtypes(profile, profile.shape[1]) for v in values_options(profile)]


def space(trial, profile) -> dict:
    return {"index_dtype": trial.suggest_categorical("csr_index_dtype", index_dtypes(profile, profile.shape[1])),
            "values": trial.suggest_categorical("csr_values", values_options(profile))}
