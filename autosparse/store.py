"""PlanStore: tuned plans remembered across processes, in one SQLite file.

Like FFTW's wisdom, the store keeps the *decision* (a Plan, JSON) and never
the data, under a key that names the structure, the machine and the code:

* ``structure_key`` - the profile fingerprint's structure key (quantised
  structural features: same-pattern matrices and same-size instances of one
  mesh family share it); the exact-pattern digest is kept beside it, and a
  lookup prefers the row of the very same pattern;
* ``dtype`` - the value dtype the matrix computes in;
* ``workload_class`` - ``Workload.workload_class()`` (operations and call
  counts rounded to powers of ten);
* ``machine_id`` - a hash of the CPU model and features as LLVM (numba) sees
  them and numba's thread count;
* ``kernel_version`` - a hash of the code of ``autosparse/kernels/*.py``
  and ``autosparse/formats/*.py`` (not the profiler's kernels; comments and
  docstrings left out): a change in the product code invalidates every answer;
* ``effort`` - stored with the plan; a plan found with more effort satisfies
  a request for less (exhaustive > patient > measure > estimate), and
  ``cache_only`` accepts any stored effort.  A re-tune with at least the
  stored effort replaces the row.

Only an exact key is an *answer* (``lookup``).  Everything else - plans of
the nearest structures in feature space (the same machine first), plans
from other machines or kernel versions, and the shipped wisdom in
``tuning_db/`` - is only ever a *warm start* (``warm_starts``): layouts the
search measures and verifies first, never returned unverified.

Safety
------
* WAL journal, a busy timeout and one ``BEGIN IMMEDIATE`` transaction per
  write: many processes may read and write at once and nothing is lost.
* Plans, reports and wisdom are JSON with a schema version, validated on
  every read (``Plan.from_dict``); nothing is ever unpickled.
* A corrupt, truncated or foreign file is moved aside
  (``plans.sqlite.corrupt-<time>``) with a ``StoreWarning`` and a fresh store
  is started.  A location that cannot be written gives one warning and an
  in-memory store (seeded with a copy of the existing file when it can be
  read).  Every method that ``tune()`` calls swallows store failures after
  logging them: a user's compute never fails because of the store.

Location
--------
``$AUTOSPARSE_STORE`` (a file, or a directory holding ``plans.sqlite``: an
existing directory, or a new path without a suffix),
else ``$XDG_CACHE_HOME/autosparse/plans.sqlite``, else
``~/.cache/autosparse/plans.sqlite``; ``tune(store=path)`` overrides it.

Shipped wisdom
--------------
``tuning_db/*.jsonl`` (see its README) is found in ``$AUTOSPARSE_WISDOM`` (a
directory or a ``.jsonl`` file; empty or ``none`` disables it), else in
``autosparse/tuning_db`` (package data), else in ``tuning_db/`` next to the
package directory - the project root of a source checkout or editable
install.

Wisdom lines
------------
One JSON object per line, ``{"schema": "autosparse-wisdom/1", ...}`` with
the key fields above, the fingerprint's features and pattern, the matrix's
shape/nnz/name, the workload, the machine's description, the plan
(``Plan.to_dict``) and a report summary.  ``import_wisdom`` validates each
line on its own and reports what it accepted and what it rejected and why.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import os
import sqlite3
import threading
import time
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .plan import BASELINE, Plan

log = logging.getLogger("autosparse")

STORE_SCHEMA = 1                          # PRAGMA user_version of the store file
WISDOM_SCHEMA = "autosparse-wisdom/1"
EFFORT_RANK = {"estimate": 0, "measure": 1, "patient": 2, "exhaustive": 3}
BUSY_TIMEOUT_S = 60.0
MAX_WARM = 4                              # layouts handed to a search as warm starts
NEIGHBOURS_SAME_MACHINE = 3               # rows of this machine considered for them
NEIGHBOURS_ELSEWHERE = 2                  # rows from other machines / shipped wisdom
MAX_DISTANCE = 1.0                        # in feature space: corpus nearest neighbours ~0.5, all pairs ~1.3
WORKLOAD_PENALTY = 0.05                   # distance added when the workload class differs
_SUMMARY_FIELDS = ("source", "speedup", "objective", "baseline_objective", "tuning_s", "profile_s",
                   "compile_s", "trials", "stop_reason")


class StoreWarning(UserWarning):
    """The plan store could not be used as asked (corrupt, read-only, ...)."""


# ---------------------------------------------------------------------------
# the one adapter to the profiler's fingerprint

@dataclass(frozen=True)
class Fingerprint:
    structure_key: str
    pattern: str | None
    features: tuple | None
    dtype: str
    shape: tuple
    nnz: int


def fingerprint_of(prof) -> Fingerprint:
    """What the store needs from a Profile (the only place that reads its attribute names)."""
    fp = prof.fingerprint
    return Fingerprint(str(fp.key), getattr(fp, "pattern", None),
                       tuple(float(v) for v in fp.features) if getattr(fp, "features", None) is not None else None,
                       str(prof.dtype), tuple(int(s) for s in prof.shape), int(prof.nnz))


# ---------------------------------------------------------------------------
# machine id and kernel version

@functools.lru_cache(maxsize=None)
def _cpu():
    import llvmlite.binding as llvm
    try:
        name = llvm.get_host_cpu_name()
        feats = llvm.get_host_cpu_features().flatten()
    except Exception as exc:            # noqa: BLE001 - some hosts cannot report features
        log.debug("CPU features unavailable: %s", exc)
        name, feats = "unknown", ""
    enabled = sorted(f[1:] for f in feats.split(",") if f.startswith("+"))
    return name, tuple(enabled)


def machine_info(threads: int | None = None) -> dict:
    """CPU model, its features as LLVM sees them, and numba's thread count."""
    if threads is None:
        import numba
        threads = numba.get_num_threads()
    name, feats = _cpu()
    return {"cpu": name, "features": list(feats), "threads": int(threads)}


