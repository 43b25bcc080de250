"""The baseline: the user's matrix as given, multiplied by SciPy.

Nothing is converted or copied, so building it is free; that is what makes
it the right plan for a workload of one or two products.  Its products
follow autosparse's dtype rules (integer matrices compute in float64) by
casting the vector, never the matrix.  Aᴴx of a complex matrix is computed
as conj(Aᵀ conj(x)): SciPy's ``A.conj().T @ x`` would copy the matrix on
every call.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, value_dtype
from ._base import MATMAT, MATVEC, RMATMAT, RMATVEC, Format

NAME = "scipy"


class Baseline(Format):
    name = NAME

    def __init__(self, A):
        super().__init__(A.shape, value_dtype(A.dtype), A.nnz, {})
        self.matrix = A
        self._complex = A.dtype.kind == "c"

    def arrays(self):
        A = self.matrix
        return {name: getattr(A, name) for name in ("data", "indices", "indptr", "row", "col", "offsets")
                if isinstance(getattr(A, name, None), np.ndarray)}

    def to_csr(self):
        return as_csr(self.matrix)

    def _run(self, op, x, out, conj):
        A = self.matrix
        if op in (MATVEC, MATMAT):
            y = A @ x
        elif conj and self._complex:
            y = np.conjugate(A.T @ x.conj())      # SciPy may hand back a non-ndarray here
        else:
            y = A.T @ x
        out[...] = y


def from_csr(A) -> Baseline:
    """Wraps A itself (any SciPy sparse format); only validates it."""
    if not sp.issparse(A):
        as_csr(A)                       # raises the standard TypeError
    if A.ndim != 2:
        as_csr(A)
    value_dtype(A.dtype)                # TypeError for unsupported dtypes
    return Baseline(A)


def estimate_nbytes(profile) -> int:
    from .csr import estimate_nbytes as csr_bytes
    return csr_bytes(profile)


def configurations(profile) -> list[dict]:
    return [{}]


def space(trial, profile) -> dict:
    return {}

