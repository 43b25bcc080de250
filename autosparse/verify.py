"""Checking a product against SciPy, to a tolerance scaled by dtype.

The tuner runs every candidate through ``check`` before its time counts, and
the test suite uses the same rule against its own SciPy references.

Rule.  A computed sum of ``t`` products differs from the exact one by at most
``t * eps * sum|a_k x_k|`` (plus lower-order terms), and so does SciPy's.  So
entry i may differ from SciPy by ``C * (t + 2) * eps * (|A| |x|)_i`` where t is
the longest row (column, for transposed products) and eps that of the result
dtype.  C = 4 covers complex arithmetic.  NaN must sit exactly where SciPy
has NaN, and an infinite SciPy result must be the same infinity: that is
what "NaN and Inf propagate as in SciPy" means, component by component for
complex results.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SAFETY = 4.0
OPS = ("matvec", "rmatvec", "matmat", "rmatmat")


SMALL = 1 << 16           # entries below which |A| |x| is SciPy's abs(A) @ abs(x) (no kernel to load)


def reference(A: sp.csr_array, x: np.ndarray, op: str, conj: bool = True):
    """SciPy's result of ``op`` and the magnitude bound ``|A| |x|``."""
    if op not in OPS:
        raise ValueError(f"unknown operation {op!r}; accepted: {', '.join(OPS)}")
    adjoint = op in ("rmatvec", "rmatmat")
    M = A
    if adjoint:
        M = A.T.conj() if conj else A.T
    with np.errstate(all="ignore"):
        y = np.asarray(M @ x)
        if A.format == "csr" and A.nnz >= SMALL:
            mag = _magnitude(A, np.asarray(x), adjoint)
        else:
            mag = np.asarray(abs(M) @ np.abs(x))
    return y, mag


def _magnitude(A, x, adjoint):
    """``|A| |x|`` (``|A|ᵀ |x|`` for the adjoint products) by a kernel on A's own arrays,
    in the dtype SciPy's ``abs(A) @ abs(x)`` would give."""
    from .kernels.magnitude import abs_gather, abs_scatter
    absx = np.abs(x).astype(np.float64, copy=False).reshape(x.shape[0], -1)
    out = np.empty((A.shape[1] if adjoint else A.shape[0], absx.shape[1]))
    (abs_scatter if adjoint else abs_gather)(A.indptr, A.indices, A.data, np.ascontiguousarray(absx), out)
    dtype = np.result_type(np.abs(A.data[:0]).dtype, np.abs(x[:0]).dtype)
    return out.reshape((out.shape[0],) + x.shape[1:]).astype(dtype, copy=False)


def max_terms(A: sp.csr_array, op: str) -> int:
    if A.nnz == 0:
        return 0
    if op in ("matvec", "matmat"):
        return int(np.diff(A.indptr).max())
    return int(np.bincount(A.indices, minlength=A.shape[1]).max())


def error_ratio(y, y_ref, mag, terms: int, dtype) -> float:
    """Largest error relative to the allowed one (<= 1 passes; inf: NaN/Inf mismatch)."""
    y = np.asarray(y)
    y_ref = np.asarray(y_ref)
    if y.shape != y_ref.shape:
        return np.inf
    if y.size == 0:
        return 0.0
    eps = np.finfo(np.dtype(dtype)).eps
    if y.size >= SMALL and y.dtype.kind in "fc" and y_ref.dtype.kind in "fc":
        from .kernels.magnitude import error_ratio as one_pass
        return float(one_pass(np.ravel(y), np.ravel(y_ref), np.ravel(mag).astype(np.float64, copy=False),
                              SAFETY * (terms + 2) * float(eps), float(np.finfo(np.dtype(dtype)).tiny)))
    parts = [(y.real, y_ref.real)] + ([(y.imag, y_ref.imag)] if np.iscomplexobj(y_ref) or np.iscomplexobj(y) else [])
    worst = 0.0
    with np.errstate(all="ignore"):
        allowed = SAFETY * (terms + 2) * eps * mag + np.finfo(np.dtype(dtype)).tiny
        for got, ref in parts:
            if not np.array_equal(np.isnan(got), np.isnan(ref)):
                return np.inf
            inf = np.isinf(ref)
            if not np.array_equal(got[inf], ref[inf]):
                return np.inf
            ok = ~(np.isnan(ref) | inf) & np.isfinite(allowed)
            if np.any(~np.isfinite(got[ok])):
                return np.inf
            if ok.any():
                worst = max(worst, float(np.max(np.abs(got[ok] - ref[ok]) / allowed[ok])))
    return worst


def check(y, A: sp.csr_array, x, op: str, *, conj: bool = True, dtype=None) -> tuple[bool, float]:
    """(passes, error ratio) of ``y`` as the result of ``op`` on ``A`` and ``x``."""
    y_ref, mag = reference(A, x, op, conj)
    dt = dtype if dtype is not None else np.result_type(A.dtype, np.asarray(x).dtype)
    ratio = error_ratio(y, y_ref, mag, max_terms(A, op), dt)
    return ratio <= 1.0, ratio
