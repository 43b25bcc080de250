"""CSC: compressed sparse columns - the CSR arrays of Aᵀ.

Aᴴx is a gather (one dot product per column) and runs as fast as CSR's
A x, so CSC is the natural second copy for the transposed products of a
CSR plan.  A x is a scatter, parallelised with a race-free scatter plan
(see ``kernels/compressed.py``).

Parameters
----------
index_dtype : "int16" | "int32" | "int64"
    Width of the stored row indices.  It must hold every row *and* column
    index of the matrix (the same rule as COO), so a matrix converts to CSC
    exactly when it converts to COO with that width.  Column pointers are
    int32 when nnz fits, else int64.
values : "full" | "table"
    As for CSR: ``"table"`` stores uint8/uint16 codes into a table of the
    distinct values.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for
from ._base import RMATMAT
from .csr import (Compressed, _encode, value_bytes, values_options, width_and_values_configurations,
                  width_and_values_space)

NAME = "csc"


class CSC(Compressed):
    name = NAME
    transposed = True
    streams = (RMATMAT,)                 # Aᴴ X is CSC's gather

    def to_csr(self):
        idx = index_dtype_for(max(self.shape[0], self.nnz))
        C = sp.csc_array((self._values(), self.indices.astype(idx, copy=False),
                          self.indptr.astype(idx, copy=False)), shape=self.shape)
        return as_csr(C.tocsr())


def from_csr(A, index_dtype=None, values="full") -> CSC:
    """CSC from any SciPy sparse matrix (explicit zeros kept)."""
    A = as_csr(A)
    m, n = A.shape
    idx = index_dtype_for(max(m, n, 1) - 1, index_dtype, what="row and column indices")
    ptr = index_dtype_for(A.nnz)
    C = A.tocsc()                                   # counting-sort transpose: rows sorted per column
    data, table = _encode(C.data, values)
    params = {"index_dtype": idx.name, "values": values}
    return CSC(A.shape, C.indptr.astype(ptr, copy=False), C.indices.astype(idx, copy=False), data, table, params)


def estimate_nbytes(profile, index_dtype="int32", values="full") -> int:
    _, n = profile.shape
    vb, tb = value_bytes(profile, values)
    ptr = index_dtype_for(profile.nnz).itemsize
    return int(profile.nnz * (np.dtype(index_dtype).itemsize + vb) + (n + 1) * ptr + tb)


def _index_span(profile) -> int:
    """Index widths are offered for values up to the larger dimension."""
    return max(max(profile.shape), 1)


def configurations(profile) -> list[dict]:
    return width_and_values_configurations(profile, _index_span(profile))


def space(trial, profile) -> dict:
    return width_and_values_space(trial, profile, _index_span(profile), NAME)
