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
from ..kernels import compressed as K
from ..kernels._runtime import balanced_bounds
from ..kernels._simd import prefetch_ahead
from ..kernels._values import value_table
from ._base import MATMAT, MATVEC, STREAM, Format
from ._grids import MAX_TABLE

NAME = "csr"



class Compressed(Format):
    """Compressed arrays over outer slices: rows (CSR) or columns (CSC, ``transposed``).

    A x is a gather over rows for CSR and a scatter for CSC, and the adjoint
    products the other way round; both run on the kernels of
    ``kernels/compressed.py``.  Parallel gathers split the outer slices into
    nnz-balanced chunks; parallel scatters follow a scatter plan made on
    first use.
    """

    transposed = False

    def __init__(self, shape, indptr, indices, data, table, params):
        dtype = data.dtype if table is None else table.dtype
        super().__init__(shape, dtype, indices.size, params)
        self.indptr, self.indices, self.data, self.table = indptr, indices, data, table
        self._ip1 = unsigned(indptr)[1:]
        self._ix = unsigned(indices)
        self._ahead = prefetch_ahead(data, indices)      # the vector gather's prefetch distance
        self.bounds = balanced_bounds(indptr).astype(np.uint64)
        self._kstart = indptr[self.bounds.astype(np.int64)].astype(np.uint64)
        self._plan = None

    def _scatter_plan(self):
        if self._plan is None:
            n_out = self.shape[0] if self.transposed else self.shape[1]
            self._plan = K.scatter_plan(self._kstart.astype(np.int64), self.indices, n_out)
        return self._plan

    def _kernel(self, op, parallel, conj, stream=False):
        arrays = (self._ip1, self._ix, self.data, self.table)
        forward = op in (MATVEC, MATMAT)
        vector = op in (MATVEC, "rmatvec")
        gather = forward != self.transposed
        if gather and not vector:                      # multi-vector gathers may stream their output
            arrays = arrays + (STREAM if stream else None,)
        if forward:
            arrays = arrays + (False,)                  # the base appends conj for adjoint ops only
        if gather and vector:                          # the prefetch distance goes before conj
            arrays = arrays[:4] + (self._ahead,) + arrays[4:]
        if gather:
            serial, par = (K.gather, K.gather_par) if vector else (K.gather2, K.gather2_par)
            return (par, (self.bounds, self._kstart) + arrays, ()) if parallel else (serial, arrays, ())
        serial, par = (K.scatter, K.scatter_par) if vector else (K.scatter2, K.scatter2_par)
        if not parallel:
            return serial, arrays, ()
        plan, items = self._scatter_plan()
        return par, (self.bounds, self._kstart, plan, items) + arrays, ()

    def arrays(self):
        return {"indptr": self.indptr, "indices": self.indices, "data": self.data, "table": self.table}

    def _values(self):
        return self.data if self.table is None else self.table[self.data]


class CSR(Compressed):
    name = NAME
    streams = (MATMAT,)                  # A X is CSR's gather

    def to_csr(self):
        idx = index_dtype_for(max(self.shape[1], self.nnz))
        return sp.csr_array((self._values(), self.indices.astype(idx, copy=False),
                             self.indptr.astype(idx, copy=False)), shape=self.shape)


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
    return width_and_values_configurations(profile, profile.shape[1])


def space(trial, profile) -> dict:
    return width_and_values_space(trial, profile, profile.shape[1], NAME)


# Shared by the formats whose parameters are an index width (indices below
# ``span``) and the value layout: csr, csc, coo.
def width_and_values_configurations(profile, span) -> list[dict]:
    return [{"index_dtype": d, "values": v} for d in index_dtypes(profile, span) for v in values_options(profile)]


def width_and_values_space(trial, profile, span, prefix) -> dict:
    return {"index_dtype": trial.suggest_categorical(f"{prefix}_index_dtype", index_dtypes(profile, span)),
            "values": trial.suggest_categorical(f"{prefix}_values", values_options(profile))}
