"""The autosparse command, end to end on real corpus files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest
import scipy.io
import scipy.sparse as sp

from autosparse import cli
from autosparse.plan import Plan
from autosparse.store import PlanStore
from conftest import assert_plan_computes_like_scipy, corpus_entries

ACTIONS = ["list", "show", "export", "import", "clear", "stats"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSPARSE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("AUTOSPARSE_WISDOM", "none")


@pytest.fixture(scope="module")
def files():
    entries = corpus_entries(max_nnz=20_000)
    by_name = {e["name"]: e for e in entries}
    picked = [by_name[n] for n in ("bcsstk09", "gr_30_30", "cage8") if n in by_name] or entries[-3:]
    if len(picked) < 2:
        pytest.skip("matrix corpus absent")
    return [str(e["path"]) for e in picked]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _cli(*argv, env=None):
    """The installed console script (``python -m autosparse.cli`` when it is not on this venv's path)."""
    script = os.path.join(os.path.dirname(sys.executable), "autosparse")
    cmd = [script] if os.path.isfile(script) else [sys.executable, "-m", "autosparse.cli"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("argv", [[], ["tune"], ["profile"], ["bench"], ["offline"], ["db"]] +
                         [["db", a] for a in ACTIONS])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: autosparse") and "--help" in out


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.mtx"
    bad.write_text("this is not matrix market\n1 2 3\n")
    cases = [
        (["tune", str(tmp_path / "missing.mtx")], "missing.mtx: no such file"),
        (["tune", str(bad)], "not a readable Matrix Market file"),
        (["profile", str(bad)], "not a readable Matrix Market file"),
        (["tune", "--workload", "matvec=lots"], "bad workload item"),
        (["bench", "--workload", "foo=1"], "unknown workload key 'foo'"),
        (["db", "show", "nosuchkey"], "no stored plan matches 'nosuchkey'"),
        (["db", "import", str(tmp_path / "missing.jsonl")], "cannot read wisdom file"),
        (["tune", "example:nope"], "unknown example 'nope'"),
    ]
    for argv, msg in cases:
        code, out, err = run(capsys, *argv)
        assert code == 1, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("autosparse: error:") and msg in lines[0], (argv, err)
        assert "Traceback" not in err
    code, out, err = run(capsys, "db")
    assert code == 1 and "give an action" in err
    with pytest.raises(SystemExit) as exc:                    # argparse's own usage errors: status 2
        cli.main(["tune", "--memory-limit", "lots"])
    assert exc.value.code == 2
    # and as a real process: one line on stderr, nothing else
    p = _cli("tune", str(tmp_path / "missing.mtx"))
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert p.stderr.startswith("autosparse: error:")


def test_tune_then_a_hit_in_a_new_process(tmp_path, files, capsys):
    store = str(tmp_path / "cli.sqlite")
    code, out, err = run(capsys, "tune", files[0], "--store", store, "--workload", "matvec=3000")
    assert code == 0, err
    assert "plan " in out and "speed-up" in out and "tuning " in out and f"saved to {store}" in out
    second = _cli("tune", files[0], "--store", store, "--workload", "matvec=3000", "--json")
    assert second.returncode == 0, second.stderr
    rep = json.loads(second.stdout)
    assert rep["source"] == "store" and rep["report"]["trials"] == 0 and rep["report"]["candidates"] == []
    entry = PlanStore(store).entries()[0]
    assert entry["name"] == os.path.basename(files[0]) and rep["plan"] == entry["plan"]
    assert_plan_computes_like_scipy(files[0], entry["plan"])


def test_tune_time_limit(capsys, files):
    code, out, err = run(capsys, "tune", files[0], "--effort", "exhaustive", "--time-limit", "0.05", "--no-store",
                         "--json", "--workload", "matvec=100000")
    assert code == 0, err
    d = json.loads(out)
    rep = d["report"]
    # an exhaustive search of this matrix runs ~0.5 s of trials: the limit, not the candidates, ends it
    assert rep["source"] == "search" and rep["stop_reason"] == "time_limit (0.05 s) reached", rep["stop_reason"]
    assert rep["trials"] >= 1 and d["store"] is None
    assert_plan_computes_like_scipy(files[0], d["plan"])
    for bad in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["tune", files[0], "--time-limit", bad, "--no-store"])
        assert exc.value.code == 2
        assert "--time-limit" in capsys.readouterr().err


@pytest.mark.parametrize("text, size", [
    ("1000", 1000), ("512K", 512 * 2**10), ("800M", 800 * 2**20), ("2G", 2 * 2**30), ("1T", 2**40),
    ("1.5GiB", 3 * 2**29), ("64mb", 64 * 2**20), ("2gb", 2 * 2**30), (" 10k ", 10 * 2**10), ("1e9", 10**9),
    ("2.5e3", 2500), ("7B", 7),
])
def test_memory_limit_sizes(text, size):
    assert cli._bytes(text) == size and isinstance(cli._bytes(text), int)


@pytest.mark.parametrize("text, why", [
    ("lots", "bad size"), ("", "bad size"), ("M", "bad size"), ("12Q", "bad size"), ("1,5G", "bad size"),
    ("0", "must be positive"), ("-5M", "must be positive"), ("nan", "must be positive"),
    ("inf", "must be positive"),
])
def test_memory_limit_bad_sizes(capsys, text, why):
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        cli._bytes(text)
    with pytest.raises(SystemExit) as exc:                        # argparse: usage error, status 2
        cli.main(["tune", f"--memory-limit={text}", "--no-store"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--memory-limit" in err and why in err and repr(text) in err


def test_tune_memory_limit_bounds_the_plan(capsys, files):
    import autosparse
    A = sp.csr_array(scipy.io.mmread(files[1]))
    base = autosparse.build(A, Plan.baseline()).nbytes
    code, out, err = run(capsys, "tune", files[1], "--memory-limit", "1K", "--no-store")
    assert code == 1 and f"memory_limit=1024 bytes is below the {base} bytes" in err     # 1K reached tune()
    limit = base + base // 10
    code, out, err = run(capsys, "tune", files[1], "--memory-limit", str(limit), "--no-store", "--json",
                         "--workload", "matvec=20000,rmatvec=20000")
    assert code == 0, err
    d = json.loads(out)
    T = assert_plan_computes_like_scipy(files[1], d["plan"])
    assert T.nbytes <= limit
    assert all((c.get("nbytes") or c["est_bytes"]) <= limit for c in d["report"]["candidates"])
    held_back = [n for n in d["report"]["notes"] if "over the memory limit" in n]
    assert held_back, "no layout was held back by the limit: pick a tighter one"


def _record(i, fmt="csr", machine=None, kernel=None):
    from autosparse import store as S
    return {"schema": S.WISDOM_SCHEMA, "structure_key": f"s1-cli{i}", "pattern": f"p{i}", "dtype": "float64",
            "workload_class": "matvec:1e3", "workload": "matvec=1000", "effort": "measure",
            "machine_id": machine or S.machine_id(), "kernel_version": kernel or S.kernel_version(),
            "features": [0.1 * i] * 29, "shape": [10 + i, 10 + i], "nnz": 20 + i, "name": f"m{i}",
            "plan": Plan.single(fmt).to_dict(), "report": {"speedup": 1.5 + i}}


@pytest.fixture
def db(tmp_path):
    """A store with two current plans, one of another machine and one of older kernels."""
    path = str(tmp_path / "db.sqlite")
    st = PlanStore(path)
    rep = st.import_records([_record(0, "csr"), _record(1, "ell"), _record(2, "dia", machine="m-other"),
                             _record(3, "csr", kernel="k-old")])
    assert rep.accepted == 4
    st.close()
    return path


def test_db_list_and_stats_json(capsys, db):
    from autosparse import store as S
    code, out, err = run(capsys, "db", "list", "--json", "--store", db)
    assert code == 0, err
    listed = {e["name"]: e for e in json.loads(out)}
    assert set(listed) == {"m0", "m1", "m2", "m3"}
    stored = {e["name"]: e for e in PlanStore(db).entries()}
    for name, e in listed.items():
        assert (e["id"], e["key"], e["plan"], e["structure_key"]) == \
            (stored[name]["id"], stored[name]["key"], stored[name]["plan"], stored[name]["structure_key"])
    assert listed["m1"]["plan_text"] == Plan.single("ell").describe() and listed["m1"]["speedup"] == 2.5
    assert [(listed[n]["this_machine"], listed[n]["current_kernels"]) for n in ("m0", "m2", "m3")] == \
        [(True, True), (False, True), (True, False)]
    code, out, err = run(capsys, "db", "list", "--json", "--limit", "2", "--store", db)
    assert code == 0 and len(json.loads(out)) == 2

    code, out, err = run(capsys, "db", "stats", "--json", "--store", db)
    assert code == 0, err
    s = json.loads(out)
    assert s["path"] == db and s["in_memory"] is False and s["bytes"] > 0
    assert s["plans"] == 4 and s["answers_here"] == 2
    assert s["by_format"] == {"csr": 2, "dia": 1, "ell": 1} and s["by_effort"] == {"measure": 4}
    assert s["machines"] == {S.machine_id(): 3, "m-other": 1}
    assert s["kernel_versions"] == {S.kernel_version(): 3, "k-old": 1}
    assert s["machine_id"] == S.machine_id() and s["kernel_version"] == S.kernel_version()
    assert s["wisdom_files"] == [] and s["wisdom_plans"] == 0                   # AUTOSPARSE_WISDOM=none


def test_db_export_to_stdout(capsys, db, tmp_path):
    code, out, err = run(capsys, "db", "export", "-", "--store", db)
    assert code == 0, err
    lines = out.splitlines()
    assert [json.loads(x) for x in lines] == PlanStore(db).records()          # every plan, nothing else
    w = tmp_path / "w.jsonl"
    w.write_text(out)
    code, out, err = run(capsys, "db", "import", str(w), "--store", str(tmp_path / "copy.sqlite"))
    assert code == 0 and "4 line(s) accepted, 0 rejected" in out
    assert PlanStore(str(tmp_path / "copy.sqlite")).records() == PlanStore(db).records()


def test_db_clear_stale(capsys, db):
    code, out, err = run(capsys, "db", "clear", "--stale", "--store", db)
    assert code == 0, err
    assert f"removed 2 plan(s) of other machines or kernel versions from {db}" in out
    assert {e["name"] for e in PlanStore(db).entries()} == {"m0", "m1"}
    code, out, err = run(capsys, "db", "clear", "--stale", "--store", db)
    assert code == 0 and "removed 0 plan(s)" in out
    assert len(PlanStore(db)) == 2


def test_db_import_fails_when_nothing_is_accepted(capsys, db, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**_record(9), "schema": "autosparse-wisdom/0"}) + "\n{broken\n")
    code, out, err = run(capsys, "db", "import", str(bad), "--store", db)
    assert code == 1
    assert "0 line(s) accepted, 2 rejected" in out and "wrong schema" in out and "malformed JSON" in out
    assert len(PlanStore(db)) == 4                                          # nothing written
    one = tmp_path / "one.jsonl"
    one.write_text(bad.read_text() + json.dumps(_record(9)) + "\n")
    code, out, err = run(capsys, "db", "import", str(one), "--store", db)
    assert code == 0 and "1 line(s) accepted, 2 rejected" in out and len(PlanStore(db)) == 5


def test_tune_example_is_the_main_command(capsys, tmp_path):
    code, out, err = run(capsys, "tune")
    assert code == 0, err
    assert "built-in example poisson2d" in out and "plan " in out and "speed-up" in out and "tuning " in out
    code, out, err = run(capsys, "tune", "--json", "--no-store", "--effort", "cache_only", "example:banded")
    assert code == 0, err
    d = json.loads(out)
    assert d["matrix"]["shape"] == [200_000, 200_000] and d["store"] is None and d["plan_text"] == "scipy()"


def test_profile(capsys, files):
    code, out, err = run(capsys, "profile", files[1])
    assert code == 0, err
    assert "key s1-" in out and "pattern digest" in out
    code, out, err = run(capsys, "profile", "--json", files[1])
    assert code == 0, err
    d = json.loads(out)
    M = scipy.io.mmread(files[1])                                   # the file as SciPy reads it
    assert d["shape"] == list(M.shape) and d["nnz"] == M.nnz and d["dtype"] == str(M.dtype)
    assert d["fingerprint"]["key"].startswith("s1-")
    code, out, err = run(capsys, "profile")
    assert code == 0 and "90000 x 90000" in out


def test_bench(capsys, files, monkeypatch):
    code, out, err = run(capsys, "bench", files[0], "--workload", "matvec=2000,rmatvec=1000", "--rounds", "2")
    assert code == 0, err
    assert "autosparse" in out and "scipy" in out and "matvec" in out and "rmatvec" in out
    assert "results agree with SciPy" in out
    # MKL absent: a message, not a failure
    monkeypatch.setattr(cli, "_mkl", lambda: (None, "ImportError: no MKL here"))
    code, out, err = run(capsys, "bench", files[1], "--rounds", "1", "--no-store")
    assert code == 0 and "MKL skipped" in err


class _OffByOne:
    """A tuned operator whose rmatvec is wrong by one ulp-free unit: what `bench` must catch."""

    def __init__(self, T):
        self._T = T

    def __getattr__(self, name):
        return getattr(self._T, name)

    def rmatvec(self, x, out=None):
        y = self._T.rmatvec(x, out=out)
        y[len(y) // 2] += 1.0
        return y


def test_bench_fails_on_a_wrong_product(capsys, files, monkeypatch):
    from autosparse import tuner
    real = tuner.tune
    monkeypatch.setattr(tuner, "tune", lambda *a, **kw: _OffByOne(real(*a, **kw)))
    code, out, err = run(capsys, "bench", files[0], "--workload", "matvec=10,rmatvec=10", "--rounds", "1",
                         "--no-store")
    assert code != 0
    assert "rmatvec" in err and "disagrees with SciPy" in err
    assert "results agree" not in out


def test_offline_and_db(capsys, tmp_path, files):
    d = tmp_path / "coll"
    d.mkdir()
    for f in files[:2]:
        shutil.copy(f, d)
    (d / "junk.mtx").write_text("%%MatrixMarket matrix array real general\n2 2\n1\n")
    store = str(tmp_path / "off.sqlite")
    code, out, err = run(capsys, "offline", str(d), "--store", store, "--workload", "matvec=20000")
    assert code == 0, err
    assert "junk" in out and "failed" in out and "2 tuned, 0 skipped" in out
    code, out, err = run(capsys, "offline", str(d / "*.mtx.gz"), "--store", store, "--workload", "matvec=20000",
                         "--no-progress")
    assert code == 0 and "0 tuned, 2 skipped" in out

    code, out, err = run(capsys, "db", "list", "--store", store)
    assert code == 0 and "2 plan(s) shown" in out
    names = [os.path.basename(f).split(".mtx")[0] for f in files[:2]]
    assert all(n in out for n in names)
    entries = PlanStore(store).entries()
    code, out, err = run(capsys, "db", "show", entries[0]["key"], "--store", store)
    assert code == 0 and json.loads(out)["id"] == entries[0]["id"]
    code, out, err = run(capsys, "db", "stats", "--store", store)
    assert code == 0 and "plans       2" in out
    w = tmp_path / "w.jsonl"
    code, out, err = run(capsys, "db", "export", str(w), "--store", store)
    assert code == 0 and len(w.read_text().splitlines()) == 2
    with open(w, "a") as fh:
        fh.write('{"schema": "autosparse-wisdom/0"}\n{broken\n')
    other = str(tmp_path / "other.sqlite")
    code, out, err = run(capsys, "db", "import", str(w), "--store", other)
    assert code == 0 and "2 line(s) accepted, 2 rejected" in out and "wrong schema" in out
    assert "malformed JSON" in out
    code, out, err = run(capsys, "db", "clear", "--store", other)
    assert code == 0 and "removed 2 plan(s)" in out
    code, out, err = run(capsys, "db", "list", "--store", other)
    assert code == 0 and "no plans" in out
