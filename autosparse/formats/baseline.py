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
        self._AT = None

    def arrays(self):
        A = self.matrix
        return {name: getattr(A, name) for name in ("data", "indices", "indptr", "row", "col", "offsets")
                if isinstance(getattr(A, name, None), np.ndarray)}

    def to_csr(self):
        return as_csr(self.matrix)

    def _product(self, op, x, conj):
        """SciPy's own result array (fresh: the caller may keep it)."""
        A = self.matrix
        if op in (MATVEC, MATMAT):
            y = A @ x
        else:
            AT = self._AT
            if AT is None:                          # a view, made once: A.T costs ~50 us a call
                AT = self._AT = A.T
            y = np.conjugate(AT @ x.conj()) if conj and self._complex else AT @ x
        if type(y) is not np.ndarray:              # SciPy may hand back a matrix or a scalar-like
            y = np.asarray(y)
        return y

    def _run(self, op, x, out, conj):
        out[...] = self._product(op, x, conj)

    # Without ``out`` SciPy's result is returned as it is: no copy.
    def matvec(self, x, out=None):
        if out is not None:
            return super().matvec(x, out)
        return self._fresh(MATVEC, x, False, 1)

    def rmatvec(self, x, out=None, *, conj=True):
        if out is not None:
            return super().rmatvec(x, out, conj=conj)
        return self._fresh(RMATVEC, x, conj, 1)

    def _matmat(self, op, X, out, n_in, n_out, conj):
        if out is not None or type(X) is not np.ndarray or X.ndim != 2:
            return super()._matmat(op, X, out, n_in, n_out, conj)
        return self._fresh(op, X, conj, X.shape[1])

    def _fresh(self, op, x, conj, k):
        forward = op in (MATVEC, MATMAT)
        x = self._operand(x, self.shape[1] if forward else self.shape[0], k)
        y = self._product(op, x, conj)
        shape = (self.shape[0] if forward else self.shape[1],) + x.shape[1:]
        if y.shape != shape:                       # SciPy returns a scalar for a 1x1 COO product
            y = y.reshape(shape)
        if y.dtype != x.dtype or (y.ndim == 2 and not y.flags.c_contiguous):
            y = np.ascontiguousarray(y, dtype=x.dtype)    # x is already in the result dtype
        return y


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

