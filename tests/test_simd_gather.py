"""The vector-register multi-vector gathers (kernels/_simd.py) against SciPy.

CSR A @ X and CSC Aᴴ @ X run through ``_simd._block``, BSR A @ X (literal
block shapes) through ``_simd.bsr_block``, for real values: column blocks of
16, 8, 4, 2 and 1, so k from 0 to 40 covers every combination of blocks.  The
random draws cannot promise that, so every k at a block boundary is an explicit
example (BLOCK_KS), besides the random ones.
Each column is summed in SciPy's order, so float64 results are bit-identical
to SciPy's, NaN and Inf included.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autosparse import formats, verify
from autosparse.kernels._runtime import PARALLEL_MIN_WORK


# every block combination's edges: none, each single width, one short of / at / one past
# one and two blocks of 16, and the largest k drawn
BLOCK_KS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 40)


def at_block_boundaries(params):
    """``@example``s at every k in BLOCK_KS; ``params(i, k)`` gives the other arguments."""
    def decorate(test):
        for i, k in enumerate(BLOCK_KS):
            test = example(k=k, **params(i, k))(test)
        return test
    return decorate


def _matrix(m, n, density, seed, dtype=np.float64):
    A = sp.random_array((m, n), density=density, format="csr", rng=seed, dtype=np.float64)
    A.data = np.round(A.data * 4) - 2.0          # few distinct values: tables apply
    return sp.csr_array(A.astype(dtype))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(0, 40), n=st.integers(0, 40), k=st.integers(0, 40), density=st.floats(0, 1),
       seed=st.integers(0, 2**16), values=st.sampled_from(["full", "table"]),
       index_dtype=st.sampled_from(["int16", "int32", "int64"]), nonfinite=st.booleans())
@at_block_boundaries(lambda i, k: dict(m=23, n=19, density=0.6, seed=100 + k, values=("full", "table")[i % 2],
                                       index_dtype=("int16", "int32", "int64")[i % 3], nonfinite=i % 4 == 3))
def test_csr_matmat_is_scipy_bit_for_bit(m, n, k, density, seed, values, index_dtype, nonfinite):
    A = _matrix(m, n, density, seed)
    if nonfinite and A.nnz:
        A.data[seed % A.nnz] = [np.nan, np.inf, -np.inf][seed % 3]
    F = formats.convert(A, "csr", values=values, index_dtype=index_dtype)
    X = np.random.default_rng(seed).standard_normal((n, k))
    X[seed % max(n, 1):, :1] = np.inf if nonfinite and n else 0.5
    np.testing.assert_array_equal(F.matmat(X), A @ X)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(0, 40), n=st.integers(0, 40), k=st.integers(0, 40), density=st.floats(0, 1),
       seed=st.integers(0, 2**16), b=st.sampled_from([2, 3]), nonfinite=st.booleans())
@at_block_boundaries(lambda i, k: dict(m=23, n=19, density=0.6, seed=200 + k, b=(2, 3)[i % 2], nonfinite=i % 4 == 3))
def test_bsr_matmat_is_scipy_bit_for_bit(m, n, k, density, seed, b, nonfinite):
    """Shapes that are not multiples of the block: the last block row and column stick out."""
    A = _matrix(m, n, density, seed)
    if nonfinite and A.nnz:
        A.data[seed % A.nnz] = [np.nan, np.inf, -np.inf][seed % 3]
    F = formats.convert(A, "bsr", r=b, c=b, index_dtype="int32")
    X = np.random.default_rng(seed).standard_normal((n, k))
    X[seed % max(n, 1):, :1] = np.inf if nonfinite and n else 0.5      # Inf x padding zero: NaN
    np.testing.assert_array_equal(F.matmat(X), A @ X)


@pytest.mark.parametrize("k", [1, 5, 16, 27])
@pytest.mark.parametrize("matrix_dtype, x_dtype", [(np.float32, np.float32), (np.float32, np.float64),
                                                   (np.float64, np.float32)])
def test_mixed_dtypes_follow_scipy_promotion(k, matrix_dtype, x_dtype):
    A = _matrix(53, 41, 0.2, 7, matrix_dtype)
    X = np.random.default_rng(k).standard_normal((41, k)).astype(x_dtype)
    Y = formats.convert(A, "csr").matmat(X)
    assert Y.dtype == np.result_type(matrix_dtype, x_dtype)
    ok, ratio = verify.check(Y, A, X, "matmat")
    assert ok, ratio


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("k", [3, 16, 24])
def test_threaded_csr_and_csc_gathers(order, k):
    """Large enough for the parallel kernels: chunks start mid-matrix (kstart)."""
    A = _matrix(3000, 2500, 12 * 1.0 / 2500 + PARALLEL_MIN_WORK / (3000 * 2500 * k), 11)
    X = np.asarray(np.random.default_rng(1).standard_normal((2500, k)), order=order)
    np.testing.assert_array_equal(formats.convert(A, "csr").matmat(X), A @ X)
    if order == "C":                                   # the SIMD path of BSR, on the threads
        np.testing.assert_array_equal(formats.convert(A, "bsr", r=2, c=2).matmat(X), A @ X)
    Y = np.random.default_rng(2).standard_normal((3000, k))
    csc = formats.convert(A, "csc")
    ok, ratio = verify.check(csc.rmatmat(Y), A, Y, "rmatmat")
    assert ok, ratio


def test_complex_values_keep_the_scalar_loop():
    A = _matrix(30, 20, 0.3, 5) * (1 + 2j)
    X = np.random.default_rng(0).standard_normal((20, 17)) + 1j
    ok, ratio = verify.check(formats.convert(A, "csr").matmat(X), A, X, "matmat")
    assert ok, ratio
    X = np.random.default_rng(0).standard_normal((20, 17))           # real X, complex matrix
    ok, ratio = verify.check(formats.convert(A, "csr").matmat(X), A, X, "matmat")
    assert ok, ratio


def test_out_rows_are_written_not_accumulated():
    A = _matrix(20, 20, 0.2, 3)
    out = np.full((20, 16), 7.0)
    formats.convert(A, "csr").matmat(np.ones((20, 16)), out=out)
    np.testing.assert_array_equal(out, A @ np.ones((20, 16)))


@pytest.mark.parametrize("fmt, params", [("csr", {}), ("bsr", {"r": 3, "c": 3})], ids=["csr", "bsr3x3"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [5, 8, 16, 24, 40])
def test_streaming_stores_write_the_same_results(monkeypatch, k, dtype, fmt, params):
    """Outputs with 64-byte aligned rows take non-temporal stores (normally only above
    STREAM_MIN_BYTES; lowered here so a small matrix takes that path)."""
    from autosparse.formats import _base
    monkeypatch.setattr(_base, "STREAM_MIN_BYTES", 0)
    A = _matrix(2000, 1500, 0.02, 13, dtype)
    X = np.random.default_rng(k).standard_normal((1500, k)).astype(dtype)
    F = formats.convert(A, fmt, **params)
    Y = F.matmat(X)                                    # allocated here: 64-byte aligned
    assert Y.ctypes.data % 64 == 0
    streams = (k * np.dtype(dtype).itemsize) % 64 == 0
    assert _base.streamable(Y) == streams
    assert any(key[-1] for key in F._bound) == streams
    np.testing.assert_array_equal(Y, A @ X)
    unaligned = np.empty((2000 * k + 1,), dtype)[1:].reshape(2000, k)    # 4-byte offset: no streaming
    assert not _base.streamable(unaligned)
    np.testing.assert_array_equal(F.matmat(X, out=unaligned), A @ X)
    Z = np.random.default_rng(1).standard_normal((2000, k)).astype(dtype)
    ok, ratio = verify.check(formats.convert(A, "csc").rmatmat(Z), A, Z, "rmatmat")
    assert ok, ratio


def test_aligned_empty_and_streamable_conditions():
    from autosparse.formats._base import STREAM_MIN_BYTES, aligned_empty, streamable
    for shape in [(3, 5), (1000, 16), (0, 8)]:
        a = aligned_empty(shape, np.float32)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.size == 0 or a.ctypes.data % 64 == 0
    rows = STREAM_MIN_BYTES // (16 * 8) + 1
    big = aligned_empty((rows, 16), np.float64)
    assert streamable(big)
    assert not streamable(big[:, :8])                   # not contiguous
    assert not streamable(aligned_empty((rows, 16), np.complex128)[:rows // 2])   # complex
    assert not streamable(aligned_empty((rows // 2, 16), np.float64))             # below the size


def test_prefetch_is_a_hint_anywhere():
    """``_simd.prefetch`` asks for a line and nothing else: any index, past either end of the
    array, of an empty array, or of any dtype, neither faults nor changes a value."""
    import numba
    from autosparse.kernels._simd import prefetch

    @numba.njit
    def touch(a, idx):
        for i in idx:
            prefetch(a, i)
        return a.copy()

    idx = np.array([0, 1, 7, 64, 10**6, 2**40, -1, -(10**6), -(2**40)], np.int64)
    for a in (np.arange(100.0), np.arange(10, dtype=np.int16), np.empty(0, np.complex128),
              np.arange(12, dtype=np.float32).reshape(3, 4)):
        np.testing.assert_array_equal(touch(a, idx), a)
        np.testing.assert_array_equal(touch(a, idx.astype(np.uint64)), a)


@pytest.fixture
def prefetch_everything(monkeypatch):
    """Kernels prefetch only over arrays beyond the caches (``_simd.PREFETCH_MIN_BYTES``):
    with the bound at 0, the small matrices of a test take that path too."""
    from autosparse.kernels import _simd
    monkeypatch.setattr(_simd, "PREFETCH_MIN_BYTES", 0)
    assert _simd.prefetch_ahead(np.zeros(1), np.zeros(1, np.int32)) == _simd.PREFETCH_BYTES // 8


def test_prefetch_distance_is_zero_while_the_arrays_fit_in_the_caches():
    from autosparse.kernels._simd import PREFETCH_BYTES, PREFETCH_MIN_BYTES, prefetch_ahead
    n = PREFETCH_MIN_BYTES // 12
    assert prefetch_ahead(np.zeros(n - 1), np.zeros(n - 1, np.int32)) == 0
    assert prefetch_ahead(np.zeros(n + 1), np.zeros(n + 1, np.int32)) == PREFETCH_BYTES // 8
    assert prefetch_ahead(np.zeros(n + 1, np.complex64), np.zeros(n + 1, np.int32)) == PREFETCH_BYTES // 8


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(m=st.integers(0, 300), n=st.integers(1, 300), density=st.floats(0, 1), seed=st.integers(0, 2**16),
       fmt=st.sampled_from(["csr", "sell", "csc"]), values=st.sampled_from(["full", "table"]),
       index_dtype=st.sampled_from(["int16", "int32", "int64"]))
def test_prefetching_vector_gathers_are_scipy_bit_for_bit(prefetch_everything, m, n, density, seed, fmt, values,
                                                            index_dtype):
    """The CSR, CSC (Aᴴx) and SELL vector gathers prefetch ahead of their entries, past the
    end near the last rows; each row is still SciPy's sum, bit for bit."""
    A = _matrix(m, n, density, seed)
    params = {"C": 4, "sigma": 1} if fmt == "sell" else {}
    if fmt == "csc":                                   # Aᴴ w is CSC's gather: SciPy's CSR A x sum
        F = formats.convert(sp.csr_array(A.T), "csc", values=values, index_dtype=index_dtype)
        w = np.random.default_rng(seed).standard_normal(n)
        np.testing.assert_array_equal(F.rmatvec(w), A @ w)
        return
    F = formats.convert(A, fmt, values=values, index_dtype=index_dtype, **params)
    x = np.random.default_rng(seed).standard_normal(n)
    np.testing.assert_array_equal(F.matvec(x), A @ x)


@pytest.mark.parametrize("fmt", ["csr", "sell", "scipy"])
def test_prefetching_vector_gathers_on_the_threads(prefetch_everything, fmt):
    from autosparse.formats import baseline
    A = _matrix(700, 500, 0.5, 11)
    assert A.nnz >= PARALLEL_MIN_WORK
    x = np.random.default_rng(1).standard_normal(500)
    if fmt == "scipy":                                 # the baseline's threaded gather on A's arrays
        F = baseline.from_csr(A)
        assert F.threaded_gather("matvec")
    else:
        F = formats.convert(A, fmt, **({"C": 8, "sigma": 1} if fmt == "sell" else {}))
    np.testing.assert_array_equal(F.matvec(x), A @ x)