@functools.lru_cache(maxsize=None)
def _machine_id(name, feats, threads):
    text = json.dumps([name, list(feats), threads], separators=(",", ":"))
    return "m-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def machine_id(threads: int | None = None) -> str:
    """Hash of the CPU model, its features and the thread count (``threads`` or numba's)."""
    if threads is None:
        import numba
        threads = numba.get_num_threads()
    name, feats = _cpu()
    return _machine_id(name, feats, int(threads))


# The profiler's own kernels compute statistics, not products: a change there
# does not change how fast a plan runs (and a changed fingerprint changes the
# structure key by itself), so it does not invalidate stored plans.
_NOT_PRODUCT_CODE = {"kernels/profile.py"}


@functools.lru_cache(maxsize=None)
def kernel_version() -> str:
    """Hash of the code of ``autosparse/kernels/*.py`` and ``autosparse/formats/*.py``
    (the profiler's kernels excepted): their tokens without comments, docstrings and
    layout, so that editing a comment keeps every stored plan."""
    root = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=8)
    for sub in ("kernels", "formats"):
        for f in sorted((root / sub).glob("*.py")):
            if f"{sub}/{f.name}" in _NOT_PRODUCT_CODE:
                continue
            h.update(f"{sub}/{f.name}\0".encode())
            h.update(code_tokens(f.read_bytes()))
            h.update(b"\0")
    return "k-" + h.hexdigest()


_LINE_START = {tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, None}
_LAYOUT = {tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER}


def code_tokens(source: bytes) -> bytes:
    """The tokens that make up what ``source`` does: comments, blank lines, line breaks
    inside brackets and statements that are only strings (docstrings) left out, and an
    indentation change recorded as such, not as its spaces.  Source that does not
    tokenize is hashed as it is."""
    try:
        toks = [t for t in tokenize.tokenize(io.BytesIO(source).readline) if t.type not in _LAYOUT]
    except (tokenize.TokenError, SyntaxError):
        return source
    out, i, prev = [], 0, None
    while i < len(toks):
        j = i
        while j < len(toks) and toks[j].type == tokenize.STRING:
            j += 1
        if j > i and prev in _LINE_START and (j == len(toks) or toks[j].type == tokenize.NEWLINE):
            i = j + 1                                   # a bare string statement: no effect
            continue
        t = toks[i]
        out.append(tokenize.tok_name[t.type] if t.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)
                   else t.string)
        prev = t.type
        i += 1
    return "\0".join(out).encode()


# ---------------------------------------------------------------------------
# locations

def default_path() -> Path:
    env = os.environ.get("AUTOSPARSE_STORE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autosparse" / "plans.sqlite"


def _normalise(path) -> str:
    """A store path as a file: an existing directory, a path ending in a separator or a
    new path without a suffix (``~/stores/run1``) holds ``plans.sqlite``."""
    text = os.fspath(path)
    p = Path(text).expanduser()
    if p.is_dir() or text.endswith(os.sep) or (not p.exists() and not p.suffix):
        p = p / "plans.sqlite"
    return str(p.absolute())


def wisdom_paths() -> list[Path]:
    """The shipped wisdom files (``*.jsonl``) the store reads as warm starts."""
    env = os.environ.get("AUTOSPARSE_WISDOM")
    if env is not None:
        if env.strip().lower() in ("", "0", "none", "off"):
            return []
        candidates = [Path(env).expanduser()]
    else:
        here = Path(__file__).resolve().parent
        candidates = [here / "tuning_db", here.parent / "tuning_db"]
    for c in candidates:
        if c.is_file():
            return [c]
        if c.is_dir():
            files = sorted(c.glob("*.jsonl"))
            if files:
                return files
    return []


_OPEN: dict = {}
_OPEN_LOCK = threading.Lock()
_WARNED: set = set()


def resolve(store):
    """The PlanStore ``tune(store=...)`` means: None -> the default store, a path -> the
    store there, a PlanStore -> itself, False -> None (no store)."""
    if store is False:
        return None
    if isinstance(store, PlanStore):
        return store
    if store is None:
        path = default_path()
    elif isinstance(store, (str, os.PathLike)):
        path = store
    else:
        raise TypeError(f"store must be None, a path, a PlanStore or False, got {type(store).__name__}")
    key = _normalise(path)
    with _OPEN_LOCK:
        st = _OPEN.get(key)
        if st is None or not st._current():
            st = PlanStore(key)
            _OPEN[key] = st
    return st


def _warn_once(key, message):
    log.debug("%s", message)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, StoreWarning, stacklevel=3)


def _is_corruption(exc) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    msg = str(exc).lower()
    return any(s in msg for s in ("malformed", "not a database", "file is encrypted", "corrupt"))


def _is_readonly(exc) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return True
    msg = str(exc).lower()
    return any(s in msg for s in ("readonly", "read-only", "unable to open", "permission"))


