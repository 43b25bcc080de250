#!/usr/bin/env python
"""Kernel benchmark: every registered format and configuration against SciPy, MKL and GraphBLAS.

    python benchmarks/kernels.py [--quick] [--only NAMES] [--ops matvec,rmatvec,matmat] [--out DIR]

For every matrix (the large generated set, then the corpus):

1. ``autosparse.profile.profile(A)`` (or the stand-in in ``common``) and, for
   every format in ``autosparse.formats.names()``, the module's
   ``configurations(profile)``.  Configurations whose ``estimate_nbytes`` is
   over the memory cap are skipped; the rest are ordered by estimated bytes
   and the first ``--max-configs`` of each format are tried (round-robin over
   formats, within a per-matrix time budget); the others are listed as
   ``not-timed`` in the CSV.
2. Explore: each tried configuration is converted (conversion timed),
   checked against SciPy with ``autosparse.verify.check`` (a wrong result is
   reported as ``wrong`` and never timed) and its matvec timed interleaved
   with SciPy's.  The fastest correct configuration of each format goes on.
3. Final: for each operation (matvec, rmatvec, matmat with k=16, float64) the
   best configuration of every format, plain CSR (default parameters), SciPy,
   MKL and GraphBLAS are verified, then timed together, interleaved.

Bytes model: a product must move at least ``F.nbytes`` (every stored array
once) + the input (n·k·8 bytes) + the output (m·k·8 bytes, written once).
Achieved bandwidth = that / time; its fraction of the numba streaming triad
measured in the same run (STREAM's count, 24 bytes per element) is reported.
It is a lower bound on traffic: scattered reads of x that miss the cache and
write-allocate traffic are not counted (nor are they in the triad).

Per-call overhead: on a 1,000-nnz matrix (tridiagonal; a full 40×25 for the
dense layout), ``F.matvec(x, out=y)`` against the
bound kernel alone (the entry point in ``F._bound`` with its arrays bound);
the overhead, the Python cost of a product, is the median of differences
timed back to back in 10 rounds of alternating order.

Outputs in ``--out`` (default ``benchmarks/results/``): ``kernels.csv`` (one
row per measurement or skipped/failed configuration), ``kernels.png``
(speed-up over SciPy per matrix, one marker per format's best configuration
and per peer, log scale) and ``summary.md`` (also printed).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C  # noqa: E402  (sets MKL_RT before anything imports sparse_dot_mkl)
import numpy as np  # noqa: E402

OPS = ("matvec", "rmatvec", "matmat")
K_MATMAT = 16
PEER_NAMES = ("scipy", "mkl", "graphblas")
PLAIN = "csr-plain"

FIELDS = ["matrix", "set", "class", "rows", "cols", "nnz", "stage", "candidate", "kind", "params", "op", "k",
          "status", "detail", "seconds", "best_seconds", "spread", "samples", "scipy_seconds", "speedup_scipy",
          "mkl_seconds", "speedup_mkl", "nbytes", "est_nbytes", "bytes_moved", "gbps", "bw_fraction",
          "convert_seconds", "error_ratio", "profile_source", "config_source"]


# -- settings ----------------------------------------------------------------------

class Settings:
    """Knobs per matrix set; ``--quick`` shrinks all of them."""

    def __init__(self, quick: bool, args):
        self.quick = quick
        # explore: rounds and per-measure budget; final: same
        self.large = dict(explore_rounds=2 if quick else 3, final_rounds=3 if quick else 4,
                          budget=0.05 if quick else 0.15, max_samples=10 if quick else 15,
                          max_configs=2 if quick else 6, explore_budget=10 if quick else 90)
        self.corpus = dict(explore_rounds=2, final_rounds=2 if quick else 3,
                           budget=0.02 if quick else 0.03, max_samples=10,
                           max_configs=2 if quick else 3, explore_budget=5 if quick else 6)
        if args.max_configs is not None:
            self.large["max_configs"] = self.corpus["max_configs"] = args.max_configs
        if args.explore_budget is not None:
            self.large["explore_budget"] = self.corpus["explore_budget"] = args.explore_budget
        self.triad_n = 8_000_000 if quick else 16_000_000
        self.mem_limit = args.mem_limit * 2**30

    def for_set(self, which):
        return self.large if which == "large" else self.corpus


# -- helpers -----------------------------------------------------------------------

def pjson(params) -> str:
    return json.dumps(params, sort_keys=True)


def short(msg, n=300) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def label(name, params) -> str:
    if not params:
        return name
    return name + "(" + ",".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def timed_convert(name, A, params):
    """(F, Timing) of ``formats.convert``: a warm-up conversion (pays for any
    compilation) then one timed, through ``autosparse.timing.measure``."""
    from autosparse import formats
    from autosparse.timing import measure
    box = {}

    def conv():
        box["F"] = None               # free the previous copy first
        box["F"] = formats.convert(A, name, **params)
    t = measure(conv, warmup=1, min_samples=1, max_samples=1)
    return box["F"], t


def format_call(F, op, x, out):
    """(call, result) for a product of F writing into ``out``."""
    if op == "matvec":
        def call():
            F.matvec(x, out=out)
    elif op == "rmatvec":
        def call():
            F.rmatvec(x, out=out)
    elif op == "matmat":
        def call():
            F.matmat(x, out=out)
    else:
        raise ValueError(op)
    return call, lambda: out


def operands(A, op, seed=0):
    m, n = A.shape
    if op == "matvec":
        return C.rng_vector(n, seed=seed), (m,), 1
    if op == "rmatvec":
        return C.rng_vector(m, seed=seed + 1), (n,), 1
    return np.ascontiguousarray(C.rng_vector(n, K_MATMAT, seed=seed + 2)), (m, K_MATMAT), K_MATMAT


def check(y, A, x, op):
    from autosparse import verify
    ok, ratio = verify.check(np.asarray(y), A, x, op)
    return ok, float(ratio)


class Reference:
    """``autosparse.verify.check``'s rule with SciPy's result computed once per operand."""

    def __init__(self, A, x, op):
        from autosparse import verify
        self.y, self.mag = verify.reference(A, x, op)
        self.terms = verify.max_terms(A, op)
        self.dtype = np.result_type(A.dtype, x.dtype)

    def check(self, y):
        from autosparse import verify
        ratio = float(verify.error_ratio(np.asarray(y), self.y, self.mag, self.terms, self.dtype))
        return ratio <= 1.0, ratio


# -- one matrix ----------------------------------------------------------------------

class MatrixRun:
    def __init__(self, name, which, cls, A, st: Settings, bw, formats, ops, triad=None):
        self.name, self.which, self.cls, self.A = name, which, cls, A
        self.triad = triad if which == "large" else None
        self.cfg = st.for_set(which)
        self.st, self.bw, self.formats, self.ops = st, bw, formats, ops
        self.rows = []
        self.base = {"matrix": name, "set": which, "class": cls, "rows": A.shape[0], "cols": A.shape[1],
                     "nnz": A.nnz}

    def row(self, **kw):
        r = dict(self.base)
        r.update(kw)
        self.rows.append(r)
        return r

    def timing_kw(self):
        return {"budget": self.cfg["budget"], "max_samples": self.cfg["max_samples"]}

    # .. explore .......................................................................
    def plan(self, profile):
        """{format: (ranked configurations, source)}: smallest estimated bytes first,
        those over the memory cap recorded as skipped."""
        A = self.A
        csr_bytes = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
        cap = min(max(4 * csr_bytes, 64 * 2**20), self.st.mem_limit)
        per_format = {}
        for name in self.formats:
            try:
                cfgs, src = C.format_configurations(name, profile)
            except Exception as exc:  # noqa: BLE001 - module fails to import
                self.row(stage="explore", candidate=name, kind="format", status="error",
                         detail=short(f"import/configurations: {type(exc).__name__}: {exc}"))
                continue
            if not cfgs:
                self.row(stage="explore", candidate=name, kind="format", status="not-applicable",
                         detail="configurations() returned nothing", config_source=src)
                continue
            ranked = []
            for i, p in enumerate(cfgs):
                est = C.estimate(name, profile, p)
                if est is not None and est > cap:
                    self.row(stage="explore", candidate=name, kind="format", params=pjson(p), op="matvec",
                             status="skipped-memory", est_nbytes=est, config_source=src,
                             detail=f"estimate {est / 2**20:.0f} MiB > cap {cap / 2**20:.0f} MiB")
                    continue
                ranked.append((est if est is not None else math.inf, i, p, est))
            ranked.sort(key=lambda t: (t[0], t[1]))
            per_format[name] = (ranked, src)
        return per_format

    def explore(self, profile, profile_src, scipy_call):
        per_format = self.plan(profile)
        best = {}          # format -> (F, params, speedup, convert_seconds, est)
        order = []
        depth = max((len(r) for r, _ in per_format.values()), default=0)
        for rank in range(depth):
            for name, (ranked, src) in per_format.items():
                if rank < len(ranked):
                    order.append((rank, name, ranked[rank], src))
        start = time.perf_counter()
        x, oshape, _ = operands(self.A, "matvec")
        ref = Reference(self.A, x, "matvec")
        for rank, name, (_, _, params, est), src in order:
            common = dict(stage="explore", candidate=name, kind="format", params=pjson(params), op="matvec",
                          k=1, est_nbytes=est, profile_source=profile_src, config_source=src)
            if rank >= self.cfg["max_configs"] > 0:
                self.row(status="not-timed", detail=f"beyond --max-configs {self.cfg['max_configs']}", **common)
                continue
            if rank > 0 and time.perf_counter() - start > self.cfg["explore_budget"]:
                self.row(status="not-timed", detail=f"explore budget {self.cfg['explore_budget']} s spent", **common)
                continue
            single = len(per_format[name][0]) == 1 or (self.cfg["max_configs"] == 1)
            self._try_config(name, params, est, x, oshape, ref, scipy_call, single, best, common)
        return best

    def _try_config(self, name, params, est, x, oshape, ref, scipy_call, single, best, common):
        from autosparse.timing import interleaved
        A = self.A
        try:
            F, tc = timed_convert(name, A, params)
        except MemoryError as exc:
            self.row(status="skipped-memory", detail=short(f"MemoryError: {exc}"), **common)
            return
        except Exception as exc:  # noqa: BLE001 - a format must never stop the run
            status = "not-applicable" if isinstance(exc, ValueError) else "error"
            self.row(status=status, detail=short(f"convert: {type(exc).__name__}: {exc}"), **common)
            return
        common = dict(common, params=pjson(F.params), nbytes=F.nbytes, convert_seconds=tc.median)
        out = np.empty(oshape)
        try:
            call, result = format_call(F, "matvec", x, out)
            call()
            ok, ratio = ref.check(result())
        except Exception as exc:  # noqa: BLE001
            self.row(status="error", detail=short(f"matvec: {type(exc).__name__}: {exc}"), **common)
            return
        if not ok:
            self.row(status="wrong", error_ratio=ratio,
                     detail=f"differs from SciPy: {ratio:.3g} x the allowed error", **common)
            return
        if single:     # nothing to choose between: the final stage times it
            self.row(status="chosen", error_ratio=ratio, detail="only configuration tried", **common)
            speed = 0.0
        else:
            t = interleaved({"cand": call, "scipy": scipy_call}, rounds=self.cfg["explore_rounds"],
                            **self.timing_kw())
            speed = t["scipy"].median / t["cand"].median
            moved = C.bytes_moved(F.nbytes, A.shape, "matvec")
            self.row(status="ok", error_ratio=ratio, seconds=t["cand"].median, best_seconds=t["cand"].best,
                     spread=t["cand"].spread, samples=t["cand"].samples, scipy_seconds=t["scipy"].median,
                     speedup_scipy=speed, bytes_moved=moved, gbps=moved / t["cand"].median / 1e9,
                     bw_fraction=moved / t["cand"].median / self.bw, **common)
        prev = best.get(name)
        if prev is None or speed > prev[2]:
            best[name] = (F, dict(F.params), speed, tc.median, est)
        del F

    # .. final ...........................................................................
    def final(self, best, peers, profile_src):
        from autosparse.timing import interleaved, measure
        A = self.A
        cands = {name: v for name, v in best.items()}
        if "csr" in self.formats:
            try:
                Fp, tc = timed_convert("csr", A, {})
                if "csr" not in best or best["csr"][1] != Fp.params:
                    cands[PLAIN] = (Fp, dict(Fp.params), None, tc.median, None)
            except Exception as exc:  # noqa: BLE001
                self.row(stage="final", candidate=PLAIN, kind="format", status="error",
                         detail=short(f"convert: {type(exc).__name__}: {exc}"))
        for op in self.ops:
            x, oshape, k = operands(A, op)
            ref = Reference(A, x, op)
            calls, meta = {}, {}
            for name, (F, params, _, tconv, est) in cands.items():
                common = dict(stage="final", candidate=name, kind="format", params=pjson(params), op=op, k=k,
                              nbytes=F.nbytes, est_nbytes=est, convert_seconds=tconv,
                              profile_source=profile_src)
                out = C.aligned_empty(oshape)
                try:
                    call, result = format_call(F, op, x, out)
                    call()
                    ok, ratio = ref.check(result())
                except NotImplementedError as exc:
                    self.row(status="unsupported", detail=short(exc), **common)
                    continue
                except Exception as exc:  # noqa: BLE001
                    self.row(status="error", detail=short(f"{op}: {type(exc).__name__}: {exc}"), **common)
                    continue
                if not ok:
                    self.row(status="wrong", error_ratio=ratio,
                             detail=f"differs from SciPy: {ratio:.3g} x the allowed error", **common)
                    continue
                calls[name] = call
                meta[name] = dict(common, error_ratio=ratio, _moved=C.bytes_moved(F.nbytes, A.shape, op, k))
            for pname, peer in peers.items():
                common = dict(stage="final", candidate=pname, kind="peer", op=op, k=k, params="")
                out = C.aligned_empty(oshape)
                try:
                    call, result = peer.bind(op, x, out)
                    call()
                    ok, ratio = ref.check(result())
                except Exception as exc:  # noqa: BLE001
                    self.row(status="error", detail=short(f"{op}: {type(exc).__name__}: {exc}"), **common)
                    continue
                if not ok:
                    self.row(status="wrong", error_ratio=ratio, detail=f"{ratio:.3g} x allowed error", **common)
                    continue
                calls[pname] = call
                meta[pname] = dict(common, error_ratio=ratio)
            if not calls:
                continue
            if self.triad is not None:      # bandwidth measured beside the kernels, same rounds
                calls["triad"] = self.triad.call
            kw = self.timing_kw()
            if "scipy" in calls and measure(calls["scipy"], min_samples=1, max_samples=1).median > 0.02:
                kw["min_samples"] = 1      # slow calls: one sample per round, the rounds give the median
            t = interleaved(calls, rounds=self.cfg["final_rounds"], **kw)
            ts = t["scipy"].median if "scipy" in t else None
            tm = t["mkl"].median if "mkl" in t else None
            bw = self.bw
            if "triad" in t:
                tt = t.pop("triad")
                bw = self.triad.nbytes / tt.median
                self.row(stage="final", candidate="triad", kind="triad", op=op, k=k, status="ok",
                         seconds=tt.median, best_seconds=tt.best, spread=tt.spread, samples=tt.samples,
                         bytes_moved=self.triad.nbytes, gbps=bw / 1e9,
                         detail="streaming triad timed in the same interleaved rounds")
            for name, tt in t.items():
                m = meta[name]
                moved = m.pop("_moved", None)
                extra = {}
                if moved is not None:
                    extra = dict(bytes_moved=moved, gbps=moved / tt.median / 1e9, bw_fraction=moved / tt.median / bw)
                self.row(status="ok", seconds=tt.median, best_seconds=tt.best, spread=tt.spread,
                         samples=tt.samples, scipy_seconds=ts, speedup_scipy=(ts / tt.median) if ts else None,
                         mkl_seconds=tm, speedup_mkl=(tm / tt.median) if tm else None, **extra, **m)
        del cands

    def run(self):
        from autosparse.timing import measure
        A = self.A
        t0 = time.perf_counter()
        try:
            profile, psrc = C.get_profile(A)
        except Exception as exc:  # noqa: BLE001 - the real profiler failing must not stop us
            C.log(f"  profile failed ({type(exc).__name__}: {exc}); using the stand-in")
            profile, psrc = C.StandInProfile(A), "stand-in (profile() failed)"
        tprof = time.perf_counter() - t0
        peers = C.make_peers(A)
        x, _, _ = operands(A, "matvec")
        scipy_call, _ = peers["scipy"].bind("matvec", x, None)
        ts = measure(scipy_call, budget=0.05)
        C.log(f"  profile {tprof:.1f}s ({psrc}); scipy matvec {ts.median * 1e3:.3f} ms; peers: {', '.join(peers)}")
        best = self.explore(profile, psrc, scipy_call)
        picked = ", ".join(f"{label(n, v[1])}" for n, v in best.items())
        C.log(f"  explored in {time.perf_counter() - t0:.0f}s; best per format: {picked}")
        self.final(best, peers, psrc)
        del best, peers
        C.log(f"  done in {time.perf_counter() - t0:.0f}s")
        return self.rows


# -- per-call overhead -------------------------------------------------------------------

def overhead(formats, rounds=5):
    """Rows: per format, F.matvec(x, out=y) vs its bound kernel alone on a 1,000-nnz matrix."""
    import scipy.sparse as sp

    from autosparse import formats as fmts
    from autosparse.timing import interleaved
    from autosparse._checks import as_csr
    # tridiagonal, random values: exactly 1,000 nnz, and a sensible shape for every
    # layout (DIA, ELL, BSR and dense included), so kernel times stay small and alike
    m = 334
    rng = np.random.default_rng(7)
    A = as_csr(sp.diags_array([rng.standard_normal(m - 1), rng.standard_normal(m), rng.standard_normal(m - 1)],
                              offsets=[-1, 0, 1], shape=(m, m)))
    # The dense layout gets a 1,000-entry matrix of its own kind, 40x25 and full: on the
    # tridiagonal one its kernel takes 60 us, and the overhead, a small difference of two
    # times that long, measured anywhere from 2 to 4.6 us from run to run.
    dense = as_csr(sp.csr_array(rng.standard_normal((40, 25))))
    x = C.rng_vector(m)
    y = np.empty(m)
    rows = []
    base = {"matrix": "tridiag_334_1k", "set": "overhead", "class": "", "rows": m, "cols": m, "nnz": A.nnz,
            "stage": "overhead", "op": "matvec", "k": 1, "kind": "format"}
    calls = {"scipy": lambda: A @ x}
    for name in formats:
        B, xb, yb = (dense, C.rng_vector(25), np.empty(40)) if name == "dense" else (A, x, y)
        try:
            F = _default_format(B, name)
            F.matvec(xb, out=yb)
            ok, ratio = check(yb, B, xb, "matvec")
            if not ok:
                rows.append(dict(base, candidate=name, status="wrong", error_ratio=ratio))
                continue
            keys = [key for key in F._bound if key[0] == "matvec"]
            bound = F._bound[keys[0]]
        except Exception as exc:  # noqa: BLE001
            rows.append(dict(base, candidate=name, status="error", detail=short(f"{type(exc).__name__}: {exc}")))
            continue
        calls[name] = (lambda F=F, xb=xb, yb=yb: F.matvec(xb, out=yb))
        calls[name + ":kernel"] = (lambda b=bound, xb=xb, yb=yb: b(xb, yb))
    t = interleaved(calls, rounds=rounds, budget=0.05, min_sample=1e-3)
    # The overhead is a small difference of two times, and the dense and BSR kernels on
    # this matrix take 10-50 us: pooled medians taken at different moments differ by more
    # than the overhead.  So each round times the call and its kernel back to back (in
    # alternating order) and the overhead is the median of those paired differences.
    names = [n for n in formats if n in calls]
    got = C.back_to_back(calls, [key for n in names for key in (n, n + ":kernel")], 2 * rounds,
                         budget=0.02, min_sample=1e-3)        # each pair stays adjacent, either way round
    diffs = {n: [a - b for a, b in zip(got[n], got[n + ":kernel"])] for n in names}
    for name in formats:
        if name not in calls:
            continue
        full = t[name].median
        kern = full - float(np.median(diffs[name]))
        where = dict(base, matrix="dense_40x25_1k", rows=40, cols=25, nnz=dense.nnz) if name == "dense" else base
        rows.append(dict(where, candidate=name, status="ok", seconds=full, best_seconds=t[name].best,
                         spread=t[name].spread, samples=t[name].samples, scipy_seconds=t["scipy"].median,
                         speedup_scipy=t["scipy"].median / full,
                         detail=f"kernel {kern * 1e6:.2f} us; overhead {(full - kern) * 1e6:.2f} us",
                         params=pjson({"kernel_seconds": kern, "overhead_seconds": full - kern})))
    return rows


def _default_format(A, name):
    """``name`` with its default parameters, or its first configuration when it needs some."""
    from autosparse import formats as fmts
    try:
        return fmts.convert(A, name)
    except (TypeError, ValueError):
        profile, _ = C.get_profile(A)
        cfgs, _ = C.format_configurations(name, profile)
        if not cfgs:
            raise
        return fmts.convert(A, name, **cfgs[0])


# -- outputs ---------------------------------------------------------------------------------

def write_csv(path, rows):
    C.write_rows_csv(path, rows, FIELDS)


NUMERIC = {"rows", "cols", "nnz", "k", "seconds", "best_seconds", "spread", "samples", "scipy_seconds",
           "speedup_scipy", "mkl_seconds", "speedup_mkl", "nbytes", "est_nbytes", "bytes_moved", "gbps",
           "bw_fraction", "convert_seconds", "error_ratio"}


def read_csv(path):
    """Rows of a kernels.csv, numbers as floats and empty cells as None."""
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({k: (None if v == "" else float(v) if k in NUMERIC else v) for k, v in r.items()})
    return rows


def final_ok(rows, op):
    """{matrix: {candidate: row}} of the final stage's successful measurements."""
    out = {}
    for r in rows:
        if r.get("stage") == "final" and r.get("op") == op and r.get("status") == "ok":
            out.setdefault(r["matrix"], {})[r["candidate"]] = r
    return out


