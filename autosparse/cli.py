"""The ``autosparse`` command.

    autosparse tune [FILE]          tune a matrix for a workload, print the plan, speed-up and tuning time
    autosparse profile [FILE]       the profiler's view of a matrix and its fingerprint
    autosparse bench [FILE]         the tuned operator against SciPy and MKL on that matrix
    autosparse offline PATHS...     tune a collection of matrices into the plan store
    autosparse db {list,show,export,import,clear,stats}   manage the plan store

FILE is a Matrix Market file (``.mtx`` or ``.mtx.gz``) or ``example:NAME``;
without it every command runs on a built-in example matrix (``--example``,
default poisson2d: the 5-point Laplacian on a 300 x 300 grid).  Errors are
one line on stderr and a non-zero exit status; ``-v`` logs more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import warnings

log = logging.getLogger("autosparse")

EFFORTS_HELP = "estimate | measure (default) | patient | exhaustive | cache_only"


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------
# helpers

def _matrix(args):
    """(A, description, name) for the FILE argument or the built-in example."""
    from . import io
    src = getattr(args, "file", None)
    if src is None or src.startswith("example:"):
        name = src.split(":", 1)[1] if src else args.example
        A = io.example(name)
        return A, f"built-in example {name}", f"example:{name}"
    A = io.read_matrix(src)
    return A, src, os.path.basename(src)


def _workload(text):
    from .workload import Workload
    return Workload.parse(text) if text is not None else Workload()


def _bytes(text: str) -> int:
    """'1000', '512K', '64M', '2G', '1.5GiB', '1e9' -> bytes (K/M/G/T are powers of 1024)."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1024 ** ("KMGT".index(t[-1]) + 1)
        t = t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; give bytes, e.g. 800M or 2G") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return int(value)


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {text!r}")
    return v


def _store(args):
    """The PlanStore the command uses (or False for --no-store)."""
    if getattr(args, "no_store", False):
        return False
    from .store import resolve
    return resolve(getattr(args, "store", None))