# ---------------------------------------------------------------------------
# wisdom records

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY,
    structure_key TEXT NOT NULL,
    dtype TEXT NOT NULL,
    workload_class TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    kernel_version TEXT NOT NULL,
    pattern TEXT NOT NULL DEFAULT '',
    effort TEXT NOT NULL,
    effort_rank INTEGER NOT NULL,
    features TEXT,
    shape TEXT,
    nnz INTEGER,
    name TEXT,
    workload TEXT,
    machine TEXT,
    plan TEXT NOT NULL,
    report TEXT,
    created REAL,
    updated REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS plans_key
    ON plans (structure_key, dtype, workload_class, machine_id, kernel_version, pattern);
CREATE INDEX IF NOT EXISTS plans_pattern
    ON plans (pattern, dtype, workload_class, machine_id, kernel_version);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    kernel_version TEXT NOT NULL,
    workload_class TEXT NOT NULL,
    stamp TEXT NOT NULL,
    effort_rank INTEGER NOT NULL,
    plan_id INTEGER,
    PRIMARY KEY (path, machine_id, kernel_version, workload_class)
);
"""

_COLUMNS = ("structure_key", "dtype", "workload_class", "machine_id", "kernel_version", "pattern", "effort",
            "effort_rank", "features", "shape", "nnz", "name", "workload", "machine", "plan", "report",
            "created", "updated")

_UPSERT = f"""
INSERT INTO plans ({", ".join(_COLUMNS)}) VALUES ({", ".join("?" * len(_COLUMNS))})
ON CONFLICT (structure_key, dtype, workload_class, machine_id, kernel_version, pattern) DO UPDATE SET
    effort = excluded.effort, effort_rank = excluded.effort_rank, features = excluded.features,
    shape = excluded.shape, nnz = excluded.nnz, name = COALESCE(excluded.name, plans.name),
    workload = excluded.workload, machine = excluded.machine, plan = excluded.plan, report = excluded.report,
    updated = excluded.updated
