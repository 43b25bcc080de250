"""The autosparse command, end to end on real corpus files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from autosparse import cli
from autosparse.store import PlanStore
from conftest import corpus_entries

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
    d = json.loads(out)
    assert d["shape"][0] > 0 and d["fingerprint"]["key"].startswith("s1-")
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
