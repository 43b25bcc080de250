"""Conformance: every registered format computes what SciPy computes.

All four products (matvec, rmatvec = Aᴴx, matmat, rmatmat) are compared with
SciPy through ``autosparse.verify`` (tolerance scaled by dtype, NaN/Inf exact).

Compile budget: a kernel compiles once per (format, operation, index width,
value dtype, serial/parallel, block shape), at about a second each.  So:

* every format's first setting (its ``PRIMARY`` case) runs all four
  operations over ``PAIRS``, a cover of (index width, value dtype) in which
  every width and every dtype appears; its other settings run in float64
  with int32 indices;
* the full cross-product of widths and dtypes runs for a few formats
  (``FULL_PRODUCT``) on one small matrix;
* the threaded kernels and the corpus run each format's primary case in
  float64 (other settings: matvec only).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autosparse import formats, verify

from conftest import PARALLEL_TEST_WORK as PARALLEL_MIN_WORK, corpus_params, load, rng_vector

pytestmark = pytest.mark.usefixtures("parallel_from_test_work")

VALUE_DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
INDEX_DTYPES = ["int16", "int32", "int64"]

# Parameter settings each format is checked with (index widths come on top).
CONFIGS = {
    "scipy": [{}],
    "csr": [{}, {"values": "table"}],
    "csc": [{}],
    "coo": [{}],
    "bsr": [{"r": 2, "c": 3}, {"r": 8, "c": 1}],          # more shapes in test_format_bsr
    "ell": [{}],
    "sell": [{"C": 8, "sigma": 1}, {"C": 4, "sigma": 64}, {"C": 16, "sigma": 256, "values": "table"}],
    "dia": [{}, {"values": "table"}],
    "dense": [{}],
    "hyb": [{}, {"width": 2}],
    "dbh": [{"tile": 4, "threshold": 0.5}],                # tile 8 in test_format_denseblock
    "csrc": [{}, {"offset_dtype": "int8", "values": "table"}],
}
FORMATS = formats.names()
CASES = [(name, cfg) for name in FORMATS for cfg in CONFIGS.get(name, [{}])]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in cfg.items()) for name, cfg in CASES]
PRIMARY = [(name, CONFIGS.get(name, [{}])[0]) for name in FORMATS]
PRIMARY_IDS = list(FORMATS)
FULL_PRODUCT = [("csr", {}), ("bsr", {"r": 2, "c": 3}), ("sell", {"C": 4, "sigma": 64})]


def takes_index_dtype(name):
    return "index_dtype" in inspect.signature(formats.get(name).from_csr).parameters


def convert(A, name, cfg, index_dtype=None):
    params = dict(cfg)
    if index_dtype is not None and takes_index_dtype(name):
        params["index_dtype"] = index_dtype
    try:
        return formats.convert(A, name, **params)
    except ValueError as exc:
        if "values='table'" in str(exc):          # too many distinct values for a table
            pytest.skip(str(exc))
        raise


def check_all_ops(F, A, seed=0, k=3, ops=verify.OPS, x_dtype=None):
    """Run each operation on F and compare with SciPy on A (canonical CSR)."""
    m, n = A.shape
    dt = x_dtype or F.dtype
    for op in ops:
        if op == "matvec":
            x = rng_vector(n, dt, seed)
            y = F.matvec(x)
        elif op == "rmatvec":
            x = rng_vector(m, dt, seed)
            y = F.rmatvec(x)
        elif op == "matmat":
            x = rng_vector(n, dt, seed, k)
            y = F.matmat(x)
        else:
            x = rng_vector(m, dt, seed, k)
            y = F.rmatmat(x)
        ok, ratio = verify.check(y, A, x, op)
        assert ok, f"{F!r} {op}: error {ratio:.3g} x the allowed tolerance"
        assert y.dtype == np.result_type(A.dtype, x.dtype)


def small_matrix(dtype, m=37, n=29, density=0.15, seed=3):
    A = sp.random_array((m, n), density=density, format="csr", rng=seed, dtype=np.float64)
    if np.dtype(dtype).kind == "c":
        B = sp.random_array((m, n), density=density, format="csr", rng=seed + 1, dtype=np.float64)
        A = A + 1j * B
    A = sp.csr_array(A.astype(dtype))
    A.data[::7] = np.round(A.data[::7])   # repeated values so tables apply
    A.sum_duplicates()
    return A


# -- full cross-product on a small matrix ----------------------------------

@pytest.mark.parametrize("name,cfg", FULL_PRODUCT, ids=[n for n, _ in FULL_PRODUCT])
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=lambda d: np.dtype(d).name)
def test_matvec_all_widths_and_dtypes(name, cfg, dtype):
    A = small_matrix(dtype)
    widths = INDEX_DTYPES if takes_index_dtype(name) else [None]
    for idx in widths:
        F = convert(A, name, cfg, idx)
        assert F.shape == A.shape and F.dtype == A.dtype
        check_all_ops(F, A, ops=("matvec",))
        np.testing.assert_array_equal(F.to_csr().toarray(), A.toarray())


# Every operation over a cover of (index width, dtype) pairs: each width and
# each dtype at least once, without the full product's compile cost.
PAIRS = [("int32", np.float64), ("int16", np.float32), ("int64", np.complex128), ("int32", np.complex64)]


def _all_ops(name, cfg, idx, dtype):
    A = small_matrix(dtype, seed=5)
    F = convert(A, name, cfg, idx)
    check_all_ops(F, A)
    if np.dtype(dtype).kind == "c":      # Aᵀ (no conjugate) too; the same as Aᴴ for real values
        x = rng_vector(A.shape[0], dtype, 9)
        ok, ratio = verify.check(F.rmatvec(x, conj=False), A, x, "rmatvec", conj=False)
        assert ok, ratio


@pytest.mark.parametrize("name,cfg", PRIMARY, ids=PRIMARY_IDS)
@pytest.mark.parametrize("idx,dtype", PAIRS, ids=[f"{i}-{np.dtype(d).name}" for i, d in PAIRS])
def test_all_ops(name, cfg, idx, dtype):
    _all_ops(name, cfg, idx, dtype)


@pytest.mark.parametrize("name,cfg", [c for c in CASES if c not in PRIMARY],
                         ids=[i for c, i in zip(CASES, CASE_IDS) if c not in PRIMARY])
def test_all_ops_other_settings(name, cfg):
    _all_ops(name, cfg, "int32", np.float64)


@pytest.mark.parametrize("name,cfg", CASES, ids=CASE_IDS)
def test_parallel_kernels(name, cfg):
    """Big enough for the threaded kernels, with very uneven rows."""
    rng = np.random.default_rng(0)
    m, n = 3000, 500
    lengths = np.minimum(rng.zipf(1.8, m), n)
    rows = np.repeat(np.arange(m), lengths)
    cols = rng.integers(0, n, rows.size)
    A = sp.csr_array((rng.standard_normal(rows.size), (rows, cols)), shape=(m, n))
    A.sum_duplicates()
    if A.nnz < PARALLEL_MIN_WORK:
        extra = sp.random_array((m, n), density=(PARALLEL_MIN_WORK - A.nnz + 1000) / (m * n), rng=1, format="csr")
        A = sp.csr_array(A + extra)
    A.data[:] = rng.integers(-6, 7, A.nnz) / 4     # few distinct values, explicit zeros
    F = convert(A, name, cfg)
    check_all_ops(F, A, k=4, ops=verify.OPS if (name, cfg) in PRIMARY else ("matvec",))


def test_mixed_dtypes_follow_scipy_promotion():
    A = small_matrix(np.float32)
    for name in FORMATS:
        F = convert(A, name, CONFIGS.get(name, [{}])[0])
        for xdt in (np.float64, np.complex128, np.int64):
            x = rng_vector(A.shape[1], np.float64, 1).astype(xdt)
            y = F.matvec(x)
            assert y.dtype == (A @ x).dtype, (name, xdt)
            assert verify.check(y, A, x, "matvec")[0], (name, xdt)


# -- corpus ----------------------------------------------------------------

def applicable(A, name, cfg):
    """Skip layouts that would blow up on this matrix (the tuner's job to avoid)."""
    from autosparse.profile import profile
    p = profile(A)
    est = formats.get(name).estimate_nbytes(p, **cfg)
    csr_bytes = A.nnz * 12 + A.shape[0] * 4
    return est <= max(20 * csr_bytes, 1 << 20)


@pytest.mark.parametrize("entry", corpus_params(max_nnz=200_000))
def test_corpus(entry):
    A = load(entry)
    for name, cfg in PRIMARY:
        if not applicable(A, name, cfg):
            continue
        try:
            F = convert(A, name, cfg)
        except pytest.skip.Exception:
            continue
        check_all_ops(F, A, seed=entry["nnz"], k=2)


# -- hypothesis: awkward matrices ------------------------------------------

@st.composite
def awkward_matrices(draw):
    """Empty, 0×n, n×0, single row/column, very wide/tall, duplicates,
    unsorted indices, explicit zeros, NaN/Inf, int64 indices."""
    shape_kind = draw(st.sampled_from(["small", "empty_dim", "row", "col", "wide", "tall"]))
    if shape_kind == "small":
        m, n = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    elif shape_kind == "empty_dim":
        m, n = draw(st.sampled_from([(0, 5), (5, 0), (0, 0)]))
    elif shape_kind == "row":
        m, n = 1, draw(st.integers(1, 60))
    elif shape_kind == "col":
        m, n = draw(st.integers(1, 60)), 1
    elif shape_kind == "wide":
        m, n = draw(st.integers(1, 4)), draw(st.integers(200, 3000))
    else:
        m, n = draw(st.integers(200, 3000)), draw(st.integers(1, 4))
    nnz = draw(st.integers(0, min(m * n, 80))) if m * n else 0
    rows = np.array(draw(st.lists(st.integers(0, max(m - 1, 0)), min_size=nnz, max_size=nnz)), dtype=np.int64)
    cols = np.array(draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=nnz, max_size=nnz)), dtype=np.int64)
    special = st.sampled_from([0.0, -0.0, 1.0, -2.5, 3.0, np.nan, np.inf, -np.inf])
    ordinary = st.floats(-100, 100, allow_nan=False, width=32)
    vals = np.array(draw(st.lists(st.one_of(ordinary, special) if draw(st.booleans()) else ordinary,
                                  min_size=nnz, max_size=nnz)), dtype=np.float64)
    dtype = draw(st.sampled_from(VALUE_DTYPES))
    if np.dtype(dtype).kind == "c":
        with np.errstate(invalid="ignore"):
            vals = vals + 1j * vals[::-1]
    A = sp.coo_array((vals.astype(dtype), (rows, cols)), shape=(m, n))
    form = draw(st.sampled_from(["coo", "csr_unsorted", "csr_int64", "csc"]))
    if form == "csr_unsorted":
        C = sp.csr_array(A)          # duplicates kept, then shuffle within rows
        C.has_sorted_indices = False
        for i in range(m):
            a, b = C.indptr[i], C.indptr[i + 1]
            perm = np.random.default_rng(i).permutation(b - a)
            C.indices[a:b] = C.indices[a:b][perm]
            C.data[a:b] = C.data[a:b][perm]
        A = C
    elif form == "csr_int64":
        C = sp.csr_array(A)
        A = sp.csr_array((C.data, C.indices.astype(np.int64), C.indptr.astype(np.int64)), shape=C.shape)
    elif form == "csc":
        A = sp.csc_array(A)
    x_special = draw(st.booleans())
    return A, x_special


