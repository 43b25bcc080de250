"""DBH: dense-block hybrid - dense tile×tile tiles plus a CSR remainder.

Parameters
----------
tile : int in ``_grids.DBH_TILES`` (4, 8, 16)
    Edge of the aligned square tiles.
threshold : float in (0, 1]
    A full tile (one that does not stick out of the matrix) whose fill
    (entries / tile²) is at least ``threshold`` is stored dense; every other
    entry goes to the CSR remainder.  The search uses ``_grids.DBH_THRESHOLDS``.
index_dtype : "int16" | "int32" | "int64"
    Width of the tile column and remainder column indices (both must fit
    column indices up to n - 1).  Pointer arrays are int32 when their counts fit.

Storage: ``tptr`` (tile-row pointers), ``tidx`` (tile columns, sorted per tile
row), ``tdata`` (ntiles, tile, tile), each tile column-major (``tdata[q, cc, rr]``
is the entry at row rr, column cc of tile q: the matvec then vectorises
across rows in exact arithmetic); ``rptr``, ``ridx``, ``rdata`` (CSR of
the remainder).  One fused kernel per product does a tile row's tiles and
then the remainder of its rows.  A padded format (see ``_base``): zeros in
tiles are padding except the input's explicit zeros there, whose flat
positions in ``tdata`` are kept in ``explicit_zeros`` (explicit zeros in the
remainder are ordinary CSR entries).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for, unsigned
from ..kernels import denseblock as K
from ..kernels._runtime import balanced_bounds
from ..kernels.bsr import value_words
from ._base import MATMAT, MATVEC, RMATMAT, RMATVEC, Format, ceil_div
from ._grids import DBH_THRESHOLDS, DBH_TILES
from . import csr as _csr

NAME = "dbh"
MIN_COVERED = 0.2          # below this fraction of nnz in dense tiles, DBH is just CSR

_KERNELS = {MATVEC: (K.matvec, K.matvec_par), MATMAT: (K.matmat, K.matmat_par),
            RMATVEC: (K.rmatvec, K.rmatvec_par), RMATMAT: (K.rmatmat, K.rmatmat_par)}


class DBH(Format):
    name = NAME
    padded = True

    def __init__(self, shape, tile, tptr, tidx, tdata, rptr, ridx, rdata, explicit_zeros, nnz, params):
        super().__init__(shape, tdata.dtype, nnz, params)
        self.tile = int(tile)
        self.tptr, self.tidx, self.tdata = tptr, tidx, tdata
        self.rptr, self.ridx, self.rdata = rptr, ridx, rdata
        self.explicit_zeros = explicit_zeros
        self.ntiles = int(tidx.size)
        self._u = (unsigned(tptr), unsigned(tidx), tdata.reshape(-1), unsigned(rptr), unsigned(ridx), rdata)
        m, T = self.shape[0], self.tile
        ends = np.minimum(np.arange(tptr.size, dtype=np.int64) * T, m)
        weight = tptr.astype(np.int64) * (T * T) + rptr[ends].astype(np.int64)
        self.bounds = balanced_bounds(weight, row_cost=2.0 * T)
        self._cols = None

    def work(self, op, k=1):
        return (self.ntiles * self.tile * self.tile + int(self.ridx.size)) * k

    def _columns(self):
        if self._cols is None:
            tp, ti, _, rp, ri, _ = self._u
            self._cols = K.chunk_columns(self.tile, self.shape[0], self.shape[1], self.bounds, tp, ti, rp, ri)
        return self._cols

    def _kernel(self, op, parallel, conj):
        serial, par = _KERNELS[op]
        head = (self.tile, self.shape[0])
        tail = self._u + (None,)
        if not parallel:
            return serial, head + tail, ()
        if op in (RMATVEC, RMATMAT):
            return par, head + (self.bounds,) + self._columns() + tail, ()
        return par, head + (self.bounds,) + tail, ()

    def arrays(self):
        return {"tptr": self.tptr, "tidx": self.tidx, "tdata": self.tdata,
                "rptr": self.rptr, "ridx": self.ridx, "rdata": self.rdata}

    def to_csr(self):
        m, n = self.shape
        T = self.tile
        trow = np.repeat(np.arange(self.tptr.size - 1, dtype=np.int64), np.diff(self.tptr))
        rows = (trow * T)[:, None, None] + np.arange(T)[None, None, :]        # tiles are column-major
        cols = (self.tidx.astype(np.int64) * T)[:, None, None] + np.arange(T)[None, :, None]
        rows, cols = (a.reshape(-1) for a in np.broadcast_arrays(rows, cols))
        flat = self.tdata.reshape(-1)
        keep = flat != 0                           # stored zeros are padding ...
        keep[self.explicit_zeros[0]] = True        # ... but for the input's explicit zeros
        rrow = np.repeat(np.arange(m, dtype=np.int64), np.diff(self.rptr))
        coo = sp.coo_array((np.concatenate([flat[keep], self.rdata]),
                            (np.concatenate([rows[keep], rrow]),
                             np.concatenate([cols[keep], self.ridx.astype(np.int64)]))), shape=(m, n))
        return as_csr(coo)


def _check_tile(tile):
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral):
        raise TypeError(f"DBH tile must be an integer in {DBH_TILES}, got {tile!r}")
    if tile not in DBH_TILES:
        raise ValueError(f"DBH tile={tile} is not accepted; tile must be one of {DBH_TILES}")
    return int(tile)


def _check_threshold(threshold):
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"DBH threshold must be a float in (0, 1], got {threshold!r}")
    t = float(threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"DBH threshold={threshold} is not accepted; it must be a fill fraction in (0, 1]")
    return t


def from_csr(A, tile=8, threshold=0.5, index_dtype=None) -> DBH:
    """Dense tiles of fill >= threshold plus a CSR remainder, from any SciPy sparse matrix."""
    A = as_csr(A)
    T, thr = _check_tile(tile), _check_threshold(threshold)
    m, n = A.shape
    idx = index_dtype_for(max(n - 1, 0), index_dtype, what="column indices")
    need = max(1, math.ceil(thr * T * T - 1e-9))
    mt, ntc, sh = ceil_div(m, T), n // T, T.bit_length() - 1
    tiles = K.count_tiles(A.indptr, A.indices, m, sh, ntc, need)
    tptr = np.zeros(mt + 1, np.int64)
    np.cumsum(tiles, out=tptr[1:])
    ntiles = int(tptr[-1])
    tidx = np.empty(ntiles, np.int64)
    tdata = np.zeros((ntiles, T, T), A.dtype)
    nrem_max = A.nnz - ntiles * need
    ridx = np.empty(nrem_max, A.indices.dtype)
    rdata = np.empty(nrem_max, A.dtype)
    rptr = np.empty(m + 1, np.int64)
    zpos = np.empty(int(np.count_nonzero(A.data == 0)), np.int64)
    words, zmask = value_words(A.data)
    nz = K.place_tiles(A.indptr, A.indices, words, zmask, m, sh, ntc, need, tptr, tidx,
                       value_words(tdata.reshape(-1))[0], rptr, ridx, value_words(rdata)[0], zpos)
    nrem = int(rptr[-1])
    ridx, rdata = ridx[:nrem].astype(idx), (rdata if nrem == rdata.size else rdata[:nrem].copy())
    zpos = zpos[:nz].astype(np.int32 if tdata.size <= np.iinfo(np.int32).max else np.int64)
    params = {"tile": T, "threshold": thr, "index_dtype": idx.name}
    return DBH(A.shape, T, tptr.astype(index_dtype_for(ntiles)), tidx.astype(idx), tdata,
               rptr.astype(index_dtype_for(nrem)), ridx, rdata, (zpos,), A.nnz, params)


def estimate_nbytes(profile, tile=8, threshold=0.5, index_dtype="int32") -> int:
    m, _ = profile.shape
    T = int(tile)
    dt = profile.dense_tiles[(T, threshold)]
    ntiles = int(round(dt.n_tiles))
    covered = int(round(dt.covered_fraction * profile.nnz))
    nrem = max(profile.nnz - covered, 0)
    vs = np.dtype(profile.dtype).itemsize
    ix = np.dtype(index_dtype).itemsize
    zeros = round(profile.n_explicit_zeros * dt.covered_fraction)      # those inside dense tiles
    zeros *= 4 if ntiles * T * T <= np.iinfo(np.int32).max else 8
    return int(ntiles * (T * T * vs + ix) + (ceil_div(m, T) + 1) * index_dtype_for(ntiles).itemsize
               + nrem * (ix + vs) + (m + 1) * index_dtype_for(nrem).itemsize + zeros)


def tilings(profile) -> list[tuple[int, float]]:
    """(tile, threshold) grid settings whose dense tiles hold >= 20% of nnz."""
    return [(T, thr) for T in DBH_TILES for thr in DBH_THRESHOLDS
            if profile.dense_tiles[(T, thr)].covered_fraction >= MIN_COVERED]


def configurations(profile) -> list[dict]:
    return [{"tile": T, "threshold": thr, "index_dtype": d}
            for T, thr in tilings(profile) for d in _csr.index_dtypes(profile, profile.shape[1])]


def trial_params(params) -> dict:
    """``params`` under the names ``space`` suggests them by."""
    return {"dbh_tiling": f"{params['tile']}@{params['threshold']}", "dbh_index_dtype": params["index_dtype"]}


def space(trial, profile) -> dict:
    options = tilings(profile) or [(T, thr) for T in DBH_TILES for thr in DBH_THRESHOLDS]
    choice = trial.suggest_categorical("dbh_tiling", [f"{T}@{thr}" for T, thr in options])
    T, thr = choice.split("@")
    d = trial.suggest_categorical("dbh_index_dtype", _csr.index_dtypes(profile, profile.shape[1]))
    return {"tile": int(T), "threshold": float(thr), "index_dtype": d}
