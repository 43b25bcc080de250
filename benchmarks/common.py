"""Shared pieces of the autosparse benchmarks.

* the matrix corpus (``../shared/matrices`` next to the project, or
  ``$AUTOSPARSE_MATRICES``) and the large generated set, each matrix a
  function with a fixed seed;
* the peers every benchmark compares against: SciPy CSR, MKL through
  ``sparse_dot_mkl`` and GraphBLAS through ``python-graphblas``, each skipped
  with a printed message when it is not installed;
* a numba streaming triad that measures the machine's bandwidth in the run;
* the bytes-moved model behind "fraction of bandwidth";
* ``get_profile`` / ``format_configurations``: ``autosparse.profile.profile``
  when it exists, else a stand-in with the cheap Profile fields.

Every time is taken with ``autosparse.timing`` (``measure`` / ``interleaved``):
there is one timer in this project.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def log(*args):
    print(*args, flush=True)


# -- environment: MKL must find its runtime before sparse_dot_mkl is imported --

def set_mkl_rt() -> str | None:
    """Point ``MKL_RT`` at the venv's ``libmkl_rt.so.*`` (the mkl wheel puts it in ``lib/``)."""
    if os.environ.get("MKL_RT"):
        return os.environ["MKL_RT"]
    found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    if found:
        os.environ["MKL_RT"] = found[-1]
        return found[-1]
    return None


set_mkl_rt()

# MKL's Intel OpenMP threads spin for 200 ms after each call by default.  In a
# process that also runs numba's (GNU OpenMP) and GraphBLAS's thread teams,
# those idle spinners steal the cores from whichever candidate is timed next
# (measured here: SciPy's serial matvec 1.5-2x slower right after MKL, MKL 3-5x
# slower right after a numba kernel).  Sleeping at once keeps the interleaved
# comparisons fair; it costs MKL one thread wake-up per call.
os.environ.setdefault("KMP_BLOCKTIME", "0")


# -- corpus ------------------------------------------------------------------

def corpus_dir() -> Path:
    return Path(os.environ.get("AUTOSPARSE_MATRICES", ROOT.parent / "shared" / "matrices"))


def corpus(names=None, max_nnz=None, limit=None) -> list[dict]:
    """Corpus entries (``name``, ``class``, ``nnz``, ``path``), smallest first.

    Prints why and returns ``[]`` when the corpus is absent.  Uses
    ``MANIFEST.tsv`` when present, else every ``*.mtx.gz`` / ``*.mtx``.
    """
    d = corpus_dir()
    if not d.is_dir():
        log(f"[corpus] no matrix corpus at {d} (set AUTOSPARSE_MATRICES); corpus skipped")
        return []
    manifest = d / "MANIFEST.tsv"
    entries = []
    if manifest.is_file():
        with open(manifest, newline="") as fh:
            for r in csv.DictReader(fh, delimiter="\t"):
                path = d / f"{r['name']}.mtx.gz"
                if not path.is_file():
                    path = d / f"{r['name']}.mtx"
                if path.is_file():
                    entries.append({"name": r["name"], "class": r.get("class", ""),
                                    "nnz": int(r.get("nnz") or 0), "path": path})
    else:
        for path in sorted(d.glob("*.mtx*")):
            name = path.name.split(".mtx")[0]
            entries.append({"name": name, "class": "", "nnz": path.stat().st_size, "path": path})
    if not entries:
        log(f"[corpus] no matrices found in {d}; corpus skipped")
    if names is not None:
        entries = [e for e in entries if e["name"] in names]
    if max_nnz is not None:
        entries = [e for e in entries if e["nnz"] <= max_nnz]
    entries.sort(key=lambda e: e["nnz"])
    return entries[:limit] if limit is not None else entries


def quick_corpus(entries: list[dict], count: int = 6) -> list[dict]:
    """A handful of small corpus matrices of different structure classes."""
    seen, picked = set(), []
    for e in entries:                          # smallest first
        if e["class"] not in seen and e["nnz"] >= 5_000:
            seen.add(e["class"])
            picked.append(e)
        if len(picked) == count:
            break
    return picked


