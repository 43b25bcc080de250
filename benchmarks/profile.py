"""What profiling costs: ``autosparse.profile.profile(A)`` against one SciPy matvec.

The issue's budget: profiling a 10M-nnz matrix costs at most two SciPy
``A @ x`` times.  This measures the ratio on the corpus and on large
generated matrices, timing the profile and SciPy's matvec (and MKL's, when
``sparse_dot_mkl`` is installed) round-robin with ``autosparse.timing``.
It also reports the CPU-time ratio (process CPU seconds per call, from the
same runs): on a shared machine wall time includes waiting for a core, and
the profile's exact pass runs on all threads for big matrices while SciPy
uses one.

    python benchmarks/profile.py                 # corpus + large set
    python benchmarks/profile.py --quick         # 8 corpus matrices, large set at reduced sizes
    python benchmarks/profile.py --only poisson3d_10M,powerlaw_10M --no-corpus
    python benchmarks/profile.py --breakdown     # also time the profiler's phases

Writes ``benchmarks/results/profile.csv`` (``--out DIR`` to change) and
prints a table.  A missing corpus, pyamg or MKL is skipped with a message.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if not os.environ.get("MKL_RT"):                     # sparse_dot_mkl needs its runtime before import
    _rt = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    if _rt:
        os.environ["MKL_RT"] = _rt[-1]
os.environ.setdefault("KMP_BLOCKTIME", "0")          # idle MKL threads must not steal the cores

import importlib                                      # noqa: E402

P = importlib.import_module("autosparse.profile")    # the module (autosparse.profile is also the function)
from autosparse._checks import as_csr, unsigned       # noqa: E402
from autosparse.io import example, powerlaw, read_matrix  # noqa: E402
from autosparse.timing import interleaved             # noqa: E402


def log(*a):
    print(*a, flush=True)


# -- matrices -------------------------------------------------------------------

def _pyamg():
    try:
        import pyamg
        return pyamg
    except ImportError:
        return None


def poisson_pyamg(n):
    return sp.csr_array(_pyamg().gallery.poisson((n, n, n), format="csr"), dtype=np.float64)


def elasticity_pyamg(n):
    return sp.csr_array(_pyamg().gallery.linear_elasticity((n, n))[0].tocsr(), dtype=np.float64)


# name -> (generator, full kwargs, quick kwargs, needs pyamg)
LARGE = {
    "poisson3d_100": (poisson_pyamg, {"n": 100}, {"n": 40}, True),
    "elasticity_500": (elasticity_pyamg, {"n": 500}, {"n": 120}, True),
    "powerlaw_1M": (lambda m: powerlaw(m, rng=0), {"m": 1_000_000}, {"m": 100_000}, False),
    "banded_2M": (lambda m: example("banded", m), {"m": 2_000_000}, {"m": 200_000}, False),
    "poisson3d_10M": (lambda n: example("poisson3d", n), {"n": 115}, {"n": 50}, False),     # 10.6M nnz
    "powerlaw_10M": (lambda m: powerlaw(m, rng=1), {"m": 1_250_000}, {"m": 125_000}, False),  # 10.2M nnz
}


def corpus_entries():
    d = Path(os.environ.get("AUTOSPARSE_MATRICES", ROOT.parent / "shared" / "matrices"))
    manifest = d / "MANIFEST.tsv"
    if not manifest.is_file():
        log(f"[corpus] no matrix corpus at {d} (set AUTOSPARSE_MATRICES); corpus skipped")
        return []
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for r in rows:
        path = d / f"{r['name']}.mtx.gz"
        if path.is_file():
            out.append({"name": r["name"], "class": r["class"], "nnz": int(r["nnz"]), "path": path})
    return sorted(out, key=lambda e: e["nnz"])


# -- peers ------------------------------------------------------------------------

def mkl_matvec(A):
    try:
        from sparse_dot_mkl import dot_product_mkl
    except Exception as exc:                        # noqa: BLE001 - any import failure means "no MKL"
        return None, f"MKL skipped ({type(exc).__name__}: {exc})"
    A32 = sp.csr_matrix((A.data, A.indices.astype(np.int32), A.indptr.astype(np.int32)), shape=A.shape)
    x = np.ones(A.shape[1])
    y = np.empty(A.shape[0])
    try:
        dot_product_mkl(A32, x, out=y, out_scalar=0.0)
    except Exception as exc:                        # noqa: BLE001
        return None, f"MKL skipped ({type(exc).__name__}: {exc})"
    return (lambda: dot_product_mkl(A32, x, out=y, out_scalar=0.0)), None


def cpu_timed(fn):
    """fn wrapped to add its process CPU seconds to .cpu (and calls to .n)."""
    def call():
        t = time.process_time()
        fn()
        call.cpu += time.process_time() - t
        call.n += 1
    call.cpu = 0.0
    call.n = 0
    return call


def phases(A):
    """Seconds of the profiler's phases, one call each (after warm-up)."""
    A = as_csr(A)
    m, n = A.shape
    nnz = A.nnz
    sample = P._blocks(A.indptr, A.indices, n, nnz, 0.02, 0)[2]
    steps = {
        "exact_pass": lambda: P._exact(A.indptr, A.indices, m, n, nnz, 0),
        "blocks": lambda: P._blocks(A.indptr, A.indices, n, nnz, 0.02, 0),
        "values": lambda: P._values(unsigned(A.indptr), A.data, sample) if nnz else None,
    }
    prof = P.profile(A)
    steps["memory"] = lambda: P._memory(prof)
    res = interleaved(steps, rounds=2, budget=0.2, max_samples=5)
    return {k: t.median for k, t in res.items()}


