"""BSR: block compressed rows of dense r×c blocks.

Parameters
----------
r, c : int in 1..8
    Block shape (rectangular allowed).  Blocks are aligned at multiples of r
    and c; a matrix whose shape is not a multiple is padded (the last block
    row / column sticks out, the kernels guard those loads and stores).
index_dtype : "int16" | "int32" | "int64"
    Width of the block column indices.  Block-row pointers are int32 when the
    number of blocks fits, else int64.

Storage: ``indptr`` (block-row pointers), ``indices`` (block columns, sorted
within a block row), ``data`` a contiguous (nblocks, r, c) array.  This is a
padded format (see ``_base``): stored zeros are padding, except the input's
explicit zeros, whose flat positions in ``data`` are kept in
``explicit_zeros`` (int32/int64, 4-8 bytes each: FEM matrices such as
pyamg's linear elasticity carry millions of them, and a (row, col, value)
side list would cost 24 bytes each).

Kernels are specialised per block shape (the block written out as scalars,
see ``kernels.bsr``) for the shapes in ``LITERAL_SHAPES``; other shapes share
one generic kernel with runtime r, c loops, to save the compile.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for, unsigned
from ..kernels import bsr as K
from ..kernels._runtime import balanced_bounds
from ._base import MATMAT, MATVEC, RMATMAT, RMATVEC, STREAM, Format, ceil_div
from ._grids import BLOCK_SIZES, BSR_SHAPES
from . import csr as _csr

NAME = "bsr"

# Shapes whose kernels are generated with the block written out (literal r, c):
# the square blocks of FEM / multi-component PDE matrices.  Every other shape
# shares the generic kernel (one compile for all of them): each literal shape
# costs its own compile per (operation, dtype, index width, serial/parallel),
# about 1-3 s serial and 3-8 s parallel, growing with r*c.
LITERAL_SHAPES = frozenset((b, b) for b in BLOCK_SIZES if b > 1)

_KERNELS = {MATVEC: (K.matvec, K.matvec_par), MATMAT: (K.matmat, K.matmat_par),
            RMATVEC: (K.rmatvec, K.rmatvec_par), RMATMAT: (K.rmatmat, K.rmatmat_par)}


class BSR(Format):
    name = NAME
    padded = True
    streams = (MATMAT,)                  # A X: each block row's output rows are written whole

    def __init__(self, shape, r, c, indptr, indices, data, explicit_zeros, nnz, params):
        super().__init__(shape, data.dtype, nnz, params)
        self.r, self.c = int(r), int(c)
        self.indptr, self.indices, self.data = indptr, indices, data
        self.explicit_zeros = explicit_zeros
        self.nblocks = int(indices.size)
        self._ip, self._ix = unsigned(indptr), unsigned(indices)
        self._flat = data.reshape(-1)
        self.bounds = balanced_bounds(indptr, row_cost=2.0 / (self.r * self.c))
        self._cols = None

    def _columns(self):
        if self._cols is None:
            self._cols = K.chunk_columns(self.bounds, self._ip, self._ix, self.c, self.shape[1])
        return self._cols

    def work(self, op, k=1):
        return self.nblocks * self.r * self.c * k

    def _kernel(self, op, parallel, conj, stream=False):
        m, n = self.shape
        serial, par = _KERNELS[op]
        head = (self.r, self.c, m, n)
        tail = (self._ip, self._ix, self._flat, None)
        if op == MATMAT:
            tail = tail + (STREAM if stream else None,)
        literals = (0, 1) if (self.r, self.c) in LITERAL_SHAPES else ()
        if not parallel:
            return serial, head + tail, literals
        if op in (RMATVEC, RMATMAT):
            return par, head + (self.bounds,) + self._columns() + tail, literals
        return par, head + (self.bounds,) + tail, literals

    def arrays(self):
        return {"indptr": self.indptr, "indices": self.indices, "data": self.data}

    def to_csr(self):
        m, n = self.shape
        r, c = self.r, self.c
        brow = np.repeat(np.arange(self.indptr.size - 1, dtype=np.int64), np.diff(self.indptr))
        rows = (brow * r)[:, None, None] + np.arange(r)[None, :, None]
        cols = (self.indices.astype(np.int64) * c)[:, None, None] + np.arange(c)[None, None, :]
        rows, cols = np.broadcast_arrays(rows, cols)
        keep = self._flat != 0                     # stored zeros are padding ...
        keep[self.explicit_zeros[0]] = True        # ... but for the input's explicit zeros
        stored = sp.coo_array((self._flat[keep], (rows.reshape(-1)[keep], cols.reshape(-1)[keep])), shape=(m, n))
        return as_csr(stored)


def _check_block(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"BSR {name} must be an integer in 1..{BLOCK_SIZES[-1]}, got {value!r}")
    if not BLOCK_SIZES[0] <= value <= BLOCK_SIZES[-1]:
        raise ValueError(f"BSR {name}={value} is not accepted; block sizes must be in "
                         f"{BLOCK_SIZES[0]}..{BLOCK_SIZES[-1]}")
    return int(value)


def from_csr(A, r=1, c=1, index_dtype=None) -> BSR:
    """BSR with r×c blocks from any SciPy sparse matrix."""
    A = as_csr(A)
    r, c = _check_block(r, "r"), _check_block(c, "c")
    m, n = A.shape
    mb, nbc = ceil_div(m, r), ceil_div(n, c)
    idx = index_dtype_for(max(nbc - 1, 0), index_dtype, what="block column indices")
    colblk = (np.arange(n, dtype=np.int64) // c).astype(A.indices.dtype)
    nbc1 = max(nbc, 1)
    # as_csr gives canonical CSR: without explicit zeros, block rows convert in parallel
    zeros = int(np.count_nonzero(A.data == 0))
    if zeros:
        counts = K.count_blocks(A.indptr, A.indices, m, r, colblk, nbc1)
    else:
        counts = np.empty(mb, dtype=np.int64)
        K.count_blocks_sorted(A.indptr, A.indices, m, r, colblk, nbc1, counts)
    bptr = np.zeros(mb + 1, dtype=np.int64)
    np.cumsum(counts, out=bptr[1:])
    nblocks = int(bptr[-1])
    bidx = np.empty(nblocks, dtype=np.int64)
    bdata = np.zeros((nblocks, r, c), dtype=A.dtype)
    words, zmask = K.value_words(A.data)
    bwords, _ = K.value_words(bdata.reshape(-1))
    zpos = np.empty(zeros, dtype=np.int64)
    if zeros:
        K.place_blocks(A.indptr, A.indices, words, zmask, m, r, c, colblk, nbc1, bptr, bidx, bwords, zpos)
    else:
        K.place_blocks_sorted(A.indptr, A.indices, words, m, r, c, colblk, nbc1, bptr, bidx, bwords)
    if bdata.size <= np.iinfo(np.int32).max:
        zpos = zpos.astype(np.int32)
    ptr = bptr.astype(index_dtype_for(nblocks))
    bidx = bidx.astype(idx)
    params = {"r": r, "c": c, "index_dtype": idx.name}
    return BSR(A.shape, r, c, ptr, bidx, bdata, (zpos,), A.nnz, params)


def n_blocks(profile, r, c) -> int:
    """Estimated nonempty r×c blocks, from the profile's sampled block fill."""
    if profile.nnz == 0:
        return 0
    fill = profile.block_fill[(r, c)]
    return int(round(profile.nnz / (r * c * fill)))


