"""CSC specifics: exact (bitwise) agreement with SciPy, the race-free scatter
plan, parallel paths, sizes, parameters.  The generic checks live in
test_conformance.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import formats, verify
from autosparse.formats import csc as C
from autosparse.kernels import compressed as K
from autosparse.kernels._runtime import entry

from conftest import PARALLEL_TEST_WORK as PARALLEL_MIN_WORK, corpus_params, load, rng_vector

pytestmark = pytest.mark.usefixtures("parallel_from_test_work")


def stand_in_profile(A, max_codes=4096):
    """The Profile fields CSC/COO/CSRC estimates use, computed exactly."""
    A = sp.csr_array(A)
    distinct = np.unique(A.data.view(np.uint64) if A.dtype.itemsize == 8 else A.data.view(np.uint32)).size \
        if A.dtype.kind == "f" else len({complex(v) for v in A.data})
    return SimpleNamespace(shape=A.shape, nnz=A.nnz, dtype=A.dtype.name,
                           n_distinct_values=min(distinct, max_codes + 1), distinct_capped=distinct > max_codes)


def banded(m, offsets=(-3, -1, 0, 2, 5), seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    diags = [rng.standard_normal(m - abs(o)).astype(dtype) for o in offsets]
    return sp.csr_array(sp.diags_array(diags, offsets=list(offsets), shape=(m, m)))


def test_bitwise_equal_to_scipy_serial_and_parallel():
    """Each output is summed from 0 in SciPy's order, so results are identical."""
    for m in (500, 40_000):                       # serial, then parallel (work >= PARALLEL_MIN_WORK)
        A = banded(m)
        A.data[::11] = 0.0                        # explicit zeros stay
        F = C.from_csr(A)
        x = rng_vector(m, np.float64, 1)
        np.testing.assert_array_equal(F.rmatvec(x), A.T @ x)
        np.testing.assert_array_equal(F.rmatvec(x, conj=False), A.T @ x)
        y = F.matvec(x)
        if m == 500:
            np.testing.assert_array_equal(y, A @ x)
        else:                                     # shared rows of chunks add partial sums
            assert verify.check(y, A, x, "matvec")[0]
        X = rng_vector(m, np.float64, 2, 3)
        np.testing.assert_array_equal(F.rmatmat(X), A.T @ X)


def test_complex_conjugate_products():
    A = banded(30_000, dtype=np.complex128)
    A = sp.csr_array(A + 1j * banded(30_000, seed=4))
    F = C.from_csr(A)
    x = rng_vector(A.shape[0], np.complex128, 3)
    np.testing.assert_array_equal(F.rmatvec(x), A.conj().T @ x)
    np.testing.assert_array_equal(F.rmatvec(x, conj=False), A.T @ x)
    X = rng_vector(A.shape[0], np.complex128, 5, 2)
    assert verify.check(F.rmatmat(X), A, X, "rmatmat")[0]
    assert verify.check(F.matmat(X), A, X, "matmat")[0]


@pytest.mark.parametrize("kind", ["banded", "random", "arrow", "empty_cols"])
def test_parallel_scatter_plan(kind):
    """A x in parallel (scatter) on structures where chunk spans overlap a little,
    completely, or not at all, with empty columns and rows."""
    rng = np.random.default_rng(7)
    m = n = 20_000
    if kind == "banded":
        A = banded(m, offsets=(-40, -1, 0, 1, 40, 300))
    elif kind == "random":
        A = sp.random_array((m, n), density=3e-4, rng=1, format="csr")
    elif kind == "arrow":                         # dense first row and column + diagonal
        A = sp.lil_array((m, n))
        A[0, :] = 1.0
        A[:, 0] = 2.0
        A.setdiag(3.0)
        A = sp.csr_array(A)
    else:
        A = sp.random_array((m, n), density=5e-4, rng=2, format="csr")
        keep = rng.random(n) < 0.3                # SciPy's product drops the zeroed columns
        A = sp.csr_array(A @ sp.diags_array(keep.astype(float)))
    assert A.nnz >= PARALLEL_MIN_WORK or kind == "arrow"
    F = C.from_csr(A)
    x = rng_vector(n, np.float64, 3)
    assert verify.check(F.matvec(x), A, x, "matvec")[0]
    X = rng_vector(n, np.float64, 4, 5)
    assert verify.check(F.matmat(X), A, X, "matmat")[0]
    xr = rng_vector(m, np.float64, 5)
    assert verify.check(F.rmatvec(xr), A, xr, "rmatvec")[0]


@pytest.mark.parametrize("nparts", [1, 2, 3, 5, 8])
def test_scatter_plan_kernels_any_partition(nparts):
    """The plan is right for any number of chunks (threads may change after conversion)."""
    rng = np.random.default_rng(nparts)
    A = sp.csr_array(banded(3000, offsets=(-200, -2, 0, 3, 150)) + sp.random_array((3000, 3000), density=1e-3,
                                                                                      rng=nparts, format="csr"))
    Fm = C.from_csr(A)
    ptr = Fm.indptr.astype(np.int64)
    cuts = np.sort(rng.choice(np.arange(1, A.shape[1]), nparts - 1, replace=False)) if nparts > 1 else []
    bounds = np.concatenate([[0], cuts, [A.shape[1]]]).astype(np.uint64)
    kstart = ptr[bounds.astype(np.int64)].astype(np.uint64)
    plan, items = K.scatter_plan(kstart.astype(np.int64), Fm.indices, A.shape[0])
    x = rng_vector(A.shape[1], np.float64, 1)
    out = np.full(A.shape[0], np.nan)
    args = (bounds, kstart, plan, items, Fm._ip1, Fm._ix, Fm.data, None, False, x, out)
    entry(K.scatter_par, *args)(*args)
    assert verify.check(out, A, x, "matvec")[0]
    X = rng_vector(A.shape[1], np.float64, 2, 3)
    out2 = np.full((A.shape[0], 3), np.nan)
    args = (bounds, kstart, plan, items, Fm._ip1, Fm._ix, Fm.data, None, False, X, out2)
    entry(K.scatter2_par, *args)(*args)
    assert verify.check(out2, A, X, "matmat")[0]


