"""Offline tuning: tune a whole collection of Matrix Market files, once, ahead of the compute.

``run(paths, ...)`` (and ``autosparse offline PATHS...``) tunes every file
given - files, directories (searched recursively for ``*.mtx`` and
``*.mtx.gz``), glob patterns, or ``example:NAME`` for a built-in matrix - and
stores the plans in the plan store, where later ``tune()`` calls find them.

Parallelism
-----------
joblib (loky processes) runs the files in parallel.  The cores are split
between workers and numba's threads: ``-j N`` runs ``min(N, cores)`` workers
with ``cores // workers`` numba threads each, never more threads than cores.
Note that a plan's key names the thread count it was tuned with: plans made
with ``-j 2`` on a 2-core machine are 1-thread plans, answers for 1-thread
processes and warm starts for everything else.  ``-j 1`` (the default) tunes
with every core, as an interactive ``tune()`` would run.

``dask=ADDRESS`` runs the same tasks on a dask cluster through joblib's dask
backend; each task sets its numba threads to its host's cores divided by
the dask threads on that host.  Files are read by the workers (paths must be
visible to them).

Workers never write the store: each tunes against a private in-memory
store (warm-started from the shipped wisdom) and sends its plan back as a
wisdom record, which the parent validates and writes.  So the store needs no
shared file system, has one writer, and keeps every finished result if the
run is interrupted.

Resumable: a file already tuned for this machine (with the worker's thread
count), kernel version, workload class and at least this effort is skipped -
without being read when its size and modification time are unchanged
since the run that tuned it, else after profiling it.  A file that fails to
parse is reported and skipped; the run goes on.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .store import EFFORT_RANK, fingerprint_of, kernel_version, machine_id, resolve

log = logging.getLogger("autosparse")

OFFLINE_EFFORTS = ("measure", "patient", "exhaustive")
MATRIX_SUFFIXES = (".mtx", ".mtx.gz")


# ---------------------------------------------------------------------------
# inputs

def collect(paths) -> tuple[list, list]:
    """(sources, problems): the matrix files (and ``example:NAME``) that ``paths`` name, in
    order and deduplicated, and (path, reason) for arguments that name nothing."""
    from .io import EXAMPLES
    out, problems, seen = [], [], set()

    def add(s):
        key = s if s.startswith("example:") else os.path.realpath(s)
        if key not in seen:
            seen.add(key)
            out.append(s)

    for p in paths:
        p = os.fspath(p)
        if p.startswith("example:"):
            name = p.split(":", 1)[1]
            if name in EXAMPLES:
                add(p)
            else:
                problems.append((p, f"unknown example {name!r}; accepted: {', '.join(EXAMPLES)}"))
        elif os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and f.name.endswith(MATRIX_SUFFIXES))
            if not found:
                problems.append((p, "directory holds no .mtx or .mtx.gz files"))
            for f in found:
                add(f)
        elif os.path.isfile(p):
            add(p)
        elif glob.has_magic(p):
            found = sorted(f for f in glob.glob(p, recursive=True) if os.path.isfile(f))
            if not found:
                problems.append((p, "pattern matches no file"))
            for f in found:
                add(f)
        else:
            problems.append((p, "no such file or directory"))
    return out, problems


def source_name(source) -> str:
    source = os.fspath(source)
    if source.startswith("example:"):
        return source
    base = os.path.basename(source)
    for suf in (".mtx.gz", ".mtx"):
        if base.endswith(suf):
            return base[: -len(suf)]
    return base


def load(source: str):
    """The matrix of a source: a Matrix Market file or ``example:NAME``."""
    from .io import example, read_matrix
    source = os.fspath(source)
    if source.startswith("example:"):
        return example(source.split(":", 1)[1])
    return read_matrix(source)


def _stamp(source: str) -> str:
    if source.startswith("example:"):
        return "builtin"
    st = os.stat(source)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _key_path(source: str) -> str:
    return source if source.startswith("example:") else os.path.realpath(source)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------
# the task a worker runs

def _set_threads(threads) -> int:
    import numba
    n = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _dask_threads(thread_plan) -> int:
    try:
        from distributed import get_worker
        return int(thread_plan[get_worker().address])
    except Exception:                    # noqa: BLE001 - not on a dask worker, or unknown to the plan
        return max(1, available_cores() // max(1, len(thread_plan) or 1))


def tune_one(task: dict) -> dict:
    """Tune one source in this process; never raises (a failure is a row with its reason)."""
    from .tuner import tune
    from .workload import Workload
    t0 = time.perf_counter()
    source = task["source"]
    row = {"source": source, "name": source_name(source), "status": "failed", "plan": None, "speedup": None,
           "tuning_s": None, "shape": None, "nnz": None, "records": [], "error": None, "pid": os.getpid()}
    try:
        threads = task.get("threads")
        if threads is None:
            threads = _dask_threads(task.get("thread_plan") or {})
        row["threads"] = _set_threads(threads)
        workload = Workload.parse(task["workload"])
        A = load(source)
        row["shape"], row["nnz"] = tuple(int(s) for s in A.shape), int(A.nnz)
        from .profile import profile
        fp = fingerprint_of(profile(A, seed=task.get("seed", 0)))
        mid = machine_id()
        row["key"] = {"structure_key": fp.structure_key, "dtype": fp.dtype, "pattern": fp.pattern,
                      "machine_id": mid, "kernel_version": kernel_version(),
                      "workload_class": workload.workload_class()}
        if (fp.structure_key, fp.dtype, mid, fp.pattern or "") in task.get("known", ()):
            row["status"] = "skipped"
            return row
        from .store import PlanStore
        mem = PlanStore(":memory:")
        T = tune(A, workload, effort=task["effort"], time_limit=task.get("time_limit"), store=mem,
                 seed=task.get("seed", 0))
        rep = T.report
        row.update(status="tuned", plan=T.plan.describe(), speedup=rep.speedup, source_kind=rep.source)
        records = mem.records()
        for r in records:
            r["name"] = row["name"]
        row["records"] = records
        if not records:
            row["note"] = rep.source
    except Exception as exc:             # noqa: BLE001 - one bad file never stops the run
        row["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        log.debug("offline: %s failed", source, exc_info=True)
    finally:
        row["tuning_s"] = time.perf_counter() - t0
    return row


# ---------------------------------------------------------------------------
# the run

@dataclass
class OfflineResult:
    rows: list = field(default_factory=list)
    workers: int = 1
    threads: int | None = None
    backend: str = "loky"
    elapsed: float = 0.0
    store: str = ""

    def count(self, status) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def table(self) -> str:
        head = ("matrix", "shape", "nnz", "status", "plan", "speed-up", "time s")
        lines = []
        for r in self.rows:
            shape = "x".join(map(str, r["shape"])) if r.get("shape") else "-"
            plan = r.get("plan") or (r.get("error") or "-")
            sp = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
            ts = f"{r['tuning_s']:.2f}" if r.get("tuning_s") is not None else "-"
            lines.append((r["name"], shape, str(r.get("nnz") or "-"), r["status"], plan, sp, ts))
        widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(head)]
        widths[4] = min(widths[4], 60)
        fmt = "  ".join(f"{{:{'>' if i in (2, 5, 6) else '<'}{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        for x in lines:
            x = list(x)
            if len(x[4]) > 60:
                x[4] = x[4][:57] + "..."
            out.append(fmt.format(*x))
        rate = len(self.rows) / self.elapsed * 60 if self.elapsed > 0 else 0.0
        par = (f"{self.workers} worker(s) x {self.threads} thread(s)" if self.threads
               else f"{self.workers} dask thread slot(s)")
        out.append(f"{self.count('tuned')} tuned, {self.count('skipped')} skipped (already tuned), "
                   f"{self.failed} failed; {self.elapsed:.1f} s ({rate:.1f} matrices/min), {par} [{self.backend}]; "
                   f"store {self.store}")
        return "\n".join(out)


class _Progress:
    def __init__(self, total, enabled, stream):
        self.total, self.done, self.stream, self.bar = total, 0, stream, None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, file=stream, unit="matrix", dynamic_ncols=True, leave=True)
            except ImportError:
                self.bar = None

    def update(self, row):
        self.done += 1
        if not self.enabled:
            return
        msg = f"{row['name']}: {row['status']}" + (f" ({row['error']})" if row.get("error") else "")
        if self.bar is not None:
            self.bar.set_postfix_str(msg[:50], refresh=False)
            self.bar.update(1)
        else:
            print(f"[{self.done}/{self.total}] {msg}", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run(paths, *, jobs: int = 1, effort: str = "measure", workload=None, store=None, dask=None,
        time_limit=None, seed: int = 0, progress: bool = True, stream=None) -> OfflineResult:
    """Tune every matrix ``paths`` names and store the plans; a per-matrix result table.

    ``store``: path or PlanStore (None: the default store).  ``dask``: a scheduler address
    or a ``distributed.Client``.  ``jobs``: local worker processes (<= cores).
    """
    from .workload import Workload
    stream = sys.stderr if stream is None else stream
    if effort not in OFFLINE_EFFORTS:
        raise ValueError(f"offline effort must be one of {', '.join(OFFLINE_EFFORTS)}, got {effort!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    workload = Workload.coerce(workload)
    st = resolve(store)
    if st is None:
        raise ValueError("offline tuning needs a plan store (store=False given)")
    t0 = time.perf_counter()
    sources, problems = collect(paths)
    result = OfflineResult(store=repr(st))
    for p, reason in problems:
        result.rows.append({"source": p, "name": p, "status": "failed", "error": reason})
    wc, rank = workload.workload_class(), EFFORT_RANK[effort]

    client = None
    if dask is not None:
        from distributed import Client
        client = dask if isinstance(dask, Client) else Client(dask)
        info = client.scheduler_info()["workers"]
        cpus = client.run(available_cores)
        per_host: dict = {}
        for addr, w in info.items():
            per_host[w.get("host")] = per_host.get(w.get("host"), 0) + int(w.get("nthreads", 1))
        thread_plan = {addr: max(1, int(cpus.get(addr, 1)) // max(1, per_host[w.get("host")]))
                       for addr, w in info.items()}
        result.workers = sum(int(w.get("nthreads", 1)) for w in info.values())
        result.backend = f"dask {client.scheduler.address}"
        result.threads = None
        workers, threads = result.workers, None
    else:
        cores = available_cores()
        workers = max(1, min(jobs, cores, max(1, len(sources))))
        threads = max(1, cores // workers)
        result.workers, result.threads = workers, threads
        result.backend = "in-process" if workers == 1 else "loky"
        thread_plan = None

    # resume: files tuned by an earlier run (same stamp, machine, kernels) are skipped unread
    todo = []
    mid_local = machine_id(threads) if threads else None
    for s in sources:
        done = None
        if mid_local is not None:
            try:
                done = st.source_done(_key_path(s), _stamp(s), mid_local, wc, rank)
            except OSError:
                done = None
        if done is not None:
            result.rows.append({"source": s, "name": source_name(s), "status": "skipped", "plan": done["plan_text"],
                                "speedup": done["speedup"], "tuning_s": 0.0, "shape": done["shape"],
                                "nnz": done["nnz"], "error": None})
        else:
            todo.append(s)
    known = st.tuned_keys(wc, rank)
    tasks = [{"source": s, "workload": str(workload), "effort": effort, "threads": threads,
              "thread_plan": thread_plan, "time_limit": time_limit, "seed": seed, "known": known} for s in todo]

    bar = _Progress(len(sources) + len(problems), progress, stream)
    for r in result.rows:
        bar.update(r)
    try:
        for row in _execute(tasks, workers, client):
            _store_row(st, row)
            result.rows.append(row)
            bar.update(row)
    finally:
        bar.close()
        if client is not None and client is not dask:
            client.close()
    order = {s: i for i, s in enumerate([p for p, _ in problems] + list(sources))}
    result.rows.sort(key=lambda r: order.get(r["source"], len(order)))
    result.elapsed = time.perf_counter() - t0
    return result


def _execute(tasks, workers, client):
    """Results of ``tune_one`` over ``tasks`` as they finish."""
    if not tasks:
        return
    if client is None and workers == 1:
        import numba
        before = numba.get_num_threads()
        try:
            for t in tasks:
                yield tune_one(t)
        finally:
            numba.set_num_threads(before)
        return
    import joblib
    if client is not None:
        config = joblib.parallel_config(backend="dask", n_jobs=-1)
    else:
        config = joblib.parallel_config(backend="loky", n_jobs=workers,
                                        inner_max_num_threads=tasks[0]["threads"])
    with config:
        yield from joblib.Parallel(return_as="generator_unordered")(joblib.delayed(tune_one)(t) for t in tasks)


def _store_row(st, row):
    """Write a finished row's plan records (validated like any wisdom) and mark its source."""
    records = row.pop("records", None) or []
    if records:
        rep = st.import_records(records, source=row["source"])
        bad = [r for r in rep.lines if not r.accepted]
        if bad:
            log.warning("offline: %s: %d record(s) rejected: %s", row["name"], len(bad), bad[0].reason)
        for rec in records:
            try:
                st.mark_source(_key_path(row["source"]), _stamp(row["source"]), rec)
            except OSError:
                pass
    elif row["status"] == "skipped" and row.get("key"):
        key = row["key"]
        rec = dict(key)
        try:
            st.mark_source(_key_path(row["source"]), _stamp(row["source"]), rec)
        except OSError:
            pass
        entry = _stored_entry(st, key)
        if entry is not None:
            row["plan"], row["speedup"] = entry["plan_text"], entry["speedup"]
    row.pop("key", None)


def _stored_entry(st, key):
    rows = st.records("WHERE structure_key = ? AND dtype = ? AND workload_class = ? AND machine_id = ? "
                      "AND kernel_version = ? AND pattern = ?",
                      (key["structure_key"], key["dtype"], key["workload_class"], key["machine_id"],
                       key["kernel_version"], key.get("pattern") or ""))
    if not rows:
        return None
    from .plan import Plan
    r = rows[0]
    return {"plan_text": Plan.from_dict(r["plan"]).describe(), "speedup": (r.get("report") or {}).get("speedup")}
