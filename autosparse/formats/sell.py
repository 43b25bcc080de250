"""SELL-C-σ: sliced ELLPACK with chunks of C rows and sorting windows of σ rows.

Rows are sorted by length (descending, stable) within windows of ``sigma``
consecutive rows; the sorted rows are cut into chunks of ``C`` rows, and each
chunk is stored column-major with its own width (its longest row).  Sorting
puts rows of similar length into the same chunk, so padding stays small,
while the window keeps the reordering local (``x`` and ``out`` accesses stay
near their original order).  The row permutation is kept so results land in
original order.  See ``kernels/sell.py`` for the layout and kernels.

Parameters
----------
C : 4 | 8 | 16 | 32
    Chunk height (rows per chunk = vector lanes).  A compile-time constant of
    the kernels, hence the fixed grid (``_grids.SELL_C``).
sigma : int >= 1
    Sorting window in rows: 1 (no sorting, no permutation stored) or a
    multiple of ``C``.  The search offers ``_grids.SELL_SIGMA``.
index_dtype : "int16" | "int32" | "int64"
    Width of the column indices.
values : "full" | "table"
    ``"table"`` stores a uint8/uint16 code per slot into a table of the
    distinct values plus 0 (the padding's code is 0).

Explicit zeros of the input stay in their slots (they are entries: ``0 * inf``
gives NaN as in SciPy); their positions are kept in ``explicit_zeros`` so
``to_csr`` tells them from padding.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, check_count, index_dtype_for, unsigned
from ..kernels import sell as K
from ..kernels._runtime import balanced_bounds
from ..kernels._simd import prefetch_ahead
from . import csr as _csr
from ._base import MATVEC, Format
from ._grids import MAX_TABLE, SELL_C, SELL_SIGMA
from .ell import MAX_BYTES_VS_CSR, csr_bytes, explicit_zero_bytes, slotted

NAME = "sell"


class SELL(Format):
    name = NAME
    padded = True

    def __init__(self, shape, C, cptr, cols, data, table, perm, explicit_zeros, nnz, params):
        dtype = data.dtype if table is None else table.dtype
        super().__init__(shape, dtype, nnz, params)
        self.C = int(C)
        self.cptr, self.cols, self.data, self.table, self.perm = cptr, cols, data, table, perm
        self.explicit_zeros = explicit_zeros
        self._args = (unsigned(cptr), unsigned(cols), data, table, None if perm is None else unsigned(perm))
        self.bounds = balanced_bounds(cptr, row_cost=2.0 * self.C)

    @property
    def slots(self) -> int:
        return int(self.cols.size)

    def _kernel(self, op, parallel, conj):
        serial, par = K.KERNELS[op]
        tail = (prefetch_ahead(self.data, self.cols),) if op == MATVEC else ()     # A x prefetches
        if parallel:
            return par, (self.C, self.bounds) + self._args + tail, (0,)
        args = (self.C, 0, self.cptr.size - 1) + self._args + tail
        return serial, args + ((True,) if op in K.TRANSPOSED else ()), (0,)

    def work(self, op, k=1):
        return self.slots * k

    def arrays(self):
        return {"cptr": self.cptr, "cols": self.cols, "data": self.data, "table": self.table, "perm": self.perm}

    def to_csr(self):
        m, n = self.shape
        C = self.C
        nch = self.cptr.size - 1
        widths = np.diff(self.cptr.astype(np.int64)) // C
        chunk = np.repeat(np.arange(nch, dtype=np.int64), widths * C)
        off = np.arange(self.slots, dtype=np.int64) - self.cptr[chunk].astype(np.int64)
        lane = chunk * C + off % C
        vals = self.data if self.table is None else self.table[self.data]
        keep = vals != 0                                  # padding = stored zeros ...
        keep[self.explicit_zeros[0]] = True               # ... other than the input's zeros
        keep &= lane < m
        lane, j = lane[keep], (off // C)[keep]
        rows = lane if self.perm is None else self.perm[lane].astype(np.int64)
        order = np.lexsort((j, rows))
        rows = rows[order]
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
        idx = index_dtype_for(max(n, rows.size))
        return sp.csr_array((vals[keep][order], self.cols[keep][order].astype(idx), indptr.astype(idx)),
                            shape=(m, n))


def _check_params(C, sigma):
    C = check_count(C, "C")
    if C not in SELL_C:
        raise ValueError(f"SELL chunk height C={C} is not supported; accepted: {', '.join(map(str, SELL_C))}")
    sigma = check_count(sigma, "sigma")
    if sigma < 1 or (sigma != 1 and sigma % C):
        raise ValueError(f"SELL sorting window sigma={sigma} must be 1 (no sorting) or a positive multiple "
                         f"of C={C}")
    return C, sigma


def sort_rows(lengths, sigma):
    """Permutation sorting rows by length, descending and stable, within windows of sigma rows."""
    m = lengths.size
    if sigma == 1 or m <= 1:
        return None
    top = int(lengths.max()) + 1
    key = (np.arange(m, dtype=np.int64) // sigma) * top + (top - 1 - lengths)
    return np.argsort(key, kind="stable")


def from_csr(A, C=8, sigma=1, index_dtype=None, values="full") -> SELL:
    """SELL-C-σ of any SciPy sparse matrix."""
    A = as_csr(A)
    C, sigma = _check_params(C, sigma)
    if values not in ("full", "table"):
        raise ValueError(f"values must be 'full' or 'table', got {values!r}")
    m, n = A.shape
    idx = index_dtype_for(max(n - 1, 0), index_dtype, what="column indices")
    lengths = np.diff(A.indptr).astype(np.int64)
    perm = sort_rows(lengths, sigma)
    sorted_lengths = lengths if perm is None else lengths[perm]
    nch = -(-m // C)
    padded = np.zeros(nch * C, dtype=np.int64)
    padded[:m] = sorted_lengths
    widths = padded.reshape(nch, C).max(axis=1) if nch else np.zeros(0, np.int64)
    cptr = np.zeros(nch + 1, dtype=np.int64)
    np.cumsum(widths * C, out=cptr[1:])
    slots = int(cptr[-1])

    table = None
    source = A.data
    if values == "table":
        source, table = _csr._encode(A.data, "table", include_zero=True)     # code 0 is the table's 0
    cols, data, zeros = slotted(A, source, perm, C, cptr, idx)      # explicit zeros stay in their slots
    ptr = index_dtype_for(slots)
    permd = None if perm is None else perm.astype(index_dtype_for(max(m - 1, 0)))
    params = {"C": C, "sigma": sigma, "index_dtype": idx.name, "values": values}
    return SELL(A.shape, C, cptr.astype(ptr), cols, data, table, permd, (zeros,), A.nnz, params)


# -- estimates ----------------------------------------------------------------------

def _lengths_desc(profile):
    counts = profile.row_length_counts
    if not len(counts):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(counts, dtype=np.int64).reshape(-1, 2)[::-1]
    return arr[:, 0], arr[:, 1]


def sorted_slots(profile, C) -> int:
    """Exact slots of SELL-C with all rows sorted (sigma >= m): from the row-length counts."""
    m = profile.shape[0]
    lengths, counts = _lengths_desc(profile)
    if lengths.size == 0:
        return 0
    # chunk k starts at sorted position k*C; its width is the length at that position
    ends = np.cumsum(counts)                        # sorted positions < ends[i] have length lengths[i]
    starts = np.arange(-(-m // C), dtype=np.int64) * C
    return int(C * lengths[np.searchsorted(ends, starts, side="right")].sum())


def fill(profile, C, sigma) -> float:
    """nnz / slots of SELL-C-σ: the profile's estimate, or one derived from it."""
    nnz, m = profile.nnz, profile.shape[0]
    if nnz == 0 or m == 0:
        return 1.0
    known = getattr(profile, "sell_fill", None) or {}
    if (C, sigma) in known:
        return float(known[(C, sigma)])
    full_sort = nnz / max(sorted_slots(profile, C), 1)
    if sigma >= m:
        return full_sort
    # interpolate in log(sigma) between the nearest known windows; the full sort
    # bounds it above, ELL (no sorting, one width) below
    points = sorted((s, f) for (c, s), f in known.items() if c == C)
    if not any(s <= sigma for s, _ in points):
        points.insert(0, (1, float(getattr(profile, "ell_fill", full_sort))))
    points.append((max(m, sigma + 1), full_sort))
    lo = max((p for p in points if p[0] <= sigma), key=lambda p: p[0])
    hi = min((p for p in points if p[0] > sigma), key=lambda p: p[0])
    t = (np.log(sigma) - np.log(lo[0])) / (np.log(hi[0]) - np.log(lo[0]))
    return float(lo[1] + t * (hi[1] - lo[1]))


