"""Profile: sampled structure statistics of a sparse matrix, and its fingerprint.

``profile(A, *, sample_fraction=0.02, seed=0) -> Profile`` looks at a matrix
once, cheaply, before anything is timed: the tuner reads the estimated fills
and sizes to rule out hopeless layouts, and the plan store files plans under
the profile's ``fingerprint``.  The matrix is never converted to another
format to learn about it.

What is exact and what is sampled
---------------------------------
Exact, from one numba pass over indptr and indices only
(``kernels.profile.exact_chunk``: per entry a diagonal-bitmap mark, a hash
step and, for sampled columns, a count; chunks of rows on the thread team
above PARALLEL_MIN_NNZ): shape, counts, row length statistics and
``row_length_counts``, bandwidths, occupied diagonals and DIA fill, ELL fill,
SELL-C-sigma fill for the whole grid, and the pattern digest.  Column counts
are exact for n <= 2 COL_SAMPLE, else the length statistics come from about
COL_SAMPLE columns spread over the range (count and mean stay exact).

Sampled: block fill for every r x c (r, c in 1..8) and the dense tiles
(OSKI's method), and, from the same sampled windows of rows,
``narrow_fraction``, ``col_scatter``, ``diag_distance`` and the values:
distinct values, non-finite values and explicit zeros.

Block sampling.  Block rows of height r are counted inside windows of H
rows: H = 16 serves r = 1, 2, 4, 8 and the 16x16 tiles, H = 6 serves 3 and 6,
then H = 5 and H = 7.  The rows of a window are sorted runs; merging them
pairwise makes runs of 2, 4, ... rows, which are exactly the aligned block
rows, and one walk over each counts the nonempty blocks for c = 1..8.  Each
window shape draws windows holding about ``max(sample_fraction * nnz / 4,
MIN_SAMPLE_NNZ)`` entries (so together they read a fraction
``sample_fraction`` of the matrix; the floor is there because a sample's
error depends on its size, not on the fraction): the windows are cut into
strata of equal nnz and one is drawn per stratum (a window heavier than a
stratum is always counted); when the sample would be more than half the
matrix every window is counted and the fills are exact.  Fills are ratio
estimates, sum(entries) / (r c sum(blocks)) over the drawn windows, each
weighted by the number of windows of its stratum.  On the test corpus the
worst error over all 64 shapes and several seeds is ~6% (tests/test_profile.py
prints it).  Same matrix, same seed: the same windows, the same profile,
whatever the number of threads.

Field reference (the contract format modules' ``estimate_nbytes`` rely on):

shape, nnz, dtype (value dtype after canonicalisation, e.g. "float64"), density.
rows / cols : LengthStats of row / column lengths (exact: from indptr / column counts).
row_length_counts : tuple of (length, number of rows) pairs, ascending, exact.
    ELL and HYB sizes for any width follow from it exactly.
lower_bandwidth, upper_bandwidth, bandwidth : max(i - j), max(j - i), max |i - j|
    (0 for a matrix without entries; the first two may be negative).
n_diagonals : number of occupied diagonals (j - i values).
dia_fill : nnz / (n_diagonals * m) - DIA stores each occupied diagonal
    row-aligned over all m rows.
block_fill : {(r, c): nnz / (r * c * nonempty r×c blocks)} for r, c in 1..8,
    blocks aligned to multiples of r and c; estimated from a sample of block rows.
dense_tiles : {(tile, threshold): DenseTiles(covered_fraction, n_tiles)} - the
    fraction of nnz in aligned tile×tile tiles whose fill >= threshold, and the
    (estimated) number of such tiles, for the DBH grid.  Tiles at the right and
    bottom edges count as full tile×tile tiles.
ell_fill : nnz / (m * max row length).
sell_fill : {(C, sigma): nnz / padded slots} for the SELL grid, exact.  Rows
    are sorted by length (descending) within windows of sigma consecutive
    rows (sigma = 1: not sorted), then cut into chunks of C consecutive rows;
    a chunk stores C x (its longest row) slots, the last chunk too even when
    it has fewer than C rows.
n_distinct_values, distinct_capped : distinct values (bit patterns: -0.0 and
    0.0 differ, as in value tables) among every k-th stored value, k = nnz //
    max(sample_fraction * nnz, MIN_VALUE_SAMPLE) (all values for matrices up
    to MIN_VALUE_SAMPLE entries), counted up to MAX_TABLE; ``distinct_capped``
    is True when there are more (then ``n_distinct_values`` is MAX_TABLE + 1).
    A sample can miss rare values: a value-table conversion counts exactly.
narrow_fraction : {"int8": f, "int16": f} - fraction of nnz whose offset from
    their row's first column fits the unsigned width (compressed CSR), sampled.
col_scatter : mean |j_k+1 - j_k| between consecutive entries of a row,
    divided by n, sampled (columns are sorted, so it is sum of row spans /
    sum of (length - 1)).  0: contiguous rows; ~1/(L+1) for rows of L
    uniformly random columns (for a measure that is ~1/3 on random columns
    whatever the row length, see ``diag_distance``).
has_nonfinite : any NaN/Inf among the sampled values (a hint for size
    estimates only: kernels never rely on it).
memory : {format key: estimated bytes} for every format configuration; keys
    as ``config_key`` makes them, e.g. "bsr(c=3,index_dtype=int32,r=2)".
    Computed last, from the other fields, by each format module's
    ``configurations`` and ``estimate_nbytes`` (one source of truth).

Further fields (not used by the formats' estimates so far):

n_explicit_zeros : stored entries equal to zero, estimated from the sampled values.  All statistics
    above count stored entries, explicit zeros included; padded formats keep
    the explicit zeros aside.
diag_distance : mean |j - floor(i n / m)| / n over the entries, sampled: how
    far accesses stray from the (scaled) diagonal; 0 diagonal, ~1/3 random.
pattern_digest : exact-pattern digest (see the fingerprint).
sample_fraction, seed : how the sampled fields were drawn.

All fills are 1.0 when nothing would be stored (no entries).  An empty,
0 x 0 or all-empty-rows matrix is legal: nnz 0, rows.empty_fraction 1.0
(0.0 when there are no rows), fills 1.0, no diagonals.

Fingerprint
-----------
``Profile.fingerprint`` (computed from the profile) has three parts:

* ``key``: "s1-" + 128-bit blake2b of a small dict of *quantised structural
  features* (``key_features``).  The plan store looks plans up by it, so it
  must be equal for matrices that want the same plan, and must not contain
  anything that changes from run to run.  It contains:

  - the size class of m and n (half-octave buckets of log2) and whether the
    matrix is square: sizes decide what fits in cache;
  - the mean row length (half-octave bucket) and the irregularity of the
    row lengths (coarse levels of their coefficient of variation and of the
    ELL fill): they decide ELL/SELL versus CSR;
  - the empty-row and empty-column levels (none, <1%, <10%, <50%, more);
  - diagonal structure: the exact number of occupied diagonals when DIA is
    plausible (DIA fill >= 1/4: stencils and banded matrices, where the
    count is the structure), else a coarse level of the DIA fill;
  - locality: a level of ``diag_distance`` (how far accesses stray);
  - blocking: levels of the fill of 2x2, 3x3, 4x4, 6x6 and 8x8 blocks and of
    the dense-tile coverage (8x8 tiles at 1/2): they decide BSR and DBH.

  Levels are coarse on purpose: two instances of one mesh family at the same
  size (two random Delaunay meshes, two power-law graphs from one generator,
  two stencils with perturbed values) land in the same buckets, while a
  stencil, a block FEM matrix, a banded matrix and a power-law graph do
  not.  Values, dtype and the number of distinct values are *not* in the
  key (same pattern, different values: same key); the store keys dtypes and
  the machine separately, and a value-table plan is re-checked when built.
  Nothing timed, no thread count, no addresses and no randomness enter the
  key (the sampled fills are drawn with a fixed seed, and are exact below
  2 MIN_SAMPLE_NNZ entries per window shape).  A bucket boundary can still
  split two near-identical instances; the feature vector is for those.
* ``features``: a tuple of numbers in about [0, 1] (names in
  ``Fingerprint.FEATURES``) for nearest-neighbour search between structures
  (``Fingerprint.distance``, Euclidean): log sizes, row and column length
  shape, band and diagonal measures, fills of DIA, ELL, SELL, a few block
  shapes and dense tiles, narrow offsets.
* ``pattern``: the exact-pattern digest, a 128-bit blake2b of (m, n, nnz)
  and two 64-bit sums, over the rows, of a hash of (row index, length,
  columns), computed in the exact pass (blake2b over a 10M-entry index array
  alone would cost ~5 SciPy matvecs).  Equal patterns give equal digests
  whatever the values, the index dtype or the number of threads; different
  patterns collide with probability ~2**-64.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from ._checks import as_csr, check_count, unsigned
from .formats import _grids as G
from .kernels import profile as K
from .kernels._runtime import num_threads

log = logging.getLogger("autosparse")

__all__ = ["profile", "Profile", "LengthStats", "DenseTiles", "Fingerprint", "config_key",
           "key_features", "feature_vector", "MIN_SAMPLE_NNZ", "PROFILE_VERSION"]

PROFILE_VERSION = 2
KEY_VERSION = "s1"
MIN_SAMPLE_NNZ = 50_000           # each window shape samples at least this many entries
TILE_SHAPES = tuple(sorted(set(G.DBH_TILES)))
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


# ---------------------------------------------------------------------------
# records

class FrozenDict(dict):
    """A read-only dict (hashable, picklable): the mappings inside a Profile."""

    __slots__ = ()

    def _readonly(self, *args, **kwargs):
        raise TypeError("profile fields are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly

    def __hash__(self):
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


@dataclass(frozen=True)
class LengthStats:
    """Summary of the lengths of the rows (or columns) of a matrix.

    Quantiles are lengths L such that at least that fraction of rows is no
    longer than L (the smallest such L).  All zero when there are no rows.
    """

    count: int                 # rows (columns)
    mean: float
    std: float
    min: int
    p10: int
    p25: int
    p50: int
    p75: int
    p90: int
    p99: int
    max: int
    empty_fraction: float      # rows without entries / rows

    @property
    def cv(self) -> float:
        """Coefficient of variation std / mean (0 without entries)."""
        return self.std / self.mean if self.mean > 0 else 0.0


@dataclass(frozen=True)
class DenseTiles:
    covered_fraction: float    # fraction of nnz inside dense tiles
    n_tiles: int               # (estimated) number of dense tiles


@dataclass(frozen=True)
class Fingerprint:
    """Structure key, feature vector and exact-pattern digest (see module doc)."""

    key: str
    features: tuple
    pattern: str

    FEATURES: ClassVar[tuple] = (
        "log_rows", "log_cols", "log_row_mean", "row_cv", "log_row_p90", "log_row_max",
        "empty_rows", "empty_cols", "col_cv", "bandwidth", "diag_distance", "col_scatter",
        "log_diagonals", "dia_fill", "ell_fill", "sell_fill_8_1", "sell_fill_32_512",
        "block_1x2", "block_2x1", "block_2x2", "block_3x3", "block_4x4", "block_6x6", "block_8x8",
        "tiles_4", "tiles_8", "tiles_16", "narrow_int8", "narrow_int16",
    )

    def distance(self, other: "Fingerprint") -> float:
        """Euclidean distance between feature vectors (0: same structure statistics)."""
        if not isinstance(other, Fingerprint):
            raise TypeError(f"distance needs a Fingerprint, got {type(other).__name__}")
        a = np.asarray(self.features, dtype=np.float64)
        b = np.asarray(other.features, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"feature vectors differ in length ({a.size} vs {b.size}): "
                             "fingerprints from different versions")
        return float(np.sqrt(np.sum((a - b) ** 2)))

    def to_dict(self) -> dict:
        return {"key": self.key, "features": list(self.features), "pattern": self.pattern}


@dataclass(frozen=True)
class Profile:
    """Structure statistics of one matrix (see the module docstring for each field)."""

    shape: tuple
    nnz: int
    dtype: str
    density: float
    rows: LengthStats
    cols: LengthStats
    row_length_counts: tuple
    lower_bandwidth: int
    upper_bandwidth: int
    bandwidth: int
    n_diagonals: int
    dia_fill: float
    block_fill: FrozenDict
    dense_tiles: FrozenDict
    ell_fill: float
    sell_fill: FrozenDict
    n_distinct_values: int
    distinct_capped: bool
    narrow_fraction: FrozenDict
    col_scatter: float
    has_nonfinite: bool
    n_explicit_zeros: int
    diag_distance: float
    pattern_digest: str
    sample_fraction: float
    seed: int

    # -- derived (computed on first access, then kept) -------------------------
    @cached_property
    def fingerprint(self) -> Fingerprint:
        return Fingerprint(structure_key(self), feature_vector(self), self.pattern_digest)

    @cached_property
    def memory(self) -> FrozenDict:
        """{format key: estimated bytes} for every format configuration (see the module docstring)."""
        return FrozenDict(_memory(self))

    def summary(self) -> str:
        """A few lines for people (the CLI's ``profile``)."""
        m, n = self.shape
        shapes = [(fill, rc) for rc, fill in self.block_fill.items() if rc != (1, 1)]
        best = max(shapes, default=(1.0, (1, 1)))
        best = (best[1], best[0])
        return "\n".join([
            f"{m} x {n} {self.dtype}, nnz {self.nnz} (density {self.density:.3g})",
            f"rows: mean {self.rows.mean:.2f}, std {self.rows.std:.2f}, max {self.rows.max}, "
            f"empty {self.rows.empty_fraction:.1%}",
            f"cols: mean {self.cols.mean:.2f}, std {self.cols.std:.2f}, max {self.cols.max}, "
            f"empty {self.cols.empty_fraction:.1%}",
            f"bandwidth {self.bandwidth}, diagonals {self.n_diagonals} (DIA fill {self.dia_fill:.3f}), "
            f"ELL fill {self.ell_fill:.3f}",
            f"block fill 2x2 {self.block_fill.get((2, 2), 1.0):.3f}, 3x3 {self.block_fill.get((3, 3), 1.0):.3f}, "
            f"4x4 {self.block_fill.get((4, 4), 1.0):.3f} (best {best[0][0]}x{best[0][1]}: {best[1]:.3f})",
            f"distinct values {'>' if self.distinct_capped else ''}{min(self.n_distinct_values, G.MAX_TABLE)}, "
            f"non-finite {self.has_nonfinite}, explicit zeros {self.n_explicit_zeros}",
            f"key {self.fingerprint.key}",
        ])

    # -- JSON ------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuple keys as "2x3"); the fingerprint is included for readers."""
        out = {"profile_version": PROFILE_VERSION}
        for f in dataclasses.fields(self):
            out[f.name] = _encode(getattr(self, f.name))
        out["memory"] = _encode(self.memory)
        out["fingerprint"] = self.fingerprint.to_dict()
        return out

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d) -> "Profile":
        """Inverse of ``to_dict``; ValueError on anything malformed (stores are not trusted)."""
        if not isinstance(d, dict):
            raise ValueError(f"a profile must be a JSON object, got {type(d).__name__}")
        version = d.get("profile_version")
        if version != PROFILE_VERSION:
            raise ValueError(f"profile version {version!r} is not supported (this is version {PROFILE_VERSION})")
        try:
            kw = {name: dec(d[name]) for name, dec in _DECODERS.items()}
        except KeyError as exc:
            raise ValueError(f"malformed profile: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed profile: {exc}") from None
        return cls(**kw)

    @classmethod
    def from_json(cls, text) -> "Profile":
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a JSON profile: {exc}") from None
        return cls.from_dict(d)


