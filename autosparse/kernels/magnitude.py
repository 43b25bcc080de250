"""``|A| |x|`` and ``|A|ᵀ |x|`` straight from a CSR's arrays: the magnitude bound of
``autosparse.verify``'s tolerance, without the copy of A that ``abs(A)`` makes (on a
20M-entry matrix that copy's fresh pages cost the tuner 0.3-0.6 s on a VM).

Sums run in float64, in any order: the bound is not a result that must match SciPy.
``0 * inf`` gives NaN as in SciPy's ``abs(A) @ abs(x)``, which leaves the entry to the
NaN/Inf rules.
"""

from ._runtime import jit


@jit
def abs_gather(indptr, indices, data, absx, out):
    """``out[i, c] = Σ_p |data[p]| absx[indices[p], c]`` over row i's entries p."""
    m = indptr.size - 1
    k = absx.shape[1]
    for i in range(m):
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