def load(entry) -> sp.csr_array:
    from autosparse.io import read_matrix
    return read_matrix(entry["path"])


# -- the large generated set ---------------------------------------------------
# Each is a function of its size with a fixed seed: the same matrix every run.

def poisson3d(n=100):
    """pyamg 7-point 3-D Poisson on an n³ grid (1M rows at n=100)."""
    import pyamg
    return sp.csr_array(pyamg.gallery.poisson((n, n, n), format="csr"), dtype=np.float64)


def elasticity(n=500):
    """pyamg 2-D linear elasticity (Q1, 2 dof per node) on an n×n grid."""
    import pyamg
    return sp.csr_array(pyamg.gallery.linear_elasticity((n, n))[0].tocsr(), dtype=np.float64)


def fem_blocks(n=70, b=3, seed=1):
    """3×3-block FEM-like matrix: a 7-point 3-D mesh graph (n³ nodes) whose
    every entry is a dense b×b block of random values (3·70³ ≈ 1.03M rows)."""
    import pyamg
    G = sp.csr_array(pyamg.gallery.poisson((n, n, n), format="csr"))
    G.sort_indices()
    rng = np.random.default_rng(seed)
    blocks = rng.standard_normal((G.nnz, b, b))
    A = sp.bsr_array((blocks, G.indices, G.indptr), shape=(b * G.shape[0], b * G.shape[1]))
    return sp.csr_array(A.tocsr())


def powerlaw_rows(m=1_000_000, seed=2):
    """Random matrix with power-law (Zipf) row lengths, m×m, uniform columns."""
    from autosparse.io import powerlaw
    return powerlaw(m, rng=seed)


def banded(m=2_000_000):
    """9 full diagonals, random values (``autosparse.io.example('banded')``)."""
    from autosparse.io import example
    return example("banded", m)


def wide(m=200_000, n=2_000_000, per_row=10, seed=3):
    """A wide m×n random matrix with ``per_row`` uniform random columns per row."""
    rng = np.random.default_rng(seed)
    indptr = np.arange(m + 1, dtype=np.int64) * per_row
    cols = rng.integers(0, n, size=m * per_row)
    vals = rng.standard_normal(m * per_row)
    A = sp.csr_array((vals, cols, indptr), shape=(m, n))
    A.sum_duplicates()
    return A


# name -> (generator, full-size kwargs, quick kwargs, structured?)
# "structured" matrices are those where a specialised layout should reach the
# bandwidth limit (the 80 % target); the irregular ones are not.
LARGE = {
    "poisson3d_100": (poisson3d, {"n": 100}, {"n": 40}, True),
    "elasticity_500": (elasticity, {"n": 500}, {"n": 120}, True),
    "fem3x3_1M": (fem_blocks, {"n": 70}, {"n": 24}, True),
    "powerlaw_1M": (powerlaw_rows, {"m": 1_000_000}, {"m": 100_000}, False),
    "banded_2M": (banded, {"m": 2_000_000}, {"m": 200_000}, True),
    "wide_200k_2M": (wide, {"m": 200_000, "n": 2_000_000}, {"m": 20_000, "n": 200_000}, False),
}


def large_matrix(name: str, quick: bool = False) -> sp.csr_array:
    from autosparse._checks import as_csr
    fn, full, small, _ = LARGE[name]
    return as_csr(fn(**(small if quick else full)))


# -- peers ---------------------------------------------------------------------

class Peer:
    """A reference implementation: ``bind(op, x, out)`` -> (call, result)."""

    name = "?"

    def bind(self, op, x, out):
        raise NotImplementedError


class SciPyPeer(Peer):
    """SciPy CSR (``A @ x``; SciPy has no ``out=``, so it allocates)."""

    name = "scipy"

    def __init__(self, A):
        self.A = A
        self.AT = A.T          # CSC view, no copy: what ``A.T @ x`` uses

    def bind(self, op, x, out):
        M = self.AT if op == "rmatvec" else self.A
        box = {}

        def call():
            box["y"] = M @ x
        return call, lambda: box.get("y")


