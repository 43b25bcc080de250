"""ELL: layout, padding semantics, estimates against real bytes, configurations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import ell
from autosparse.io import powerlaw
from autosparse.profile import profile as profile_of

from conftest import corpus_params, load, rng_vector


def uneven(m=300, n=200, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, m)
    rows = np.repeat(np.arange(m), lengths)
    cols = rng.integers(0, n, rows.size)
    A = sp.csr_array((rng.standard_normal(rows.size), (rows, cols)), shape=(m, n)).astype(dtype)
    A.sum_duplicates()
    return A


def test_layout_column_major_and_padding():
    A = sp.csr_array(np.array([[1.0, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 0], [4, 5, 6, 7]]))
    F = ell.from_csr(A)
    m, W = 4, 4
    assert F.width == W and F.nnz == 7 and F.padded
    cols = F.cols.reshape(W, m)
    data = F.data.reshape(W, m)
    np.testing.assert_array_equal(data[:, 3], [4, 5, 6, 7])            # column-major: row 3 down a column
    np.testing.assert_array_equal(data[:, 0], [1, 2, 0, 0])
    np.testing.assert_array_equal(cols[:, 0], [0, 2, 2, 2])             # padding repeats the last column
    np.testing.assert_array_equal(cols[:, 1], [0, 0, 0, 0])             # empty row: column 0
    assert F.nbytes == W * m * (4 + 8) + 4
    np.testing.assert_array_equal(F.to_csr().toarray(), A.toarray())


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_inf_in_x_under_padding_matches_scipy(dtype):
    """Padding multiplies x at the rows' last columns: 0*inf must not leak into results."""
    A = uneven(dtype=dtype)
    F = ell.from_csr(A)
    lengths = np.diff(A.indptr)
    r = np.flatnonzero((lengths > 0) & (lengths < F.width))[0]           # a row with padding
    pad_col = A.indices[A.indptr[r + 1] - 1]                              # its padding column
    x = rng_vector(A.shape[1], dtype, 1)
    x[pad_col] = np.inf
    x[5] = np.nan
    y = rng_vector(A.shape[0], dtype, 2)
    y[np.argmin(lengths)] = np.inf                                        # the row with most padding
    for op, v in (("matvec", x), ("rmatvec", y)):
        out = F.matvec(v) if op == "matvec" else F.rmatvec(v)
        ok, ratio = verify.check(out, A, v, op)
        assert ok, (op, ratio)
    X = rng_vector(A.shape[1], dtype, 3, 4)
    X[pad_col, 2] = -np.inf
    assert verify.check(F.matmat(X), A, X, "matmat")[0]
    Y = rng_vector(A.shape[0], dtype, 3, 4)
    Y[np.argmin(lengths), 1] = np.inf
    assert verify.check(F.rmatmat(Y), A, Y, "rmatmat")[0]


def test_explicit_zeros_kept_aside():
    A = uneven()
    A.data[::4] = 0.0
    F = ell.from_csr(A)
    assert F.explicit_zeros[0].size == (A.data == 0).sum()
    B = F.to_csr()
    assert B.nnz == A.nnz
    np.testing.assert_array_equal(B.indices, A.indices)
    x = np.ones(A.shape[1])
    x[A.indices[A.data == 0][0]] = np.inf                               # 0 * inf = NaN, as SciPy
    assert verify.check(F.matvec(x), A, x, "matvec")[0]
    assert np.isnan(F.matvec(x)).sum() == np.isnan(A @ x).sum() > 0


def test_int16_and_rebuild_from_params():
    A = uneven()
    F = ell.from_csr(A, index_dtype="int16")
    assert F.cols.dtype == np.int16
    G = ell.from_csr(A, **F.params)
    np.testing.assert_array_equal(G.cols, F.cols)
    x = rng_vector(A.shape[1], np.float32, 0)
    assert verify.check(F.matvec(x), A, x, "matvec")[0]


@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (4, 0), (5, 3)])
def test_empty(shape):
    A = sp.csr_array(shape)
    F = ell.from_csr(A)
    assert F.width == 0
    np.testing.assert_array_equal(F.matvec(np.ones(shape[1])), np.zeros(shape[0]))
    np.testing.assert_array_equal(F.rmatvec(np.ones(shape[0])), np.zeros(shape[1]))


def test_estimate_matches_nbytes_generated():
    for A in (uneven(), sp.csr_array(sp.eye_array(50) * 2), uneven(40, 30000, dtype=np.complex128)):
        p = profile_of(A)
        for d in ("int32", "int64"):
            assert ell.estimate_nbytes(p, d) == ell.from_csr(A, index_dtype=d).nbytes


@pytest.mark.parametrize("entry", corpus_params(max_nnz=300_000, limit=8))
def test_estimate_matches_nbytes_corpus(entry):
    A = load(entry)
    p = profile_of(A)
    est = ell.estimate_nbytes(p, "int32")
    if est > 200e6:
        pytest.skip("ELL would be too large")
    real = ell.from_csr(A, index_dtype="int32").nbytes
    assert abs(est - real) <= 0.15 * real, (est, real)


def test_configurations_skip_skewed_matrices():
    stencil = profile_of(sp.csr_array(sp.diags_array([1.0, 2, 1], offsets=[-1, 0, 1], shape=(400, 400))))
    configs = ell.configurations(stencil)
    assert {"index_dtype": "int16"} in configs and {"index_dtype": "int32"} in configs
    skewed = profile_of(powerlaw(3000, rng=1))
    assert ell.configurations(skewed) == []


def test_bad_params():
    A = uneven()
    with pytest.raises(TypeError, match="index dtype"):
        ell.from_csr(A, index_dtype="uint8")
    with pytest.raises(ValueError, match="int16"):
        ell.from_csr(sp.csr_array(([1.0], ([0], [70_000])), shape=(1, 70_001)), index_dtype="int16")
