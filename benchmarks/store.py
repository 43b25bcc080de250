#!/usr/bin/env python
"""Plan store benchmark: hit latency, tune() on a hit, offline throughput.

    python benchmarks/store.py [--quick] [--offline N] [--out DIR]

1. **Hit latency**: ``PlanStore.lookup`` for a real matrix's profile on stores
   holding 10 and 10,000 plans (the other plans are synthetic rows under the
   same machine and kernel version, so the index, not a scan, must find the
   row).  Also ``warm_starts`` on the 10,000-plan store: first call (reads
   and parses every row's features) and cached.
2. **tune() on a hit against the build alone**: a matrix is tuned once into
   a fresh store; then ``tune()`` (profile + lookup + build, a hit) and
   ``build(A, plan)`` alone are timed interleaved.  When the search chose the
   SciPy baseline (nothing to build), a CSR plan is stored in its place so the
   build has real work.  The difference is what a hit costs beyond the build:
   mostly the profile.
3. **Offline throughput**: ``autosparse.offline.run`` over the N smallest
   corpus matrices (default 8; 4 with ``--quick``) into a fresh store, with
   ``-j 1`` (one process, all cores) and ``-j 2`` (loky workers, cores split),
   in matrices per minute, worker start-up included.

Prints a summary and writes ``store.json`` to ``--out`` (default
``benchmarks/results/``).  Times are medians of interleaved rounds
(``autosparse.timing``); the machine is shared, so read ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

os.environ.setdefault("AUTOSPARSE_WISDOM", "none")      # measure the store, not the shipped prior


def synthetic_rows(n, mid, kv, wc, plan_text, dim=29, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    feats = [",".join(f"{v:.5f}" for v in rng.random(dim)) for _ in range(min(n, 1000))]
    return [(f"s1-synthetic{i:020x}", "float64", wc, mid, kv, f"p{i}", "measure", 1, f"[{feats[i % len(feats)]}]",
             "[1000,1000]", 5000, None, "matvec=1000", None, plan_text, "{}", 0.0, 0.0) for i in range(n)]


def bench_latency(tmp, A):
    from autosparse import store as S
    from autosparse.plan import Plan
    from autosparse.profile import profile
    from autosparse.timing import measure
    from autosparse.workload import Workload
    W = Workload(matvec=1000)
    prof = profile(A)
    out = {}
    for n in (10, 10_000):
        st = S.PlanStore(Path(tmp) / f"lat{n}.sqlite")
        rows = synthetic_rows(n - 1, S.machine_id(), S.kernel_version(), W.workload_class(),
                              Plan.single("bsr", r=2, c=2).to_json())
        st._run(lambda c: st._write(c, lambda c2: c2.executemany(S._UPSERT, rows)), strict=True)
        st.save(prof, W, "measure", Plan.single("csr", index_dtype="int32"))
        assert len(st) == n and st.lookup(prof, W) is not None
        t = measure(lambda: st.lookup(prof, W), budget=0.5, max_samples=50)
        miss = Workload(matvec=10**7)
        tm = measure(lambda: st.lookup(prof, miss), budget=0.3, max_samples=30)
        out[n] = {"hit_us": t.median * 1e6, "hit_best_us": t.best * 1e6, "miss_us": tm.median * 1e6}
        if n == 10_000:
            st._neighbours = None
            t0 = time.perf_counter()
            st.warm_starts(prof, W)
            out[n]["warm_first_ms"] = (time.perf_counter() - t0) * 1e3
            tw = measure(lambda: st.warm_starts(prof, W), budget=0.3, max_samples=30)
            out[n]["warm_cached_us"] = tw.median * 1e6
            out[n]["file_kib"] = st.stats()["bytes"] / 1024
        st.close()
        C.log(f"[latency] {n:6d} plans: hit {out[n]['hit_us']:.0f} us (best {out[n]['hit_best_us']:.0f}), "
              f"miss {out[n]['miss_us']:.0f} us" +
              (f"; warm starts first {out[n]['warm_first_ms']:.0f} ms, cached {out[n]['warm_cached_us']:.0f} us"
               if "warm_first_ms" in out[n] else ""))
    return out


def bench_hit(tmp, name, A):
    import autosparse as asp
    from autosparse.plan import Plan
    from autosparse.profile import profile
    from autosparse.timing import interleaved
    st = asp.PlanStore(Path(tmp) / f"hit-{name}.sqlite")
    W = asp.Workload(matvec=2000)
    T = asp.tune(A, W, store=st)
    plan = T.plan
    note = ""
    if plan.is_baseline:
        plan = Plan.single("csr", index_dtype="int32")
        st.save(profile(A), W, "exhaustive", plan)
        note = " (search kept SciPy; a CSR plan stored in its place)"
    hit = asp.tune(A, W, store=st)
    assert hit.report.source == "store" and hit.plan == plan, hit.report.source
    t = interleaved({"tune_hit": lambda: asp.tune(A, W, store=st), "build": lambda: asp.build(A, plan),
                     "profile": lambda: profile(A)}, rounds=5, budget=0.3, max_samples=9)
    r = {"matrix": name, "shape": list(A.shape), "nnz": int(A.nnz), "plan": plan.describe(),
         "tune_hit_ms": t["tune_hit"].median * 1e3, "build_ms": t["build"].median * 1e3,
         "profile_ms": t["profile"].median * 1e3, "first_tune_s": T.report.tuning_s}
    r["ratio"] = r["tune_hit_ms"] / r["build_ms"] if r["build_ms"] > 0 else float("inf")
    C.log(f"[hit] {name} {A.shape[0]}x{A.shape[1]} nnz {A.nnz}: plan {r['plan']}{note}; tune() on a hit "
          f"{r['tune_hit_ms']:.2f} ms vs build alone {r['build_ms']:.2f} ms ({r['ratio']:.2f}x; "
          f"profile {r['profile_ms']:.2f} ms); the first tune took {r['first_tune_s']:.2f} s")
    st.close()
    return r


def bench_offline(tmp, entries):
    from autosparse.offline import run
    paths = [str(e["path"]) for e in entries]
    out = {}
    for jobs in (1, 2):
        res = run(paths, jobs=jobs, store=Path(tmp) / f"offline-j{jobs}.sqlite", workload="matvec=20000",
                  progress=False)
        done = res.count("tuned")
        rate = done / res.elapsed * 60 if res.elapsed > 0 else 0.0
        out[jobs] = {"matrices": len(paths), "tuned": done, "failed": res.failed, "seconds": res.elapsed,
                     "per_minute": rate, "workers": res.workers, "threads": res.threads}
        C.log(f"[offline] -j {jobs}: {done}/{len(paths)} tuned in {res.elapsed:.1f} s = {rate:.1f} matrices/min "
              f"({res.workers} worker(s) x {res.threads} thread(s))")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller matrices, fewer offline matrices")
    p.add_argument("--offline", type=int, default=None, help="corpus matrices for the offline run (default 8)")
    p.add_argument("--out", default=str(C.RESULTS), help="output directory (default benchmarks/results/)")
    args = p.parse_args(argv)
    from autosparse.io import example
    results = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        results["latency"] = bench_latency(tmp, example("poisson2d", 100))
        mats = [("poisson2d_300", example("poisson2d", 300 if not args.quick else 150))]
        corpus = C.corpus()
        big = [e for e in corpus if e["name"] == "bcsstk17"]
        if big and not args.quick:
            mats.append(("bcsstk17", C.load(big[0])))
        if not args.quick:
            mats.append(("poisson3d_100", C.large_matrix("poisson3d_100")))
        results["hit"] = [bench_hit(tmp, n, A) for n, A in mats]
        n_off = args.offline or (4 if args.quick else 8)
        entries = [e for e in corpus if e["nnz"] >= 5000][:n_off]
        results["offline"] = bench_offline(tmp, entries) if entries else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "store.json").write_text(json.dumps(results, indent=2))
    C.log(f"[done] results in {out / 'store.json'}")
    return results


if __name__ == "__main__":
    main()
