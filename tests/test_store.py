"""PlanStore: keys, effort order, neighbours, wisdom, concurrency, corruption, read-only locations."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from autosparse import store as S
from autosparse.plan import Layout, Plan
from autosparse.store import PlanStore, StoreWarning, resolve
from autosparse.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
W = Workload(matvec=1000)
CSR = Plan.single("csr", index_dtype="int32")
BSR = Plan.single("bsr", r=2, c=2, index_dtype="int32")


def fake_profile(i=0, dim=29, dtype="float64", key=None, pattern=None, features=None):
    """A stand-in with the Profile fields the store reads."""
    rng = np.random.default_rng(i)
    feats = tuple(rng.random(dim)) if features is None else tuple(features)
    fp = SimpleNamespace(key=key or f"s1-{i:032x}", features=feats, pattern=pattern or f"p{i:030x}")
    return SimpleNamespace(fingerprint=fp, dtype=dtype, shape=(100 + i, 100 + i), nnz=1000 + i)


def report(speedup=1.5):
    return SimpleNamespace(source="search", speedup=speedup, objective=1.0, baseline_objective=speedup,
                           tuning_s=2.0, profile_s=0.1, compile_s=0.2, trials=3, stop_reason="done")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test touches the user's cache or the shipped wisdom unless it asks."""
    monkeypatch.setenv("AUTOSPARSE_STORE", str(tmp_path / "default-store"))
    monkeypatch.setenv("AUTOSPARSE_WISDOM", "none")


@pytest.fixture
def st(tmp_path):
    s = PlanStore(tmp_path / "plans.sqlite")
    yield s
    s.close()


# -- location and resolve -------------------------------------------------------

