"""HYB: an ELL part of ``width`` slots per row plus a remainder for longer rows.

The ELL part (column-major, padded, see ``formats/ell.py``) holds the first
``width`` entries of every row; entries beyond it go to the remainder, kept
sorted by row so one fused kernel per operation does a row block's ELL slots
and its rows' remainder entries in one pass, and parallel chunks own
disjoint rows (``kernels/ell.py``).

The remainder is stored compressed by row - ``rrows`` (the rows that
overflow), ``rptr``, ``rcols``, ``rdata`` - rather than as COO: 4 bytes less
per entry (no per-entry row index), and each overflowing row is a plain
counted dot product whose reduction vectorises.  On skewed matrices
(power-law graphs: half the entries in a few thousand rows) the remainder is
most of the matrix, so this matters.

Parameters
----------
width : int >= 0 or None
    Slots per row in the ELL part, capped at the longest row.  ``None``: the
    width minimising the stored bytes, computed exactly from the row-length
    counts (the ELL part costs a slot per row, the remainder an entry per
    overflowing entry plus a row id and pointer per overflowing row) - the
    byte-count analogue of cuSPARSE's/CUSP's HYB split.
index_dtype : "int16" | "int32" | "int64"
    Width of the column indices (ELL part and remainder).
"""

from __future__ import annotations

import numpy as np

from .._checks import as_csr, check_count, index_dtype_for
from ..kernels import hyb as KH
from . import csr as _csr
from .ell import ELL, MAX_BYTES_VS_CSR, _ell_part, csr_bytes, explicit_zero_bytes

NAME = "hyb"


class HYB(ELL):
    name = NAME


