"""``|A| |x|`` and ``|A|ᵀ |x|`` straight from a CSR's arrays: the magnitude bound of
``autosparse.verify``'s tolerance, without the copy of A that ``abs(A)`` makes (on a
20M-entry matrix that copy's fresh pages cost the tuner 0.3-0.6 s on a VM).

Sums run in float64, in any order: the bound is not a result that must match SciPy.
``0 * inf`` gives NaN as in SciPy's ``abs(A) @ abs(x)``, which leaves the entry to the
NaN/Inf rules.
"""

import numpy as np

from numba import prange

from ._runtime import jit, pjit


@pjit
def abs_gather(indptr, indices, data, absx, out):
    """``out[i, c] = Σ_p |data[p]| absx[indices[p], c]`` over row i's entries p."""
    m = indptr.size - 1
    k = absx.shape[1]
    for i in prange(m):
        for c in range(k):
            out[i, c] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            a = abs(data[p])
            j = indices[p]
            for c in range(k):
                out[i, c] += a * absx[j, c]


@jit
def abs_scatter(indptr, indices, data, absx, out):
    """``out[j, c] = Σ |data[p]| absx[i, c]`` over the entries p = (i, j): ``|A|ᵀ |x|``."""
    m = indptr.size - 1
    k = absx.shape[1]
    out[:] = 0.0
    for i in range(m):
        for p in range(indptr[i], indptr[i + 1]):
            a = abs(data[p])
            j = indices[p]
            for c in range(k):
                out[j, c] += a * absx[i, c]


@jit
def error_ratio(got, ref, mag, scale, tiny):
    """``autosparse.verify.error_ratio`` in one pass over flat arrays (real or complex, parts
    checked apart): inf on a NaN/Inf mismatch, else the largest ``|got - ref| / allowed``
    with ``allowed = scale * mag + tiny`` over the entries whose ``ref`` and ``allowed`` are
    finite."""
    worst = 0.0
    for i in range(ref.size):
        allowed = scale * mag[i] + tiny
        finite_allowed = allowed - allowed == 0.0
        for part in range(2):
            if part == 0:
                g = got[i].real
                r = ref[i].real
            else:
                g = got[i].imag
                r = ref[i].imag
            if (g != g) != (r != r):
                return np.inf
            if r != r:
                continue
            if r - r != 0.0:                      # r is +-inf: the same infinity
                if g != r:
                    return np.inf
                continue
            if not finite_allowed:
                continue
            if g - g != 0.0:                      # inf (or nan, excluded above) where SciPy is finite
                return np.inf
            e = abs(g - r) / allowed
            if e > worst:
                worst = e
    return worst