def _key_str(k) -> str:
    return "x".join(repr(v) if isinstance(v, float) else str(v) for v in k)


def _encode(v):
    if isinstance(v, (LengthStats, DenseTiles)):
        return dataclasses.asdict(v)
    if isinstance(v, dict):
        return {(_key_str(k) if isinstance(k, tuple) else k): _encode(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_encode(x) for x in v]
    return v


def _num(s: str):
    return float(s) if any(ch in s for ch in ".eEn") else int(s)


def _tuple_key(s: str) -> tuple:
    return tuple(_num(p) for p in s.split("x"))


def _mapping(value_dec, key_dec=_tuple_key):
    def dec(d):
        if not isinstance(d, dict):
            raise TypeError(f"expected an object, got {type(d).__name__}")
        return FrozenDict({key_dec(k): value_dec(v) for k, v in d.items()})
    return dec


def _record(cls):
    names = [f.name for f in dataclasses.fields(cls)]
    types = {f.name: f.type for f in dataclasses.fields(cls)}

    def dec(d):
        if not isinstance(d, dict):
            raise TypeError(f"expected an object for {cls.__name__}, got {type(d).__name__}")
        return cls(**{n: (int(d[n]) if types[n] == "int" else float(d[n])) for n in names})
    return dec


def _bool(v):
    if not isinstance(v, bool):
        raise TypeError(f"expected true/false, got {v!r}")
    return v


_DECODERS = {
    "shape": lambda v: (int(v[0]), int(v[1])),
    "nnz": int, "dtype": str, "density": float,
    "rows": _record(LengthStats), "cols": _record(LengthStats),
    "row_length_counts": lambda v: tuple((int(a), int(b)) for a, b in v),
    "lower_bandwidth": int, "upper_bandwidth": int, "bandwidth": int, "n_diagonals": int,
    "dia_fill": float,
    "block_fill": _mapping(float),
    "dense_tiles": _mapping(_record(DenseTiles)),
    "ell_fill": float,
    "sell_fill": _mapping(float),
    "n_distinct_values": int, "distinct_capped": _bool,
    "narrow_fraction": _mapping(float, key_dec=str),
    "col_scatter": float, "has_nonfinite": _bool, "n_explicit_zeros": int, "diag_distance": float,
    "pattern_digest": str, "sample_fraction": float, "seed": int,
}


def config_key(name: str, params: dict) -> str:
    """Stable string for a format configuration: ``bsr(c=3,index_dtype=int32,r=2)``."""
    return f"{name}(" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + ")"


# ---------------------------------------------------------------------------
# the profiler

def _check_fraction(f) -> float:
    if isinstance(f, bool) or not isinstance(f, numbers.Real):
        raise TypeError(f"sample_fraction must be a real number in (0, 1], got {type(f).__name__}")
    f = float(f)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"sample_fraction must be in (0, 1], got {f!r}")
    return f