def _fmt_s(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _describe_matrix(A, label):
    return f"{label}: {A.shape[0]} x {A.shape[1]}, {A.nnz} nnz, {A.dtype}"


def _print_json(obj):
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


# ---------------------------------------------------------------------------
# commands

def _label(st, A, workload, name, seed, rep):
    """Name the plan a search just stored after the file; the stored entry (or None)."""
    if not st or rep.source not in ("search", "store"):
        return None
    try:
        from .profile import profile
        prof = profile(A, seed=seed)
        if rep.source == "search":
            st.label(prof, workload, name)
        return st.entry_for(prof, workload)
    except Exception as exc:              # noqa: BLE001 - display only
        log.debug("store entry unavailable: %s", exc)
        return None


def cmd_tune(args):
    from . import tuner
    A, label, name = _matrix(args)
    workload = _workload(args.workload)
    st = _store(args)
    T = tuner.tune(A, workload, effort=args.effort, time_limit=args.time_limit, memory_limit=args.memory_limit,
                   store=st, seed=args.seed)
    rep = T.report
    stored = _label(st, A, workload, name, args.seed, rep)
    speedup = rep.speedup if rep.speedup is not None else (stored or {}).get("speedup")
    if args.json:
        _print_json({"matrix": {"source": label, "shape": list(A.shape), "nnz": int(A.nnz), "dtype": str(A.dtype)},
                     "workload": str(workload), "plan": T.plan.to_dict(), "plan_text": T.plan.describe(),
                     "source": rep.source, "speedup": speedup, "tuning_s": rep.tuning_s,
                     "store": repr(st) if st else None, "report": rep.to_dict()})
        return 0
    print(f"autosparse tune: {_describe_matrix(A, label)}")
    print(f"  workload   {workload}")
    print(f"  plan       {T.plan.describe()}")
    if speedup:
        note = "measured on the whole workload, conversion included"
        if rep.source == "store":
            note = f"as measured when it was tuned, effort {stored.get('effort') if stored else '?'}"
        print(f"  speed-up   {speedup:.2f}x over the matrix as given, the scipy() plan ({note})")
    else:
        print("  speed-up   -")
    how = {"search": f"search, effort {rep.effort}, {rep.trials} trial(s)",
           "store": "plan found in the store: built, nothing searched"}.get(rep.source, rep.source)
    print(f"  tuning     {_fmt_s(rep.tuning_s)} ({how}; profile {_fmt_s(rep.profile_s)}, "
          f"kernel compile/load {_fmt_s(rep.compile_s)} not counted in the search)")
    print(f"  memory     {T.nbytes / 2**20:.1f} MiB tuned storage")
    if st:
        what = {"search": "saved to", "store": "read from"}.get(rep.source, "not stored in")
        print(f"  store      {what} {st.path or ':memory:'}" + (" (in memory)" if st.in_memory and st.path else ""))
    if args.verbose:
        print(rep)
    return 0


def cmd_profile(args):
    from .profile import profile
    A, label, _ = _matrix(args)
    prof = profile(A, seed=args.seed)
    if args.json:
        _print_json(prof.to_dict())
        return 0
    print(f"autosparse profile: {label}")
    for line in prof.summary().splitlines():
        print(f"  {line}")
    fp = prof.fingerprint
    print(f"  pattern digest {fp.pattern}")
    if args.verbose:
        names = getattr(type(fp), "FEATURES", None) or [f"f{i}" for i in range(len(fp.features))]
        for n, v in zip(names, fp.features):
            print(f"    {n:18s} {v:.4f}")
    return 0


def _mkl():
    """sparse_dot_mkl, or (None, reason)."""
    if not os.environ.get("MKL_RT"):
        import glob
        found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        if found:
            os.environ["MKL_RT"] = found[-1]
    try:
        import numpy as np
        import scipy.sparse as sp
        import sparse_dot_mkl
        sparse_dot_mkl.dot_product_mkl(sp.csr_matrix(np.eye(2)), np.ones(2))
        return sparse_dot_mkl, None
    except Exception as exc:              # noqa: BLE001 - any failure means "no MKL here"
        return None, f"{type(exc).__name__}: {exc}"


def cmd_bench(args):
    import numpy as np
    import scipy.sparse as sp

    from . import timing, tuner, verify
    A, label, name = _matrix(args)
    workload = _workload(args.workload)
    st = _store(args)
    T = tuner.tune(A, workload, effort=args.effort, store=st, seed=args.seed)
    _label(st, A, workload, name, args.seed, T.report)
    A = sp.csr_array(A)
    mkl, why = _mkl()
    if mkl is None:
        print(f"[bench] MKL skipped: sparse_dot_mkl / libmkl_rt not usable ({why})", file=sys.stderr)
        A32 = None
    else:
        A32 = sp.csr_matrix((A.data, A.indices.astype(np.int32), A.indptr.astype(np.int32)), shape=A.shape)
    AH = A.T.conj()
    rng = np.random.default_rng(args.seed)
    print(f"autosparse bench: {_describe_matrix(A, label)}")
    print(f"  plan {T.plan.describe()} ({T.report.source}); tuning {_fmt_s(T.report.tuning_s)}")
    header = f"  {'operation':12s} {'autosparse':>12s} {'scipy':>12s} {'mkl':>12s} {'vs scipy':>9s} {'vs mkl':>8s}"
    print(header)
    worst = 0.0
    for op, k, _calls in workload.items():
        m, n = A.shape
        length = m if op == "rmatvec" else n
        x = rng.standard_normal((length,) if op != "matmat" else (length, k)).astype(A.dtype)
        out_len = n if op == "rmatvec" else m
        out = np.empty((out_len,) if op != "matmat" else (out_len, k), dtype=np.result_type(A.dtype, x.dtype))
        if op == "matvec":
            fns = {"autosparse": lambda: T.matvec(x, out=out), "scipy": lambda: A @ x}
        elif op == "rmatvec":
            fns = {"autosparse": lambda: T.rmatvec(x, out=out), "scipy": lambda: AH @ x}
        else:
            fns = {"autosparse": lambda: T.matmat(x, out=out), "scipy": lambda: A @ x}
        fns["autosparse"]()
        # the tuner's own acceptance rule (autosparse.verify), against SciPy on this operand
        name = op + (str(k) if op == "matmat" else "")
        ok, ratio = verify.check(out, A, x, op)
        if not ok:
            raise CLIError(f"{name} of plan {T.plan.describe()} disagrees with SciPy "
                           f"(error {ratio:.3g}x the allowed tolerance); please report this")
        worst = max(worst, ratio)
        if A32 is not None:
            dot = mkl.dot_product_mkl
            mout = np.empty_like(out) if A.dtype == out.dtype else None
            if op == "rmatvec":
                xc = np.conj(x) if A.dtype.kind == "c" else x
                fns["mkl"] = (lambda: dot(xc, A32)) if A.dtype.kind != "c" else (lambda: np.conj(dot(xc, A32)))
            elif mout is not None:
                fns["mkl"] = lambda: dot(A32, x, out=mout, out_scalar=0)
            else:
                fns["mkl"] = lambda: dot(A32, x)
        t = timing.interleaved(fns, rounds=args.rounds, budget=0.1, max_samples=15)
        ta, ts = t["autosparse"].median, t["scipy"].median
        tm = t["mkl"].median if "mkl" in t else None
        print(f"  {name:12s} {ta * 1e6:10.1f}us {ts * 1e6:10.1f}us "
              + (f"{tm * 1e6:10.1f}us" if tm else f"{'-':>12s}")
              + f" {ts / ta:8.2f}x " + (f"{tm / ta:7.2f}x" if tm else f"{'-':>8s}"))
    print(f"  results agree with SciPy (worst error {worst:.2g}x the allowed tolerance); times per call, "
          "medians of interleaved rounds; ratios > 1 mean autosparse is faster")
    return 0


def cmd_offline(args):
    from .offline import run
    paths = args.paths or [f"example:{args.example}"]
    res = run(paths, jobs=args.jobs, effort=args.effort, workload=args.workload, store=args.store,
              dask=args.dask, time_limit=args.time_limit, seed=args.seed, progress=not args.no_progress)
    print(res.table())
    if res.rows and res.failed == len(res.rows):
        return 1
    return 0


def cmd_db_list(args):
    st = _store(args)
    entries = st.entries(limit=args.limit)
    if args.json:
        _print_json(entries)
        return 0
    if not entries:
        print(f"no plans in {st.path or ':memory:'}")
        return 0
    rows = []
    for e in entries:
        what = e["name"] or ("x".join(map(str, e["shape"])) if e["shape"] else e["structure_key"][:12])
        where = "here" if e["this_machine"] and e["current_kernels"] else (
            "other machine" if not e["this_machine"] else "old kernels")
        sp_ = f"{e['speedup']:.2f}x" if e["speedup"] else "-"
        rows.append((str(e["id"]), e["key"], what[:28], e["dtype"], (e["workload"] or e["workload_class"])[:32],
                     e["effort"], e["plan_text"][:44], sp_, where))
    head = ("id", "key", "matrix", "dtype", "workload", "effort", "plan", "speed-up", "use")
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{x}}}" for x in w)
    print(fmt.format(*head))
    for r in rows:
        print(fmt.format(*r))
    print(f"{len(rows)} plan(s) shown; store {st.path or ':memory:'}")
    return 0


