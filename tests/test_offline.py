"""Offline tuning: inputs, resumable runs, bad files, joblib workers and a dask cluster."""

from __future__ import annotations

import io
import os
import shutil

import pytest

from autosparse import offline
from autosparse.plan import Plan
from autosparse.store import PlanStore
from conftest import assert_plan_computes_like_scipy, corpus_entries


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOSPARSE_STORE", str(tmp_path / "default-store"))
    monkeypatch.setenv("AUTOSPARSE_WISDOM", "none")


@pytest.fixture
def small(tmp_path):
    """Three small corpus files of different structure, copied (their stamps are ours to change)."""
    entries = corpus_entries(max_nnz=12_000)
    picked, seen = [], set()
    for e in entries:
        if e["class"] not in seen:
            seen.add(e["class"])
            picked.append(e)
        if len(picked) == 3:
            break
    if len(picked) < 3:
        pytest.skip("matrix corpus absent")
    d = tmp_path / "m"
    d.mkdir()
    return [str(shutil.copy(e["path"], d / e["path"].name)) for e in picked]


def test_collect(tmp_path, small):
    d = os.path.dirname(small[0])
    (tmp_path / "m" / "sub").mkdir()
    shutil.copy(small[0], tmp_path / "m" / "sub" / "again.mtx.gz")
    (tmp_path / "m" / "notes.txt").write_text("not a matrix")
    got, problems = offline.collect([d, small[0], os.path.join(d, "*.mtx.gz"), "example:banded",
                                     "example:nope", str(tmp_path / "missing.mtx"), str(tmp_path / "x*.mtx"),
                                     str(tmp_path / "empty")])
    # a directory's files in sorted path order (sub-directories included), then each later
    # argument's new files in its own order: the copy of small[0] and the glob add nothing
    assert got[:4] == sorted(small + [str(tmp_path / "m" / "sub" / "again.mtx.gz")])
    assert got[-1] == "example:banded" and len(got) == 5               # deduplicated, .txt ignored
    reasons = dict(problems)
    assert "unknown example" in reasons["example:nope"]
    assert reasons[str(tmp_path / "missing.mtx")] == "no such file or directory"
    assert reasons[str(tmp_path / "x*.mtx")] == "pattern matches no file"
    assert offline.source_name(small[0]) == os.path.basename(small[0])[:-7]


def test_run_resume_and_bad_files(tmp_path, small, monkeypatch):
    bad = tmp_path / "m" / "broken.mtx"
    bad.write_text("%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n")   # truncated
    store = tmp_path / "plans.sqlite"
    err = io.StringIO()
    res = offline.run([str(tmp_path / "m")], store=store, workload="matvec=20000", stream=err)
    status = {r["name"]: r["status"] for r in res.rows}
    assert status.pop("broken") == "failed"
    assert set(status.values()) == {"tuned"}
    broken = next(r for r in res.rows if r["name"] == "broken")
    assert "broken.mtx" in broken["error"]
    assert err.getvalue()                                       # progress was shown
    table = res.table()
    for r in res.rows:
        assert r["name"] in table
    assert "3 tuned, 0 skipped" in table and "1 failed" in table
    st = PlanStore(store)
    assert len(st) == 3 and {e["name"] for e in st.entries()} == {offline.source_name(p) for p in small}
    # tuned rows carry the plan and its speed-up
    assert all(r["plan"] and r["tuning_s"] >= 0 for r in res.rows if r["status"] == "tuned")
    # the stored plans, applied to their matrices, compute what SciPy computes
    by_name = {r["name"]: r for r in st.records()}
    for p in small:
        rec = by_name[offline.source_name(p)]
        assert_plan_computes_like_scipy(p, rec["plan"])
        assert Plan.from_dict(rec["plan"]).describe() == next(r["plan"] for r in res.rows if r["source"] == p)

    # resumed: nothing is even read again
    monkeypatch.setattr(offline, "load", lambda s: pytest.fail(f"{s} was read again"))
    res2 = offline.run(small, store=store, workload="matvec=20000", progress=False)
    assert [r["status"] for r in res2.rows] == ["skipped"] * 3
    assert all(r["plan"] for r in res2.rows)
    monkeypatch.undo()
    monkeypatch.setenv("AUTOSPARSE_WISDOM", "none")

    # a touched file is read and profiled, then recognised by its key
    os.utime(small[0], (1, 1))
    res3 = offline.run(small[:1], store=store, workload="matvec=20000", progress=False)
    assert res3.rows[0]["status"] == "skipped" and res3.rows[0]["shape"]

    # another workload class is new work
    res4 = offline.run(small[:1], store=store, workload="matvec=20000,rmatvec=20000", progress=False)
    assert res4.rows[0]["status"] == "tuned"
    assert len(PlanStore(store)) == 4


def test_run_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="offline effort"):
        offline.run(["example:banded"], store=tmp_path / "s", effort="estimate")
    with pytest.raises(ValueError, match="jobs"):
        offline.run(["example:banded"], store=tmp_path / "s", jobs=0)
    with pytest.raises(ValueError, match="unknown workload key"):
        offline.run(["example:banded"], store=tmp_path / "s", workload="nope=3")


def test_two_loky_workers_split_the_cores(tmp_path, small):
    store = tmp_path / "plans.sqlite"
    res = offline.run(small[:2], jobs=2, store=store, workload="matvec=20000", progress=False)
    assert [r["status"] for r in res.rows] == ["tuned", "tuned"], res.table()
    cores = offline.available_cores()
    workers = min(2, cores)
    assert res.workers == workers and res.threads == max(1, cores // workers)
    assert all(r["threads"] * workers <= max(cores, workers) for r in res.rows)
    if workers == 2:
        assert all(r["pid"] != os.getpid() for r in res.rows)          # ran in worker processes
    assert len(PlanStore(store)) == 2


def test_dask_local_cluster(tmp_path, small):
    distributed = pytest.importorskip("distributed")
    store = tmp_path / "plans.sqlite"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        res = offline.run(small[:2] + [str(tmp_path / "missing.mtx")], dask=client, store=store,
                          workload="matvec=20000", progress=False)
        status = [r["status"] for r in res.rows]
        assert status.count("tuned") == 2 and status.count("failed") == 1, res.table()
        assert res.backend.startswith("dask")
        cores = offline.available_cores()
        assert all(r["threads"] == max(1, cores // 2) for r in res.rows if r["status"] == "tuned")
        again = offline.run(small[:2], dask=client.scheduler.address, store=store, workload="matvec=20000",
                            progress=False)
        assert [r["status"] for r in again.rows] == ["skipped", "skipped"]
    assert len(PlanStore(store)) == 2