WHERE excluded.effort_rank >= plans.effort_rank
"""


def _summary(report) -> dict:
    if report is None:
        return {}
    if isinstance(report, dict):
        d = report
    else:
        d = {}
        for f in _SUMMARY_FIELDS:
            try:
                d[f] = getattr(report, f)
            except Exception:           # noqa: BLE001 - a summary is best effort
                pass
    out = {}
    for f in _SUMMARY_FIELDS:
        v = d.get(f)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if v is None or isinstance(v, (str, int, float, bool)):
            out[f] = v
    return out


def validate_record(d) -> tuple[dict, Plan]:
    """A wisdom record checked field by field (ValueError naming what is wrong) and its Plan."""
    if not isinstance(d, dict):
        raise ValueError(f"a wisdom line must be a JSON object, got {type(d).__name__}")
    schema = d.get("schema")
    if schema != WISDOM_SCHEMA:
        raise ValueError(f"wrong schema {schema!r}; expected {WISDOM_SCHEMA!r}")
    for f in ("structure_key", "dtype", "workload_class", "machine_id", "kernel_version"):
        if not isinstance(d.get(f), str) or not d[f]:
            raise ValueError(f"field {f!r} must be a non-empty string, got {d.get(f)!r}")
    if d.get("effort") not in EFFORT_RANK:
        raise ValueError(f"unknown effort {d.get('effort')!r}; accepted: {', '.join(EFFORT_RANK)}")
    feats = d.get("features")
    if feats is not None:
        if (not isinstance(feats, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) for v in feats)):
            raise ValueError("field 'features' must be a list of finite numbers")
    shape = d.get("shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) != 2
                              or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise ValueError(f"field 'shape' must be [rows, cols], got {shape!r}")
    for f in ("nnz",):
        v = d.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ValueError(f"field {f!r} must be a non-negative integer, got {v!r}")
    for f in ("pattern", "name", "workload"):
        v = d.get(f)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"field {f!r} must be a string, got {type(v).__name__}")
    for f in ("report", "machine"):
        v = d.get(f)
        if v is not None and not isinstance(v, dict):
            raise ValueError(f"field {f!r} must be an object, got {type(v).__name__}")
    if "plan" not in d:
        raise ValueError("missing field 'plan'")
    try:
        plan = Plan.from_dict(d["plan"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad plan: {exc}") from None
    return d, plan


def _row_values(d: dict, plan: Plan, now: float) -> tuple:
    feats = d.get("features")
    return (d["structure_key"], d["dtype"], d["workload_class"], d["machine_id"], d["kernel_version"],
            d.get("pattern") or "", d["effort"], EFFORT_RANK[d["effort"]],
            json.dumps([round(float(v), 6) for v in feats], separators=(",", ":")) if feats is not None else None,
            json.dumps(d["shape"]) if d.get("shape") is not None else None, d.get("nnz"), d.get("name"),
            d.get("workload"), json.dumps(d["machine"]) if d.get("machine") is not None else None,
            plan.to_json(), json.dumps(_summary(d.get("report"))), float(d.get("created") or now), now)


def _record_of_row(row: sqlite3.Row) -> dict:
    out = {"schema": WISDOM_SCHEMA}
    for f in ("structure_key", "pattern", "dtype", "workload_class", "workload", "effort", "machine_id",
              "kernel_version", "name", "nnz"):
        out[f] = row[f]
    out["pattern"] = row["pattern"] or None
    for f in ("features", "shape", "machine", "plan", "report"):
        out[f] = json.loads(row[f]) if row[f] is not None else None
    out["created"] = row["created"]
    return out


@dataclass
class LineResult:
    line: int
    accepted: bool
    reason: str                          # why rejected, or what was stored


@dataclass
class ImportReport:
    """Per line of an imported wisdom file: accepted or rejected, and why."""
    path: str
    lines: list = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.lines)

    @property
    def rejected(self) -> int:
        return sum(not r.accepted for r in self.lines)

    def __str__(self):
        out = [f"{self.path}: {self.accepted} line(s) accepted, {self.rejected} rejected"]
        out += [f"  line {r.line}: {'accepted' if r.accepted else 'rejected'}: {r.reason}" for r in self.lines]
        return "\n".join(out)


# ---------------------------------------------------------------------------
# shipped wisdom (read once per process, warm starts only)

_SHIPPED: dict = {}
_SHIPPED_LOCK = threading.Lock()


def _shipped_rows() -> list:
    """(features, machine_id, kernel_version, workload_class, plan) of the shipped wisdom."""
    out = []
    for path in wisdom_paths():
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            continue
        with _SHIPPED_LOCK:
            cached = _SHIPPED.get(str(path))
            if cached is None or cached[0] != stamp:
                rows = []
                try:
                    with open(path, encoding="utf-8") as fh:
                        for n, text in enumerate(fh, 1):
                            if not text.strip():
                                continue
                            try:
                                d, plan = validate_record(json.loads(text))
                            except ValueError as exc:
                                log.debug("shipped wisdom %s line %d skipped: %s", path, n, exc)
                                continue
                            rows.append((d.get("features"), d["machine_id"], d["kernel_version"],
                                         d["workload_class"], plan))
                except OSError as exc:
                    log.info("shipped wisdom %s unreadable: %s", path, exc)
                cached = (stamp, rows)
                _SHIPPED[str(path)] = cached
        out.extend(cached[1])
    return out


# ---------------------------------------------------------------------------
# the store

class PlanStore:
    """Plans keyed by structure, dtypes, workload class, machine and kernel version.

    ``PlanStore(path)`` opens (or creates) the SQLite file at ``path``;
    ``PlanStore(":memory:")`` keeps plans for this process only.
    """

    def __init__(self, path=None):
        if path is None:
            path = default_path()
        self._lock = threading.RLock()
        self._conn = None
        self._pid = os.getpid()
        self._inode = None
        self._cache_version = None
        self._neighbours = None
        self._plans: dict = {}
        self._graveyard: list = []
        self.memory_reason = None        # why a file store fell back to memory, if it did
        if str(path) == ":memory:":
            self.path = None
            self._open_memory()
        else:
            self.path = Path(_normalise(path))
            self._open_file()

    # -- opening -------------------------------------------------------------
    def __repr__(self):
        where = str(self.path) if self.path else "memory"
        if self.path and self.in_memory:
            where += " (in memory: " + (self.memory_reason or "?") + ")"
        return f"PlanStore({where})"

    @property
    def in_memory(self) -> bool:
        return self.path is None or self.memory_reason is not None

    def _configure(self, conn):
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    @staticmethod
    def _refuse_newer(conn) -> int:
        """The file's schema version; _NewerStore when a newer autosparse wrote it (left as it is)."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_SCHEMA:
            raise _NewerStore(f"store schema {version} is newer than this autosparse's ({STORE_SCHEMA})")
        return version

    def _create_schema(self, conn):
        version = self._refuse_newer(conn)
        if version == STORE_SCHEMA and conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('plans', 'sources', 'plans_key', 'plans_pattern')"
        ).fetchone()[0] == 4:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA_SQL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {STORE_SCHEMA}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _open_memory(self, seed_from: Path | None = None):
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._configure(conn)
        if seed_from is not None and seed_from.is_file():
            try:
                src = sqlite3.connect(f"{seed_from.as_uri()}?mode=ro&immutable=1", uri=True)
                try:
                    v = src.execute("PRAGMA user_version").fetchone()[0]
                    if v == STORE_SCHEMA:
                        src.backup(conn)
                finally:
                    src.close()
            except sqlite3.Error as exc:
                log.info("could not copy %s into the in-memory store: %s", seed_from, exc)
        self._create_schema(conn)
        self._conn = conn
        self._inode = None

    def _fallback_memory(self, reason):
        self.memory_reason = reason
        _warn_once(("memory", str(self.path)),
                   f"autosparse plan store {self.path} is not usable ({reason}); using an in-memory store "
                   "for this process (plans will not persist)")
        self._open_memory(seed_from=self.path)

    def _open_file(self, _retry=True):
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return self._fallback_memory(f"cannot create {path.parent}: {exc.strerror or exc}")
        if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.R_OK | os.W_OK)):
            return self._fallback_memory("location is read-only")
        conn = None
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            self._configure(conn)
            self._refuse_newer(conn)         # before anything below writes to a newer store's file
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.info("plan store %s: journal mode %s (WAL unavailable)", path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._create_schema(conn)
            check = conn.execute("PRAGMA quick_check").fetchall()
            if [tuple(r) for r in check] != [("ok",)]:
                raise sqlite3.DatabaseError("database disk image is malformed: " +
                                            "; ".join(str(r[0]) for r in check[:3]))
            self._conn = conn
            self._inode = os.stat(path).st_ino
            self.memory_reason = None
            self._neighbours = None
        except _NewerStore as exc:
            _close(conn)
            return self._fallback_memory(str(exc))
        except sqlite3.DatabaseError as exc:
            _close(conn)
            if _is_corruption(exc) and _retry:
                self._move_aside(exc)
                return self._open_file(_retry=False)
            if _is_readonly(exc):
                return self._fallback_memory(f"read-only: {exc}")
            return self._fallback_memory(f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            _close(conn)
            return self._fallback_memory(f"{type(exc).__name__}: {exc}")

    def _move_aside(self, exc):
        path = self.path
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            # only when the file is still the one that failed: another process may have replaced it
            if self._inode is None or os.stat(path).st_ino == self._inode:
                os.replace(path, aside)
                for suffix in ("-wal", "-shm"):
                    side = Path(str(path) + suffix)
                    if side.exists():
                        os.replace(side, Path(str(aside) + suffix)) if suffix == "-wal" else side.unlink()
                warnings.warn(f"autosparse plan store {path} is corrupt or not a plan store ({exc}); "
                              f"moved it aside to {aside} and started a fresh store", StoreWarning, stacklevel=4)
                log.info("plan store %s corrupt (%s); moved aside to %s", path, exc, aside)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("could not move corrupt plan store %s aside: %s", path, err)
        self._inode = None

    def _current(self) -> bool:
        """Is this open store still the file at its path (for resolve's cache)?"""
        if self.path is None or self.memory_reason is not None:
            return True
        try:
            return os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    def _connection(self):
        if os.getpid() != self._pid:        # forked: never share a connection with the parent
            self._graveyard.append(self._conn)
            self._pid = os.getpid()
            if self.path is not None and self.memory_reason is None:
                self._open_file()
            else:
                self._open_memory()
        return self._conn

    def close(self):
        with self._lock:
            _close(self._conn)
            self._conn = None

    # -- guarded execution -----------------------------------------------------
    def _run(self, fn, *, default=None, what="plan store", strict=False):
        """``fn(conn)`` under the lock; corruption -> move aside, fresh store, retry once.
        Other failures return ``default`` after a warning (or raise when ``strict``)."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    conn = self._connection()
                    if conn is None:
                        raise sqlite3.ProgrammingError("store is closed")
                    return fn(conn)
                except sqlite3.DatabaseError as exc:
                    if attempt == 0 and _is_corruption(exc) and self.path is not None and self.memory_reason is None:
                        _close(self._conn)
                        self._conn = None
                        self._move_aside(exc)
                        self._open_file(_retry=False)
                        continue
                    if attempt == 0 and _is_readonly(exc) and self.memory_reason is None and self.path is not None:
                        _close(self._conn)
                        self._conn = None
                        self._fallback_memory(f"read-only: {exc}")
                        continue
                    if strict:
                        raise
                    log.warning("%s failed (%s: %s); continuing without it", what, type(exc).__name__, exc)
                    return default
                except (OSError, sqlite3.Error) as exc:
                    if strict:
                        raise
                    log.warning("%s failed (%s: %s); continuing without it", what, type(exc).__name__, exc)
                    return default
            return default

    def _write(self, conn, statements):
        """One IMMEDIATE transaction running ``statements(conn)``."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = statements(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._neighbours = None
        return result

    def _plan(self, text) -> Plan:
        plan = self._plans.get(text)
        if plan is None:
            plan = Plan.from_json(text)
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[text] = plan
        return plan

    # -- the interface tune() uses ---------------------------------------------
    def lookup(self, prof, workload, effort="measure") -> Plan | None:
        """The stored plan for this exact key whose effort satisfies ``effort``, or None."""
        try:
            fp = fingerprint_of(prof)
            min_rank = 0 if effort == "cache_only" else EFFORT_RANK[effort]
            key = (fp.structure_key, fp.dtype, workload.workload_class(), machine_id(), kernel_version())
        except Exception as exc:        # noqa: BLE001 - a store problem must not fail tune()
            log.warning("plan store lookup skipped: %s: %s", type(exc).__name__, exc)
            return None

        def q(conn):
            return conn.execute(
                "SELECT plan FROM plans WHERE structure_key = ? AND dtype = ? AND workload_class = ? "
                "AND machine_id = ? AND kernel_version = ? AND effort_rank >= ? "
                "ORDER BY pattern = ? DESC, effort_rank DESC, updated DESC LIMIT 1",
                (*key, min_rank, fp.pattern or "")).fetchone()
        return self._stored_plan(self._run(q, what="plan store lookup"))

    def lookup_pattern(self, pattern: str, dtype: str, workload, effort="measure") -> Plan | None:
        """The stored plan for this exact pattern digest (``Profile.pattern_digest``), dtype,
        workload class, machine and kernel version, or None.  Lets a caller that can hash the
        index arrays find a hit without computing the whole profile."""
        try:
            min_rank = 0 if effort == "cache_only" else EFFORT_RANK[effort]
            args = (str(pattern), str(dtype), workload.workload_class(), machine_id(), kernel_version(), min_rank)
        except Exception as exc:        # noqa: BLE001
            log.warning("plan store lookup skipped: %s: %s", type(exc).__name__, exc)
            return None
        if not pattern:
            return None
        row = self._run(lambda c: c.execute(
            "SELECT plan FROM plans WHERE pattern = ? AND dtype = ? AND workload_class = ? AND machine_id = ? "
            "AND kernel_version = ? AND effort_rank >= ? ORDER BY effort_rank DESC, updated DESC LIMIT 1",
            args).fetchone(), what="plan store lookup")
        return self._stored_plan(row)

    def _stored_plan(self, row) -> Plan | None:
        """The plan of a looked-up row, or None (no row, or a plan this code cannot use)."""
        if row is None:
            return None
        try:
            return self._plan(row[0])
        except ValueError as exc:
            log.warning("stored plan ignored (%s)", exc)
            return None

    def warm_starts(self, prof, workload) -> list:
        """Layouts of the nearest stored structures (this machine first, then other machines,
        other kernel versions and the shipped wisdom), deduplicated; never answers."""
        try:
            fp = fingerprint_of(prof)
            if fp.features is None:
                return []
            wc = workload.workload_class()
            mine = machine_id()
            x = np.asarray(fp.features, dtype=np.float64)
            groups = self._neighbour_groups(len(x), mine)
            picked = []
            for (F, wcs, plans), limit in zip(groups, (NEIGHBOURS_SAME_MACHINE, NEIGHBOURS_ELSEWHERE)):
                if not plans:
                    continue
                d = np.sqrt(((F - x) ** 2).sum(axis=1)) + WORKLOAD_PENALTY * (wcs != wc)
                order = np.argsort(d, kind="stable")
                picked.extend(plans[i] for i in order[:limit] if d[i] <= MAX_DISTANCE)
            adjoint = getattr(workload, "rmatvec", 0) > 0
            out = []
            for plan in picked:
                for lay in plan.layouts:
                    if lay.format == BASELINE or (lay.of == "AH" and not adjoint) or lay in out:
                        continue
                    out.append(lay)
            return out[:MAX_WARM]
        except Exception as exc:        # noqa: BLE001 - warm starts are a hint, never a failure
            log.warning("plan store warm starts skipped: %s: %s", type(exc).__name__, exc)
            return []

    def _neighbour_groups(self, dim, mine):
        """[(features matrix, workload classes, plans)] for this machine and for elsewhere."""
        version = self._run(lambda c: c.execute("PRAGMA data_version").fetchone()[0], what="plan store")
        shipped = tuple(_stamp_of(p) for p in wisdom_paths())
        cache = self._neighbours
        if cache is None or cache[0] != (version, dim, mine, shipped):
            rows = self._run(lambda c: c.execute(
                "SELECT machine_id, workload_class, features, plan FROM plans WHERE features IS NOT NULL"
            ).fetchall(), default=[], what="plan store")
            same, other = ([], [], []), ([], [], [])
            try:                          # one parse for all rows: 10k rows in ~0.1 s
                parsed = json.loads("[" + ",".join(r[2] for r in rows) + "]")
                if len(parsed) != len(rows):
                    raise ValueError("row count")
            except ValueError:
                parsed = [_loads_or_none(r[2]) for r in rows]
            for (mid, wc, _feats, text), f in zip(rows, parsed):
                try:
                    plan = self._plan(text)
                except ValueError:
                    continue
                if isinstance(f, list) and len(f) == dim and not plan.is_baseline:
                    g = same if mid == mine else other
                    g[0].append(f), g[1].append(wc), g[2].append(plan)
            for f, _mid, _kv, wc, plan in _shipped_rows():
                if f is not None and len(f) == dim and not plan.is_baseline:
                    other[0].append(f), other[1].append(wc), other[2].append(plan)
            groups = [(_matrix(g[0], dim), np.asarray(g[1], dtype=object), g[2]) for g in (same, other)]
            cache = ((version, dim, mine, shipped), groups)
            self._neighbours = cache
        return cache[1]

    def save(self, prof, workload, effort, plan, report=None, *, name=None) -> bool:
        """Store ``plan`` under the key of ``prof``/``workload``; True when stored.  A row
        of the same key is replaced unless it was found with more effort."""
        try:
            if effort not in EFFORT_RANK:
                return False
            fp = fingerprint_of(prof)
            rec = {"schema": WISDOM_SCHEMA, "structure_key": fp.structure_key, "pattern": fp.pattern,
                   "features": list(fp.features) if fp.features is not None else None, "dtype": fp.dtype,
                   "shape": list(fp.shape), "nnz": fp.nnz, "workload_class": workload.workload_class(),
                   "workload": str(workload), "effort": effort, "machine_id": machine_id(),
                   "kernel_version": kernel_version(), "machine": _machine_summary(), "name": name,
                   "plan": plan.to_dict(), "report": _summary(report)}
            values = _row_values(rec, plan, time.time())
        except Exception as exc:        # noqa: BLE001
            log.warning("plan not stored: %s: %s", type(exc).__name__, exc)
            return False
        done = self._run(lambda c: self._write(c, lambda c2: c2.execute(_UPSERT, values).rowcount),
                         default=0, what="plan store save")
        return bool(done)

    def entry_for(self, prof, workload, effort="cache_only") -> dict | None:
        """The stored row ``lookup`` would answer from, for people (``db show`` fields), or None."""
        fp = fingerprint_of(prof)
        min_rank = 0 if effort == "cache_only" else EFFORT_RANK[effort]
        row = self._run(lambda c: c.execute(
            "SELECT * FROM plans WHERE structure_key = ? AND dtype = ? AND workload_class = ? "
            "AND machine_id = ? AND kernel_version = ? AND effort_rank >= ? "
            "ORDER BY pattern = ? DESC, effort_rank DESC, updated DESC LIMIT 1",
            (fp.structure_key, fp.dtype, workload.workload_class(), machine_id(), kernel_version(), min_rank,
             fp.pattern or "")).fetchone())
        return _entry(row) if row is not None else None

    def label(self, prof, workload, name: str) -> int:
        """Name the stored rows of this matrix's exact key (shown by ``db list``)."""
        fp = fingerprint_of(prof)
        args = (name, fp.structure_key, fp.dtype, workload.workload_class(), machine_id(), kernel_version(),
                fp.pattern or "")
        return self._run(lambda c: self._write(c, lambda c2: c2.execute(
            "UPDATE plans SET name = ? WHERE structure_key = ? AND dtype = ? AND workload_class = ? "
            "AND machine_id = ? AND kernel_version = ? AND pattern = ?", args).rowcount), default=0)

    # -- offline support --------------------------------------------------------
    def has(self, structure_key, dtype, workload_class, machine, kernel, pattern, min_rank) -> bool:
        row = self._run(lambda c: c.execute(
            "SELECT 1 FROM plans WHERE structure_key = ? AND dtype = ? AND workload_class = ? AND machine_id = ? "
            "AND kernel_version = ? AND pattern = ? AND effort_rank >= ?",
            (structure_key, dtype, workload_class, machine, kernel, pattern or "", min_rank)).fetchone())
        return row is not None

    def tuned_keys(self, workload_class, min_rank, kernel=None) -> set:
        """{(structure_key, dtype, machine_id, pattern)} stored for this kernel version."""
        rows = self._run(lambda c: c.execute(
            "SELECT structure_key, dtype, machine_id, pattern FROM plans WHERE workload_class = ? "
            "AND kernel_version = ? AND effort_rank >= ?",
            (workload_class, kernel or kernel_version(), min_rank)).fetchall(), default=[])
        return {tuple(r) for r in rows}

    def source_done(self, path, stamp, machine, workload_class, min_rank) -> dict | None:
        """The stored plan row of a file tuned before (same stamp, machine, kernel, effort), or None."""
        row = self._run(lambda c: c.execute(
            "SELECT p.* FROM sources s JOIN plans p ON p.id = s.plan_id WHERE s.path = ? AND s.stamp = ? "
            "AND s.machine_id = ? AND s.kernel_version = ? AND s.workload_class = ? AND s.effort_rank >= ? "
            "AND p.effort_rank >= ?",
            (path, stamp, machine, kernel_version(), workload_class, min_rank, min_rank)).fetchone())
        return _entry(row) if row is not None else None

    def mark_source(self, path, stamp, record) -> None:
        def st(conn):
            row = conn.execute(
                "SELECT id, effort_rank FROM plans WHERE structure_key = ? AND dtype = ? AND workload_class = ? "
                "AND machine_id = ? AND kernel_version = ? AND pattern = ?",
                (record["structure_key"], record["dtype"], record["workload_class"], record["machine_id"],
                 record["kernel_version"], record.get("pattern") or "")).fetchone()
            if row is None:
                return
            conn.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (path, record["machine_id"], record["kernel_version"], record["workload_class"], stamp,
                          row[1], row[0]))
        self._run(lambda c: self._write(c, st))

    # -- wisdom -----------------------------------------------------------------
    def records(self, where: str = "", args=()) -> list:
        """Every stored plan as a wisdom record (dict)."""
        rows = self._run(lambda c: c.execute(f"SELECT * FROM plans {where} ORDER BY id", args).fetchall(),
                         default=[], strict=True)
        return [_record_of_row(r) for r in rows]

    def export_wisdom(self, path) -> int:
        """Write every stored plan as JSON lines to ``path``; the number written."""
        recs = self.records()
        tmp = Path(os.fspath(path))
        text = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in recs)
        tmp.write_text(text, encoding="utf-8")
        return len(recs)

    def import_records(self, items, source="records") -> ImportReport:
        """Validate and store wisdom records (dicts or JSON text lines); a per-item report."""
        rep = ImportReport(str(source))
        good = []
        now = time.time()
        for n, item in enumerate(items, 1):
            if isinstance(item, str):
                if not item.strip():
                    continue
                try:
                    item = json.loads(item)
                except ValueError as exc:
                    rep.lines.append(LineResult(n, False, f"malformed JSON: {exc}"))
                    continue
            try:
                d, plan = validate_record(item)
            except ValueError as exc:
                rep.lines.append(LineResult(n, False, str(exc)))
                continue
            good.append(_row_values(d, plan, now))
            name = d.get("name") or "x".join(map(str, d.get("shape") or [])) or d["structure_key"][:12]
            rep.lines.append(LineResult(n, True, f"{name}: {plan.describe()} ({d['effort']}, {d['workload_class']})"))
        if good:
            self._run(lambda c: self._write(c, lambda c2: c2.executemany(_UPSERT, good)), strict=True)
        return rep

    def import_wisdom(self, path) -> ImportReport:
        """Import JSON lines from ``path``; bad lines are rejected with a reason, good ones kept."""
        path = Path(os.fspath(path))
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read wisdom file ({exc.strerror or exc})") from None
        return self.import_records(lines, source=path)

    # -- management (the CLI's db commands) -----------------------------------
    def entries(self, limit: int | None = None) -> list:
        rows = self._run(lambda c: c.execute(
            "SELECT * FROM plans ORDER BY updated DESC" + (f" LIMIT {int(limit)}" if limit else "")).fetchall(),
            default=[], strict=True)
        return [_entry(r) for r in rows]

    def get(self, key) -> list:
        """Entries whose id equals ``key`` (first) or whose short key / structure key starts with it."""
        key = str(key).strip()
        if not key:
            return []
        rows = self._run(lambda c: c.execute("SELECT * FROM plans ORDER BY id").fetchall(), default=[], strict=True)
        out = []
        for r in rows:
            e = _entry(r)
            if key == str(e["id"]) or e["key"].startswith(key) or r["structure_key"].startswith(key):
                out.append(e)
        # an id is exact, a hex prefix may be anything's: "12" is plan 12 before keys starting "12"
        return sorted(out, key=lambda e: key != str(e["id"]))

    def clear(self, stale_only: bool = False) -> int:
        """Delete every plan (or only those of other machines / kernel versions); the number deleted."""
        def st(conn):
            if stale_only:
                args = (machine_id(), kernel_version())
                n = conn.execute("DELETE FROM plans WHERE machine_id != ? OR kernel_version != ?", args).rowcount
                conn.execute("DELETE FROM sources WHERE plan_id NOT IN (SELECT id FROM plans)")
            else:
                n = conn.execute("DELETE FROM plans").rowcount
                conn.execute("DELETE FROM sources")
            return n
        return self._run(lambda c: self._write(c, st), strict=True)

    def stats(self) -> dict:
        mine, kv = machine_id(), kernel_version()

        def q(conn):
            total = conn.execute("SELECT count(*) FROM plans").fetchone()[0]
            current = conn.execute("SELECT count(*) FROM plans WHERE machine_id = ? AND kernel_version = ?",
                                   (mine, kv)).fetchone()[0]
            by_effort = dict(conn.execute("SELECT effort, count(*) FROM plans GROUP BY effort").fetchall())
            machines = dict(conn.execute("SELECT machine_id, count(*) FROM plans GROUP BY machine_id").fetchall())
            kernels = dict(conn.execute("SELECT kernel_version, count(*) FROM plans GROUP BY kernel_version")
                           .fetchall())
            plans = conn.execute("SELECT plan FROM plans").fetchall()
            return total, current, by_effort, machines, kernels, plans
        total, current, by_effort, machines, kernels, plans = self._run(q, strict=True)
        by_format: dict = {}
        for (text,) in plans:
            try:
                f = Plan.from_json(text).format
            except ValueError:
                f = "(unreadable)"
            by_format[f] = by_format.get(f, 0) + 1
        size = None
        if self.path is not None and self.memory_reason is None:
            size = sum(os.path.getsize(p) for p in (str(self.path), str(self.path) + "-wal") if os.path.exists(p))
        shipped = _shipped_rows()
        return {"path": str(self.path) if self.path else ":memory:", "in_memory": self.in_memory,
                "memory_reason": self.memory_reason, "bytes": size, "plans": total,
                "answers_here": current, "by_effort": by_effort, "by_format": dict(sorted(by_format.items())),
                "machines": machines, "kernel_versions": kernels, "machine_id": mine, "kernel_version": kv,
                "machine": _machine_summary(), "wisdom_files": [str(p) for p in wisdom_paths()],
                "wisdom_plans": len(shipped)}

    def __len__(self):
        return self._run(lambda c: c.execute("SELECT count(*) FROM plans").fetchone()[0], default=0)