def _length_table(lengths_counts):
    """(lengths ascending, counts) as int64 arrays."""
    arr = np.asarray(lengths_counts, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def width_bytes(lengths, counts, m, widths, slot, row_bytes, ptr_bytes):
    """Bytes of HYB for each candidate width (exact from row-length counts)."""
    widths = np.asarray(widths, dtype=np.int64)
    over = np.maximum(lengths[None, :] - widths[:, None], 0)            # (widths, distinct lengths)
    remainder = (over * counts[None, :]).sum(axis=1)
    over_rows = ((lengths[None, :] > widths[:, None]) * counts[None, :]).sum(axis=1)
    return m * widths * slot + remainder * slot + over_rows * row_bytes + (over_rows + 1) * ptr_bytes


def best_width(lengths, counts, m, slot, row_bytes, ptr_bytes) -> int:
    """Byte-minimising width; the optimum lies at 0 or a row length (bytes grow between them).

    Ties go to the widest: more of the matrix in the vectorised ELL part.
    """
    if lengths.size == 0:
        return 0
    cand = np.unique(np.concatenate([[0], lengths]))
    cost = width_bytes(lengths, counts, m, cand, slot, row_bytes, ptr_bytes)
    best = np.flatnonzero(cost == cost.min())
    return int(cand[best[-1]])


def cusp_width(lengths, counts, m, relative_speed=3.0, breakeven=4096) -> int:
    """CUSP's HYB split: the first width fewer than m/3 (or 4096) rows exceed."""
    if lengths.size == 0:
        return 0
    cand = np.unique(np.concatenate([[0], lengths]))       # rows-longer-than-w only drops at lengths
    longer = counts.sum() - np.concatenate([[0], np.cumsum(counts)])[np.searchsorted(lengths, cand, side="right")]
    stop = np.flatnonzero((relative_speed * longer < m) | (longer < breakeven))
    return int(cand[stop[0]]) if stop.size else int(lengths[-1])


def _sizes(m, nnz, index_dtype, dtype):
    slot = np.dtype(index_dtype).itemsize + np.dtype(dtype).itemsize
    return slot, index_dtype_for(max(m - 1, 0)).itemsize, index_dtype_for(nnz).itemsize


def from_csr(A, width=None, index_dtype=None) -> HYB:
    """HYB of any SciPy sparse matrix."""
    A = as_csr(A)
    if width is not None:
        width = check_count(width, "width")
    m, n = A.shape
    idx = index_dtype_for(max(n - 1, 0), index_dtype, what="column indices")
    lengths = np.diff(A.indptr).astype(np.int64)
    longest = int(lengths.max()) if m else 0
    if width is None:
        ulen, ucount = np.unique(lengths, return_counts=True)
        width = best_width(ulen, ucount, m, *_sizes(m, A.nnz, idx, A.dtype))
    width = min(width, longest)
    cols, data, ell_zeros = _ell_part(A, width, idx)
    # remainder: entries past the width, in CSR order (so sorted by row)
    keep = KH.remainder_mask(A.indptr, width)
    over = lengths > width
    rrows = np.flatnonzero(over).astype(index_dtype_for(max(m - 1, 0)))
    extra = lengths[over] - width
    rptr = np.zeros(rrows.size + 1, dtype=index_dtype_for(int(extra.sum())))
    np.cumsum(extra, out=rptr[1:])
    rdata = A.data[keep]
    zeros = np.concatenate([ell_zeros, m * width + np.flatnonzero(rdata == 0)])
    remainder = (rrows, rptr, A.indices[keep].astype(idx), rdata)
    return HYB(A.shape, width, cols, data, remainder, (zeros,), A.nnz, {"width": width, "index_dtype": idx.name})


# -- estimates -------------------------------------------------------------------------

def effective_width(profile, width, index_dtype) -> int:
    m = profile.shape[0]
    lengths, counts = _length_table(profile.row_length_counts)
    longest = int(lengths[-1]) if lengths.size else 0
    if width is None:
        width = best_width(lengths, counts, m, *_sizes(m, profile.nnz, index_dtype, profile.dtype))
    return min(int(width), longest)


def estimate_nbytes(profile, width=None, index_dtype="int32") -> int:
    m = profile.shape[0]
    lengths, counts = _length_table(profile.row_length_counts)
    w = effective_width(profile, width, index_dtype)
    slot, row_bytes, ptr_bytes = _sizes(m, profile.nnz, index_dtype, profile.dtype)
    if lengths.size == 0:
        return int(ptr_bytes)
    return int(width_bytes(lengths, counts, m, [w], slot, row_bytes, ptr_bytes)[0]) + explicit_zero_bytes(profile)


def candidate_widths(profile, index_dtype="int32") -> list[int]:
    """Byte-optimal width first, then CUSP's split, the mean row length and the
    width holding 90% of the rows whole (fewer remainder rows: fewer
    mispredicted row ends, which bytes do not see)."""
    m = profile.shape[0]
    lengths, counts = _length_table(profile.row_length_counts)
    if lengths.size == 0:
        return [0]
    longest = int(lengths[-1])
    p90 = int(lengths[np.searchsorted(np.cumsum(counts), 0.9 * counts.sum())])
    out = [effective_width(profile, None, index_dtype), cusp_width(lengths, counts, m),
           min(int(round(profile.nnz / m)), longest), p90]
    return list(dict.fromkeys(out))


def configurations(profile) -> list[dict]:
    limit = MAX_BYTES_VS_CSR * csr_bytes(profile)
    return [{"width": w, "index_dtype": d}
            for d in _csr.index_dtypes(profile, profile.shape[1])
            for w in candidate_widths(profile, d)
            if estimate_nbytes(profile, w, d) <= limit]


def space(trial, profile) -> dict:
    configs = configurations(profile) or [{"width": None, "index_dtype": "int32" if profile.shape[1] <= 2**31
                                           else "int64"}]
    widths = sorted({c["width"] for c in configs}, key=lambda w: -1 if w is None else w)
    dtypes = sorted({c["index_dtype"] for c in configs})
    w = trial.suggest_categorical("hyb_width", widths)
    d = trial.suggest_categorical("hyb_index_dtype", dtypes)
    if {"width": w, "index_dtype": d} not in configs:
        d = next(c["index_dtype"] for c in configs if c["width"] == w)
    return {"width": w, "index_dtype": d}