def best_format(cands: dict):
    fs = [r for c, r in cands.items() if r["kind"] == "format"]
    return min(fs, key=lambda r: r["seconds"]) if fs else None


def figure(path, rows, ops, large_names, corpus_names):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        C.log("[figure] matplotlib missing: no figure (pip install autosparse[bench])")
        return False
    from matplotlib.ticker import FuncFormatter, LogLocator
    sets = [("large generated set", large_names), ("corpus", corpus_names)]
    sets = [(t, n) for t, n in sets if n]
    if not sets:
        return False
    cands = []
    for r in rows:
        if r.get("stage") == "final" and r.get("status") == "ok" and r["candidate"] != "scipy" \
                and r.get("kind") != "triad" and r["candidate"] not in cands:
            cands.append(r["candidate"])
    peers = [c for c in cands if c in PEER_NAMES]
    fmts = [c for c in cands if c not in PEER_NAMES]
    cands = fmts + peers
    cmap = plt.get_cmap("tab20")
    markers = "os^vD<>phP*d8H"
    style = {c: (cmap(i % 20), markers[i % len(markers)]) for i, c in enumerate(fmts)}
    style.update({"mkl": ("black", "*"), "graphblas": ("dimgray", "X")})
    widths = [max(8 if len(sets) > 1 else 3, len(n)) for _, n in sets]
    fig, axes = plt.subplots(len(ops), len(sets), figsize=(max(10.0, 2.5 + 0.2 * sum(widths)), 3.4 * len(ops) + 1.2),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    times = FuncFormatter(lambda v, _: f"{v:g}×")
    for i, op in enumerate(ops):
        data = final_ok(rows, op)
        for j, (title, names) in enumerate(sets):
            ax = axes[i][j]
            xs = np.arange(len(names))
            for c in cands:
                pts = [(xi, data[n][c]["speedup_scipy"]) for xi, n in zip(xs, names)
                       if n in data and c in data[n] and data[n][c].get("speedup_scipy")]
                if pts:
                    px, py = zip(*pts)
                    col, mk = style.get(c, ("gray", "o"))
                    ax.scatter(px, py, s=46 if c in PEER_NAMES else 24, color=col, marker=mk, label=c,
                               alpha=0.9, linewidths=0, zorder=3)
            ax.axhline(1.0, color="red", lw=0.8, ls="--", zorder=1)
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(times)
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            ax.set_xticks(xs)
            ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7 if len(names) > 12 else 8)
            ax.set_xlim(-0.7, len(names) - 0.3)
            ax.grid(True, which="major", axis="y", alpha=0.3)
            ax.set_title(f"{op}{' k=16' if op == 'matmat' else ''}, float64: {title}", fontsize=9)
            if j == 0:
                ax.set_ylabel("speed-up over SciPy CSR (log)")
            if i == len(ops) - 1:
                ax.set_xlabel("matrix")
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=min(8, max(1, len(labels))), fontsize=8,
               title="best configuration of each format, and peers (SciPy = 1, dashed)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / fig.get_size_inches()[1]))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _x(v, digits=2):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def summary(rows, meta, ops, large_names, corpus_names, structured):
    L = []
    L.append("# autosparse kernel benchmark")
    L.append("")
    L.append(f"- machine: {meta['cpu']}, {meta['threads']} numba threads ({meta['layer']} layer); "
             f"triad bandwidth {meta['bw'] / 1e9:.1f} GB/s (start {meta['bw_start'] / 1e9:.1f}, "
             f"end {meta['bw_end'] / 1e9:.1f}; the larger is used)")
    L.append(f"- formats: {', '.join(meta['formats'])}; peers: {', '.join(meta['peers'])}; "
             f"profile: {meta['profile_source']}; {'quick' if meta['quick'] else 'full'} run, "
             f"{meta['elapsed'] / 60:.1f} min")
    L.append("- float64; speed-ups are ratios of medians timed interleaved in the same run; "
             "bandwidth fraction = (F.nbytes + x + y bytes) / time / triad bandwidth, the triad being timed "
             "in the same interleaved rounds for the large set (column triad GB/s)")
    L.append("")
    mv = final_ok(rows, "matvec")
    per = {op: final_ok(rows, op) for op in ops}
    if large_names:
        L.append("## Large generated set")
        L.append("")
        hdr = ["matrix", "best format (matvec)", "best/MKL", "CSR/MKL", "MKL/SciPy", "best GB/s", "best bw frac",
               "max bw frac (format)", "triad GB/s"]
        for op in ("rmatvec", "matmat"):
            if op in ops:
                hdr.append(f"{op} best/MKL")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        g = {h: [] for h in hdr}
        for name in large_names:
            d = mv.get(name, {})
            b = best_format(d)
            mkl = d.get("mkl")
            csr = d.get(PLAIN) or d.get("csr")
            fr = [(r.get("bw_fraction") or 0, c) for c, r in d.items() if r["kind"] == "format"]
            mx = max(fr) if fr else (None, "")
            cells = [name + (" (structured)" if name in structured else ""),
                     label(b["candidate"], json.loads(b["params"] or "{}")) if b else "–"]
            vals = [b["seconds"] and mkl["seconds"] / b["seconds"] if b and mkl else None,
                    mkl["seconds"] / csr["seconds"] if csr and mkl else None,
                    mkl["speedup_scipy"] if mkl else None,
                    b.get("gbps") if b else None,
                    b.get("bw_fraction") if b else None]
            for h, v in zip(hdr[2:7], vals):
                g[h].append(v)
            cells += [_x(v) for v in vals]
            cells.append(f"{_x(mx[0])} ({mx[1]})" if fr else "–")
            cells.append(_x(d["triad"]["gbps"], 1) if "triad" in d else "–")
            for op in ("rmatvec", "matmat"):
                if op in ops:
                    d2 = per[op].get(name, {})
                    b2 = best_format(d2)
                    m2 = d2.get("mkl")
                    v = m2["seconds"] / b2["seconds"] if b2 and m2 else None
                    g[f"{op} best/MKL"].append(v)
                    cells.append(f"{_x(v)} ({b2['candidate']})" if b2 else "–")
            L.append("| " + " | ".join(cells) + " |")
        gm = ["**geometric mean**", ""] + [_x(C.geomean(g[h])) for h in hdr[2:5]] + ["", "", "", ""]
        gm += [_x(C.geomean(g[f"{op} best/MKL"])) for op in ("rmatvec", "matmat") if op in ops]
        L.append("| " + " | ".join(gm) + " |")
        L.append("")
        # targets
        bm = C.geomean(g["best/MKL"])
        cm = C.geomean(g["CSR/MKL"])
        L.append("Targets (geometric means over the large set, matvec float64):")
        L.append(f"- best format vs MKL: {_x(bm)}× (target ≥ 1.0, aim 1.3) — {'met' if bm >= 1 else 'MISSED'}")
        L.append(f"- plain CSR vs MKL: {_x(cm)}× (target ≥ 0.9) — {'met' if cm >= 0.9 else 'MISSED'}")
        sfr = []
        for name in large_names:
            if name in structured:
                d = mv.get(name, {})
                fr = [r.get("bw_fraction") or 0 for r in d.values() if r["kind"] == "format"]
                sfr.append((name, max(fr) if fr else None))
        if sfr:
            txt = ", ".join(f"{n} {_x(f)}" for n, f in sfr)
            met = all(f is not None and f >= 0.8 for _, f in sfr)
            verdict = "not meaningful in a quick run (cache-resident)" if meta.get("quick") else \
                ("met" if met else "MISSED")
            L.append(f"- structured matrices, best bandwidth fraction of a format: {txt} (target ≥ 0.80 each) — "
                     f"{verdict}")
        for op in ("rmatvec", "matmat"):
            if op in ops:
                v = C.geomean(g[f"{op} best/MKL"])
                L.append(f"- {op} best vs MKL: {_x(v)}× (target ≥ 1.0) — {'met' if v >= 1 else 'MISSED'}")
    if meta.get("quick"):
        L.append("- (quick run: the reduced matrices fit in the last-level cache, so bandwidth fractions "
                 "above 1 are expected and mean nothing)")
    ov = [r for r in rows if r.get("stage") == "overhead" and r.get("status") == "ok"]
    if ov:
        worst = max(json.loads(r["params"])["overhead_seconds"] for r in ov)
        L.append(f"- per-call overhead on a 1,000-nnz matrix: worst {worst * 1e6:.2f} µs over formats "
                 f"(target ≤ 3 µs) — {'met' if worst <= 3e-6 else 'MISSED'}")
        L.append("")
        L.append("## Per-call overhead (1,000-nnz matrices: tridiagonal 334×334, a full 40×25 for the dense "
                 "layout; matvec, serial)")
        L.append("")
        L.append("| format | F.matvec(x, out=y) µs | bound kernel µs | overhead µs | SciPy A @ x µs |")
        L.append("|---|---|---|---|---|")
        for r in ov:
            p = json.loads(r["params"])
            L.append(f"| {r['candidate']} | {r['seconds'] * 1e6:.2f} | {p['kernel_seconds'] * 1e6:.2f} | "
                     f"{p['overhead_seconds'] * 1e6:.2f} | {r['scipy_seconds'] * 1e6:.2f} |")
    L.append("")
    if corpus_names:
        L.append(f"## Corpus ({len(corpus_names)} matrices): geometric-mean speed-up over SciPy")
        L.append("")
        L.append("| candidate | " + " | ".join(ops) + " | matvec wins over MKL |")
        L.append("|---|" + "---|" * (len(ops) + 1))
        cands = []
        for r in rows:
            if r.get("stage") == "final" and r.get("set") == "corpus" and r["candidate"] not in cands \
                    and r["candidate"] != "scipy":
                cands.append(r["candidate"])
        for c in cands + ["best format"]:
            cells = []
            for op in ops:
                d = per[op]
                if c == "best format":
                    v = [best_format(d[n])["speedup_scipy"] for n in corpus_names if n in d and best_format(d[n])]
                else:
                    v = [d[n][c]["speedup_scipy"] for n in corpus_names if n in d and c in d[n]]
                cells.append(f"{_x(C.geomean(v))} (n={len(v)})")
            wins = 0
            tot = 0
            for n in corpus_names:
                d = mv.get(n, {})
                r = best_format(d) if c == "best format" else d.get(c)
                if r and "mkl" in d and c != "mkl":
                    tot += 1
                    wins += r["seconds"] < d["mkl"]["seconds"]
            cells.append(f"{wins}/{tot}" if tot else "–")
            L.append(f"| {c} | " + " | ".join(cells) + " |")
        L.append("")
    bad = [r for r in rows if r.get("status") in ("wrong", "error")]
    if bad:
        L.append(f"## Failures ({len(bad)}: wrong results are never timed)")
        L.append("")
        seen = set()
        for r in bad:
            key = (r["candidate"], r.get("params"), r.get("op"), r["status"], (r.get("detail") or "")[:80])
            if key in seen:
                continue
            seen.add(key)
            n_same = sum(1 for q in bad if (q["candidate"], q.get("params"), q.get("op"), q["status"],
                                            (q.get("detail") or "")[:80]) == key)
            L.append(f"- {r['status']}: {label(r['candidate'], json.loads(r['params']) if r.get('params') else {})} "
                     f"{r.get('op') or ''} on {r['matrix']}{f' (+{n_same - 1} more matrices)' if n_same > 1 else ''}: "
                     f"{r.get('detail') or ''}")
        L.append("")
    nt = [r for r in rows if r.get("status") in ("not-timed", "skipped-memory")]
    if nt:
        L.append(f"Configurations not timed: {sum(r['status'] == 'not-timed' for r in nt)} (cap/budget), "
                 f"{sum(r['status'] == 'skipped-memory' for r in nt)} (memory estimate over the cap); "
                 "see the CSV.")
    return "\n".join(L)