class _NewerStore(Exception):
    pass


def _close(conn):
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass


def _stamp_of(path):
    try:
        return (str(path), path.stat().st_mtime_ns)
    except OSError:
        return (str(path), None)


def _matrix(rows, dim):
    """Feature rows as a float matrix; a malformed row becomes +inf (never a neighbour)."""
    try:
        F = np.asarray(rows, dtype=np.float64).reshape(-1, dim)
    except (TypeError, ValueError):
        F = np.full((len(rows), dim), np.inf)
        for i, r in enumerate(rows):
            try:
                F[i] = np.asarray(r, dtype=np.float64)
            except (TypeError, ValueError):
                pass
    F[~np.isfinite(F).all(axis=1)] = np.inf
    return F


def _loads_or_none(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _machine_summary() -> dict:
    info = machine_info()
    return {"cpu": info["cpu"], "threads": info["threads"], "n_features": len(info["features"])}


def _entry(row) -> dict:
    """A stored row for people: id, short key, what it is and what was chosen."""
    try:
        plan = Plan.from_json(row["plan"])
        desc = plan.describe()
    except ValueError as exc:
        plan, desc = None, f"(unreadable plan: {exc})"
    report = json.loads(row["report"]) if row["report"] else {}
    full = "|".join(str(row[c]) for c in ("structure_key", "dtype", "workload_class", "machine_id",
                                           "kernel_version", "pattern"))
    return {"id": row["id"], "key": hashlib.blake2b(full.encode(), digest_size=6).hexdigest(),
            "structure_key": row["structure_key"], "pattern": row["pattern"] or None, "dtype": row["dtype"],
            "shape": tuple(json.loads(row["shape"])) if row["shape"] else None, "nnz": row["nnz"],
            "name": row["name"], "workload": row["workload"], "workload_class": row["workload_class"],
            "effort": row["effort"], "machine_id": row["machine_id"], "kernel_version": row["kernel_version"],
            "this_machine": row["machine_id"] == machine_id(),
            "current_kernels": row["kernel_version"] == kernel_version(),
            "machine": json.loads(row["machine"]) if row["machine"] else None,
            "plan": plan.to_dict() if plan else None, "plan_text": desc, "report": report,
            "speedup": report.get("speedup"), "tuning_s": report.get("tuning_s"),
            "created": row["created"], "updated": row["updated"]}
