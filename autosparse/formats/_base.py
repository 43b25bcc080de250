"""The base every storage format shares.

A format is an immutable container of flat arrays plus the kernels that
compute with them.  The base class owns everything that is the same for all
formats:

* validation of vectors and ``out`` (clear TypeError/ValueError),
* SciPy's dtype promotion (``result_dtype``),
* the choice between serial and parallel kernels, and memoised kernel entry
  points so that a product costs one Python call above the kernel,
* exact NaN/Inf semantics for formats that store padding.

Padding.  ELL, SELL, BSR, DIA, dense and the hybrids store zeros that are not
entries of A.  SciPy never multiplies those, so ``0 * inf`` must not turn a
result into NaN.  Padded formats therefore move the input's explicit zeros to
a side list when converting (``split_explicit_zeros``) - every stored zero is
then padding - and their kernels return the number of NaN results.  Only if
that is non-zero *and* the input has a non-finite entry is the product redone
exactly from ``to_csr()``.  With finite input, padding contributes exact
zeros, so the fast result stands.
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .._checks import result_dtype
from ..kernels._runtime import entry, use_parallel
from ..kernels._simd import STREAMING_STORES

MATVEC, RMATVEC, MATMAT, RMATMAT = "matvec", "rmatvec", "matmat", "rmatmat"


class Format:
    """A storage layout of one sparse matrix.

    Subclasses set ``name`` and ``padded``, store their arrays, and implement
    ``_kernel(op, parallel, conj)`` returning ``(dispatcher, args, literals)``:
    the kernel is called as ``dispatcher(*args, [conj,] x, out)``.  A format
    whose kernels write multi-vector outputs with streaming stores lists those
    operations in ``streams``; its ``_kernel`` then also takes ``stream=True``.
    """

    name: ClassVar[str] = "?"
    padded: ClassVar[bool] = False
    streams: ClassVar[tuple | None] = None
    # The vector products' hot path (``matvec``/``rmatvec``): the first kernel bound for an
    # operand that needs no cast, as one tuple (dtype, x's shape, out's shape, conj, kernel)
    # that ``_run`` stores once, in one assignment, so threads never see half of it.  Until
    # then the dtype is None and every call takes the checked path.  Dtypes are compared by
    # identity: numpy's builtin dtypes are singletons, and any other dtype object, equal
    # or not, takes the checked path.
    _mv = _rmv = (None, None, None, None, None)

    def __init__(self, shape, dtype, nnz, params):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.nnz = int(nnz)                     # entries of A (not padding)
        self.params = dict(params)
        self._bound = {}
        self._exact = None

    # -- what subclasses provide ------------------------------------------
    def _kernel(self, op, parallel, conj):
        raise NotImplementedError

    def arrays(self) -> dict:
        """The arrays this layout stores (``nbytes`` sums them)."""
        raise NotImplementedError

    def to_csr(self) -> sp.csr_array:
        """The matrix as canonical CSR, explicit zeros included, padding not."""
        raise NotImplementedError

    def work(self, op: str, k: int = 1) -> int:
        """Multiply-adds of one product: decides serial versus parallel."""
        return self.nnz * k

    # -- public ------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        total = sum(a.nbytes for a in self.arrays().values() if a is not None)
        if self.padded:
            total += sum(a.nbytes for a in self.explicit_zeros)
        return int(total)

    def matvec(self, x, out=None):
        """A @ x for a 1-D ``x``; writes into ``out`` when given."""
        # a few identity and shape tests in front of the kernel; anything they do not accept
        # takes the checked path, which casts or explains what is wrong
        dt, shape_in, shape_out, _, fn = self._mv
        if type(x) is np.ndarray and x.dtype is dt and x.shape == shape_in and x.flags.c_contiguous:
            if out is None:
                out = np.empty(shape_out, dt)
            # out: x's dtype and the product's shape, C-contiguous, aligned and writeable
            # (carray), apart from x (two arrays owning their memory are apart: no call)
            elif not (type(out) is np.ndarray and out.dtype is dt and out.shape == shape_out and out.flags.carray
                      and ((out is not x and out.base is None and x.base is None) or disjoint(x, out))):
                return self._checked_vector(MATVEC, x, out, False)
            if fn(x, out) and self.padded and not _all_finite(x):
                self._exact_product(MATVEC, x, out, False)
            return out
        return self._checked_vector(MATVEC, x, out, False)

    def rmatvec(self, x, out=None, *, conj=True):
        """Aᴴ @ x (``conj=False``: Aᵀ @ x) for a 1-D ``x``."""
        # matvec's hot path, spelled out again: a shared helper would add a Python call,
        # a fifth of what the path costs
        dt, shape_in, shape_out, bound_conj, fn = self._rmv
        if type(x) is np.ndarray and x.dtype is dt and x.shape == shape_in and conj is bound_conj \
                and x.flags.c_contiguous:
            if out is None:
                out = np.empty(shape_out, dt)
            elif not (type(out) is np.ndarray and out.dtype is dt and out.shape == shape_out and out.flags.carray
                      and ((out is not x and out.base is None and x.base is None) or disjoint(x, out))):
                return self._checked_vector(RMATVEC, x, out, conj)
            if fn(x, out) and self.padded and not _all_finite(x):
                self._exact_product(RMATVEC, x, out, conj)
            return out
        return self._checked_vector(RMATVEC, x, out, conj)

    def _checked_vector(self, op, x, out, conj):
        n_in, n_out = self.shape[::-1] if op == MATVEC else self.shape
        if type(x) is not np.ndarray:
            x = _as_array(x, "x")
        if x.ndim != 1:
            raise ValueError(f"{op} needs a 1-D x of shape ({n_in},), got shape {x.shape} "
                             f"({'matmat' if op == MATVEC else 'rmatmat'} takes 2-D operands)")
        x, out = self._operands(x, out, n_in, n_out, 1)
        self._run(op, x, out, conj)
        return out

    def matmat(self, X, out=None):
        """A @ X for a 2-D ``X`` (C- or F-ordered); ``out`` any writeable layout."""
        return self._matmat(MATMAT, X, out, self.shape[1], self.shape[0], False)

    def rmatmat(self, X, out=None, *, conj=True):
        """Aᴴ @ X (``conj=False``: Aᵀ @ X) for a 2-D ``X``."""
        return self._matmat(RMATMAT, X, out, self.shape[0], self.shape[1], conj)

    def __repr__(self):
        p = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"<{self.name} {self.shape[0]}x{self.shape[1]} {self.dtype} nnz={self.nnz} {p}>"

    # -- machinery ---------------------------------------------------------
    def _matmat(self, op, X, out, n_in, n_out, conj):
        X = _as_array(X, "X")
        if X.ndim != 2:
            raise ValueError(f"{op} needs a 2-D X of shape ({n_in}, k), got shape {X.shape}")
        k = X.shape[1]
        Xc, target = self._operands(X, out, n_in, n_out, k)
        if target.flags.c_contiguous:
            self._run(op, Xc, target, conj)
            return target
        tmp = np.empty(target.shape, target.dtype)
        self._run(op, Xc, tmp, conj)
        target[...] = tmp
        return target

    def _operand(self, x, n_in, k):
        """``x`` checked against the matrix, C-contiguous in the result dtype."""
        if type(x) is not np.ndarray:
            x = _as_array(x, "x")
        want = (n_in, k) if x.ndim == 2 else (n_in,)
        if x.shape != want:
            raise ValueError(f"dimension mismatch: operand has shape {x.shape}, expected {want} "
                             f"for a {self.shape[0]}x{self.shape[1]} matrix")
        rdt = _promote(self.dtype, x.dtype)
        if x.dtype != rdt or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=rdt)
        return x

    def _operands(self, x, out, n_in, n_out, k):
        x = self._operand(x, n_in, k)
        two_d = x.ndim == 2
        rdt = x.dtype
        oshape = (n_out, k) if two_d else (n_out,)
        if out is None:
            return x, (aligned_empty(oshape, rdt) if two_d and self.streams else np.empty(oshape, dtype=rdt))
        if type(out) is not np.ndarray:
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        if out.shape != oshape or out.dtype != rdt:
            raise ValueError(f"out must have shape {oshape} and dtype {rdt}, "
                             f"got shape {out.shape} and dtype {out.dtype}")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        if not two_d and not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous for a vector product")
        if np.may_share_memory(out, x):
            raise ValueError("out must not overlap the input operand")
        return x, out

    def _run(self, op, x, out, conj):
        k = x.shape[1] if x.ndim == 2 else 1
        parallel = use_parallel(self.work(op, k))
        stream = self.streams is not None and op in self.streams and streamable(out)
        key = (op, x.dtype, out.ndim, parallel, conj, stream)
        fn = self._bound.get(key)
        if fn is None:
            fn = self._bind(op, parallel, conj, x, out, stream)
            self._bound[key] = fn
            if op in (MATVEC, RMATVEC) and x.dtype == out.dtype:
                hot = (x.dtype, x.shape, out.shape, conj, fn)
                if op == MATVEC and self._mv[0] is None:
                    self._mv = hot
                elif op == RMATVEC and self._rmv[0] is None:
                    self._rmv = hot
        nan_results = fn(x, out)
        if nan_results and self.padded and not _all_finite(x):
            self._exact_product(op, x, out, conj)

    def _bind(self, op, parallel, conj, x, out, stream=False):
        if stream:
            dispatcher, args, literals = self._kernel(op, parallel, conj, stream=True)
        else:
            dispatcher, args, literals = self._kernel(op, parallel, conj)
        if op in (RMATVEC, RMATMAT):
            args = tuple(args) + (conj,)
        fn = entry(dispatcher, *args, x, out, literals=literals)
        return functools.partial(fn, *args)

    def _exact_product(self, op, x, out, conj):
        if self._exact is None:
            self._exact = self.to_csr()
        A = self._exact
        if op in (RMATVEC, RMATMAT):
            A = A.T.conj() if conj else A.T
        out[...] = A @ x


# Outputs at least this large are written with streaming stores by formats whose
# kernels have them (``streams``): far beyond the last-level cache, reading each
# output line before writing it is a third of a multi-vector product's traffic.
STREAM_MIN_BYTES = 64 << 20
STREAM_ALIGN = 64
STREAM = np.empty(0, np.uint8)         # marker passed to a kernel: write the output with streaming stores


def fits_vector_out(out, x, n_out) -> bool:
    """Can ``out`` take a vector product of ``x`` as it is: an ndarray of x's dtype and shape
    (n_out,), C-contiguous, writeable, apart from x?  (False: the full checks explain why.)"""
    return (type(out) is np.ndarray and out.dtype == x.dtype and out.shape == (n_out,)
            and out.flags.c_contiguous and out.flags.writeable and disjoint(x, out))


_DISJOINT = [None]     # (weakref to x, weakref to out) of the last pair found not to overlap


def disjoint(x, out) -> bool:
    """Do ``x`` and ``out`` (ndarrays) share no memory?  The hot loops of solvers pass the
    same two arrays on every call, and for views ``np.may_share_memory`` costs 0.35-0.7 us,
    a quarter of a small product's overhead; the last pair found disjoint is remembered.
    The memory of a live array never moves (``resize`` refuses while views exist, and a
    fresh buffer cannot overlap a live one), so the same two objects stay disjoint."""
    if out is x:
        return False
    if out.base is None and x.base is None:
        return True                              # two owners of their memory: distinct buffers
    last = _DISJOINT[0]
    if last is not None and last[0]() is x and last[1]() is out:
        return True
    if np.may_share_memory(out, x):
        return False
    try:
        _DISJOINT[0] = (weakref.ref(x), weakref.ref(out))
    except TypeError:                            # pragma: no cover - ndarrays take weak references
        pass
    return True


def streamable(out) -> bool:
    """Can ``out`` take streaming stores: real, C-ordered, 64-byte aligned rows, large."""
    return (STREAMING_STORES and out.nbytes >= STREAM_MIN_BYTES and out.ndim == 2 and out.dtype.kind == "f"
            and out.flags.c_contiguous and out.ctypes.data % STREAM_ALIGN == 0
            and out.strides[0] % STREAM_ALIGN == 0)


def aligned_empty(shape, dtype):
    """``np.empty`` whose data starts on a 64-byte boundary (numpy guarantees 16)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    buf = np.empty(n + STREAM_ALIGN, np.uint8)
    start = (-buf.ctypes.data) % STREAM_ALIGN
    return buf[start:start + n].view(dtype).reshape(shape)


