"""Dense: the matrix as a row-major m x n array.

No index arrays, so there are no parameters (``from_csr`` takes no
``index_dtype``).  Worth it only for nearly full matrices: a dense matrix
streams ``itemsize`` bytes per slot against CSR's ``itemsize + 4`` per entry
and needs no gathers of ``x``, so it wins above a fill of about 2/3.  The
kernels are exact numba loops in SciPy's summation order (see
``kernels/dense.py``), so results equal SciPy's bit for bit.

Padding: ``padded = True``.  The input's explicit zeros are kept aside
(``explicit_zeros``); every stored zero is padding.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr
from ..kernels import dense as K
from ..kernels._runtime import num_threads
from . import csr as _csr
from ._base import MATMAT, MATVEC, RMATMAT, RMATVEC, Format, merge_explicit_zeros, split_explicit_zeros

NAME = "dense"

MAX_BYTES_VS_CSR = 4.0    # configurations(): dense bytes at most this times CSR's
MAX_SLOTS = 2 ** 26       # configurations(): and at most this many slots


class Dense(Format):
    name = NAME
    padded = True

    def __init__(self, shape, data, explicit_zeros, nnz, params):
        super().__init__(shape, data.dtype, nnz, params)
        self.data = data
        self.explicit_zeros = explicit_zeros

    def work(self, op, k=1):
        return self.data.size * k

    def _stripe(self, k):
        """Columns per stripe of the transposed products: ``out``'s stripe stays in L1."""
        n = self.shape[1]
        cap = max(8, 16384 // (self.dtype.itemsize * k))
        return int(min(cap, max(8, -(-n // (4 * num_threads())))))

    def _kernel(self, op, parallel, conj):
        serial, par = {MATVEC: (K.matvec, K.matvec_par), MATMAT: (K.matmat, K.matmat_par),
                       RMATVEC: (K.rmatvec, K.rmatvec_par), RMATMAT: (K.rmatmat, K.rmatmat_par)}[op]
        kernel = par if parallel else serial
        if op == RMATVEC:
            return kernel, (self.data, self._stripe(1)), ()
        if op == RMATMAT:
            return kernel, (self.data, self._stripe(16)), ()
        return kernel, (self.data,), ()

    def arrays(self):
        return {"data": self.data}

    def to_csr(self):
        return merge_explicit_zeros(sp.csr_array(self.data), self.explicit_zeros)


def from_csr(A) -> Dense:
    """Dense from any SciPy sparse matrix."""
    A = as_csr(A)
    B, zeros = split_explicit_zeros(A)
    data = np.ascontiguousarray(B.toarray())
    return Dense(A.shape, data, zeros, A.nnz, {})


def estimate_nbytes(profile) -> int:
    m, n = profile.shape
    itemsize = np.dtype(profile.dtype).itemsize
    return int(m * n * itemsize + profile.n_explicit_zeros * (16 + itemsize))


def configurations(profile) -> list[dict]:
    """``[{}]`` when the array is at most ``MAX_BYTES_VS_CSR`` times CSR's bytes
    and at most ``MAX_SLOTS`` slots, else ``[]``."""
    m, n = profile.shape
    csr_bytes = _csr.estimate_nbytes(profile, index_dtype="int32", values="full")
    if m * n <= MAX_SLOTS and estimate_nbytes(profile) <= MAX_BYTES_VS_CSR * csr_bytes:
        return [{}]
    return []


def space(trial, profile) -> dict:
    return {}