def test_resolve(tmp_path, monkeypatch):
    p = tmp_path / "a.sqlite"
    a = resolve(str(p))
    assert isinstance(a, PlanStore) and a.path == p and not a.in_memory
    assert resolve(p) is a                                   # one open store per path per process
    assert resolve(a) is a
    assert resolve(False) is None
    d = tmp_path / "dir"
    d.mkdir()
    assert resolve(d).path == d / "plans.sqlite"             # a directory holds plans.sqlite
    default = resolve(None)
    assert default.path == tmp_path / "default-store" / "plans.sqlite"   # a new path without suffix: a folder
    assert resolve(tmp_path / "new.db").path == tmp_path / "new.db"
    for bad in (1, 2.5, True, object(), ["x"]):
        with pytest.raises(TypeError, match="store must be"):
            resolve(bad)


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSPARSE_STORE", str(tmp_path / "x.sqlite"))
    assert S.default_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("AUTOSPARSE_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert S.default_path() == tmp_path / "xdg" / "autosparse" / "plans.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert S.default_path() == tmp_path / "home" / ".cache" / "autosparse" / "plans.sqlite"


def _sent(st, call):
    """``call()``'s result and the statements on the plans table the store really sent for it."""
    sent = []
    st._conn.set_trace_callback(sent.append)
    try:
        result = call()
    finally:
        st._conn.set_trace_callback(None)
    return result, [q for q in sent if " FROM plans " in q and q.lstrip().upper().startswith("SELECT")]


def _query_plan(st, statement):
    """EXPLAIN QUERY PLAN of a statement the store sent (bound values already expanded)."""
    return [str(r[-1]) for r in st._conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()]


def _assert_searches_index(st, statements, index):
    assert statements, "the store sent no query on the plans table"
    for q in statements:
        steps = _query_plan(st, q)
        assert any(s.startswith(f"SEARCH plans USING INDEX {index} (") or
                   s.startswith(f"SEARCH plans USING COVERING INDEX {index} (") for s in steps), (q, steps)
        assert not any(s.startswith("SCAN plans") for s in steps), (q, steps)       # no full scan


def test_wal_and_indexed_lookup(st):
    conn = sqlite3.connect(st.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    for i in range(20):
        st.save(fake_profile(90 + i), W, "measure", CSR if i % 2 else BSR)
    hit, sent = _sent(st, lambda: st.lookup(fake_profile(91), W))
    assert hit == CSR and len(sent) == 1
    _assert_searches_index(st, sent, "plans_key")
    miss, sent = _sent(st, lambda: st.lookup(fake_profile(200), W, "patient"))
    assert miss is None
    _assert_searches_index(st, sent, "plans_key")


# -- keys and effort ----------------------------------------------------------------

def test_effort_order_and_replacement(st):
    p = fake_profile(1)
    assert st.lookup(p, W, "measure") is None
    assert st.save(p, W, "measure", CSR, report())
    assert st.lookup(p, W, "measure") == CSR
    assert st.lookup(p, W, "estimate") == CSR                # more effort satisfies less
    assert st.lookup(p, W, "cache_only") == CSR              # any stored effort
    assert st.lookup(p, W, "patient") is None                # less effort does not satisfy more
    assert st.save(p, W, "patient", BSR, report(2.0))        # a re-tune with more effort replaces
    assert st.lookup(p, W, "patient") == BSR and st.lookup(p, W, "measure") == BSR
    assert not st.save(p, W, "measure", CSR, report())      # ...and is not downgraded
    assert st.lookup(p, W, "exhaustive") is None and st.lookup(p, W, "patient") == BSR
    assert len(st) == 1
    e = st.entries()[0]
    assert e["effort"] == "patient" and e["speedup"] == 2.0 and e["report"]["trials"] == 3
    assert not st.save(p, W, "cache_only", CSR)              # not an effort a plan is found with


def test_key_names_dtype_workload_machine_and_kernels(st, monkeypatch):
    p = fake_profile(2)
    st.save(p, W, "measure", CSR)
    assert st.lookup(fake_profile(2, dtype="float32"), W) is None
    assert st.lookup(p, Workload(matvec=1000, rmatvec=1000)) is None
    assert st.lookup(p, Workload(matvec=1100)) == CSR                     # same workload class
    assert st.lookup(p, Workload(matvec=100_000)) is None                 # another class
    monkeypatch.setattr(S, "machine_id", lambda threads=None: "m-other")
    assert st.lookup(p, W) is None                            # another machine: never an answer...
    assert st.warm_starts(p, W) == list(CSR.layouts)         # ...only a warm start
    monkeypatch.undo()
    monkeypatch.setenv("AUTOSPARSE_WISDOM", "none")
    monkeypatch.setattr(S, "kernel_version", lambda: "k-other")
    assert st.lookup(p, W) is None
    assert st.warm_starts(p, W) == list(CSR.layouts)


def test_kernel_version_ignores_comments_docstrings_and_layout_only():
    code = b'''"""Module doc."""
import numpy as np


def f(x):  # why
    """What f does."""
    y = (x +
         1)
    return "s" + str(y)
'''
    same = b'''"""Another doc, longer,
over two lines."""
import numpy as np
# a new comment

def f(x):
    """Changed."""
    y = (x + 1)
    return "s" + str(y)
'''
    assert S.code_tokens(code) == S.code_tokens(same)
    for edit in (b"x +", b"x -"), (b'"s"', b'"t"'), (b"    return", b"    y = y\n    return"), (b"import numpy", b"import numba"):
        assert S.code_tokens(code.replace(*edit)) != S.code_tokens(code), edit
    assert S.code_tokens(b"def f(:\n") == b"def f(:\n"        # does not tokenize: hashed as it is


def test_machine_id_and_kernel_version():
    assert S.machine_id(1) != S.machine_id(2)                 # thread count is part of the machine
    assert S.machine_id(2) == S.machine_id(2) and S.machine_id(2).startswith("m-")
    info = S.machine_info(2)
    assert info["cpu"] and info["threads"] == 2 and isinstance(info["features"], list)
    cached = S.kernel_version()
    S.kernel_version.cache_clear()
    try:
        assert S.kernel_version() == cached                   # stable: a fresh hash of the same code
    finally:
        S.kernel_version.cache_clear()
    assert len(cached) == 18 and cached.startswith("k-") and int(cached[2:], 16) >= 0


def test_kernel_version_follows_product_code_only(tmp_path, monkeypatch):
    """The hash reads kernels/*.py and formats/*.py of the package (not the profiler's kernels):
    a code edit there changes it, a comment or an edit elsewhere does not."""
    pkg = tmp_path / "autosparse"
    for sub, files in {"kernels": ("csr.py", "profile.py"), "formats": ("csr.py",), "": ("tuner.py",)}.items():
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            (pkg / sub / f).write_text(f"def f(x):\n    return x + {len(sub)}\n")
    monkeypatch.setattr(S, "__file__", str(pkg / "store.py"))

    def version():
        S.kernel_version.cache_clear()
        return S.kernel_version()

    try:
        base = version()
        assert base.startswith("k-") and version() == base
        (pkg / "kernels" / "csr.py").write_text("def f(x):  # a comment\n    return x + 7\n")
        assert version() == base                                           # comments only
        (pkg / "tuner.py").write_text("def f(x):\n    return 0\n")
        (pkg / "kernels" / "profile.py").write_text("def f(x):\n    return -1\n")
        assert version() == base                                           # not product code
        (pkg / "formats" / "csr.py").write_text("def f(x):\n    return x - 7\n")
        edited = version()
        assert edited != base                                              # a format's code
        (pkg / "kernels" / "csr.py").write_text("def f(x):\n    return x * 7\n")
        assert version() not in (base, edited)                             # a kernel's code
        before = version()
        (pkg / "formats" / "ell.py").write_text("X = 1\n")
        assert version() != before                                         # a new format module
    finally:
        monkeypatch.undo()
        S.kernel_version.cache_clear()
    assert S.kernel_version() == S.kernel_version.__wrapped__()            # the real package again


def test_lookup_by_pattern_digest(st):
    p = fake_profile(6, pattern="digest6")
    st.save(p, W, "patient", BSR)
    assert st.lookup_pattern("digest6", "float64", W, "measure") == BSR
    assert st.lookup_pattern("digest6", "float64", W, "exhaustive") is None
    assert st.lookup_pattern("digest6", "float32", W) is None
    assert st.lookup_pattern("other", "float64", W) is None and st.lookup_pattern("", "float64", W) is None
    for i in range(20):
        st.save(fake_profile(90 + i), W, "measure", CSR)
    hit, sent = _sent(st, lambda: st.lookup_pattern("digest6", "float64", W, "measure"))
    assert hit == BSR and len(sent) == 1
    _assert_searches_index(st, sent, "plans_pattern")


def test_exact_pattern_preferred(st, monkeypatch):
    """One structure key, several patterns: the exact pattern's row, else the highest effort,
    else the most recently updated row (lookup's ORDER BY)."""
    clock = iter([100.0, 200.0, 300.0, 50.0])
    monkeypatch.setattr(S, "time", SimpleNamespace(time=lambda: next(clock), strftime=time.strftime))
    a = fake_profile(3, key="s1-shared", pattern="pa")
    b = fake_profile(4, key="s1-shared", pattern="pb")
    c = fake_profile(5, key="s1-shared", pattern="pc")                 # same structure key, no row of its own
    ELL = Plan.single("ell")
    st.save(a, W, "measure", CSR)                                       # updated 100
    st.save(b, W, "measure", BSR)                                       # updated 200
    assert st.lookup(a, W) == CSR and st.lookup(b, W) == BSR
    assert st.lookup(c, W) == BSR                                       # equal effort: the newest row
    st.save(a, W, "measure", CSR)                                       # re-tuned: updated 300
    assert st.lookup(c, W) == CSR
    st.save(fake_profile(6, key="s1-shared", pattern="pe"), W, "patient", ELL)   # older (50), more effort
    assert st.lookup(c, W) == ELL and st.lookup(c, W, "patient") == ELL          # effort before age
    assert st.lookup(a, W) == CSR and st.lookup(b, W) == BSR                     # the exact pattern first
    assert st.lookup(a, W, "patient") == ELL                  # ...when its own row satisfies the effort
    assert [e["updated"] for e in st.entries()] == [300.0, 200.0, 50.0]


def test_warm_starts_nearest_dedup_and_never_answers(st, tmp_path, monkeypatch):
    base = np.full(29, 0.5)
    near = [base + d for d in (0.01, 0.02, 0.03, 0.3)]
    plans = [BSR, BSR, Plan.single("ell"), Plan.single("csr", index_dtype="int64")]
    for i, (f, plan) in enumerate(zip(near, plans)):
        st.save(fake_profile(10 + i, features=f), W, "measure", plan)
    st.save(fake_profile(20, features=base + 0.005), W, "measure", Plan.baseline())   # contributes nothing
    ah = Plan((Layout("csr"), Layout("csr", {}, "AH")), {"matvec": 0, "rmatvec": 1})
    st.save(fake_profile(21, features=base + 0.001), W, "measure", ah)
    q = fake_profile(30, features=base)
    ws = st.warm_starts(q, W)
    assert ws[0] == Layout("csr")                                            # nearest first
    assert Layout("csr", {}, "AH") not in ws                                 # no adjoint calls here
    assert len(ws) == len(set(ws)) <= S.MAX_WARM and all(lay.format != "scipy" for lay in ws)
    assert Layout("bsr", {"r": 2, "c": 2, "index_dtype": "int32"}) in ws
    assert Layout("csr", {}, "AH") in st.warm_starts(q, Workload(matvec=100, rmatvec=1000))
    assert st.lookup(q, W) is None                                           # neighbours are not answers
    far = fake_profile(31, features=np.full(29, 5.0))
    assert st.warm_starts(far, W) == []                                      # nothing close enough

    # shipped wisdom: a warm start even when its machine and kernels are ours, never an answer
    rec = {"schema": S.WISDOM_SCHEMA, "structure_key": "s1-wisdom", "dtype": "float64", "workload_class":
           W.workload_class(), "machine_id": S.machine_id(), "kernel_version": S.kernel_version(),
           "effort": "patient", "features": list(np.full(29, 0.9)), "plan": Plan.single("dia").to_dict()}
    (tmp_path / "wisdom").mkdir()
    (tmp_path / "wisdom" / "w.jsonl").write_text(json.dumps(rec) + "\nnot json\n")
    monkeypatch.setenv("AUTOSPARSE_WISDOM", str(tmp_path / "wisdom"))
    w = fake_profile(40, key="s1-wisdom", features=np.full(29, 0.9))
    assert st.lookup(w, W) is None
    assert Layout("dia") in st.warm_starts(w, W)


def test_lookup_latency_10k(tmp_path):
    st = PlanStore(tmp_path / "big.sqlite")
    mid, kv, wc = S.machine_id(), S.kernel_version(), W.workload_class()
    text = BSR.to_json()
    rng = np.random.default_rng(0)
    feats = [",".join(f"{v:.4f}" for v in rng.random(29)) for _ in range(100)]
    rows = [(f"s1-{i:032x}", "float64", wc, mid, kv, f"p{i}", "measure", 1, f"[{feats[i % 100]}]", "[10,10]", 100,
             None, "matvec=1000", None, text, "{}", 0.0, 0.0) for i in range(10_000)]
    st._run(lambda c: st._write(c, lambda c2: c2.executemany(S._UPSERT, rows)), strict=True)
    assert len(st) == 10_000
    probes = [fake_profile(0, key=f"s1-{i:032x}", pattern=f"p{i}") for i in range(0, 10_000, 50)]
    assert st.lookup(probes[0], W) == BSR
    times = []
    for p in probes:
        t = time.perf_counter()
        hit = st.lookup(p, W)
        times.append(time.perf_counter() - t)
        assert hit == BSR
    assert np.median(times) < 2e-3, f"median lookup {np.median(times) * 1e3:.2f} ms"
    t = time.perf_counter()
    assert st.lookup(fake_profile(0, key="s1-missing"), W) is None
    assert time.perf_counter() - t < 0.05
    near = [float(v) + 0.01 for v in feats[7].split(",")]
    assert st.warm_starts(fake_profile(1, features=near), W) == list(BSR.layouts)
    st.close()


# -- wisdom ----------------------------------------------------------------------------

def test_wisdom_roundtrip(st, tmp_path):
    for i in range(3):
        st.save(fake_profile(50 + i), W, "measure", [CSR, BSR, Plan.single("ell")][i], report(), name=f"m{i}")
    out = tmp_path / "w.jsonl"
    assert st.export_wisdom(out) == 3
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["schema"] == S.WISDOM_SCHEMA for x in lines)
    fresh = PlanStore(tmp_path / "fresh.sqlite")
    rep = fresh.import_wisdom(out)
    assert (rep.accepted, rep.rejected) == (3, 0)
    for i in range(3):
        assert fresh.lookup(fake_profile(50 + i), W) == st.lookup(fake_profile(50 + i), W)
    assert {e["name"] for e in fresh.entries()} == {"m0", "m1", "m2"}
    fresh.close()


def test_wisdom_import_rejects_bad_lines_and_keeps_good_ones(st, tmp_path):
    good = {"schema": S.WISDOM_SCHEMA, "structure_key": "s1-good", "dtype": "float64",
            "workload_class": W.workload_class(), "machine_id": S.machine_id(), "kernel_version": S.kernel_version(),
            "effort": "measure", "features": [0.1] * 29, "pattern": "pg", "plan": CSR.to_dict()}
    lines = [
        json.dumps(good),
        '{"schema": "autosparse-wisdom/1", "structure_key": ',                        # malformed JSON
        json.dumps({**good, "schema": "autosparse-wisdom/99"}),                         # wrong schema
        json.dumps({**good, "plan": {**CSR.to_dict(), "layouts": [{"format": "nosuch", "params": {}}]}}),
        json.dumps({**good, "plan": {**CSR.to_dict(), "version": 42}}),                 # plan schema
        json.dumps({k: v for k, v in good.items() if k != "dtype"}),                    # missing field
        json.dumps({**good, "effort": "heroic"}),
        "",                                                                              # blank: ignored
        json.dumps(["not", "an", "object"]),
        json.dumps({**good, "structure_key": "s1-good2", "pattern": "pg2"}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rep = st.import_wisdom(path)
    by_line = {r.line: r for r in rep.lines}
    assert by_line[1].accepted and by_line[10].accepted
    assert "malformed JSON" in by_line[2].reason
    assert "wrong schema" in by_line[3].reason
    assert "unknown format 'nosuch'" in by_line[4].reason
    assert "schema version 42" in by_line[5].reason
    assert "'dtype'" in by_line[6].reason
    assert "unknown effort" in by_line[7].reason
    assert 8 not in by_line
    assert "JSON object" in by_line[9].reason
    assert (rep.accepted, rep.rejected) == (2, 7)
    assert "line 2: rejected: malformed JSON" in str(rep)
    assert len(st) == 2
    assert st.lookup(fake_profile(0, key="s1-good", pattern="pg"), W) == CSR
    with pytest.raises(ValueError, match="cannot read"):
        st.import_wisdom(tmp_path / "missing.jsonl")


def _wisdom_lines(path):
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_shipped_wisdom_imports_cleanly(tmp_path):
    """Every line of the shipped tuning_db/corpus.jsonl is a valid record, kept as it is."""
    corpus = ROOT / "tuning_db" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip("no shipped wisdom in this checkout")
    lines = _wisdom_lines(corpus)
    fresh = PlanStore(tmp_path / "fresh.sqlite")
    rep = fresh.import_wisdom(corpus)
    assert (rep.accepted, rep.rejected) == (len(lines), 0), str(rep)
    assert len(lines) > 0 and len(fresh) == len(lines)                 # one row per line: no key collides
    shipped = {json.loads(x)["name"]: json.loads(x) for x in lines}
    stored = {r["name"]: r for r in fresh.records()}
    assert stored.keys() == shipped.keys()
    for name, r in stored.items():
        assert Plan.from_dict(r["plan"]) == Plan.from_dict(shipped[name]["plan"]), name
        assert r["structure_key"] == shipped[name]["structure_key"] and r["effort"] == shipped[name]["effort"]
    fresh.close()


def test_default_wisdom_discovery(tmp_path, monkeypatch):
    """Without $AUTOSPARSE_WISDOM a source checkout finds tuning_db/ next to the package."""
    if Path(S.__file__).resolve().parents[1] != ROOT or (ROOT / "autosparse" / "tuning_db").exists():
        pytest.skip("not a source checkout without package-data wisdom")
    corpus = ROOT / "tuning_db" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip("no shipped wisdom in this checkout")
    monkeypatch.delenv("AUTOSPARSE_WISDOM")
    found = S.wisdom_paths()
    assert corpus in found and all(p.parent == ROOT / "tuning_db" and p.suffix == ".jsonl" for p in found)
    assert found == sorted(found)
    rows = S._shipped_rows()                                            # every line a warm start
    assert len(rows) == sum(len(_wisdom_lines(p)) for p in found)
    st = PlanStore(tmp_path / "plans.sqlite")
    stats = st.stats()
    assert stats["wisdom_files"] == [str(p) for p in found] and stats["wisdom_plans"] == len(rows)
    st.close()
    monkeypatch.chdir(tmp_path)                  # where each "off" value, read as a path, holds wisdom
    for off in ("", "0", "none", "OFF", "off"):
        (tmp_path / (off or ".")).mkdir(exist_ok=True)
        (tmp_path / (off or ".") / "w.jsonl").write_text(corpus.read_text())
        monkeypatch.setenv("AUTOSPARSE_WISDOM", off)
        assert S.wisdom_paths() == [], off
    monkeypatch.setenv("AUTOSPARSE_WISDOM", str(corpus))
    assert S.wisdom_paths() == [corpus]
    monkeypatch.setenv("AUTOSPARSE_WISDOM", str(tmp_path / "nowhere"))
    assert S.wisdom_paths() == []


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_newer_store_schema_falls_back_and_leaves_the_file_alone(tmp_path, journal):
    path = tmp_path / "plans.sqlite"
    _fill(path, 3)
    conn = sqlite3.connect(path)
    assert conn.execute(f"PRAGMA journal_mode = {journal}").fetchone()[0] == journal
    conn.execute(f"PRAGMA user_version = {S.STORE_SCHEMA + 1}")        # written by a newer autosparse
    conn.execute("CREATE TABLE future (x)")
    conn.close()
    before = path.read_bytes()
    with pytest.warns(StoreWarning, match="newer"):
        s = PlanStore(path)
    assert s.in_memory and "newer" in s.memory_reason
    assert len(s) == 0                                                  # its rows are not read as ours...
    assert s.save(fake_profile(1), W, "measure", BSR) and s.lookup(fake_profile(1), W) == BSR   # ...but it works
    s.close()
    assert path.read_bytes() == before                                  # untouched
    assert not list(tmp_path.glob("plans.sqlite.corrupt-*"))            # not moved aside as corrupt
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == S.STORE_SCHEMA + 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal     # not switched to WAL
    assert conn.execute("SELECT count(*) FROM plans").fetchone()[0] == 3
    conn.close()


def test_stored_rows_are_json_not_pickles(st):
    st.save(fake_profile(60), W, "measure", BSR, report())
    conn = sqlite3.connect(st.path)
    for plan, rep, feats in conn.execute("SELECT plan, report, features FROM plans"):
        assert Plan.from_json(plan) == BSR
        json.loads(rep), json.loads(feats)
    conn.close()
    src = (ROOT / "autosparse" / "store.py").read_text()
    assert "import pickle" not in src and "pickle.load" not in src and "marshal" not in src


def test_db_management(st, monkeypatch):
    for i in range(3):
        st.save(fake_profile(70 + i), W, "measure", CSR, report())
    monkeypatch.setattr(S, "machine_id", lambda threads=None: "m-other")
    st.save(fake_profile(80), W, "measure", BSR)
    monkeypatch.undo()
    s = st.stats()
    assert s["plans"] == 4 and s["answers_here"] == 3 and s["by_format"] == {"bsr": 1, "csr": 3}
    e = st.entries()
    assert st.get(e[0]["key"])[0]["id"] == e[0]["id"] and st.get(str(e[1]["id"]))[0]["key"] == e[1]["key"]
    assert st.get("zzzz") == []
    for entry in e:                     # an id comes first, before hex keys that start with its digits
        assert st.get(str(entry["id"]))[0]["id"] == entry["id"]
    assert st.clear(stale_only=True) == 1 and len(st) == 3
    assert st.clear() == 3 and len(st) == 0


# -- never failing the user's compute ---------------------------------------------------

def test_store_problems_never_raise(st):
    broken = SimpleNamespace(fingerprint=None, dtype="float64", shape=(1, 1), nnz=0)
    assert st.lookup(broken, W) is None
    assert st.warm_starts(broken, W) == []
    assert st.save(broken, W, "measure", CSR) is False
    st.close()
    assert st.lookup(fake_profile(1), W) is None
    assert st.save(fake_profile(1), W, "measure", CSR) is False


def _fill(path, n=200):
    s = PlanStore(path)
    for i in range(n):
        s.save(fake_profile(i), W, "measure", CSR)
    s.close()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "header"])
def test_corrupt_store_is_moved_aside(tmp_path, damage):
    path = tmp_path / "plans.sqlite"
    _fill(path)
    size = path.stat().st_size
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: size // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(size))
    else:
        path.write_bytes(data[:100] + b"\xff" * 8000 + data[8100:])
    with pytest.warns(StoreWarning, match="corrupt"):
        s = PlanStore(path)
    aside = list(tmp_path.glob("plans.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].stat().st_size > 0
    assert len(s) == 0 and not s.in_memory
    assert s.save(fake_profile(1), W, "measure", BSR) and s.lookup(fake_profile(1), W) == BSR
    s.close()


def test_corruption_while_open_recovers(tmp_path):
    path = tmp_path / "plans.sqlite"
    s = PlanStore(path)
    s.save(fake_profile(1), W, "measure", CSR)
    s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path.write_bytes(b"this is not a database" * 500)
    # Without this the open connection keeps answering from its page cache (the WAL index has
    # not changed) and never reads the damage; a long-running process's cache is not forever.
    s._conn.execute("PRAGMA shrink_memory")
    with pytest.warns(StoreWarning, match="corrupt"):
        assert s.lookup(fake_profile(1), W) is None          # no raise; the plan went with the bad file
    assert len(list(tmp_path.glob("plans.sqlite.corrupt-*"))) == 1 and not s.in_memory
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)           # the fresh store just works
        assert s.save(fake_profile(2), W, "measure", BSR)
        assert s.lookup(fake_profile(2), W) == BSR
    s.close()
    again = PlanStore(path)                                    # ...and is a real file again
    assert len(again) == 1 and again.lookup(fake_profile(2), W) == BSR
    again.close()


def _tiny_matrix():
    from autosparse.io import example
    return example("poisson2d", 30)


def test_tune_survives_a_garbage_store(tmp_path):
    from autosparse import tune
    path = tmp_path / "plans.sqlite"
    path.write_bytes(b"\x00garbage" * 4096)
    A = _tiny_matrix()
    x = np.random.default_rng(0).standard_normal(A.shape[1])
    with pytest.warns(StoreWarning):
        T = tune(A, "matvec=100000", effort="cache_only", store=str(path))
    np.testing.assert_allclose(T @ x, A @ x, rtol=1e-12, atol=1e-12)
    assert list(tmp_path.glob("plans.sqlite.corrupt-*"))


def _readonly_dir(tmp_path):
    """A directory this process cannot write (chmod for users; /proc for root), or None."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    d = Path("/proc/self")                  # procfs: not even root creates files there
    try:
        (d / "autosparse-probe").touch()
    except OSError:
        return d
    return None


def test_readonly_location_warns_once_and_works_in_memory(tmp_path, monkeypatch):
    ro = _readonly_dir(tmp_path)
    if ro is None:
        pytest.skip("no read-only directory available")
    monkeypatch.setenv("AUTOSPARSE_STORE", str(ro))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = resolve(None)
        b = resolve(None)
        c = PlanStore(a.path)
    assert sum(issubclass(w.category, StoreWarning) for w in caught) == 1
    assert a is b and a.in_memory and c.in_memory
    assert a.save(fake_profile(1), W, "measure", CSR) and a.lookup(fake_profile(1), W) == CSR
    from autosparse import tune
    A = _tiny_matrix()
    x = np.ones(A.shape[1])
    T = tune(A, "matvec=100000", effort="cache_only")                  # AUTOSPARSE_STORE -> read-only
    np.testing.assert_allclose(T @ x, A @ x)


def test_readonly_existing_store_is_read_into_memory(tmp_path, monkeypatch):
    path = tmp_path / "shared" / "plans.sqlite"
    path.parent.mkdir()
    _fill(path, 5)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(path.parent)) else
                        real_access(p, mode))
    with pytest.warns(StoreWarning, match="in-memory"):
        s = PlanStore(path)
    assert s.in_memory and len(s) == 5 and s.lookup(fake_profile(3), W) == CSR


# -- many processes ------------------------------------------------------------------------

_WRITER = """
import os, sys, time
from autosparse.store import WISDOM_SCHEMA, PlanStore
path, worker, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = PlanStore(path)
open(go + f".ready{worker}", "w").close()
while not os.path.exists(go):          # start together
    time.sleep(0.005)
for i in range(n):                      # one transaction per plan; records carry their key (no numba needed)
    rec = {"schema": WISDOM_SCHEMA, "structure_key": f"s1-w{worker}-{i}", "dtype": "float64",
           "workload_class": "matvec:1e3", "machine_id": "m-test", "kernel_version": "k-test",
           "effort": "measure", "features": [worker / 10, i / 100], "name": f"w{worker}-{i}",
           "plan": {"version": 1, "layouts": [{"format": "bsr", "params": {"r": 1 + worker % 4, "c": 2}}],
                    "serves": {"matvec": 0}}}
    rep = s.import_records([rec])
    assert rep.accepted == 1, str(rep)
s.close()
"""


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    # separate interpreters (never fork: numba's OpenMP layer is not fork-safe)
    path = str(tmp_path / "plans.sqlite")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, path, str(w), "25", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(8)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.ready*"))) < 8 and time.time() < deadline:
        time.sleep(0.02)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in results]
    s = PlanStore(path)
    recs = s.records()
    assert len(recs) == 200
    names = {r["name"] for r in recs}
    assert names == {f"w{w}-{i}" for w in range(8) for i in range(25)}
    for r in recs:
        w = int(r["name"][1:].split("-")[0])
        assert Plan.from_dict(r["plan"]) == Plan.single("bsr", r=1 + w % 4, c=2)
    s.close()


# -- end to end: a second tune() in a new process is a hit ---------------------------------

_SCRIPT = """
import json, sys
import numpy as np
import autosparse as asp
from autosparse.io import read_matrix
A = read_matrix(sys.argv[1])
T = asp.tune(A, "matvec=3000", store=sys.argv[2])
x = np.random.default_rng(1).standard_normal(A.shape[1])
ok = bool(np.allclose(T @ x, A @ x, rtol=1e-10, atol=1e-12))
r = T.report
print(json.dumps({"source": r.source, "trials": r.trials, "candidates": len(r.candidates),
                  "plan": T.plan.to_dict(), "ok": ok}))
"""


def test_second_tune_in_new_process_is_a_hit(tmp_path):
    from autosparse import tune
    from autosparse.io import read_matrix
    from conftest import corpus_entries
    entries = [e for e in corpus_entries(max_nnz=20_000) if e["name"] == "bcsstk09"] or corpus_entries(20_000)[-1:]
    if not entries:
        pytest.skip("matrix corpus absent")
    store = str(tmp_path / "plans.sqlite")
    first = tune(read_matrix(entries[0]["path"]), "matvec=3000", store=store)          # this process
    assert first.report.source == "search" and first.report.candidates
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(entries[0]["path"]), store],
                         env={**os.environ, "AUTOSPARSE_WISDOM": "none"}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout.strip().splitlines()[-1])                           # a new process
    assert second["source"] == "store" and second["trials"] == 0 and second["candidates"] == 0 and second["ok"]
    assert second["plan"] == first.plan.to_dict()


def test_tune_warm_starts_from_shipped_wisdom(tmp_path, monkeypatch):
    """A miss enqueues the nearest shipped plan's layout first; it is measured, not trusted."""
    from autosparse import tune
    from autosparse.profile import profile
    A = _tiny_matrix()
    fp = profile(A).fingerprint
    lay = Layout("csr", {"index_dtype": "int32"})
    rec = {"schema": S.WISDOM_SCHEMA, "structure_key": fp.key, "pattern": fp.pattern, "dtype": "float64",
           "workload_class": "matvec:1e7", "machine_id": "m-elsewhere", "kernel_version": "k-old",
           "effort": "patient", "features": [v + 0.01 for v in fp.features],
           "plan": Plan((lay,), {"matvec": 0}).to_dict()}
    (tmp_path / "w.jsonl").write_text(json.dumps(rec) + "\n")
    monkeypatch.setenv("AUTOSPARSE_WISDOM", str(tmp_path / "w.jsonl"))
    st = PlanStore(tmp_path / "plans.sqlite")
    assert st.lookup(profile(A), Workload(matvec=10**7)) is None
    assert st.warm_starts(profile(A), Workload(matvec=10**7)) == [lay]
    T = tune(A, "matvec=10000000", effort="patient", time_limit=1.0, store=st)
    assert T.report.source == "search"
    warm = [c for c in T.report.candidates if c.source == "warm-start"]
    assert [c.layout for c in warm] == [lay] and warm[0].verified, str(T.report)
    x = np.ones(A.shape[1])
    np.testing.assert_allclose(T @ x, A @ x)