def profile(A, *, sample_fraction: float = 0.02, seed: int = 0) -> Profile:
    """Structure statistics of ``A`` (any SciPy sparse matrix or array) and its fingerprint.

    ``sample_fraction`` (0 < f <= 1) is the fraction of the entries the
    block sampling reads (spread over the four window shapes, each at least
    ``MIN_SAMPLE_NNZ`` entries; see the module docstring); the sampled
    values and column scatter come from the same windows.  ``seed`` picks
    the sampled windows and columns.  Same matrix, same seed: same profile.
    Dense, non-2-D or unsupported-dtype input is a TypeError or ValueError
    naming the problem (``autosparse._checks.as_csr``), and so is a bad
    ``sample_fraction`` or ``seed``.  ``Profile.memory`` is computed on
    first access.
    """
    f = _check_fraction(sample_fraction)
    seed = check_count(seed, "seed")
    return _profile_csr(as_csr(A), f, seed)


PARALLEL_MIN_NNZ = 1 << 20        # below this the exact pass runs on one thread


def _parts(nnz: int) -> int:
    """Chunks (threads) for the exact pass.  Each allocates its own diagonal
    bitmap and waking the team can cost milliseconds on a busy machine: only
    worth it for big matrices."""
    return max(1, num_threads()) if nnz >= PARALLEL_MIN_NNZ else 1