def cmd_db_show(args):
    st = _store(args)
    found = st.get(args.key)
    if not found:
        raise CLIError(f"no stored plan matches {args.key!r} (see `autosparse db list` for ids and keys)")
    if args.json or len(found) == 1:
        _print_json(found if len(found) > 1 else found[0])
        return 0
    print(f"{len(found)} plans match {args.key!r}:")
    for e in found:
        print(f"  id {e['id']}  key {e['key']}  {e['name'] or ''}  {e['workload']}  {e['plan_text']}")
    return 0


def cmd_db_export(args):
    st = _store(args)
    if args.file == "-":
        for r in st.records():
            print(json.dumps(r, sort_keys=True, separators=(",", ":")))
        return 0
    n = st.export_wisdom(args.file)
    print(f"exported {n} plan(s) to {args.file}")
    return 0


def cmd_db_import(args):
    st = _store(args)
    rep = st.import_wisdom(args.file)
    print(rep)
    if rep.lines and rep.accepted == 0:
        return 1
    return 0


def cmd_db_clear(args):
    st = _store(args)
    n = st.clear(stale_only=args.stale)
    print(f"removed {n} plan(s){' of other machines or kernel versions' if args.stale else ''} "
          f"from {st.path or ':memory:'}")
    return 0


def cmd_db_stats(args):
    st = _store(args)
    s = st.stats()
    if args.json:
        _print_json(s)
        return 0
    print(f"plan store {s['path']}" + (f" (in memory: {s['memory_reason']})" if s["memory_reason"] else ""))
    if s["bytes"] is not None:
        print(f"  size        {s['bytes'] / 1024:.1f} KiB")
    print(f"  plans       {s['plans']} ({s['answers_here']} answers for this machine and kernel version; "
          "the rest are warm starts)")
    m = s["machine"]
    print(f"  machine     {s['machine_id']} ({m['cpu']}, {m['threads']} thread(s)); kernels {s['kernel_version']}")
    if s["by_effort"]:
        print("  by effort   " + ", ".join(f"{k} {v}" for k, v in s["by_effort"].items()))
    if s["by_format"]:
        print("  by format   " + ", ".join(f"{k} {v}" for k, v in s["by_format"].items()))
    if len(s["machines"]) > 1 or len(s["kernel_versions"]) > 1:
        print(f"  machines    {len(s['machines'])}; kernel versions {len(s['kernel_versions'])}")
    print(f"  wisdom      {s['wisdom_plans']} shipped plan(s) as warm starts from "
          + (", ".join(s["wisdom_files"]) or "(none found)"))
    return 0