_mkl_state = {}


def mkl_module():
    """``sparse_dot_mkl`` or None (message printed once)."""
    if "mod" not in _mkl_state:
        set_mkl_rt()
        try:
            import sparse_dot_mkl
            sparse_dot_mkl.dot_product_mkl(sp.csr_array(np.eye(2)), np.ones(2))
            _mkl_state["mod"] = sparse_dot_mkl
        except Exception as exc:  # noqa: BLE001 - any failure means "no MKL here"
            log(f"[peers] MKL skipped: sparse_dot_mkl/libmkl_rt not usable ({type(exc).__name__}: {exc})")
            _mkl_state["mod"] = None
    return _mkl_state["mod"]


class MKLPeer(Peer):
    """MKL's sparse BLAS through ``sparse_dot_mkl.dot_product_mkl`` on the same CSR.

    ``out=`` with ``out_scalar=0`` writes the result without allocating.
    ``rmatvec`` is ``dot_product_mkl(x, A)``: MKL's transposed product on the
    CSR arrays (no transposed copy).
    """

    name = "mkl"

    def __init__(self, A):
        self.mod = mkl_module()
        if self.mod is None:
            raise RuntimeError("MKL not available")
        if A.indices.dtype != np.int32 or A.indptr.dtype != np.int32:
            A = sp.csr_array((A.data, A.indices.astype(np.int32), A.indptr.astype(np.int32)), shape=A.shape)
        self.A = A

    def bind(self, op, x, out):
        dot = self.mod.dot_product_mkl
        A = self.A
        if op == "rmatvec":
            def call():
                dot(x, A, out=out, out_scalar=0)
        else:
            def call():
                dot(A, x, out=out, out_scalar=0)
        return call, lambda: out


_gb_state = {}


def graphblas_module():
    if "mod" not in _gb_state:
        try:
            import graphblas
            graphblas.Vector.from_dense(np.ones(2))
            _gb_state["mod"] = graphblas
        except Exception as exc:  # noqa: BLE001
            log(f"[peers] GraphBLAS skipped: python-graphblas not usable ({type(exc).__name__}: {exc})")
            _gb_state["mod"] = None
    return _gb_state["mod"]


class GraphBLASPeer(Peer):
    """SuiteSparse:GraphBLAS through python-graphblas.

    The matrix is converted from SciPy once; operands are GraphBLAS objects
    made once; each call is an in-place update ``w << A.mxv(v)`` (``v.vxm(A)``
    for rmatvec, ``A.mxm(X)`` with a full X for matmat): what a GraphBLAS user
    writes in a loop.
    """

    name = "graphblas"

    def __init__(self, A):
        self.gb = graphblas_module()
        if self.gb is None:
            raise RuntimeError("GraphBLAS not available")
        self.A = self.gb.io.from_scipy_sparse(A)
        self.shape = A.shape

    def bind(self, op, x, out):
        gb = self.gb
        A = self.A
        m, n = self.shape
        if op == "matmat":
            X = gb.Matrix.from_dense(x)
            W = gb.Matrix(float, m, x.shape[1])

            def call():
                W << A.mxm(X)
            return call, lambda: W.to_dense(fill_value=0)
        v = gb.Vector.from_dense(x)
        if op == "rmatvec":
            w = gb.Vector(float, n)

            def call():
                w << v.vxm(A)
        else:
            w = gb.Vector(float, m)

            def call():
                w << A.mxv(v)
        return call, lambda: w.to_dense(fill_value=0)


PEERS = {"scipy": SciPyPeer, "mkl": MKLPeer, "graphblas": GraphBLASPeer}


def make_peers(A, names=("scipy", "mkl", "graphblas")) -> dict:
    """The available peers for A (float64 CSR); a missing library is skipped."""
    out = {}
    for name in names:
        try:
            out[name] = PEERS[name](A)
        except RuntimeError:
            pass
    return out


# -- bandwidth -----------------------------------------------------------------