# -- main ------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a handful of corpus matrices and the large set at reduced sizes")
    p.add_argument("--only", default=None, help="comma-separated matrix names (large-set or corpus names)")
    p.add_argument("--formats", default=None, help="comma-separated format names (default: all registered)")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of matvec,rmatvec,matmat")
    p.add_argument("--out", default=str(C.RESULTS), help="output directory (default benchmarks/results/)")
    p.add_argument("--no-large", action="store_true", help="skip the large generated set")
    p.add_argument("--no-corpus", action="store_true", help="skip the corpus")
    p.add_argument("--max-configs", type=int, default=None,
                   help="configurations tried per format and matrix, smallest estimated bytes first (0: all)")
    p.add_argument("--explore-budget", type=float, default=None,
                   help="seconds per matrix for trying configurations beyond each format's first")
    p.add_argument("--mem-limit", type=float, default=3.0, help="GiB a single converted matrix may take")
    p.add_argument("--from-csv", default=None, metavar="CSV",
                   help="measure nothing: redraw the figure and summary from an earlier kernels.csv")
    a = p.parse_args(argv)
    a.ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    bad = [o for o in a.ops if o not in OPS]
    if bad:
        p.error(f"unknown op(s) {bad}; accepted: {', '.join(OPS)}")
    a.only = None if a.only is None else {s.strip() for s in a.only.split(",") if s.strip()}
    return a


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    st = Settings(args.quick, args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.from_csv:
        return replot(args, out_dir)

    from autosparse import formats as fmts
    from autosparse.kernels._runtime import num_threads, threading_layer
    registered = fmts.names()
    if args.formats:
        want = [f.strip() for f in args.formats.split(",") if f.strip()]
        missing = [f for f in want if f not in registered]
        if missing:
            C.log(f"[formats] not registered / not present yet, skipped: {', '.join(missing)}")
        formats = [f for f in want if f in registered]
    else:
        formats = registered
    same = [f for f in formats if f in PEER_NAMES]
    if same:      # the "scipy" baseline layout is SciPy itself: measured as the peer
        C.log(f"[formats] {', '.join(same)}: the untouched input multiplied by SciPy, measured as the peer")
        formats = [f for f in formats if f not in PEER_NAMES]
    peers_avail = ["scipy"] + [n for n, ok in (("mkl", C.mkl_module()), ("graphblas", C.graphblas_module())) if ok]
    layer = threading_layer()
    C.log(f"formats: {', '.join(formats)}; peers: {', '.join(peers_avail)}; {num_threads()} threads ({layer})")

    triad = C.Triad(st.triad_n)
    bw_start = C.triad_bandwidth(rounds=3 if args.quick else 5, triad=triad)
    C.log(f"triad bandwidth {bw_start / 1e9:.1f} GB/s")

    large, corpus_entries = [], []
    if not args.no_large:
        large = [n for n in C.LARGE if args.only is None or n in args.only]
    if not args.no_corpus:
        entries = C.corpus()
        if args.only is not None:
            entries = [e for e in entries if e["name"] in args.only]
        elif args.quick:
            entries = C.quick_corpus(entries)
        corpus_entries = entries
    if args.only is not None:
        known = set(C.LARGE) | {e["name"] for e in C.corpus()}
        unknown = sorted(args.only - known)
        if unknown:
            C.log(f"[only] unknown matrix names ignored: {', '.join(unknown)}")

    rows = []
    csv_path = out_dir / "kernels.csv"
    rows += overhead(formats)
    ov = [r for r in rows if r["status"] == "ok"]
    for r in ov:
        C.log(f"overhead {r['candidate']}: {r['detail']}")

    def flush():
        write_csv(csv_path, rows)

    large_done, corpus_done = [], []
    jobs = [("large", n, "generated", None) for n in large] + \
           [("corpus", e["name"], e["class"], e) for e in corpus_entries]
    try:
        for i, (which, name, cls, entry) in enumerate(jobs):
            t0 = time.perf_counter()
            try:
                if which == "large":
                    A = C.large_matrix(name, quick=args.quick)
                else:
                    A = C.load(entry)
            except Exception as exc:  # noqa: BLE001
                C.log(f"[{i + 1}/{len(jobs)}] {name}: cannot load ({type(exc).__name__}: {exc})")
                rows.append({"matrix": name, "set": which, "class": cls, "stage": "load", "status": "error",
                             "detail": short(exc)})
                continue
            if A.dtype != np.float64:
                if A.dtype.kind == "c":
                    C.log(f"[{i + 1}/{len(jobs)}] {name}: complex matrix skipped (float64 benchmark)")
                    continue
                A = A.astype(np.float64)
            C.log(f"[{i + 1}/{len(jobs)}] {name} ({which}, {cls}): {A.shape[0]}x{A.shape[1]}, nnz {A.nnz} "
                  f"(made in {time.perf_counter() - t0:.1f}s)")
            mr = MatrixRun(name, which, cls, A, st, bw_start, formats, args.ops, triad=triad)
            try:
                rows += mr.run()
            except Exception as exc:  # noqa: BLE001 - report and go on with the next matrix
                rows += mr.rows
                traceback.print_exc()
                rows.append({"matrix": name, "set": which, "class": cls, "stage": "run", "status": "error",
                             "detail": short(f"{type(exc).__name__}: {exc}")})
            (large_done if which == "large" else corpus_done).append(name)
            del A, mr
            gc.collect()
            flush()
    except KeyboardInterrupt:
        C.log("interrupted: writing what was measured")

    bw_end = C.triad_bandwidth(rounds=3 if args.quick else 5, triad=triad)
    del triad
    bw = max(bw_start, bw_end)
    if bw_end > bw_start:     # re-base the fractions not measured beside a triad on the larger measurement
        triad_ops = {(r["matrix"], r["op"]) for r in rows if r.get("kind") == "triad" and r.get("stage") == "final"}
        for r in rows:
            beside = r.get("stage") == "final" and (r["matrix"], r.get("op")) in triad_ops
            if r.get("bw_fraction") is not None and not beside:
                r["bw_fraction"] = r["bw_fraction"] * bw_start / bw
    for b, when in ((bw_start, "start"), (bw_end, "end")):
        rows.append({"matrix": "triad", "set": "machine", "stage": "bandwidth", "candidate": "triad", "kind": "triad",
                     "status": "ok", "gbps": b / 1e9, "detail": f"numba streaming triad at {when}"})
    flush()
    png = out_dir / "kernels.png"
    figure(png, rows, args.ops, large_done, corpus_done)
    psrc = sorted({r.get("profile_source") for r in rows if r.get("profile_source")}) or ["–"]
    meta = dict(cpu=C.cpu_model(), threads=_threads(), layer=layer, bw=bw, bw_start=bw_start, bw_end=bw_end,
                formats=formats, peers=peers_avail, profile_source=", ".join(psrc), quick=args.quick,
                elapsed=time.perf_counter() - t_start)
    structured = {n for n, v in C.LARGE.items() if v[3]}
    text = summary(rows, meta, args.ops, large_done, corpus_done, structured)
    (out_dir / "summary.md").write_text(text + "\n")
    print()
    print(text)
    C.log(f"\nwrote {csv_path}, {png if png.exists() else '(no figure)'}, {out_dir / 'summary.md'}")
    return 0


def replot(args, out_dir):
    rows = read_csv(args.from_csv)
    ops = [o for o in args.ops if any(r.get("op") == o and r.get("stage") == "final" for r in rows)]
    large = list(dict.fromkeys(r["matrix"] for r in rows if r.get("set") == "large" and r.get("stage") == "final"))
    corp = list(dict.fromkeys(r["matrix"] for r in rows if r.get("set") == "corpus" and r.get("stage") == "final"))
    bws = [r["gbps"] * 1e9 for r in rows if r.get("stage") == "bandwidth"] or [float("nan")] * 2
    fmts_seen = list(dict.fromkeys(r["candidate"] for r in rows if r.get("kind") == "format" and r.get("candidate")))
    peers = list(dict.fromkeys(r["candidate"] for r in rows if r.get("kind") == "peer"))
    psrc = sorted({r.get("profile_source") for r in rows if r.get("profile_source")}) or ["-"]
    meta = dict(cpu=C.cpu_model(), threads="?", layer="?", bw=max(bws), bw_start=bws[0], bw_end=bws[-1],
                formats=[f for f in fmts_seen if f != PLAIN], peers=peers, profile_source=", ".join(psrc),
                quick=args.quick, elapsed=float("nan"))
    structured = {n for n, v in C.LARGE.items() if v[3]}
    figure(out_dir / "kernels.png", rows, ops, large, corp)
    text = summary(rows, meta, ops, large, corp, structured)
    (out_dir / "summary.md").write_text(text + "\n")
    print(text)
    return 0


def _threads():
    from autosparse.kernels._runtime import num_threads
    return num_threads()


if __name__ == "__main__":
    sys.exit(main())
