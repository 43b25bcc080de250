"""The baseline: the user's matrix as given, multiplied by SciPy.

Nothing is converted or copied, so building it is free; that is what makes
it the right plan for a workload of one or two products.  Its products
follow autosparse's dtype rules (integer matrices compute in float64) by
casting the vector, never the matrix.  Aᴴx of a complex matrix is computed
as conj(Aᵀ conj(x)): SciPy's ``A.conj().T @ x`` would copy the matrix on
every call.

For CSR and CSC input a vector product calls SciPy's compiled kernel
(``csr_matvec``/``csc_matvec``, what ``A @ x`` runs) directly: the result is
SciPy's to the bit, without the ~3-5 us of Python dispatch ``A @ x`` spends
around it.  On a small matrix that dispatch is a third of the product, and
a one-call workload is only worth tuning for if ``tune()`` plus one product
costs no more than SciPy's product alone.  Where a product is large enough
for threads and is a gather over A's slices (A x of CSR, Aᴴ x of CSC), the
csr layout's parallel kernel runs on A's own arrays instead, summing each row
in the same order as SciPy.  Either way A is read at call time, as SciPy
reads it; the one thing kept is the threads' row split, and only while A
holds the same array objects (any split of the rows gives the right sums).
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from .._checks import VALUE_DTYPES, as_csr, unsigned, value_dtype
from ..kernels._runtime import balanced_bounds, entry, use_parallel
from ._base import MATMAT, MATVEC, RMATMAT, RMATVEC, Format, fits_vector_out

try:                                      # SciPy's private kernels; A @ x when they move
    from scipy.sparse import _sparsetools
    _VECTOR_KERNELS = {"csr": (_sparsetools.csr_matvec, _sparsetools.csc_matvec),
                       "csc": (_sparsetools.csc_matvec, _sparsetools.csr_matvec)}
except (ImportError, AttributeError):     # pragma: no cover - depends on the SciPy build
    _VECTOR_KERNELS = {}

# Exact types only: a subclass may override what its products do.  Each maps to its
# (forward, adjoint) kernels and whether the adjoint is the gather over A's slices.
_DIRECT_TYPES = {} if not _VECTOR_KERNELS else {
    sp.csr_matrix: (_VECTOR_KERNELS["csr"], False), sp.csr_array: (_VECTOR_KERNELS["csr"], False),
    sp.csc_matrix: (_VECTOR_KERNELS["csc"], True), sp.csc_array: (_VECTOR_KERNELS["csc"], True)}
_NATIVE_INDEX = (np.dtype(np.int32), np.dtype(np.int64))

NAME = "scipy"


class Baseline(Format):
    name = NAME
    params = MappingProxyType({})
    # Per-instance state that most baselines never touch starts at these class defaults, or
    # is made on first use (__getattr__): this constructor is on the path of every one-call
    # tune(), which has a microsecond or two to spend in all.
    _exact = None
    _AT = None
    _split = None
    # The gather runs on the threads from this many entries up (and from the parallel
    # threshold): tune()'s one-call answer raises it (see operator._AsGiven)
    min_threaded_nnz = 0

    def __init__(self, A, dtype, shape, nnz, direct=None, gathers_adjoint=False):
        # Format.__init__'s fields (one added there belongs here or in __getattr__); SciPy has
        # validated the shape and nnz already
        self.matrix = A
        self.shape = shape
        self.dtype = dtype
        self.nnz = nnz
        self._direct = direct          # SciPy's (forward, adjoint) vector kernels for A's own arrays
        # which product is a gather over A's compressed slices: A x for CSR, Aᴴ x for CSC
        self._gathers_adjoint = gathers_adjoint

    def __getattr__(self, name):
        # runs only while ``name`` is missing from the instance
        if name == "_bound":
            value = {}
        elif name == "_complex":
            value = self.dtype.kind == "c"
        else:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        setattr(self, name, value)     # (not via __dict__, which would slow every attribute load)
        return value

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
        if self._direct is not None:
            y = self._direct_product(False, x, out, False)
            if y is not None:
                return y
        if out is not None:
            return super().matvec(x, out)
        return self._fresh(MATVEC, x, False, 1)

    def rmatvec(self, x, out=None, *, conj=True):
        if self._direct is not None:
            y = self._direct_product(True, x, out, conj and self._complex)
            if y is not None:
                return y
        if out is not None:
            return super().rmatvec(x, out, conj=conj)
        return self._fresh(RMATVEC, x, conj, 1)

    def threaded_gather(self, op) -> bool:
        """Does vector product ``op`` ("matvec"/"rmatvec") run the threaded csr gather?"""
        return self._direct is not None and op == (RMATVEC if self._gathers_adjoint else MATVEC) and self._threaded()

    def _threaded(self):
        nnz = self.nnz
        return nnz >= self.min_threaded_nnz and use_parallel(nnz)

    def _direct_product(self, adjoint, x, out, conjugate):
        """A x or Aᵀ x (conj(Aᵀ conj(x)) when ``conjugate``) by SciPy's kernel on A's own
        arrays; None when ``x`` or ``out`` needs the general path (a cast, or an error)."""
        m, n = self.shape[::-1] if adjoint else self.shape       # Aᵀ: the same arrays read as the other format
        if not (type(x) is np.ndarray and x.dtype == self.dtype and x.shape == (n,) and x.flags.c_contiguous):
            return None
        if out is None:
            y = np.zeros(m, x.dtype)                   # SciPy's kernels add into their output
        elif fits_vector_out(out, x, m):
            y = out
            y.fill(0)
        else:
            return None
        A = self.matrix
        if adjoint == self._gathers_adjoint and self._threaded():
            self._parallel_gather(A, x, y, conjugate)
            return y
        self._direct[adjoint](m, n, A.indptr, A.indices, A.data, x.conj() if conjugate else x, y)
        return np.conjugate(y, out=y) if conjugate else y

    def _parallel_gather(self, A, x, y, conjugate):
        """A x of a CSR A (Aᴴ x of a CSC A) on the threads, by the csr layout's kernel on A's
        own arrays.  Each row is summed in storage order from 0, as in SciPy's kernel.  A is
        read at call time, as SciPy reads it: the row split and the unsigned views are kept
        only while A holds the same array objects (any split of the rows is correct; the
        row starts at its boundaries are read anew on every call)."""
        ptr, idx, data = A.indptr, A.indices, A.data
        split = self._split
        if split is None or split[0] is not ptr or split[1] is not idx or split[2] is not data:
            split = self._split = (ptr, idx, data, balanced_bounds(ptr).astype(np.uint64), unsigned(ptr)[1:],
                                   unsigned(idx))
        _, _, _, bounds, ip1, uidx = split
        from ..kernels import compressed as K     # here: a one-call tune() never loads these kernels
        from ..kernels._simd import prefetch_ahead
        args = (bounds, ptr[bounds].astype(np.uint64), ip1, uidx, data, None, prefetch_ahead(data, idx), conjugate,
                x, y)
        entry(K.gather_par, *args)(*args)

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


def direct_parts(A):
    """(kernels, dtype, shape) when A is an exact CSR/CSC whose arrays SciPy's kernels take as
    they are (what ``A @ x`` passes them), else None.  ``kernels`` is the ((forward, adjoint)
    kernel pair, whether the adjoint is the gather over A's slices)."""
    kernels = _DIRECT_TYPES.get(type(A))
    if kernels is not None:
        shape = A.shape
        dtype = A.data.dtype
        idx = A.indices.dtype
        if len(shape) == 2 and dtype in VALUE_DTYPES and idx in _NATIVE_INDEX and A.indptr.dtype == idx:
            return kernels, dtype, shape
    return None


def of_direct(A, parts) -> Baseline:
    """The Baseline of A, given its ``direct_parts``."""
    (kernels, gathers_adjoint), dtype, shape = parts
    # A.nnz is int(indptr[-1]) behind two Python calls: 0.4 us of a one-call tune()
    return Baseline(A, dtype, shape, int(A.indptr[-1]), kernels, gathers_adjoint)


def from_csr(A) -> Baseline:
    """Wraps A itself (any SciPy sparse format); only validates it."""
    parts = direct_parts(A)
    if parts is not None:
        return of_direct(A, parts)
    if not sp.issparse(A) or A.ndim != 2:
        as_csr(A)                       # raises the standard TypeError or ValueError
    dtype = A.dtype
    dtype = dtype if dtype in VALUE_DTYPES else value_dtype(dtype)      # TypeError if unsupported
    return Baseline(A, dtype, A.shape, A.nnz)


def estimate_nbytes(profile) -> int:
    from .csr import estimate_nbytes as csr_bytes
    return csr_bytes(profile)


def configurations(profile) -> list[dict]:
    return [{}]


def space(trial, profile) -> dict:
    return {}