@pytest.mark.parametrize("seed", range(6))
def test_scatter_plan_invariants(seed):
    rng = np.random.default_rng(seed)
    n_out = 1000
    nparts = int(rng.integers(1, 9))
    lo = rng.integers(0, n_out, nparts)
    hi = np.minimum(n_out, lo + rng.integers(0, 400, nparts))
    empty = rng.random(nparts) < 0.2
    lo[empty] = hi[empty] = 0                     # chunks without entries
    plan, items = K.scatter_plan_spans(lo, hi, n_out)
    plan = plan.astype(np.int64)
    cover = np.zeros(n_out, np.int64)
    for t in range(nparts):
        cover[plan[t, 0]:plan[t, 3]] += 1
    owned = np.zeros(n_out, np.int64)
    for t in range(nparts):
        l, el, eh, h = plan[t, :4]
        assert l <= el <= eh <= h
        assert np.all(cover[el:eh] == 1)          # nobody else writes an owned output
        owned[el:eh] += 1
    in_items = np.zeros(n_out, np.int64)
    for r0, r1 in items.astype(np.int64):
        in_items[r0:r1] += 1
    np.testing.assert_array_equal(owned + in_items, np.ones(n_out))   # every output written exactly once
    sizes = (plan[:, 1] - plan[:, 0]) + (plan[:, 3] - plan[:, 2])
    np.testing.assert_array_equal(plan[:, 4], np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    np.testing.assert_array_equal(plan[:, 5], plan[:, 4] + plan[:, 1] - plan[:, 0])


def test_roundtrip_and_params():
    A = banded(300)
    A.data[::5] = 0.0
    for idx in ("int16", "int32", "int64"):
        F = C.from_csr(A, index_dtype=idx)
        assert F.indices.dtype == np.dtype(idx)
        B = F.to_csr()
        assert B.has_canonical_format and B.nnz == A.nnz
        np.testing.assert_array_equal(B.indices, A.indices)
        np.testing.assert_array_equal(B.data, A.data)
        G = C.from_csr(A, **F.params)
        assert G.params == F.params
    with pytest.raises(ValueError, match="values"):
        C.from_csr(A, values="packed")
    wide = sp.csr_array(([1.0], ([40_000], [0])), shape=(40_001, 1))
    with pytest.raises(ValueError, match="int16"):
        C.from_csr(wide, index_dtype="int16")


def test_value_table():
    A = banded(2000)
    A.data[:] = np.round(A.data * 2) / 2
    F = C.from_csr(A, values="table")
    assert F.table is not None and F.data.dtype == np.uint8
    x = rng_vector(A.shape[0], np.float64, 1)
    np.testing.assert_array_equal(F.rmatvec(x), A.T @ x)
    np.testing.assert_array_equal(F.to_csr().toarray(), A.toarray())


def test_empty_shapes():
    for shape in [(0, 0), (0, 5), (5, 0), (4, 6)]:
        A = sp.csr_array(shape)
        F = C.from_csr(A)
        np.testing.assert_array_equal(F.matvec(np.ones(shape[1])), np.zeros(shape[0]))
        np.testing.assert_array_equal(F.rmatvec(np.ones(shape[0])), np.zeros(shape[1]))


def test_estimate_nbytes_exact_with_stand_in():
    for A in (banded(1000), sp.random_array((300, 2000), density=0.01, rng=3, format="csr")):
        A = sp.csr_array(A)
        A.data[:] = np.round(A.data * 4)
        p = stand_in_profile(A)
        configs = C.configurations(p)
        assert {c["index_dtype"] for c in configs} == {"int16", "int32", "int64"}
        for cfg in configs:
            assert C.estimate_nbytes(p, **cfg) == C.from_csr(A, **cfg).nbytes, cfg


def test_space_names():
    import optuna
    p = stand_in_profile(banded(100))
    study = optuna.create_study()
    trial = study.ask()
    params = C.space(trial, p)
    assert set(trial.params) == {"csc_index_dtype", "csc_values"}
    C.from_csr(banded(100), **params)


@pytest.mark.parametrize("entry_", corpus_params(max_nnz=250_000, limit=8))
def test_estimate_nbytes_corpus(entry_):
    profile = pytest.importorskip("autosparse.profile").profile
    A = load(entry_)
    p = profile(A)
    configs = C.configurations(p)
    # int32 and int64 hold every index, and full values always apply: never an empty loop
    assert {("int32", "full"), ("int64", "full")} <= {(c["index_dtype"], c["values"]) for c in configs}
    for cfg in configs:
        real = formats.convert(A, "csc", **cfg).nbytes
        assert abs(C.estimate_nbytes(p, **cfg) - real) <= 0.15 * real, cfg
