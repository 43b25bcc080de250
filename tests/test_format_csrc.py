"""Compressed CSR specifics: narrow offsets plus remainder, exactness, sizes
against the profile, parameters.  Generic checks: test_conformance.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import formats, verify
from autosparse.formats import csr_compressed as Z

from autosparse.kernels._runtime import num_threads, use_parallel

from conftest import NO_CORPUS, PARALLEL_TEST_WORK, corpus_params, load, rng_vector
from test_format_csc import banded, stand_in_profile


def narrow_fractions(A):
    A = sp.csr_array(A)
    ptr = A.indptr.astype(np.int64)
    lens = np.diff(ptr)
    rows = np.repeat(np.arange(A.shape[0]), lens)
    first = A.indices[np.minimum(ptr[:-1], max(A.nnz - 1, 0))] if A.nnz else np.zeros(A.shape[0], int)
    off = A.indices - first[rows].astype(np.int64)
    nnz = max(A.nnz, 1)
    return {"int8": np.count_nonzero(off < 256) / nnz if A.nnz else 1.0,
            "int16": np.count_nonzero(off < 65536) / nnz if A.nnz else 1.0}


def csrc_profile(A):
    p = stand_in_profile(A)
    p.narrow_fraction = narrow_fractions(A)
    return p


def mixed(m, n, seed=0, far=70_000):
    """Rows mixing near entries, entries up to 300 columns on (int8 remainder)
    and up to ``far`` columns on (int16 remainder), plus empty rows."""
    rng = np.random.default_rng(seed)
    step = max(1, (n - far) // max(m, 1))
    rows, cols = [], []
    for span, per_row in ((20, 6), (300, 1), (far, 1)):
        r = rng.integers(0, m, per_row * m // 2)
        rows.append(r)
        cols.append(np.minimum(n - 1, r * step + rng.integers(0, span, r.size)))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    A = sp.csr_array((rng.standard_normal(rows.size), (rows, cols)), shape=(m, n))
    A.sum_duplicates()
    return A


def ran_parallel(F, op):
    """Whether F's products of ``op`` so far took the parallel kernels (the bound kernel's key)."""
    modes = {key[3] for key in F._bound if key[0] == op}
    assert len(modes) == 1, f"{op}: bound as {modes}"
    return modes.pop()


def chunked_rmatvec(A, x, bounds, conj=True):
    """SciPy's Aᴴx summed the way the parallel scatter sums it: each chunk of rows
    ``bounds[t]:bounds[t+1]`` in row order from 0, then the chunks' partials added in
    chunk order.  One chunk (0, m) is plain ``A.T @ x``, SciPy's own order."""
    out = np.zeros((A.shape[1],) + x.shape[1:], np.result_type(A.dtype, x.dtype))
    for r0, r1 in zip(bounds[:-1].astype(np.int64), bounds[1:].astype(np.int64)):
        B = A[r0:r1].T
        out = out + ((B.conj() if conj else B) @ x[r0:r1])
    return out


@pytest.mark.usefixtures("parallel_from_test_work")
@pytest.mark.parametrize("width,m,parallel", [("int8", 400, False), ("int8", 30_000, True), ("int16", 400, False)],
                         ids=["int8-serial", "int8-parallel", "int16-serial"])