def measure(name, A, mkl=True, breakdown=False):
    A = as_csr(A)
    x = np.ones(A.shape[1])
    fns = {"scipy": cpu_timed(lambda: A @ x), "profile": cpu_timed(lambda: P.profile(A)),
           # everything but the memory estimates (those run the format modules' own Python code)
           "profile_nomem": cpu_timed(lambda: P._profile_csr(A, 0.02, 0))}
    note = ""
    if mkl:
        call, why = mkl_matvec(A)
        if call is None:
            note = why
        else:
            fns["mkl"] = cpu_timed(call)
    res = interleaved(fns, rounds=3, budget=0.3, max_samples=7)
    row = {"matrix": name, "rows": A.shape[0], "cols": A.shape[1], "nnz": A.nnz,
           "scipy_ms": res["scipy"].median * 1e3, "profile_ms": res["profile"].median * 1e3,
           "mkl_ms": res["mkl"].median * 1e3 if "mkl" in res else float("nan")}
    row["profile_nomem_ms"] = res["profile_nomem"].median * 1e3
    row["ratio_scipy"] = row["profile_ms"] / row["scipy_ms"]
    row["ratio_scipy_nomem"] = row["profile_nomem_ms"] / row["scipy_ms"]
    row["ratio_mkl"] = row["profile_ms"] / row["mkl_ms"] if "mkl" in res else float("nan")
    cpu = {k: f.cpu / max(f.n, 1) for k, f in fns.items()}
    row["cpu_ratio_scipy"] = cpu["profile"] / cpu["scipy"] if cpu["scipy"] > 0 else float("nan")
    row["cpu_ratio_scipy_nomem"] = cpu["profile_nomem"] / cpu["scipy"] if cpu["scipy"] > 0 else float("nan")
    if breakdown:
        for k, v in phases(A).items():
            row[f"{k}_ms"] = v * 1e3
    return row, note


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 corpus matrices, large set at reduced sizes")
    ap.add_argument("--only", default="", help="comma-separated matrix names")
    ap.add_argument("--no-corpus", action="store_true")
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--no-mkl", action="store_true")
    ap.add_argument("--breakdown", action="store_true", help="also time the profiler's phases")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import numba
    log(f"[profile bench] numba threads {numba.get_num_threads()}, load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cpus")
    warm = example("poisson2d", 50)                  # pay for the kernels' compilation / cache load once
    P.profile(warm)
    mkl_note_shown = False

    rows = []
    todo = []
    if not args.no_corpus:
        entries = corpus_entries()
        if args.quick:
            entries = entries[::max(1, len(entries) // 8)][:8]
        todo += [("corpus", e["name"], e) for e in entries]
    if not args.no_large:
        todo += [("large", name, spec) for name, spec in LARGE.items()]
    for kind, name, spec in todo:
        if only and name not in only:
            continue
        if kind == "corpus":
            A = read_matrix(spec["path"])
        else:
            gen, full, small, needs_pyamg = spec
            if needs_pyamg and _pyamg() is None:
                log(f"[large] {name}: pyamg not installed (pip install pyamg); skipped")
                continue
            A = gen(**(small if args.quick else full))
        row, note = measure(name, A, mkl=not args.no_mkl, breakdown=args.breakdown)
        row["kind"] = kind
        if note and not mkl_note_shown:
            log(f"[mkl] {note}")
            mkl_note_shown = True
        rows.append(row)
        log(f"{name:28s} nnz {row['nnz']:>10d}  profile {row['profile_ms']:9.2f} ms  scipy {row['scipy_ms']:8.2f} ms"
            f"  ratio {row['ratio_scipy']:6.2f} (cpu {row['cpu_ratio_scipy']:5.2f}; without memory estimates "
            f"{row['ratio_scipy_nomem']:.2f}, cpu {row['cpu_ratio_scipy_nomem']:.2f})")
        del A

    if not rows:
        log("nothing measured")
        return 0
    keys = ["kind", "matrix", "rows", "cols", "nnz", "scipy_ms", "mkl_ms", "profile_ms", "profile_nomem_ms",
            "ratio_scipy", "ratio_scipy_nomem", "ratio_mkl", "cpu_ratio_scipy", "cpu_ratio_scipy_nomem"]
    extra = sorted({k for r in rows for k in r} - set(keys))
    path = out / "profile.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys + extra)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})

    log("")
    log(f"{'matrix':28s} {'nnz':>10s} {'profile ms':>11s} {'no-mem ms':>10s} {'scipy ms':>9s} {'mkl ms':>8s} "
        f"{'prof/scipy':>10s} {'no-mem':>7s} {'prof/mkl':>9s} {'cpu ratio':>9s} {'no-mem':>7s}")
    for r in rows:
        log(f"{r['matrix']:28s} {r['nnz']:>10d} {r['profile_ms']:>11.2f} {r['profile_nomem_ms']:>10.2f} "
            f"{r['scipy_ms']:>9.2f} {r['mkl_ms']:>8.2f} {r['ratio_scipy']:>10.2f} {r['ratio_scipy_nomem']:>7.2f} "
            f"{r['ratio_mkl']:>9.2f} {r['cpu_ratio_scipy']:>9.2f} {r['cpu_ratio_scipy_nomem']:>7.2f}")
    big = [r for r in rows if r["nnz"] >= 5_000_000]
    if big:
        worst = max(big, key=lambda r: r["ratio_scipy"])
        log(f"\nlargest ratio at >= 5M nnz: {worst['matrix']} {worst['ratio_scipy']:.2f}x SciPy matvec "
            f"(budget 2x; {worst['ratio_scipy_nomem']:.2f}x without the memory estimates); "
            f"CPU-time ratio {worst['cpu_ratio_scipy']:.2f}x")
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