def estimate_nbytes(profile, C=8, sigma=1, index_dtype="int32", values="full") -> int:
    m, _ = profile.shape
    nch = -(-m // C)
    slots = int(round(profile.nnz / fill(profile, C, sigma))) if profile.nnz else 0
    slots = max(slots, profile.nnz)
    slots = -(-slots // C) * C
    if values == "full":
        vb, tb = np.dtype(profile.dtype).itemsize, 0
    else:
        distinct = profile.n_distinct_values + 1          # + the padding's 0
        vb, tb = (1 if distinct <= 256 else 2), distinct * np.dtype(profile.dtype).itemsize
    ptr = index_dtype_for(slots).itemsize
    perm = 0 if sigma == 1 or m <= 1 else m * index_dtype_for(max(m - 1, 0)).itemsize
    return int(slots * (np.dtype(index_dtype).itemsize + vb) + (nch + 1) * ptr + perm + tb
               + explicit_zero_bytes(profile))


def _sigmas(profile, C):
    """Grid windows that give distinct layouts (all windows >= m sort the same way)."""
    m = profile.shape[0]
    out = []
    for s in SELL_SIGMA:
        if s != 1 and s % C:
            continue
        if s > 1 and any(p >= m for p in out if p > 1):
            break
        out.append(s)
    return out


def configurations(profile) -> list[dict]:
    limit = MAX_BYTES_VS_CSR * csr_bytes(profile)
    out = []
    for C in SELL_C:
        for sigma in _sigmas(profile, C):
            for d in _csr.index_dtypes(profile, profile.shape[1]):
                for v in _csr.values_options(profile):
                    if v == "table" and profile.n_distinct_values + 1 > MAX_TABLE:
                        continue
                    if estimate_nbytes(profile, C, sigma, d, v) <= limit:
                        out.append({"C": C, "sigma": sigma, "index_dtype": d, "values": v})
    return out


def space(trial, profile) -> dict:
    configs = configurations(profile)
    if not configs:
        configs = [{"C": 8, "sigma": SELL_SIGMA[-1], "index_dtype": "int32" if profile.shape[1] <= 2**31 else "int64",
                    "values": "full"}]

    def pick(key, name, pool):
        choices = sorted({c[key] for c in configs})
        value = trial.suggest_categorical(name, choices)
        return [c for c in pool if c[key] == value] or pool

    pool = pick("C", "sell_C", configs)
    pool = pick("sigma", "sell_sigma", pool)
    pool = pick("index_dtype", "sell_index_dtype", pool)
    pool = pick("values", "sell_values", pool)
    return dict(pool[0])