# ---------------------------------------------------------------------------
# parser

def _common(p, *, matrix=False, store=True, effort=True, workload=True):
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="more output and logging (-vv: debug)")
    if matrix:
        p.add_argument("file", nargs="?", metavar="FILE",
                       help="Matrix Market file (.mtx or .mtx.gz) or example:NAME; default: the built-in example")
        p.add_argument("--example", default="poisson2d",
                       choices=("poisson2d", "poisson3d", "powerlaw", "banded"),
                       help="built-in example used when FILE is not given (default: poisson2d)")
    if workload:
        p.add_argument("--workload", "-w", metavar="SPEC",
                       help="expected calls, e.g. 'matvec=1000,rmatvec=200,matmat16=10' (default: matvec=1000)")
    if effort:
        p.add_argument("--effort", "-e", default="measure",
                       choices=("estimate", "measure", "patient", "exhaustive", "cache_only"),
                       help=f"planner rigor: {EFFORTS_HELP}")
    if store:
        p.add_argument("--store", metavar="PATH",
                       help="plan store file or directory (default: $AUTOSPARSE_STORE, else "
                            "$XDG_CACHE_HOME/autosparse/plans.sqlite or ~/.cache/autosparse/plans.sqlite)")
    if matrix:
        p.add_argument("--seed", type=int, default=0, help="random operands and sampler seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosparse", description="Find the fastest storage layout for a sparse matrix and its workload.",
        epilog="Every command runs on a built-in example matrix when no file is given. "
               "`autosparse COMMAND --help` describes each command.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output and logging (-vv: debug)")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"autosparse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tune", help="tune a matrix and print the plan, speed-up and tuning time",
                       description="Tune a matrix for a workload; print the chosen plan, its speed-up over SciPy "
                                   "and the tuning time.  The plan is saved to the plan store.")
    _common(p, matrix=True)
    p.add_argument("--time-limit", type=_positive_float, metavar="SECONDS", help="bound the search time")
    p.add_argument("--memory-limit", type=_bytes, metavar="BYTES",
                   help="bound the tuned storage, e.g. 800M or 2G (K/M/G = 1024 powers)")
    p.add_argument("--no-store", action="store_true", help="neither read nor write the plan store")
    p.add_argument("--json", action="store_true", help="print the plan and full report as JSON")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("profile", help="profile a matrix (structure statistics, fingerprint)",
                       description="The profiler's view of a matrix: row lengths, band, block fill, padding of "
                                   "ELL/SELL, distinct values and the fingerprint the plan store files plans under.")
    _common(p, matrix=True, store=False, effort=False, workload=False)
    p.add_argument("--json", action="store_true", help="print the whole profile as JSON")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("bench", help="time the tuned operator against SciPy and MKL",
                       description="Tune (or reuse the stored plan), then time each operation of the workload "
                                   "with the tuned operator, SciPy and MKL (sparse_dot_mkl; skipped with a "
                                   "message when absent), interleaved.")
    _common(p, matrix=True)
    p.add_argument("--no-store", action="store_true", help="neither read nor write the plan store")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("offline", help="tune many Matrix Market files into the plan store",
                       description="Tune every matrix named by PATHS (files, directories, globs, .mtx or .mtx.gz, "
                                   "example:NAME) in parallel and store the plans.  Resumable: matrices already "
                                   "tuned for this machine and kernel version are skipped.  Without PATHS the "
                                   "built-in example is tuned.")
    p.add_argument("paths", nargs="*", metavar="PATHS")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="parallel workers; cores are split between workers and numba threads (default 1)")
    p.add_argument("--dask", metavar="ADDRESS", help="run on the dask scheduler at ADDRESS (joblib's dask backend)")
    p.add_argument("--time-limit", type=_positive_float, metavar="SECONDS", help="bound each matrix's search")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--example", default="poisson2d", choices=("poisson2d", "poisson3d", "powerlaw", "banded"),
                   help="built-in example tuned when no PATHS are given (default: poisson2d)")
    _common(p, effort=False)
    p.add_argument("--seed", type=int, default=0, help="random operands and sampler seed (default 0)")
    p.add_argument("--effort", "-e", default="measure", choices=("measure", "patient", "exhaustive"),
                   help="planner rigor (default measure)")
    p.set_defaults(func=cmd_offline)

    p = sub.add_parser("db", help="manage the plan store",
                       description="List, show, export, import, clear and summarise the stored plans.")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    p.set_defaults(func=lambda a: _missing(p, "an action"))
    q = dbsub.add_parser("list", help="list stored plans (newest first)", description="List stored plans.")
    _common(q, effort=False, workload=False)
    q.add_argument("--limit", type=int, default=None, help="show at most this many")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_db_list)
    q = dbsub.add_parser("show", help="show one stored plan in full",
                         description="Show the stored plan(s) whose id or key (as `db list` prints) is KEY.")
    q.add_argument("key", metavar="KEY")
    _common(q, effort=False, workload=False)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_db_show)
    q = dbsub.add_parser("export", help="export the store as wisdom (JSON lines)",
                         description="Write every stored plan as one JSON line to FILE ('-': standard output).")
    q.add_argument("file", metavar="FILE")
    _common(q, effort=False, workload=False)
    q.set_defaults(func=cmd_db_export)
    q = dbsub.add_parser("import", help="import wisdom (JSON lines)",
                         description="Import wisdom lines from FILE; each line is accepted or rejected with a "
                                     "reason, and the good ones are kept.")
    q.add_argument("file", metavar="FILE")
    _common(q, effort=False, workload=False)
    q.set_defaults(func=cmd_db_import)
    q = dbsub.add_parser("clear", help="delete stored plans", description="Delete stored plans.")
    q.add_argument("--stale", action="store_true", help="only plans of other machines or kernel versions")
    _common(q, effort=False, workload=False)
    q.set_defaults(func=cmd_db_clear)
    q = dbsub.add_parser("stats", help="summarise the store", description="Counts, sizes, machines, formats.")
    _common(q, effort=False, workload=False)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_db_stats)
    return parser


