"""Input canonicalisation and the dtype rules shared by every format.

Rules (documented in the README):

* A matrix must be a ``scipy.sparse`` matrix or array with two dimensions.
  Dense arrays are refused: autosparse tunes sparse storage, and silently
  sparsifying a dense array would hide a costly mistake.
* Value dtypes computed natively: float32, float64, complex64, complex128.
  bool, signed and unsigned integer matrices are converted to float64, as
  SciPy's products with float vectors would be; float16 to float32.
  ``longdouble``/``clongdouble`` are refused (converting would silently lose
  precision), and so are object, string and other non-numeric dtypes.
* Products follow SciPy's promotion: the result dtype is
  ``np.result_type(matrix dtype, vector dtype)``, e.g. a float32 matrix
  times a float64 vector gives float64, computed in float64.
* Canonical CSR: sorted column indices, duplicates summed, explicit zeros
  kept (``0 * inf`` is NaN in SciPy, and so it is here).  The user's matrix is
  never modified.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64),
                np.dtype(np.complex64), np.dtype(np.complex128))
INDEX_DTYPES = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))
_ACCEPTED_VALUES = "float32, float64, complex64, complex128 (bool, integers -> float64; float16 -> float32)"
_UNSIGNED = {np.dtype(np.int16): np.dtype(np.uint16), np.dtype(np.int32): np.dtype(np.uint32),
             np.dtype(np.int64): np.dtype(np.uint64)}


def value_dtype(dtype) -> np.dtype:
    """The dtype autosparse computes a matrix of ``dtype`` in, or TypeError."""
    dt = np.dtype(dtype)
    if dt in VALUE_DTYPES:
        return dt
    if dt.kind in "biu":
        return np.dtype(np.float64)
    if dt == np.float16:
        return np.dtype(np.float32)
    raise TypeError(f"unsupported matrix dtype {dt}; accepted: {_ACCEPTED_VALUES}")


def result_dtype(matrix_dtype, vector_dtype) -> np.dtype:
    """SciPy's promotion of a product's operands, restricted to the computed dtypes."""
    vdt = np.dtype(vector_dtype)
    if vdt.kind not in "biufc":
        raise TypeError(f"unsupported vector dtype {vdt}; accepted: bool, integers, "
                        "float16, float32, float64, complex64, complex128")
    if vdt not in VALUE_DTYPES and vdt in (np.dtype(np.longdouble), np.dtype(np.clongdouble)):
        raise TypeError(f"vector dtype {vdt} would lose precision in float64 kernels; "
                        "convert it to float64 or complex128 explicitly")
    rdt = np.result_type(np.dtype(matrix_dtype), vdt)
    if rdt not in VALUE_DTYPES:
        rdt = value_dtype(rdt)
    return rdt


def index_dtype_for(max_value: int, requested=None, *, what="index values") -> np.dtype:
    """The index dtype to store values up to ``max_value`` in.

    ``requested=None`` picks the narrowest of int32/int64 that fits (int16 is
    only used when asked for, since SciPy interop wants int32/int64).  A
    requested width that cannot hold ``max_value`` is a ValueError.
    """
    if requested is None:
        return np.dtype(np.int32) if max_value <= np.iinfo(np.int32).max else np.dtype(np.int64)
    try:
        dt = np.dtype(requested)
    except TypeError:
        raise TypeError(f"index dtype {requested!r} is not a dtype; accepted: int16, int32, int64") from None
    if dt not in INDEX_DTYPES:
        raise TypeError(f"unsupported index dtype {dt}; accepted: int16, int32, int64")
    if max_value > np.iinfo(dt).max:
        raise ValueError(f"index dtype {dt} cannot hold {what} up to {max_value} "
                         f"(max {np.iinfo(dt).max}); use a wider index dtype")
    return dt


def unsigned(a: np.ndarray) -> np.ndarray:
    """Zero-copy unsigned view of a non-negative index array.

    Kernels index with unsigned integers: numba then emits no negative-index
    wraparound code, which measured 2x faster on CSR matvec.
    """
    return a.view(_UNSIGNED[a.dtype]) if a.dtype.kind == "i" else a


def as_csr(A, *, what="matrix") -> sp.csr_array:
    """Canonical CSR copy (or the input itself when already canonical).

    Raises TypeError for non-sparse input or unsupported dtypes and ValueError
    for anything that is not two-dimensional.
    """
    if not sp.issparse(A):
        kind = type(A).__module__ + "." + type(A).__qualname__
        raise TypeError(f"{what} must be a scipy.sparse matrix or array, got {kind}; "
                        "wrap dense data with scipy.sparse.csr_array(...) if sparse storage is intended")
    if A.ndim != 2:
        raise ValueError(f"{what} must be two-dimensional, got {A.ndim} dimensions with shape {A.shape}")
    dt = value_dtype(A.dtype)
    # Cast before anything sums duplicates: bool duplicates then add as numbers, as SciPy's
    # products compute them (True + True is 2), and integer ones cannot overflow a narrow type.
    src = A.astype(dt) if A.dtype != dt else A
    csr = src if src.format == "csr" else src.tocsr()
    if not isinstance(csr, sp.csr_array):
        csr = sp.csr_array(csr, copy=False)
    if not csr.has_canonical_format:
        # never sort or sum the caller's arrays in place
        shared = any(np.may_share_memory(getattr(csr, name), getattr(A, name))
                     for name in ("data", "indices", "indptr") if isinstance(getattr(A, name, None), np.ndarray))
        if shared:
            csr = csr.copy()
        csr.sum_duplicates()          # sorts indices and sums duplicates, keeps explicit zeros
    idx = index_dtype_for(max(csr.shape[1], csr.nnz))
    if csr.indices.dtype != idx or csr.indptr.dtype != idx:
        csr = sp.csr_array((csr.data, csr.indices.astype(idx), csr.indptr.astype(idx)),
                           shape=csr.shape, copy=False)
    return csr


def check_count(value, name: str) -> int:
    """A non-negative integer, or TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return int(value)
