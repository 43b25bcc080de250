"""Shared fixtures: the matrix corpus (skipped cleanly when absent) and helpers."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("AUTOSPARSE_MATRICES", ROOT.parent / "shared" / "matrices"))
NO_CORPUS = f"matrix corpus not found at {CORPUS} (set AUTOSPARSE_MATRICES to its folder)"


def corpus_entries(max_nnz: int | None = None) -> list[dict]:
    """MANIFEST.tsv rows (name, class, rows, cols, nnz, ...) with a ``path``, smallest first."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for r in rows:
        r["nnz"] = int(r["nnz"])
        r["path"] = CORPUS / f"{r['name']}.mtx.gz"
        if (max_nnz is None or r["nnz"] <= max_nnz) and r["path"].is_file():
            out.append(r)
    return sorted(out, key=lambda r: r["nnz"])


def corpus_params(max_nnz: int | None = None, limit: int | None = None):
    """pytest parameters over corpus matrices; one skipping parameter when absent."""
    entries = corpus_entries(max_nnz)
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS), id="no-corpus")]
    return [pytest.param(e, id=e["name"]) for e in entries]


@pytest.fixture(autouse=True, scope="session")
def _isolated_plan_store(tmp_path_factory):
    """Every tune() in the suite (and its subprocesses) uses a throwaway plan store,
    never the user's ~/.cache/autosparse."""
    old = os.environ.get("AUTOSPARSE_STORE")
    os.environ["AUTOSPARSE_STORE"] = str(tmp_path_factory.mktemp("plan-store") / "plans.sqlite")
    yield
    if old is None:
        os.environ.pop("AUTOSPARSE_STORE", None)
    else:
        os.environ["AUTOSPARSE_STORE"] = old


_cache: dict = {}


# The tests' parallel cases are sized for this many multiply-adds: the library's own
# threshold (kernels._runtime.PARALLEL_MIN_WORK) is set for a shared VM and would make
# them several times larger.  Modules that test both kernel paths lower it to this.
PARALLEL_TEST_WORK = 40_000


@pytest.fixture
def parallel_from_test_work(monkeypatch):
    """Products of PARALLEL_TEST_WORK multiply-adds and more take the parallel kernels."""
    from autosparse.kernels import _runtime
    monkeypatch.setattr(_runtime, "PARALLEL_MIN_WORK", PARALLEL_TEST_WORK)


def load(entry):
    """The corpus matrix of a manifest entry, read once per session."""
    from autosparse.io import read_matrix
    key = entry["name"]
    if key not in _cache:
        _cache[key] = read_matrix(entry["path"])
    return _cache[key]


def rng_vector(n, dtype, seed=0, k=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if k is None else (n, k)
    v = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * rng.standard_normal(shape)
    return v.astype(dtype)


def run(F, op, x, conj=True):
    """Operation ``op`` of layout ``F`` on ``x`` (Aᴴ products unless ``conj=False``)."""
    if op == "matvec":
        return F.matvec(x)
    if op == "rmatvec":
        return F.rmatvec(x, conj=conj)
    if op == "matmat":
        return F.matmat(x)
    return F.rmatmat(x, conj=conj)


def assert_plan_computes_like_scipy(path, plan, seed=7):
    """``autosparse.build`` of a (stored) plan on the matrix of file ``path``: matvec and
    rmatvec agree with SciPy's on it (the matrix read by scipy.io.mmread, independently)."""
    import scipy.io
    import scipy.sparse as sp

    import autosparse
    from autosparse import verify
    from autosparse.plan import Plan
    A = sp.csr_array(scipy.io.mmread(str(path)))
    T = autosparse.build(A, plan)
    assert T.plan == Plan.from_dict(plan)
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0])
    for op, got, v in (("matvec", T.matvec(x), x), ("rmatvec", T.rmatvec(y), y)):
        ok, ratio = verify.check(got, A, v, op)
        assert ok, f"{path}: {op} of the stored plan {T.plan.describe()} is {ratio:.3g}x the allowed error"
    return T
