"""ELL (ELLPACK): every row padded to the longest row's length ``K``.

Storage: ``cols`` and ``data`` of ``K * m`` slots, column-major (slot ``j`` of
row ``i`` at ``j * m + i``) - chosen by measurement over row-major ``(m, K)``,
see ``kernels/ell.py``.  Padding slots hold 0 and the row's last column (a
column whose ``x`` entry is already in cache; column 0 for empty rows), so
the kernels need no branch.  Explicit zeros of the input stay in their
slots (they are entries: ``0 * inf`` must give NaN as in SciPy) and their
positions are kept in ``explicit_zeros`` so ``to_csr`` tells them from padding.

ELL only pays when rows have nearly equal lengths (stencils, FEM meshes):
``configurations`` offers it only when its bytes stay within 2x of CSR's.

Parameters
----------
index_dtype : "int16" | "int32" | "int64"
    Width of the column indices.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for, unsigned
from ..kernels import ell as K
from ..kernels import sell as KS
from ..kernels._runtime import balanced_bounds
from ._base import Format
from . import csr as _csr

NAME = "ell"
MAX_BYTES_VS_CSR = 2.0          # configurations(): offered only within this factor of CSR's bytes


class ELL(Format):
    """ELL part of width ``width`` (column-major) plus an optional compressed remainder.

    The remainder (``rrows``, ``rptr``, ``rcols``, ``rdata``) is empty for ELL
    and holds the entries beyond ``width`` for HYB, which subclasses this.
    ``explicit_zeros`` is a 1-tuple: the positions of the input's explicit
    zeros, ELL slots first (``j * m + i``), then ``m * width + k`` for
    remainder entry ``k``.
    """

    name = NAME
    padded = True

    def __init__(self, shape, width, cols, data, remainder, explicit_zeros, nnz, params):
        super().__init__(shape, data.dtype, nnz, params)
        self.width = int(width)
        self.cols, self.data = cols, data
        self.rrows, self.rptr, self.rcols, self.rdata = remainder
        self.explicit_zeros = explicit_zeros
        self._args = (self.width, unsigned(cols), data, unsigned(self.rrows), unsigned(self.rptr),
                      unsigned(self.rcols), self.rdata)
        self.block = K.BLOCK
        self.bounds, self.qstart = _partition(self.shape[0], self.block, self.width, self.rrows, self.rptr)

    def _kernel(self, op, parallel, conj):
        serial, par = K.KERNELS[op]
        if parallel:
            return par, (self.block, self.bounds, self.qstart) + self._args, (0,)
        nblocks = -(-self.shape[0] // self.block)
        args = (self.block, 0, nblocks, 0) + self._args
        return serial, args + ((True,) if op in K.TRANSPOSED else ()), (0,)

    def work(self, op, k=1):
        return (self.shape[0] * self.width + self.rcols.size) * k

    def arrays(self):
        return {"cols": self.cols, "data": self.data, "rrows": self.rrows, "rptr": self.rptr,
                "rcols": self.rcols, "rdata": self.rdata}

    def to_csr(self):
        m, n = self.shape
        W = self.width
        keep = np.concatenate([self.data != 0, self.rdata != 0])    # padding = stored zeros ...
        keep[self.explicit_zeros[0]] = True                          # ... other than the input's zeros
        ell_keep = keep[:m * W].reshape(W, m).T                      # (m, W): rows' slots in column order
        rows = np.broadcast_to(np.arange(m, dtype=np.int64)[:, None], (m, W))[ell_keep]
        r_keep = keep[m * W:]
        r_rows = np.repeat(self.rrows.astype(np.int64), np.diff(self.rptr.astype(np.int64)))[r_keep]
        all_rows = np.concatenate([rows, r_rows])
        all_cols = np.concatenate([self.cols.reshape(W, m).T[ell_keep].astype(np.int64),
                                   self.rcols[r_keep].astype(np.int64)])
        all_data = np.concatenate([self.data.reshape(W, m).T[ell_keep], self.rdata[r_keep]])
        order = np.argsort(all_rows, kind="stable")                 # ELL slots, then remainder, per row
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(all_rows, minlength=m), out=indptr[1:])
        idx = index_dtype_for(max(n, all_rows.size))
        return sp.csr_array((all_data[order], all_cols[order].astype(idx), indptr.astype(idx)), shape=(m, n))


# -- conversion helpers shared with HYB ------------------------------------------

def _empty_remainder(idx, dtype):
    return (np.empty(0, np.int32), np.zeros(1, np.int32), np.empty(0, idx), np.empty(0, dtype))


def _ell_part(A, width, idx):
    """(cols, data, zero positions) of the first ``width`` entries of each row.

    Column-major and padded (ELL is a single SELL chunk of ``m`` rows, so
    ``fill_slots`` walks it); ``A`` is canonical CSR.  The positions are
    the slots of A's explicit zeros.
    """
    m = A.shape[0]
    if width == 0 or m == 0 or A.nnz == 0:
        return np.zeros(width * m, dtype=idx), np.zeros(width * m, dtype=A.dtype), np.empty(0, np.int64)
    return slotted(A, A.data, None, m, np.array([0, width * m], dtype=np.int64), idx)


def slotted(A, source, perm, C, cptr, idx):
    """(cols, values, explicit-zero slots) of a chunked layout of canonical CSR ``A`` (SELL's
    chunks of C rows, ELL's one chunk of m): values taken from ``source`` (``A.data`` or its
    table codes), padding 0, and the slots of A's explicit zeros, which padding must not be
    mistaken for."""
    slots = int(cptr[-1])
    cols, data = np.empty(slots, dtype=idx), np.empty(slots, dtype=source.dtype)
    KS.fill_slots(A.indptr, A.indices, source, perm, C, cptr, cols, data)
    zeros = np.empty(int(np.count_nonzero(A.data == 0)), dtype=np.int64)
    if zeros.size:
        zeros = zeros[:KS.explicit_zero_slots(A.indptr, A.data, perm, C, cptr, zeros)]
    return cols, data, zeros


def _partition(m, B, W, rrows, rptr, nparts=None):
    """Thread chunks of row blocks, balanced by ELL slots + remainder entries.

    Returns (bounds over blocks, first remainder row of each chunk).
    """
    nb = -(-m // B)
    cost = np.full(nb, B * W, dtype=np.int64)
    if rrows.size:
        cost += np.bincount(rrows.astype(np.int64) // B, weights=np.diff(rptr).astype(np.float64),
                            minlength=nb).astype(np.int64)
    ptr = np.zeros(nb + 1, dtype=np.int64)
    np.cumsum(cost, out=ptr[1:])
    bounds = balanced_bounds(ptr, nparts, row_cost=2.0 * B)
    qstart = np.searchsorted(rrows, np.minimum(bounds[:-1] * B, m)).astype(np.int64)
    return bounds, qstart


def from_csr(A, index_dtype=None) -> ELL:
    """ELL of any SciPy sparse matrix (width = longest row)."""
    A = as_csr(A)
    idx = index_dtype_for(max(A.shape[1] - 1, 0), index_dtype, what="column indices")
    width = int(np.diff(A.indptr).max()) if A.shape[0] and A.nnz else 0
    cols, data, zeros = _ell_part(A, width, idx)
    return ELL(A.shape, width, cols, data, _empty_remainder(idx, A.dtype), (zeros,), A.nnz,
               {"index_dtype": idx.name})


# -- profile-based choices --------------------------------------------------------

def max_row_length(profile) -> int:
    counts = profile.row_length_counts
    return int(counts[-1][0]) if len(counts) else 0


def csr_bytes(profile) -> int:
    """Bytes of the baseline CSR (full values, narrowest standard index width)."""
    return _csr.estimate_nbytes(profile, index_dtype=index_dtype_for(max(profile.shape[1] - 1, 0)).name)


def explicit_zero_bytes(profile) -> int:
    return 8 * int(getattr(profile, "n_explicit_zeros", 0))     # int64 positions


def estimate_nbytes(profile, index_dtype="int32") -> int:
    m, _ = profile.shape
    slot = np.dtype(index_dtype).itemsize + np.dtype(profile.dtype).itemsize
    # + the empty remainder's pointer
    return int(m * max_row_length(profile) * slot + 4 + explicit_zero_bytes(profile))


def configurations(profile) -> list[dict]:
    limit = MAX_BYTES_VS_CSR * csr_bytes(profile)
    return [{"index_dtype": d} for d in _csr.index_dtypes(profile, profile.shape[1])
            if estimate_nbytes(profile, d) <= limit]


def space(trial, profile) -> dict:
    options = [c["index_dtype"] for c in configurations(profile)] or ["int32" if profile.shape[1] <= 2**31 else "int64"]
    return {"index_dtype": trial.suggest_categorical("ell_index_dtype", options)}