@pytest.mark.parametrize("name,cfg", PRIMARY, ids=PRIMARY_IDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=awkward_matrices())
def test_awkward_matrices(name, cfg, case):
    A_in, x_special = case
    before = A_in.copy()
    F = convert(A_in, name, cfg)
    ref = sp.csr_array(A_in, copy=True)
    ref.sum_duplicates()
    m, n = ref.shape
    for op, length in (("matvec", n), ("rmatvec", m)):
        x = rng_vector(length, F.dtype, 4)
        if x_special and length:
            x[0] = np.inf
            x[length // 2] = np.nan
        y = F.matvec(x) if op == "matvec" else F.rmatvec(x)
        if name == "scipy":      # the baseline is SciPy on the input as given (duplicates unsummed)
            with np.errstate(all="ignore"):
                expect = A_in @ x if op == "matvec" else np.conj(A_in.T @ np.conj(x))
            np.testing.assert_array_equal(y, np.asarray(expect).reshape(y.shape))
            continue
        ok, ratio = verify.check(y, ref, x, op)
        assert ok, f"{op}: ratio {ratio}"
    X = rng_vector(n, F.dtype, 5, 2)
    if name == "scipy":
        np.testing.assert_array_equal(F.matmat(X), np.asarray(A_in @ X).reshape(m, 2))
    else:
        ok, ratio = verify.check(F.matmat(X), ref, X, "matmat")
        assert ok, ratio
    # the user's matrix is left untouched
    assert A_in.format == before.format
    np.testing.assert_array_equal(A_in.data, before.data)
    for attr in ("indices", "indptr", "row", "col"):
        if hasattr(before, attr):
            np.testing.assert_array_equal(getattr(A_in, attr), getattr(before, attr))


# -- out=, shapes, bad input -----------------------------------------------

@pytest.mark.parametrize("name", FORMATS)
def test_out_and_layouts(name):
    A = small_matrix(np.float64)
    F = convert(A, name, CONFIGS.get(name, [{}])[0])
    x = rng_vector(A.shape[1], np.float64)
    out = np.full(A.shape[0], np.nan)
    assert F.matvec(x, out=out) is out
    assert verify.check(out, A, x, "matvec")[0]
    X = rng_vector(A.shape[1], np.float64, 2, 5)
    for Xl in (X, np.asfortranarray(X), X[:, ::1]):
        outF = np.asfortranarray(np.full((A.shape[0], 5), np.nan))
        assert F.matmat(Xl, out=outF) is outF
        assert verify.check(outF, A, X, "matmat")[0]
    xs = rng_vector(2 * A.shape[1], np.float64)[::2]      # strided input
    assert verify.check(F.matvec(xs), A, xs, "matvec")[0]


@pytest.mark.parametrize("name", FORMATS)
def test_bad_operands(name):
    A = small_matrix(np.float64)
    F = convert(A, name, CONFIGS.get(name, [{}])[0])
    m, n = A.shape
    with pytest.raises(ValueError, match="dimension mismatch"):
        F.matvec(np.ones(n + 1))
    with pytest.raises(ValueError, match="dimension mismatch"):
        F.rmatvec(np.ones(n + 1 if n + 1 != m else n + 2))
    with pytest.raises(TypeError, match="dtype"):
        F.matvec(np.array(["a"] * n))
    with pytest.raises(TypeError, match="numeric"):
        F.matvec(["a"] * n)
    with pytest.raises(TypeError, match="dtype"):
        F.matvec(np.ones(n, dtype=object))
    with pytest.raises(ValueError, match="out must have shape"):
        F.matvec(np.ones(n), out=np.empty(m + 1))
    with pytest.raises(ValueError, match="out must have shape"):
        F.matvec(np.ones(n), out=np.empty(m, np.float32))
    with pytest.raises(TypeError, match="out must be"):
        F.matvec(np.ones(n), out=[0.0] * m)
    with pytest.raises(ValueError, match="2-D"):
        F.matmat(np.ones(n))
    with pytest.raises(TypeError, match="sparse"):
        F.matvec(sp.csr_array(np.ones((n, 1))))


@pytest.mark.parametrize("name", FORMATS)
def test_bad_matrices(name):
    mod = formats.get(name)
    with pytest.raises(TypeError, match="scipy.sparse"):
        mod.from_csr(np.eye(3))
    with pytest.raises(TypeError, match="dtype"):
        mod.from_csr(sp.csr_array(np.eye(3, dtype=np.longdouble)))
    if takes_index_dtype(name):
        with pytest.raises(TypeError, match="index dtype"):
            mod.from_csr(sp.eye_array(3, format="csr"), index_dtype="float32")
        big = sp.csr_array(([1.0], ([0], [40_000])), shape=(1, 40_001))
        with pytest.raises(ValueError, match="int16"):
            mod.from_csr(big, index_dtype="int16")


@pytest.mark.parametrize("dtype,expect", [(np.int32, np.float64), (np.int8, np.float64), (np.bool_, np.float64),
                                          (np.uint64, np.float64)])
def test_integer_and_bool_matrices_become_float(dtype, expect):
    A = sp.csr_array(np.array([[1, 0, 2], [0, 3, 0]], dtype=dtype))
    for name in FORMATS:
        F = convert(A, name, CONFIGS.get(name, [{}])[0])
        assert F.dtype == expect
        x = np.array([1.0, 2.0, 3.0])
        np.testing.assert_array_equal(F.matvec(x), A.astype(np.float64) @ x)


def test_every_registered_format_is_covered():
    assert set(FORMATS) <= set(CONFIGS), "add the new format's settings to CONFIGS"
    assert "csr" in FORMATS


def test_type_pairs_cover_every_width_and_dtype():
    assert {i for i, _ in PAIRS} == set(INDEX_DTYPES)
    assert {np.dtype(d) for _, d in PAIRS} == {np.dtype(d) for d in VALUE_DTYPES}
