"""HYB: width choice, the row-sorted remainder, estimates, NaN semantics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import hyb
from autosparse.io import powerlaw
from autosparse.profile import profile as profile_of

from conftest import corpus_params, load, rng_vector


def stencil(n=30):
    T = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n))
    return sp.csr_array(sp.kronsum(T, T))                  # 5-point Laplacian: rows of 3..5


def test_layout_and_remainder():
    A = sp.csr_array(np.array([[1.0, 2, 3, 4], [0, 5, 0, 0], [6, 0, 7, 0], [0, 0, 0, 0]]))
    F = hyb.from_csr(A, width=2)
    assert F.width == 2 and F.params == {"width": 2, "index_dtype": "int32"}
    np.testing.assert_array_equal(F.data.reshape(2, 4), [[1, 5, 6, 0], [2, 0, 7, 0]])
    np.testing.assert_array_equal(F.rrows, [0])
    np.testing.assert_array_equal(F.rptr, [0, 2])
    np.testing.assert_array_equal(F.rcols, [2, 3])
    np.testing.assert_array_equal(F.rdata, [3, 4])
    np.testing.assert_array_equal(F.to_csr().toarray(), A.toarray())
    x = np.arange(1.0, 5.0)
    np.testing.assert_allclose(F.matvec(x), A @ x)


def test_auto_width_follows_the_structure():
    A = stencil()
    F = hyb.from_csr(A)
    assert F.width == 5 and F.rcols.size == 0               # uniform rows: all ELL
    P = powerlaw(20_000, rng=3)
    G = hyb.from_csr(P)
    lengths = np.diff(P.indptr)
    assert 1 <= G.width < np.median(lengths) + 2
    assert G.rcols.size > 0 and np.all(np.diff(G.rrows.astype(np.int64)) > 0)     # sorted by row
    # the choice is byte-optimal among all widths up to the longest row of the bulk
    best = G.nbytes
    for w in range(0, 12):
        assert hyb.from_csr(P, width=w).nbytes >= best, w


def test_width_cap_and_zero():
    A = stencil(10)
    assert hyb.from_csr(A, width=50).width == 5
    F = hyb.from_csr(A, width=0)
    assert F.width == 0 and F.rcols.size == A.nnz and F.rrows.size == A.shape[0]
    x = rng_vector(A.shape[1], np.float64, 0)
    assert verify.check(F.matvec(x), A, x, "matvec")[0]


@pytest.mark.parametrize("width", [0, 1, 3, None])
def test_all_ops_uneven(width):
    A = powerlaw(700, 400, rng=5).astype(np.complex64)
    F = hyb.from_csr(A, width=width)
    for op in verify.OPS:
        n_in = A.shape[1] if op in ("matvec", "matmat") else A.shape[0]
        x = rng_vector(n_in, np.complex64, 7, None if op.endswith("vec") else 3)
        assert verify.check(getattr(F, op)(x), A, x, op)[0], op


def test_inf_in_x_under_padding():
    A = powerlaw(500, 300, rng=6)
    F = hyb.from_csr(A, width=3)
    lengths = np.diff(A.indptr)
    r = np.flatnonzero((lengths > 0) & (lengths < 3))[0]
    x = rng_vector(A.shape[1], np.float64, 1)
    x[A.indices[A.indptr[r + 1] - 1]] = np.inf
    y = F.matvec(x)
    assert verify.check(y, A, x, "matvec")[0]
    v = rng_vector(A.shape[0], np.float64, 2)
    v[r] = np.nan
    assert verify.check(F.rmatvec(v), A, v, "rmatvec")[0]


def test_explicit_zeros():
    A = powerlaw(400, rng=7)
    A.data[::3] = 0.0
    F = hyb.from_csr(A, width=2)
    B = F.to_csr()
    assert B.nnz == A.nnz and (B != A).nnz == 0
    x = np.ones(A.shape[1])
    x[A.indices[A.data == 0][:5]] = np.inf
    assert verify.check(F.matvec(x), A, x, "matvec")[0]


def test_bad_width():
    A = stencil(5)
    with pytest.raises(ValueError, match="width"):
        hyb.from_csr(A, width=-1)
    with pytest.raises(TypeError, match="width"):
        hyb.from_csr(A, width=1.5)


def test_cusp_width():
    lengths = np.array([1, 2, 3, 50])
    counts = np.array([500, 300, 150, 50])
    # rows longer than w: w=0: 1000, w=1: 500, w=2: 200 (< 1000/3) -> stop at 2 (breakeven 0 to see it)
    assert hyb.cusp_width(lengths, counts, 1000, breakeven=0) == 2
    assert hyb.cusp_width(lengths, counts, 1000) == 0       # fewer than 4096 rows: never worth ELL columns


def test_estimate_matches_nbytes_generated():
    for A in (stencil(), powerlaw(5000, rng=8), powerlaw(300, 40, rng=9).astype(np.complex128)):
        p = profile_of(A)
        for width in (None, 0, 2, 7):
            for d in ("int32", "int64"):
                real = hyb.from_csr(A, width=width, index_dtype=d)
                assert hyb.estimate_nbytes(p, width, d) == real.nbytes, (width, d)
                if width is None:
                    assert hyb.effective_width(p, None, d) == real.width


@pytest.mark.parametrize("entry", corpus_params(max_nnz=300_000, limit=8))
def test_estimate_matches_nbytes_corpus(entry):
    A = load(entry)
    p = profile_of(A)
    for width in (None, 2):
        est = hyb.estimate_nbytes(p, width, "int32")
        real = hyb.from_csr(A, width=width, index_dtype="int32").nbytes
        assert abs(est - real) <= 0.15 * real, (width, est, real)


def test_configurations():
    p = profile_of(powerlaw(5000, rng=10))
    configs = hyb.configurations(p)
    assert configs and configs[0]["width"] == hyb.effective_width(p, None, configs[0]["index_dtype"])
    limit = 2 * (p.nnz * 12 + (p.shape[0] + 1) * 4)
    assert all(hyb.estimate_nbytes(p, **c) <= limit for c in configs)
    assert {"int16", "int32", "int64"} == {c["index_dtype"] for c in configs}