def estimate_nbytes(profile, r=1, c=1, index_dtype="int32") -> int:
    m, _ = profile.shape
    nb = n_blocks(profile, r, c)
    vs = np.dtype(profile.dtype).itemsize
    ptr = index_dtype_for(nb).itemsize
    zeros = profile.n_explicit_zeros * (4 if nb * r * c <= np.iinfo(np.int32).max else 8)
    return int(nb * (r * c * vs + np.dtype(index_dtype).itemsize) + (ceil_div(m, r) + 1) * ptr + zeros)


def shapes(profile) -> list[tuple[int, int]]:
    """Block shapes that can win: estimated bytes at most 1.5x CSR's (1x1 always qualifies)."""
    limit = 1.5 * _csr.estimate_nbytes(profile, "int32")
    return [(r, c) for r, c in BSR_SHAPES
            if (r, c) == (1, 1) or estimate_nbytes(profile, r, c, "int32") <= limit]


def configurations(profile) -> list[dict]:
    """Every shape that can win but 1x1: that is CSR's layout with a slower
    kernel (the csr format covers it), and it costs a full conversion."""
    n = profile.shape[1]
    return [{"r": r, "c": c, "index_dtype": d}
            for r, c in shapes(profile) if (r, c) != (1, 1)
            for d in _csr.index_dtypes(profile, ceil_div(n, c))]


def trial_params(params) -> dict:
    """``params`` under the names ``space`` suggests them by."""
    return {"bsr_shape": f"{params['r']}x{params['c']}", "bsr_index_dtype": params["index_dtype"]}


def space(trial, profile) -> dict:
    options = shapes(profile)
    shape = trial.suggest_categorical("bsr_shape", [f"{r}x{c}" for r, c in options])
    r, c = (int(v) for v in shape.split("x"))
    min_c = min(c for _, c in options)
    d = trial.suggest_categorical("bsr_index_dtype", _csr.index_dtypes(profile, ceil_div(profile.shape[1], min_c)))
    return {"r": r, "c": c, "index_dtype": d}