def _length_stats(lengths: np.ndarray, counts: np.ndarray, total: int, mean=None) -> LengthStats:
    """Summary of ``total`` lengths given as distinct ascending ``lengths`` and
    their ``counts`` (which may sum to fewer than ``total``: a sample; then
    ``count`` is ``total`` and ``mean``, when given, replaces the sample's)."""
    seen = int(counts.sum()) if counts.size else 0
    if total == 0 or seen == 0:
        return LengthStats(int(total), float(mean or 0.0), 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0 if total else 0.0)
    L = lengths.astype(np.float64)
    h = counts.astype(np.float64)
    smean = float(h @ L) / seen
    var = max(float(h @ (L * L)) / seen - smean * smean, 0.0)
    cum = np.cumsum(counts)
    qs = [int(lengths[np.searchsorted(cum, max(1, math.ceil(q * seen - 1e-9)))]) for q in QUANTILES]
    empty = int(counts[0]) if lengths[0] == 0 else 0
    return LengthStats(int(total), smean if mean is None else float(mean), math.sqrt(var), int(lengths[0]), *qs,
                       int(lengths[-1]), empty / seen)


# -- the SELL grid, packed for the exact pass --------------------------------

def _make_grid():
    """(grid array, sigma order) for ``kernels.profile.exact_chunk``: block
    rows (the largest sorting window), W0 (the smallest), the C shifts and
    the nesting ratios.  ValueError for a grid the pass cannot walk."""
    Cs, sig = list(G.SELL_C), list(G.SELL_SIGMA)
    big = [s for s in sig if s > 1]
    ok = (Cs and Cs == sorted(Cs) and all(C > 0 and C & (C - 1) == 0 for C in Cs)
          and sig == sorted(set(sig)) and all(b % a == 0 for a, b in zip(big, big[1:]))
          and all(s % C == 0 for s in big for C in Cs) and (not big or big[0] >= 2 * Cs[-1] or big[0] >= Cs[-1]))
    if not ok:
        raise ValueError(f"the profiler needs nested SELL grids (C powers of two, each sigma > 1 "
                         f"dividing the next and a multiple of every C); got C={G.SELL_C}, sigma={G.SELL_SIGMA}")
    W0 = big[0] if big else max(64, Cs[-1])
    B = big[-1] if big else 4096 // W0 * W0
    ratios = [1] + [big[q] // big[q - 1] for q in range(1, len(big))] if big else []
    shifts = [C.bit_length() - 1 for C in Cs]
    grid = np.array([B, W0, len(Cs), len(ratios), int(1 in sig), *shifts, *ratios], np.int64)
    order = ([1] if 1 in sig else []) + big            # rows of the slots output
    return grid, order


_GRID = None


def _grid():
    global _GRID
    if _GRID is None or _GRID[2] != (G.SELL_C, G.SELL_SIGMA):
        _GRID = (*_make_grid(), (G.SELL_C, G.SELL_SIGMA))
    return _GRID[0], _GRID[1]


# -- the column sample ---------------------------------------------------------

COL_SAMPLE = 4096                 # about this many columns have their lengths counted (all up to 2 COL_SAMPLE)


def _col_plan(n: int, seed: int):
    """(k, offset) of the column sample: one column in each bucket of 2**k
    consecutive columns, at a pseudo-random offset (``kernels.profile._sampled``:
    a multiplicative hash of the bucket and ``offset``, drawn from the seed),
    k = floor(log2(n / COL_SAMPLE)); k = 0 (every column) for n <= 2 COL_SAMPLE."""
    if n <= 2 * COL_SAMPLE:
        return (0, 0)
    k = min(31, int(math.floor(math.log2(n / COL_SAMPLE))))
    return (k, int(np.random.default_rng([seed, 0xC01]).integers(0, 1 << 32)))


def _col_stats(ccount, n: int, nnz: int, exhaustive: bool) -> LengthStats:
    """Column LengthStats from the sampled columns' exact lengths (all
    columns when ``exhaustive``: then exact); count and mean are exact."""
    if ccount.size == 0:
        return _length_stats(np.zeros(0, np.int64), np.zeros(0, np.int64), n, mean=nnz / n if n else 0.0)
    L, c = np.unique(ccount, return_counts=True)
    return _length_stats(L.astype(np.int64), c.astype(np.int64), n, mean=None if exhaustive else nnz / n)


# -- the exact pass --------------------------------------------------------------

def _chunk_bounds(indptr, T: int, B: int) -> np.ndarray:
    """Row chunks of about equal nnz, cut at multiples of B rows (the SELL
    windows then never straddle two chunks)."""
    m = indptr.size - 1
    if T == 1 or m < 2 * B:
        return np.array([0, m], np.int64)
    nnz = int(indptr[-1])
    targets = ((np.arange(1, T, dtype=np.int64) * nnz) // T).astype(indptr.dtype)
    rows = np.searchsorted(indptr, targets, side="left").astype(np.int64)
    rows = (rows + B // 2) // B * B
    return np.unique(np.concatenate([[0], np.clip(rows, 0, m), [m]])).astype(np.int64)


def _exact(indptr, indices, m: int, n: int, nnz: int, seed: int) -> dict:
    """The one exact pass over indptr and indices (``kernels.profile.exact_chunk``)."""
    grid, order = _grid()
    nC = len(G.SELL_C)
    plan = _col_plan(n, seed)
    csel = np.array(plan, np.uint64)
    nbuckets = -(-n >> plan[0])
    uptr, uidx = unsigned(indptr), unsigned(indices)
    T = _parts(nnz)
    bounds = _chunk_bounds(indptr, T, int(grid[0]))
    T = bounds.size - 1
    words = (m + n) // 64 + 1
    bm = np.zeros((T, words), np.uint64)
    dig = np.zeros((T, 2), np.uint64)
    slots = np.zeros((T, len(order), nC), np.int64)
    rhist = np.zeros((T, K.LONG_ROW), np.int64)
    nlong = np.zeros(T, np.int64)
    ccount = np.zeros((T, nbuckets), np.int64)
    if T == 1:
        longs = np.empty(nnz // K.LONG_ROW + 1, np.int64)
        K.exact_chunk(uptr, uidx, 0, m, grid, bm[0], dig[0], slots[0], rhist[0], longs, nlong, csel, ccount[0])
        long_parts = [longs[:nlong[0]]]
    else:
        cap = np.diff(indptr[bounds]).astype(np.int64) // K.LONG_ROW + 1
        lofs = np.concatenate([[0], np.cumsum(cap)[:-1]]).astype(np.int64)
        longs = np.empty(int(cap.sum()), np.int64)
        K.exact_parallel(uptr, uidx, bounds, grid, bm, dig, slots, rhist, longs, lofs, nlong, csel, ccount)
        long_parts = [longs[lofs[t]:lofs[t] + nlong[t]] for t in range(T)]
    n_diag, lo_bit, hi_bit = (int(v) for v in K.bitmap_summary(bm))
    # row lengths: the histogram below LONG_ROW, the long rows listed
    hist = rhist.sum(axis=0) if T > 1 else rhist[0]
    lengths = np.flatnonzero(hist)
    counts = hist[lengths]
    lv = np.concatenate(long_parts) if T > 1 else long_parts[0]
    if lv.size:
        u, c = np.unique(lv, return_counts=True)
        lengths, counts = np.concatenate([lengths, u]), np.concatenate([counts, c])
    tot = slots.sum(axis=0) if T > 1 else slots[0]
    fills = {}
    for a, sg in enumerate(order):
        for b, C in enumerate(G.SELL_C):
            v = int(tot[a, b])
            fills[(int(C), int(sg))] = nnz / v if v else 1.0
    sell = FrozenDict({(int(C), int(sg)): fills[(int(C), int(sg))] for sg in G.SELL_SIGMA for C in G.SELL_C})
    # the pattern digest: shape, nnz and the sums of the row and entry hashes
    total = dig.sum(axis=0, dtype=np.uint64) if T > 1 else dig[0]
    h = hashlib.blake2b(digest_size=16, person=b"asp-pattern-v2")
    h.update(np.array([m, n, nnz], dtype="<i8").tobytes())
    h.update(total.astype("<u8").tobytes())
    cc = ccount.sum(axis=0) if T > 1 else ccount[0]
    if plan[0]:
        cc = cc[K.sampled_columns(n, *plan) < n]         # the last bucket may hold no column
    return {
        "n_diagonals": n_diag,
        "lower": m - 1 - lo_bit if n_diag else 0,
        "upper": hi_bit - (m - 1) if n_diag else 0,
        "row_lengths": lengths.astype(np.int64), "row_counts": counts.astype(np.int64),
        "sell_fill": sell, "digest": h.hexdigest(),
        "cols": _col_stats(cc, n, nnz, plan[0] == 0),
    }


# -- block sampling ------------------------------------------------------------------

def _window_plan() -> list:
    """[(H, heights)]: windows of H rows in which block rows of each height are
    counted; heights ascending, each dividing the next (1, 2, 4, 8, 16 share
    one window; 3 and 6 another; 5; 7)."""
    left = set(G.BLOCK_SIZES) | set(TILE_SHAPES)
    plan = []
    while left:
        H = max(left)
        chain = []
        for d in sorted(left):
            if H % d == 0 and (not chain or d % chain[-1] == 0):
                chain.append(d)
        plan.append((H, tuple(chain)))
        left -= set(chain)
    return plan


_PLANS: dict = {}


def _shape_plan():
    """The window plan with each shape's kernel arguments (cached per grid)."""
    key = (G.BLOCK_SIZES, G.DBH_TILES, G.DBH_THRESHOLDS)
    if key not in _PLANS:
        out = []
        for H, sizes in _window_plan():
            nz = len(sizes)
            shifts = np.full(nz, -1, np.int64)
            tmin = np.zeros((nz, len(G.DBH_THRESHOLDS)), np.int64)
            for z, r in enumerate(sizes):
                if r in TILE_SHAPES:
                    if r & (r - 1):
                        raise ValueError(f"dense tile edge {r} is not a power of two")
                    shifts[z] = r.bit_length() - 1
                    tmin[z] = [max(1, math.ceil(th * r * r - 1e-9)) for th in G.DBH_THRESHOLDS]
            out.append((H, sizes, np.array(sizes, np.int64), shifts, tmin))
        _PLANS.clear()
        _PLANS[key] = out
    return _PLANS[key]


_COARSE_ROWS = 64                 # the strata search walks every 64th row pointer


def _picks(indptr, H: int, target: float, rng_key):
    """Windows of H rows to count, the number of windows each stands for,
    and whether that is all of them.

    Stratified by entries: the windows are cut into about target / (mean
    entries per window) strata of equal nnz and one window is drawn
    (uniformly) in each; a window holding more than a stratum's share of
    entries is a stratum of its own, so it is always counted.  With few,
    uneven windows (wide LP matrices) this keeps the heavy ones from being
    missed.  When the sample would be more than half the matrix, every
    window is counted.
    """
    m = indptr.size - 1
    nnz = int(indptr[-1])
    nwin = -(-m // H)
    if 2 * target >= nnz or nwin <= 1:
        return np.arange(nwin, dtype=np.int64), np.ones(nwin, np.int64), True
    s = min(nwin, max(1, math.ceil(nwin * target / nnz)))     # strata: one window each
    # stratum q: the windows starting at or after entry q nnz / s (the first
    # such window starts at row ceil(r / H) H, r the first row starting there)
    targets = (np.arange(1, s, dtype=np.int64) * nnz) // s
    rows = K.cut_rows(indptr, targets, _COARSE_ROWS)
    cuts = np.minimum(-(-rows // H), nwin)
    edges = np.unique(np.concatenate([[0], cuts, [nwin]]))
    sizes = np.diff(edges)
    rng = np.random.default_rng(rng_key)
    picks = edges[:-1] + np.floor(rng.random(sizes.size) * sizes).astype(np.int64)
    return picks, sizes.astype(np.int64), False


def _blocks(indptr, indices, n, nnz, f, seed):
    """(block_fill, dense_tiles, (windows, H, weights, exhaustive) of the first shape)."""
    if nnz == 0:
        return (FrozenDict({(r, c): 1.0 for r, c in G.BSR_SHAPES}),
                FrozenDict({(t, th): DenseTiles(0.0, 0) for t in G.DBH_TILES for th in G.DBH_THRESHOLDS}),
                None)
    block_fill = {}
    tiles = {}
    nq = len(G.DBH_THRESHOLDS)
    plan = _shape_plan()
    # the window shapes share the sample: together they read a fraction f of
    # the entries, each shape at least MIN_SAMPLE_NNZ of them
    target = max(f * nnz / len(plan), MIN_SAMPLE_NNZ)
    first = None
    uptr, uidx = unsigned(indptr), unsigned(indices)
    wide = n > 2**31 - 1
    for H, sizes, sizes_arr, shifts, tmin in plan:
        wins, weights, exact = _picks(indptr, H, target, [seed, H])
        if first is None:
            first = (wins, H, weights, exact)
        nz = len(sizes)
        seen = np.zeros(1, np.int64)
        blocks = np.zeros((nz, 8), np.int64)
        cov = np.zeros((nz, nq), np.int64)
        cnt = np.zeros((nz, nq), np.int64)
        K.block_windows(uptr, uidx, H, wins, weights, sizes_arr, shifts, tmin, wide, seen, blocks, cov, cnt)
        seen = int(seen[0])
        for z, r in enumerate(sizes):
            if r in G.BLOCK_SIZES:
                for c in G.BLOCK_SIZES:
                    b = int(blocks[z, c - 1])
                    block_fill[(r, c)] = 1.0 if r == c == 1 else (seen / (r * c * b) if b else 1.0)
            if r in TILE_SHAPES:
                for q, th in enumerate(G.DBH_THRESHOLDS):
                    frac = float(cov[z, q]) / seen if seen else 0.0
                    tiles[(r, th)] = DenseTiles(min(frac, 1.0), int(cnt[z, q]))
    return FrozenDict(dict(sorted(block_fill.items()))), FrozenDict(dict(sorted(tiles.items()))), first


# -- values -----------------------------------------------------------------------------

_VALUE_MASKS = {
    np.dtype(np.float32): (np.uint32, 1, np.uint32(0x7F800000), np.uint32(0x7FFFFFFF)),
    np.dtype(np.complex64): (np.uint32, 2, np.uint32(0x7F800000), np.uint32(0x7FFFFFFF)),
    np.dtype(np.float64): (np.uint64, 1, np.uint64(0x7FF0000000000000), np.uint64(0x7FFFFFFFFFFFFFFF)),
    np.dtype(np.complex128): (np.uint64, 2, np.uint64(0x7FF0000000000000), np.uint64(0x7FFFFFFFFFFFFFFF)),
}


def _values(indptr, data, sample):
    """(has_nonfinite, estimated explicit zeros, distinct values) over the
    values of the sampled windows ``sample`` = (windows, H, weights, exhaustive)."""
    nnz = data.size
    if nnz == 0:
        return False, 0, 0
    wdt, parts, expmask, absmask = _VALUE_MASKS[data.dtype]
    words = data.view(wdt).reshape(nnz, parts)
    wins, H, weights, _ = sample
    cap = G.MAX_TABLE
    size = int(K.table_size(cap))
    keys = np.zeros((size, 2), np.uint64)
    used = np.zeros(size, np.bool_)
    out = np.zeros(4, np.int64)
    K.value_windows(indptr, words, H, wins, weights, expmask, absmask, cap, keys, used, out)
    return bool(out[1]), int(out[2]), int(out[3])


def _profile_csr(A, f: float, seed: int) -> Profile:
    m, n = A.shape
    nnz = int(A.nnz)
    indptr = A.indptr
    indices = A.indices[:nnz]
    data = A.data[:nnz]

    # -- exact: the one pass over the index arrays ----------------------------------------
    ex = _exact(indptr, indices, m, n, nnz, seed)
    rows = _length_stats(ex["row_lengths"], ex["row_counts"], m)
    n_diag = ex["n_diagonals"]
    lower, upper = ex["lower"], ex["upper"]
    dia_fill = nnz / (n_diag * m) if nnz else 1.0
    ell_fill = nnz / (m * rows.max) if nnz else 1.0

    # -- sampled: block fill, dense tiles; from the same windows the values, offsets, scatter
    block_fill, dense_tiles, sample = _blocks(indptr, indices, n, nnz, f, seed)
    if nnz:
        wins, H, weights, _ = sample
        dist, n8, n16, span, gaps, seen = K.row_sample(unsigned(indptr), unsigned(indices), n, wins, H, weights)
        nonfinite, zeros, n_distinct = _values(unsigned(indptr), data, sample)
    else:
        dist = n8 = n16 = span = gaps = seen = 0
        nonfinite, zeros, n_distinct = False, 0, 0

    return Profile(
        shape=(int(m), int(n)), nnz=nnz, dtype=A.dtype.name,
        density=nnz / (m * n) if m * n else 0.0,
        rows=rows, cols=ex["cols"],
        row_length_counts=tuple(zip(ex["row_lengths"].tolist(), ex["row_counts"].tolist())) if m else (),
        lower_bandwidth=int(lower), upper_bandwidth=int(upper), bandwidth=int(max(lower, upper)),
        n_diagonals=n_diag, dia_fill=float(dia_fill),
        block_fill=block_fill, dense_tiles=dense_tiles,
        ell_fill=float(ell_fill), sell_fill=ex["sell_fill"],
        n_distinct_values=int(min(n_distinct, G.MAX_TABLE + 1)),
        distinct_capped=bool(n_distinct > G.MAX_TABLE),
        narrow_fraction=FrozenDict({"int8": int(n8) / int(seen) if seen else 1.0,
                                    "int16": int(n16) / int(seen) if seen else 1.0}),
        col_scatter=int(span) / int(gaps) / n if gaps else 0.0,
        has_nonfinite=bool(nonfinite), n_explicit_zeros=int(min(zeros, nnz)),
        diag_distance=int(dist) / int(seen) / n if seen else 0.0,
        pattern_digest=ex["digest"],
        sample_fraction=f, seed=seed,
    )


def _memory(p: Profile) -> dict:
    """estimate_nbytes for every configuration of every registered format.

    A format module whose import, ``configurations`` or ``estimate_nbytes``
    fails is logged and skipped: one broken format must not take profiling
    down with it.
    """
    from . import formats
    out = {}
    for name in formats.names():
        try:
            mod = formats.get(name)
            configs = list(mod.configurations(p))
        except Exception:  # noqa: BLE001 - a format module's own failure, logged
            log.warning("profile: format %r skipped, its configurations failed", name, exc_info=True)
            continue
        for params in configs:
            key = config_key(name, params)
            try:
                out[key] = int(mod.estimate_nbytes(p, **params))
            except Exception:  # noqa: BLE001
                log.warning("profile: %s skipped, its estimate_nbytes failed", key, exc_info=True)
    return out


# ---------------------------------------------------------------------------
# fingerprint

def _level(x: float, cuts) -> int:
    """Number of cut points <= x (coarse bucket)."""
    return int(sum(x >= c for c in cuts))


def _octave(x: float, per: int = 2) -> int:
    """Bucket of log2(x) in 1/per-octave steps (x >= 1)."""
    return int(math.floor(per * math.log2(max(x, 1.0)) + 0.5))


_FILL_CUTS = (0.15, 0.35, 0.6, 0.8, 0.95)


def key_features(p: Profile) -> dict:
    """The quantised structural features hashed into the structure key (see the module docstring)."""
    m, n = p.shape
    mean = p.nnz / m if m else 0.0
    feats = {
        "m": _octave(m + 1), "n": _octave(n + 1), "square": m == n,
        "row_mean": _octave(mean + 1),
        "row_cv": _level(p.rows.cv, (0.1, 0.5, 1.5)),
        "ell": _level(p.ell_fill, (0.1, 0.4, 0.8, 0.999)),
        "empty_rows": _level(p.rows.empty_fraction, (1e-12, 0.01, 0.1, 0.5)),
        "empty_cols": _level(p.cols.empty_fraction, (1e-12, 0.01, 0.1, 0.5)),
        "locality": _level(p.diag_distance, (1e-4, 1e-3, 1e-2, 0.05, 0.2)),
        "blocks": [_level(p.block_fill.get((b, b), 1.0), _FILL_CUTS) for b in (2, 3, 4, 6, 8)],
        "tiles": _level(_tiles(p, 8), (0.1, 0.5, 0.9)),
    }
    if p.nnz and p.dia_fill >= 0.25:
        feats["diagonals"] = p.n_diagonals
    else:
        feats["dia_level"] = _level(p.dia_fill, (1e-3, 1e-2, 0.1))
    return feats


def _tiles(p: Profile, tile: int, threshold: float = 0.5) -> float:
    t = p.dense_tiles.get((tile, threshold))
    return t.covered_fraction if t is not None else 0.0


def structure_key(p: Profile) -> str:
    text = json.dumps(key_features(p), sort_keys=True, separators=(",", ":"))
    return f"{KEY_VERSION}-" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def feature_vector(p: Profile) -> tuple:
    """Numeric features in about [0, 1], in the order of ``Fingerprint.FEATURES``."""
    m, n = p.shape
    mean = p.nnz / m if m else 0.0
    big = max(m, n, 1)

    def lg(x, scale):
        return min(math.log2(1.0 + max(x, 0.0)) / scale, 1.5)

    bf = p.block_fill
    v = [
        lg(m, 32), lg(n, 32), lg(mean, 10), p.rows.cv / (1 + p.rows.cv), lg(p.rows.p90, 10), lg(p.rows.max, 20),
        p.rows.empty_fraction, p.cols.empty_fraction, p.cols.cv / (1 + p.cols.cv),
        min(p.bandwidth / big, 1.0), min(3 * p.diag_distance, 1.0), min(math.sqrt(p.col_scatter), 1.0),
        math.log2(1 + p.n_diagonals) / math.log2(2 + m + n), p.dia_fill, p.ell_fill,
        p.sell_fill.get((8, 1), 1.0), p.sell_fill.get((32, 512), 1.0),
        *(bf.get(rc, 1.0) for rc in ((1, 2), (2, 1), (2, 2), (3, 3), (4, 4), (6, 6), (8, 8))),
        _tiles(p, 4), _tiles(p, 8), _tiles(p, 16),
        p.narrow_fraction.get("int8", 1.0), p.narrow_fraction.get("int16", 1.0),
    ]
    return tuple(float(x) for x in v)


# ---------------------------------------------------------------------------
# ``autosparse.profile`` is both this module and the public function: once the
# module is imported, the import system binds the package attribute
# ``autosparse.profile`` to the module, shadowing the function that
# ``autosparse/__init__.py`` defines.  A callable module keeps
# ``autosparse.profile(A)`` working either way.

class _CallableModule(type(dataclasses)):
    def __call__(self, A, **kwargs):
        return profile(A, **kwargs)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