def _missing(parser, what):
    parser.print_usage(sys.stderr)
    raise CLIError(f"{parser.prog}: give {what} (see --help)")


class _OneLine(logging.Formatter):
    """``autosparse: LEVEL: message``; tracebacks only at -vv."""

    def __init__(self, tracebacks):
        super().__init__("autosparse: %(levelname)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record):
        if not self.tracebacks and (record.exc_info or record.exc_text or record.stack_info):
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None,
                                            "stack_info": None})
        return super().format(record)


def _setup_logging(verbosity):
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(verbosity >= 2))
    root = logging.getLogger("autosparse")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"autosparse: warning: {text}", file=sys.stderr)
    warnings.showwarning = show


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbosity = getattr(args, "verbose", 0) or 0
    args.verbose = verbosity
    _setup_logging(verbosity)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("autosparse: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (CLIError, ValueError, TypeError, OSError, sqlite3.Error, ImportError) as exc:
        log.debug("error", exc_info=True)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, (OSError, sqlite3.Error, ImportError)) and not isinstance(exc, FileNotFoundError):
            msg = f"{type(exc).__name__}: {msg}"
        print(f"autosparse: error: {msg}", file=sys.stderr)
        return 1
    except Exception as exc:              # noqa: BLE001 - one line, never a traceback (-vv logs it)
        log.debug("unexpected error", exc_info=True)
        print(f"autosparse: error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