_triad_kernel = None


def _triad():
    global _triad_kernel
    if _triad_kernel is None:
        from numba import prange

        from autosparse.kernels._runtime import pjit

        @pjit
        def triad(a, b, c, s):
            for i in prange(a.size):
                a[i] = b[i] + s * c[i]
        _triad_kernel = triad
    return _triad_kernel


TRIAD_BYTES_PER_ELEMENT = 24    # STREAM's count: read b and c, write a (no write-allocate)


class Triad:
    """A streaming triad ``a = b + s·c`` (parallel numba) on arrays far larger
    than the caches; ``call`` is one pass and moves ``nbytes`` (STREAM's count:
    24 bytes per element, read b and c, write a, no write-allocate).  Put
    ``call`` into an interleaved group to measure bandwidth beside a kernel."""

    def __init__(self, n: int = 16_000_000):
        self.kernel = _triad()
        self.a = np.zeros(n)
        self.b = np.ones(n)
        self.c = np.full(n, 2.0)
        self.nbytes = TRIAD_BYTES_PER_ELEMENT * n
        self.call()

    def call(self):
        self.kernel(self.a, self.b, self.c, 3.0)


def triad_bandwidth(n: int = 16_000_000, rounds: int = 5, triad: Triad | None = None) -> float:
    """Streaming bandwidth in bytes/s (see ``Triad``)."""
    from autosparse.timing import interleaved
    triad = triad or Triad(n)
    t = interleaved({"triad": triad.call}, rounds=rounds, budget=0.3)["triad"]
    return triad.nbytes / t.median


def back_to_back(calls: dict, keys, rounds: int, **measure_kw) -> dict:
    """{key: [median seconds per round]}: in each round ``calls[key]`` for every key, timed
    one right after the other, the order reversed every other round.  Ratios or differences
    taken within a round cancel the shared machine's slow spells, which pooled medians do
    not (``autosparse.timing.measure`` takes ``measure_kw``)."""
    from autosparse.timing import measure
    keys = list(keys)
    per_round = {key: [] for key in keys}
    for r in range(rounds):
        for key in (keys if r % 2 == 0 else keys[::-1]):
            per_round[key].append(measure(calls[key], **measure_kw).median)
    return per_round


def bytes_moved(nbytes: int, shape, op: str, k: int = 1, itemsize: int = 8) -> int:
    """Bytes a product must move at the least: the stored matrix once, the
    input once and the output written once (``k`` columns for matmat).  A
    lower bound: scattered x reads and write-allocate traffic are not counted,
    matching the triad's STREAM count."""
    m, n = shape
    n_in, n_out = (m, n) if op in ("rmatvec", "rmatmat") else (n, m)
    return int(nbytes + (n_in + n_out) * k * itemsize)


# -- profile and configurations ------------------------------------------------

LengthStats = namedtuple("LengthStats", "min max mean std empty")
DenseTiles = namedtuple("DenseTiles", "covered_fraction n_tiles")