def test_bitwise_equal_with_remainder(width, m, parallel):
    if parallel and num_threads() < 2:
        pytest.skip("one numba thread: the parallel kernels never run")
    A = mixed(m, 90_000, seed=m)
    A.data[::9] = 0.0
    F = Z.from_csr(A, offset_dtype=width)
    assert 0 < F.rcol.size < A.nnz                          # both parts are used
    assert F.offsets.dtype == (np.uint8 if width == "int8" else np.uint16)
    assert F.narrow_fraction == pytest.approx(narrow_fractions(A)[width])
    assert (A.nnz >= PARALLEL_TEST_WORK) == parallel
    for op in verify.OPS:
        assert use_parallel(F.work(op, 1 if op.endswith("vec") else 2)) == parallel, op
    x = rng_vector(A.shape[1], np.float64, 1)
    np.testing.assert_array_equal(F.matvec(x), A @ x)       # rows summed in column order from 0
    X = rng_vector(A.shape[1], np.float64, 2, 3)
    np.testing.assert_array_equal(F.matmat(X), A @ X)
    xr = rng_vector(m, np.float64, 3)
    y = F.rmatvec(xr)
    # serial: SciPy's order; parallel: SciPy's order within each thread's rows, then the partials
    bounds = F.bounds if parallel else np.array([0, m])
    if parallel:
        assert bounds.size - 1 == num_threads() and 0 < int(bounds[1]) < m
    np.testing.assert_array_equal(y, chunked_rmatvec(A, xr, bounds))
    assert verify.check(y, A, xr, "rmatvec")[0]
    XR = rng_vector(m, np.float64, 4, 2)
    YR = F.rmatmat(XR)
    np.testing.assert_array_equal(YR, chunked_rmatvec(A, XR, bounds))
    assert verify.check(YR, A, XR, "rmatmat")[0]
    for op in verify.OPS:
        assert ran_parallel(F, op) == parallel, op
    B = F.to_csr()
    np.testing.assert_array_equal(B.indptr, A.indptr)
    np.testing.assert_array_equal(B.indices, A.indices)
    np.testing.assert_array_equal(B.data, A.data)


def test_stencil_has_no_remainder_with_int16():
    from autosparse.io import example
    A = example("poisson3d", 30)
    F = Z.from_csr(A, offset_dtype="int16", values="table")
    assert F.rcol.size == 0 and F.rrow.size == 1            # just the sentinel
    assert F.offsets.dtype == np.uint16 and F.data.dtype == np.uint8
    assert F.nbytes < 0.35 * (A.data.nbytes + A.indices.nbytes + A.indptr.nbytes)
    x = rng_vector(A.shape[1], np.float64, 1)
    np.testing.assert_array_equal(F.matvec(x), A @ x)
    assert verify.check(F.rmatvec(x), A, x, "rmatvec")[0]     # parallel scatter: shared columns add partials
    G = Z.from_csr(A, offset_dtype="int8")                  # offsets 900 on: remainder
    assert G.rcol.size > 0
    np.testing.assert_array_equal(G.matvec(x), A @ x)


@pytest.mark.usefixtures("parallel_from_test_work")
def test_complex_and_tables_with_remainder():
    """Complex values through a table, with a remainder, on the parallel kernels."""
    if num_threads() < 2:
        pytest.skip("one numba thread: the parallel kernels never run")
    A = mixed(20_000, 80_000, seed=5)
    A.data[:] = np.round(A.data * 2)
    A = sp.csr_array(A + 1j * A)
    F = Z.from_csr(A, offset_dtype="int8", values="table")
    assert F.table is not None and F.rdata.dtype == F.data.dtype
    assert 0 < F.rcol.size < A.nnz
    assert use_parallel(F.work("matvec")) and use_parallel(F.work("rmatvec"))
    x = rng_vector(A.shape[1], np.complex128, 1)
    np.testing.assert_array_equal(F.matvec(x), A @ x)
    xr = rng_vector(A.shape[0], np.complex128, 2)
    y = F.rmatvec(xr)
    assert verify.check(y, A, xr, "rmatvec")[0]
    np.testing.assert_array_equal(y, chunked_rmatvec(A, xr, F.bounds))
    yT = F.rmatvec(xr, conj=False)
    assert verify.check(yT, A, xr, "rmatvec", conj=False)[0]
    np.testing.assert_array_equal(yT, chunked_rmatvec(A, xr, F.bounds, conj=False))
    X = rng_vector(A.shape[0], np.complex128, 3, 2)
    Y = F.rmatmat(X)
    assert verify.check(Y, A, X, "rmatmat")[0]
    np.testing.assert_array_equal(Y, chunked_rmatvec(A, X, F.bounds))
    assert ran_parallel(F, "matvec") and ran_parallel(F, "rmatvec") and ran_parallel(F, "rmatmat")
    B = F.to_csr()
    np.testing.assert_array_equal(B.indices, A.indices)
    np.testing.assert_array_equal(B.data, A.data)


