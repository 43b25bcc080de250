"""COO specifics: row-disjoint parallel chunks (exact), scatter plan for Aᴴx,
empty rows, sizes and parameters.  Generic checks: test_conformance.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import formats, verify
from autosparse.formats import coo as O

from conftest import corpus_params, load, rng_vector
from test_format_csc import banded, stand_in_profile


def with_empty_rows(m, n, density, seed):
    rng = np.random.default_rng(seed)
    A = sp.random_array((m, n), density=density, rng=seed, format="csr")
    keep = (rng.random(m) < 0.6).astype(float)
    B = sp.csr_array(sp.diags_array(keep) @ A)             # product drops the zeroed rows
    B.sort_indices()                                       # SciPy sums rows in stored order
    return B


@pytest.mark.parametrize("m", [700, 60_000])               # serial, then parallel
def test_matvec_bitwise_equal(m):
    A = with_empty_rows(m, 900, 12 / 900, 1)
    A.data[::13] = 0.0
    F = O.from_csr(A)
    x = rng_vector(A.shape[1], np.float64, 2)
    np.testing.assert_array_equal(F.matvec(x), A @ x)      # rows never split between chunks
    X = rng_vector(A.shape[1], np.float64, 3, 4)
    np.testing.assert_array_equal(F.matmat(X), A @ X)
    xr = rng_vector(m, np.float64, 4)
    y = F.rmatvec(xr)
    if A.nnz < 40_000:
        np.testing.assert_array_equal(y, A.T @ xr)
    assert verify.check(y, A, xr, "rmatvec")[0]
    XR = rng_vector(m, np.float64, 5, 3)
    assert verify.check(F.rmatmat(XR), A, XR, "rmatmat")[0]


def test_parallel_transposed_products_complex():
    A = banded(40_000, offsets=(-500, -1, 0, 1, 700), dtype=np.complex128)
    A = sp.csr_array(A + 1j * banded(40_000, offsets=(-500, -1, 0, 1, 700), seed=3))
    F = O.from_csr(A, index_dtype="int32")
    x = rng_vector(A.shape[0], np.complex128, 1)
    assert verify.check(F.rmatvec(x), A, x, "rmatvec")[0]
    assert verify.check(F.rmatvec(x, conj=False), A, x, "rmatvec", conj=False)[0]
    X = rng_vector(A.shape[0], np.complex128, 2, 3)
    assert verify.check(F.rmatmat(X), A, X, "rmatmat")[0]
    # trailing empty rows and columns
    B = sp.csr_array(sp.block_diag([A[:30_000, :30_000], sp.csr_array((5000, 5000))]))
    G = O.from_csr(B)
    x = rng_vector(B.shape[1], np.complex128, 3)
    np.testing.assert_array_equal(G.matvec(x), B @ x)
    assert verify.check(G.rmatvec(x), B, x, "rmatvec")[0]


def test_roundtrip_params_and_errors():
    A = with_empty_rows(200, 300, 0.05, 4)
    A.data[::3] = 0.0
    for idx in ("int16", "int32", "int64"):
        F = O.from_csr(A, index_dtype=idx)
        assert F.row.dtype == F.col.dtype == np.dtype(idx)
        B = F.to_csr()
        np.testing.assert_array_equal(B.indptr, A.indptr)
        np.testing.assert_array_equal(B.indices, A.indices)
        np.testing.assert_array_equal(B.data, A.data)
        assert O.from_csr(A, **F.params).params == F.params
    with pytest.raises(ValueError, match="values"):
        O.from_csr(A, values="bits")
    tall = sp.csr_array(([1.0], ([40_000], [0])), shape=(40_001, 1))
    with pytest.raises(ValueError, match="int16"):
        O.from_csr(tall, index_dtype="int16")
    T = O.from_csr(sp.csr_array(np.round(A.toarray() * 3)), values="table")
    assert T.table is not None
    x = rng_vector(A.shape[1], np.float64, 1)
    np.testing.assert_array_equal(T.matvec(x), sp.csr_array(np.round(A.toarray() * 3)) @ x)


def test_empty_shapes():
    for shape in [(0, 0), (0, 5), (5, 0), (4, 6)]:
        F = O.from_csr(sp.csr_array(shape))
        np.testing.assert_array_equal(F.matvec(np.ones(shape[1])), np.zeros(shape[0]))
        np.testing.assert_array_equal(F.rmatvec(np.ones(shape[0])), np.zeros(shape[1]))
        np.testing.assert_array_equal(F.matmat(np.ones((shape[1], 2))), np.zeros((shape[0], 2)))


def test_estimate_nbytes_exact_with_stand_in():
    A = with_empty_rows(500, 700, 0.02, 5)
    A.data[:] = np.round(A.data * 8)
    p = stand_in_profile(A)
    configs = O.configurations(p)
    assert {c["values"] for c in configs} == {"full", "table"}
    for cfg in configs:
        assert O.estimate_nbytes(p, **cfg) == O.from_csr(A, **cfg).nbytes, cfg


@pytest.mark.parametrize("entry_", corpus_params(max_nnz=250_000, limit=8))
def test_estimate_nbytes_corpus(entry_):
    profile = pytest.importorskip("autosparse.profile").profile
    A = load(entry_)
    p = profile(A)
    configs = O.configurations(p)
    # int32 and int64 hold every index, and full values always apply: never an empty loop
    assert {("int32", "full"), ("int64", "full")} <= {(c["index_dtype"], c["values"]) for c in configs}
    for cfg in configs:
        real = formats.convert(A, "coo", **cfg).nbytes
        assert abs(O.estimate_nbytes(p, **cfg) - real) <= 0.15 * real, cfg
