"""HYB conversion helper (HYB's products run on the ELL-family kernels in ``ell.py``)."""

from __future__ import annotations

import numpy as np

from ._runtime import jit


@jit
def remainder_mask(indptr, width):
    """True for the entries past the first ``width`` of their row (CSR order)."""
    m = indptr.size - 1
    keep = np.zeros(indptr[m] - indptr[0], np.bool_)
    for i in range(m):
        for k in range(indptr[i] + width, indptr[i + 1]):
            keep[k - indptr[0]] = True
    return keep