class StandInProfile:
    """The cheap Profile fields (see ``autosparse/profile.py``), exact or sampled,
    used only while ``autosparse.profile.profile`` does not exist."""

    def __init__(self, A: sp.csr_array, sample_nnz: int = 200_000, seed: int = 0):
        from autosparse.formats import _grids as G
        m, n = A.shape
        self.shape, self.nnz, self.dtype = (m, n), int(A.nnz), np.dtype(A.dtype).name
        self.density = A.nnz / max(1, m * n)
        rl = np.diff(A.indptr)
        cl = np.bincount(A.indices, minlength=n)
        self.rows, self.cols = _stats(rl), _stats(cl)
        vals, counts = np.unique(rl, return_counts=True)
        self.row_length_counts = tuple(zip(vals.tolist(), counts.tolist()))
        rows = np.repeat(np.arange(m, dtype=np.int64), rl)
        d = A.indices.astype(np.int64) - rows
        self.lower_bandwidth = int(max(0, -d.min())) if d.size else 0
        self.upper_bandwidth = int(max(0, d.max())) if d.size else 0
        self.bandwidth = max(self.lower_bandwidth, self.upper_bandwidth)
        self.n_diagonals = _n_unique(d)
        self.dia_fill = A.nnz / max(1, self.n_diagonals * m)
        self.ell_fill = A.nnz / max(1, m * int(rl.max(initial=0)))
        self.has_nonfinite = bool(not np.isfinite(A.data).all())
        sample = A.data[:: max(1, A.nnz // sample_nnz)]
        distinct = _n_unique(sample)
        self.distinct_capped = distinct > G.MAX_TABLE
        self.n_distinct_values = min(distinct, G.MAX_TABLE)
        if self.n_distinct_values < G.MAX_TABLE:        # cheap exact check for few values
            self.n_distinct_values = _n_unique(A.data)
            self.distinct_capped = self.n_distinct_values > G.MAX_TABLE
        first = np.repeat(A.indices[A.indptr[:-1]].astype(np.int64) if m else np.empty(0, np.int64),
                          rl) if A.nnz else np.empty(0, np.int64)
        off = A.indices.astype(np.int64) - first
        self.narrow_fraction = {"int8": float((off <= 255).mean()) if off.size else 1.0,
                                "int16": float((off <= 65535).mean()) if off.size else 1.0}
        gaps = np.abs(np.diff(A.indices.astype(np.int64)))
        same_row = np.diff(rows) == 0 if rows.size else np.empty(0, bool)
        self.col_scatter = float(gaps[same_row].mean() / max(1, n)) if same_row.any() else 0.0
        self.sell_fill = {}
        for C in G.SELL_C:
            for sigma in G.SELL_SIGMA:
                self.sell_fill[(C, sigma)] = A.nnz / max(1, _sell_slots(rl, C, sigma))
        r_i, c_j = _sample_entries(A, sample_nnz, seed)
        self.block_fill = {}
        for r, c in G.BSR_SHAPES:
            nb = _n_unique((r_i // r) * (n // c + 1) + c_j // c)
            self.block_fill[(r, c)] = r_i.size / max(1, r * c * nb)
        self.dense_tiles = {}
        scale = A.nnz / max(1, r_i.size)
        for t in G.DBH_TILES:
            cnt = _unique_counts((r_i // t) * (n // t + 1) + c_j // t)
            for thr in G.DBH_THRESHOLDS:
                dense = cnt >= thr * t * t
                self.dense_tiles[(t, thr)] = DenseTiles(float(cnt[dense].sum() / max(1, r_i.size)),
                                                        int(round(dense.sum() * scale)))
        self.memory = {}
        self.stand_in = True


def _n_unique(a) -> int:
    """Number of distinct values (sort-based: numpy's hash unique is slow on wide int keys)."""
    if a.size == 0:
        return 0
    s = np.sort(a, kind="stable" if a.dtype.kind == "c" else None)
    return int(1 + np.count_nonzero(s[1:] != s[:-1]))


def _unique_counts(a):
    if a.size == 0:
        return np.empty(0, np.int64)
    s = np.sort(a)
    edges = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1], [True]]))
    return np.diff(edges)


def _stats(lengths):
    if lengths.size == 0:
        return LengthStats(0, 0, 0.0, 0.0, 0)
    return LengthStats(int(lengths.min()), int(lengths.max()), float(lengths.mean()),
                       float(lengths.std()), int((lengths == 0).sum()))


def _sell_slots(rl, C, sigma):
    m = rl.size
    if m == 0:
        return 0
    lens = rl
    if sigma > 1:
        pad = (-m) % sigma
        w = np.concatenate([rl, np.zeros(pad, rl.dtype)]).reshape(-1, sigma)
        lens = -np.sort(-w, axis=1).ravel()[:m]
    pad = (-m) % C
    chunks = np.concatenate([lens, np.zeros(pad, lens.dtype)]).reshape(-1, C)
    return int(chunks.max(axis=1).sum() * C)


def _sample_entries(A, sample_nnz, seed):
    """(row, col) of the entries in a sample of 840-row groups (840 = lcm 1..8,
    so every block row of every r is whole)."""
    m = A.shape[0]
    group = 840
    ngroups = max(1, -(-m // group))
    per_group = max(1, A.nnz // ngroups)
    want = max(1, min(ngroups, sample_nnz // max(1, per_group)))
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(ngroups, size=want, replace=False))
    starts = picks * group
    ends = np.minimum(starts + group, m)
    rows = _ranges(starts, ends)
    r_i = np.repeat(rows, np.diff(A.indptr)[rows])
    sel = _ranges(A.indptr[starts], A.indptr[ends])
    return r_i, A.indices[sel].astype(np.int64)


def _ranges(lo, hi):
    """Concatenation of arange(lo[i], hi[i]) (vectorised)."""
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, np.int64)
    offs = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return np.arange(total, dtype=np.int64) + offs


def get_profile(A):
    """(profile, source): the real ``autosparse.profile.profile`` or the stand-in."""
    try:
        from autosparse.profile import profile
    except ImportError:
        return StandInProfile(A), "stand-in"
    return profile(A), "autosparse.profile"


# Settings tried when a module's ``configurations(profile)`` cannot run (e.g.
# on the stand-in profile): the conformance suite's representative settings.
FALLBACK_CONFIGS = {
    "csr": [{}, {"values": "table"}],
    "csc": [{}],
    "coo": [{}],
    "bsr": [{"r": 1, "c": 1}, {"r": 2, "c": 2}, {"r": 3, "c": 3}, {"r": 2, "c": 3}, {"r": 4, "c": 4},
            {"r": 8, "c": 1}],
    "ell": [{}],
    "sell": [{"C": 8, "sigma": 1}, {"C": 4, "sigma": 64}, {"C": 8, "sigma": 512}, {"C": 16, "sigma": 4096}],
    "dia": [{}, {"values": "table"}],
    "dense": [{}],
    "hyb": [{}],
    "dbh": [{"tile": 4, "threshold": 0.5}, {"tile": 8, "threshold": 0.25}],
    "csrc": [{}, {"offset_dtype": "int8"}, {"offset_dtype": "int16"}],
}


def format_configurations(name, profile) -> tuple[list[dict], str]:
    """(configurations, source) for format ``name``: the module's own
    ``configurations(profile)``, or the fallback list when that fails."""
    from autosparse import formats
    mod = formats.get(name)
    try:
        cfgs = [dict(c) for c in mod.configurations(profile)]
        return cfgs, "configurations()"
    except Exception as exc:  # noqa: BLE001 - stand-in profile or a bug in the module
        return [dict(c) for c in FALLBACK_CONFIGS.get(name, [{}])], f"fallback ({type(exc).__name__}: {exc})"


def estimate(name, profile, params):
    """``estimate_nbytes`` or None when it cannot run."""
    from autosparse import formats
    try:
        return int(formats.get(name).estimate_nbytes(profile, **params))
    except Exception:  # noqa: BLE001
        return None


def aligned_empty(shape, dtype=np.float64):
    """Output arrays of the final timings, every peer's alike: 64-byte aligned, as
    ``mkl_malloc`` gives (``np.empty`` guarantees 16).  Aligned rows let streaming
    stores write a multi-vector output without reading it first."""
    from autosparse.formats._base import aligned_empty as _aligned
    return _aligned(shape, dtype)


def geomean(values) -> float:
    v = [float(x) for x in values if x is not None and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")


def rng_vector(n, k=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) if k is None else (n, k))


# -- outputs shared by the benchmarks (kernels.py, tune.py) ----------------------------

def write_rows_csv(path, rows, fields) -> None:
    """Rows (dicts) as a CSV with columns ``fields``; None is an empty cell,
    floats get 6 significant digits, unknown keys are ignored."""
    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.6g}"
        return v
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: fmt(r.get(k)) for k in fields})


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None (message printed)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("[figure] matplotlib missing: no figure (pip install autosparse[bench])")
        return None
    return plt