def test_params_and_errors():
    A = banded(500)
    with pytest.raises(ValueError, match="offset_dtype"):
        Z.from_csr(A, offset_dtype="int32")
    with pytest.raises(ValueError, match="values"):
        Z.from_csr(A, values="huffman")
    F = Z.from_csr(A, offset_dtype="int8")
    assert F.params == {"offset_dtype": "int8", "values": "full"}
    assert Z.from_csr(A, **F.params).params == F.params
    with pytest.raises(ValueError, match="offset_dtype"):
        Z.estimate_nbytes(csrc_profile(A), offset_dtype="uint8")


def test_empty_shapes_and_rows():
    for shape in [(0, 0), (0, 5), (5, 0), (4, 6)]:
        F = Z.from_csr(sp.csr_array(shape))
        np.testing.assert_array_equal(F.matvec(np.ones(shape[1])), np.zeros(shape[0]))
        np.testing.assert_array_equal(F.rmatvec(np.ones(shape[0])), np.zeros(shape[1]))
    A = sp.csr_array(([1.0, 2.0, 3.0], ([1, 1, 3], [0, 70_000, 5])), shape=(5, 70_001))
    F = Z.from_csr(A, offset_dtype="int16")
    x = rng_vector(A.shape[1], np.float64, 1)
    np.testing.assert_array_equal(F.matvec(x), A @ x)
    np.testing.assert_array_equal(F.rmatvec(np.arange(5.0)), A.T @ np.arange(5.0))


def test_estimate_nbytes_exact_with_stand_in():
    for A in (mixed(3000, 90_000, seed=2), banded(4000)):
        A.data[:] = np.round(A.data * 3)
        p = csrc_profile(A)
        for w in ("int8", "int16"):
            for v in ("full", "table"):
                assert Z.estimate_nbytes(p, offset_dtype=w, values=v) == \
                    Z.from_csr(A, offset_dtype=w, values=v).nbytes, (w, v)


def test_configurations_follow_narrow_fraction():
    p = csrc_profile(banded(1000, offsets=(-1, 0, 1, 400)))   # int8: 3 of 4 narrow
    assert {c["offset_dtype"] for c in Z.configurations(p)} == {"int8", "int16"}
    p.narrow_fraction = {"int8": 0.3, "int16": 0.9}
    assert {c["offset_dtype"] for c in Z.configurations(p)} == {"int16"}
    p.narrow_fraction = {"int8": 0.1, "int16": 0.2}
    assert Z.configurations(p) == []
    import optuna
    trial = optuna.create_study().ask()
    params = Z.space(trial, p)                                 # still a valid setting
    assert set(trial.params) == {"csrc_offset_dtype", "csrc_values"}
    assert params["offset_dtype"] in ("int8", "int16")


@pytest.mark.parametrize("entry_", corpus_params(max_nnz=250_000, limit=8))
def test_estimate_nbytes_corpus(entry_):
    profile = pytest.importorskip("autosparse.profile").profile
    A = load(entry_)
    p = profile(A)
    configs = Z.configurations(p)
    # the documented rule (offset widths keeping at least half the entries narrow), so an
    # empty loop is the rule's answer, not an accident; test_estimate_nbytes_corpus_not_empty
    # makes sure the corpus gives the loop work
    assert {c["offset_dtype"] for c in configs} == {w for w, f in p.narrow_fraction.items() if f >= 0.5}
    for cfg in configs:
        real = formats.convert(A, "csrc", **cfg).nbytes
        assert abs(Z.estimate_nbytes(p, **cfg) - real) <= 0.15 * real, cfg


def test_estimate_nbytes_corpus_not_empty():
    """test_estimate_nbytes_corpus compares something: over its matrices, both offset widths
    and both value encodings are configurations somewhere."""
    from autosparse.profile import profile
    entries = [prm.values[0] for prm in corpus_params(max_nnz=250_000, limit=8)]
    if entries == [None]:
        pytest.skip(NO_CORPUS)
    configs = [cfg for e in entries for cfg in Z.configurations(profile(load(e)))]
    assert len(configs) >= len(entries)
    assert {c["offset_dtype"] for c in configs} == {"int8", "int16"}
    assert {c["values"] for c in configs} == {"full", "table"}