def _as_array(x, name):
    if isinstance(x, np.ndarray):
        return x
    if sp.issparse(x):
        raise TypeError(f"{name} must be a dense array; sparse @ sparse is not supported, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


_PROMOTED = {}


def _promote(matrix_dtype, vector_dtype):
    """Memoised ``result_dtype``: it sits on every product's path."""
    key = (matrix_dtype, vector_dtype)
    rdt = _PROMOTED.get(key)
    if rdt is None:
        rdt = _PROMOTED[key] = result_dtype(matrix_dtype, vector_dtype)
    return rdt


def _all_finite(x):
    return bool(np.isfinite(x).all())


# -- helpers for format modules -------------------------------------------

def split_explicit_zeros(A: sp.csr_array):
    """(A without its explicit zeros, (rows, cols, values) of those zeros).

    Padded formats store the first part; the zeros are kept aside so that
    ``to_csr`` and the exact NaN path still see them.
    """
    zero = A.data == 0
    if not zero.any():
        empty = np.empty(0, np.int64)
        return A, (empty, empty.copy(), np.empty(0, A.dtype))
    m = A.shape[0]
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(A.indptr))
    keep = ~zero
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=m), out=indptr[1:])
    B = sp.csr_array((A.data[keep], A.indices[keep], indptr), shape=A.shape)
    return B, (rows[zero], A.indices[zero].astype(np.int64), A.data[zero].copy())


def merge_explicit_zeros(stored, zeros) -> sp.csr_array:
    """Canonical CSR of stored entries minus padding (all stored zeros), plus the explicit zeros."""
    stored = sp.csr_array(stored, copy=True)
    stored.eliminate_zeros()
    rows, cols, vals = zeros
    if rows.size:
        coo = stored.tocoo()
        stored = sp.coo_array((np.concatenate([coo.data, vals.astype(stored.dtype)]),
                               (np.concatenate([coo.row, rows]), np.concatenate([coo.col, cols]))),
                              shape=stored.shape).tocsr()
    stored.sum_duplicates()
    return stored


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def log2_ceil(n: int) -> int:
    return 0 if n <= 1 else math.ceil(math.log2(n))
