"""BSR specifics: padding and edges, explicit zeros and NaN/Inf, the generic
(runtime r, c) kernels, parallel column-range buffers, byte estimates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import bsr
from autosparse.formats import csr as csr_format
from autosparse.formats._grids import BSR_SHAPES
from autosparse.kernels._runtime import PARALLEL_MIN_WORK

from conftest import corpus_params, load, rng_vector, run

OPS = verify.OPS


def operand(A, op, dtype, seed=0, k=3):
    m, n = A.shape
    length = n if op in ("matvec", "matmat") else m
    return rng_vector(length, dtype, seed, None if op in ("matvec", "rmatvec") else k)


def assert_ops(F, A, dtype=np.float64, k=3, seed=0):
    for op in OPS:
        x = operand(A, op, dtype, seed, k)
        ok, ratio = verify.check(run(F, op, x), A, x, op)
        assert ok, f"{F!r} {op}: {ratio}"


def block_matrix(mb, nb, r, c, density, seed=0, dtype=np.float64):
    """Random matrix made of dense r×c blocks (fill 1 apart from the edges)."""
    rng = np.random.default_rng(seed)
    P = sp.random_array((mb, nb), density=density, rng=seed, format="csr")
    A = sp.kron(P, np.ones((r, c)), format="csr")
    A.data = rng.standard_normal(A.nnz)
    return sp.csr_array(A.astype(dtype))


def exact_profile(A):
    """Stand-in for autosparse.profile.profile: the fields BSR reads, exact."""
    A = sp.csr_array(A)
    m, n = A.shape
    rows = np.repeat(np.arange(m), np.diff(A.indptr))
    fill = {}
    for r, c in BSR_SHAPES:
        keys = (rows // r) * (-(-n // c)) + A.indices // c
        nb = np.unique(keys).size
        fill[(r, c)] = A.nnz / (r * c * nb) if nb else 1.0
    return SimpleNamespace(shape=A.shape, nnz=A.nnz, dtype=A.dtype.name, block_fill=fill,
                           n_explicit_zeros=int(np.count_nonzero(A.data == 0)))


# -- structure and edges ---------------------------------------------------

@pytest.mark.parametrize("r,c", [(2, 2), (3, 3), (2, 3), (4, 1), (1, 1)])
def test_blocks_match_scipy_bsr(r, c):
    A = block_matrix(40, 30, r, c, 0.08, seed=r * 10 + c)
    A = sp.csr_array(A + sp.random_array(A.shape, density=0.01, rng=7, format="csr"))
    F = bsr.from_csr(A, r=r, c=c)
    S = sp.bsr_array(A, blocksize=(r, c))
    S.sort_indices()
    np.testing.assert_array_equal(F.indptr, S.indptr)
    np.testing.assert_array_equal(F.indices, S.indices)
    np.testing.assert_array_equal(F.data, S.data)
    assert F.data.shape == (S.indices.size, r, c) and F.data.flags.c_contiguous
    assert F.params == {"r": r, "c": c, "index_dtype": "int32"}
    assert F.nbytes == F.indptr.nbytes + F.indices.nbytes + F.data.nbytes


@pytest.mark.parametrize("shape", [(7, 5), (1, 9), (9, 1), (8, 8), (17, 23)])
@pytest.mark.parametrize("r,c", [(3, 2), (3, 3), (8, 1), (2, 8)])
def test_shapes_not_multiple_of_the_block(shape, r, c):
    A = sp.lil_array(sp.random_array(shape, density=0.5, rng=sum(shape) + r, format="csr"))
    A[shape[0] - 1, shape[1] - 1] = 2.5            # the corner of the last, partial block
    A = sp.csr_array(A)
    F = bsr.from_csr(A, r=r, c=c)
    assert_ops(F, A)
    assert (F.to_csr() != A).nnz == 0


def test_empty_matrices():
    for shape in [(0, 0), (0, 4), (4, 0), (5, 7)]:
        A = sp.csr_array(shape)
        F = bsr.from_csr(A, r=2, c=3)
        assert F.nblocks == 0
        m, n = shape
        np.testing.assert_array_equal(F.matvec(np.ones(n)), np.zeros(m))
        np.testing.assert_array_equal(F.rmatvec(np.ones(m)), np.zeros(n))
        np.testing.assert_array_equal(F.matmat(np.ones((n, 2))), np.zeros((m, 2)))
        np.testing.assert_array_equal(F.rmatmat(np.ones((m, 2))), np.zeros((n, 2)))


def test_explicit_zeros_and_nonfinite_x():
    """Padding must not turn 0 * inf into NaN; explicit zeros must (as in SciPy)."""
    # rows: [1, 0, 0, 2, 0], [0, 3, 0, 0, 0], [0, 0, explicit 0, 0, 4]
    A = sp.csr_array((np.array([1.0, 2.0, 3.0, 0.0, 4.0]), np.array([0, 3, 1, 2, 4]), np.array([0, 2, 3, 5])),
                     shape=(3, 5))
    assert A.nnz == 5
    F = bsr.from_csr(A, r=3, c=3)
    assert F.explicit_zeros[0].size == 1
    assert F.nbytes == sum(a.nbytes for a in F.arrays().values()) + F.explicit_zeros[0].nbytes
    back = F.to_csr()
    assert back.nnz == 5 and (back != A).nnz == 0
    for j in range(5):
        for bad in (np.inf, -np.inf, np.nan):
            x = np.arange(1.0, 6.0)
            x[j] = bad
            ok, ratio = verify.check(F.matvec(x), A, x, "matvec")
            assert ok, (j, bad, F.matvec(x), A @ x)
            X = np.stack([x, np.ones(5)], axis=1)
            assert verify.check(F.matmat(X), A, X, "matmat")[0]
    for i in range(3):
        y = np.ones(3)
        y[i] = np.inf
        assert verify.check(F.rmatvec(y), A, y, "rmatvec")[0], i
        Y = np.stack([y, -y], axis=1)
        assert verify.check(F.rmatmat(Y), A, Y, "rmatmat")[0], i


def test_negative_zero_and_nan_values_round_trip():
    A = sp.csr_array((np.array([-0.0, np.nan, 1.0, np.inf]), np.array([0, 3, 1, 2]), np.array([0, 2, 4])),
                     shape=(2, 4))
    F = bsr.from_csr(A, r=3, c=3)
    B = F.to_csr()
    np.testing.assert_array_equal(B.indices, A.indices)
    np.testing.assert_array_equal(np.signbit(B.data), np.signbit(A.data))
    np.testing.assert_array_equal(np.isnan(B.data), np.isnan(A.data))
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert verify.check(F.matvec(x), A, x, "matvec")[0]


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_conjugate_and_plain_transpose(dtype):
    A = block_matrix(12, 10, 3, 2, 0.3, seed=4, dtype=np.float64)
    if np.dtype(dtype).kind == "c":
        A = sp.csr_array(A + 1j * block_matrix(12, 10, 3, 2, 0.3, seed=4))
    A = sp.csr_array(A.astype(dtype))
    F = bsr.from_csr(A, r=3, c=2, index_dtype="int16" if dtype == np.float32 else "int64")
    for conj in (True, False):
        y = rng_vector(A.shape[0], dtype, 2)
        assert verify.check(F.rmatvec(y, conj=conj), A, y, "rmatvec", conj=conj)[0]
        Y = rng_vector(A.shape[0], dtype, 3, 4)
        assert verify.check(F.rmatmat(Y, conj=conj), A, Y, "rmatmat", conj=conj)[0]


def test_generic_kernels(monkeypatch):
    """Shapes outside LITERAL_SHAPES run the runtime-r,c kernels: same results."""
    monkeypatch.setattr(bsr, "LITERAL_SHAPES", frozenset())
    A = sp.csr_array(sp.random_array((23, 19), density=0.3, rng=2, format="csr"))
    for r, c in [(3, 2), (1, 1)]:
        F = bsr.from_csr(A, r=r, c=c)
        assert_ops(F, A)
        x = rng_vector(19, np.float64)
        x[3] = np.inf
        assert verify.check(F.matvec(x), A, x, "matvec")[0]


def test_parallel_kernels_with_edges_and_gaps():
    """Big enough for the threaded kernels; partial edge blocks; banded so the
    chunks' column ranges are disjoint, plus empty block rows and columns."""
    n = 40_003
    rng = np.random.default_rng(1)
    offsets = [-5, -2, 0, 1, 4]
    C = sp.diags_array([rng.standard_normal(n - abs(o)) for o in offsets], offsets=offsets,
                       shape=(n, n), format="coo")
    keep = ~((C.row >= 1000) & (C.row < 1100)) & ~((C.col >= 20_000) & (C.col < 20_050))   # empty rows, columns
    rows, cols, vals = C.row[keep], C.col[keep], C.data[keep]
    A = sp.coo_array((np.append(vals, 1.0), (np.append(rows, n - 1), np.append(cols, 0))),   # a far corner entry
                     shape=(n, n)).tocsr()
    F = bsr.from_csr(A, r=3, c=2)
    assert F.work("matvec", 1) >= PARALLEL_MIN_WORK
    assert_ops(F, A, k=3)


def test_bad_parameters():
    A = sp.eye_array(4, format="csr")
    with pytest.raises(ValueError, match="r=9"):
        bsr.from_csr(A, r=9, c=1)
    with pytest.raises(ValueError, match="c=0"):
        bsr.from_csr(A, r=2, c=0)
    with pytest.raises(TypeError, match="integer"):
        bsr.from_csr(A, r=2.0, c=2)
    with pytest.raises(TypeError, match="integer"):
        bsr.from_csr(A, r=True, c=2)
    # block column indices must fit the index dtype: 80_000 columns / 2 > int16
    wide = sp.csr_array(([1.0], ([0], [79_999])), shape=(1, 80_000))
    with pytest.raises(ValueError, match="int16"):
        bsr.from_csr(wide, r=1, c=2, index_dtype="int16")
    assert bsr.from_csr(wide, r=1, c=4, index_dtype="int16").indices.dtype == np.int16   # 19_999 fits


def test_rebuild_from_params():
    A = block_matrix(20, 20, 2, 2, 0.2)
    F = bsr.from_csr(A, r=2, c=2, index_dtype="int16")
    G = bsr.from_csr(A, **F.params)
    assert G.params == F.params
    np.testing.assert_array_equal(G.data, F.data)


# -- estimates and configurations --------------------------------------------

def _profile(A):
    try:
        from autosparse.profile import profile
    except ImportError:
        return exact_profile(A), True
    return profile(A), False


@pytest.mark.parametrize("r,c", [(1, 1), (2, 2), (3, 3), (2, 5), (8, 8)])
def test_estimate_is_exact_with_exact_fill(r, c):
    A = block_matrix(30, 25, 3, 3, 0.1, seed=5)
    p = exact_profile(A)
    for idx in ("int16", "int32", "int64"):
        F = bsr.from_csr(A, r=r, c=c, index_dtype=idx)
        assert bsr.estimate_nbytes(p, r=r, c=c, index_dtype=idx) == F.nbytes


@pytest.mark.parametrize("entry", corpus_params(max_nnz=120_000, limit=12))
def test_estimate_on_corpus(entry):
    A = load(entry)
    p, exact = _profile(A)
    shapes = [(1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (2, 4)]
    for r, c in shapes:
        F = bsr.from_csr(A, r=r, c=c)
        est = bsr.estimate_nbytes(p, r=r, c=c, index_dtype="int32")
        real = F.nbytes
        if exact:
            assert est == real, (r, c)
        else:
            assert abs(est - real) <= 0.15 * real, (r, c, est, real)


def test_configurations():
    A = block_matrix(60, 60, 3, 3, 0.05, seed=8)
    p = exact_profile(A)
    conf = bsr.configurations(p)
    shapes = {(d["r"], d["c"]) for d in conf}
    limit = 1.5 * csr_format.estimate_nbytes(p, "int32")
    assert (1, 1) not in shapes and (3, 3) in shapes      # 1x1 is CSR's layout: left to the csr format
    for r, c in BSR_SHAPES:
        assert ((r, c) in shapes) == ((r, c) != (1, 1) and bsr.estimate_nbytes(p, r, c, "int32") <= limit)
    assert (8, 8) not in shapes                    # fill 9/64 cannot win
    widths = {d["index_dtype"] for d in conf if (d["r"], d["c"]) == (3, 3)}
    assert widths == {"int16", "int32", "int64"}
    for d in conf[:5]:
        F = bsr.from_csr(A, **d)
        assert F.params == d


def test_space():
    optuna = pytest.importorskip("optuna")
    A = block_matrix(60, 60, 2, 2, 0.05, seed=9)
    p = exact_profile(A)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    allowed = {(d["r"], d["c"]) for d in bsr.configurations(p)}
    for _ in range(10):
        trial = study.ask()
        params = bsr.space(trial, p)
        assert (params["r"], params["c"]) in allowed
        assert all(name.startswith("bsr_") for name in trial.params)
        study.tell(trial, 0.0)


@pytest.mark.parametrize("literal", [True, False], ids=["literal", "generic"])
def test_serial_products_match_scipy_bit_for_bit(literal, monkeypatch):
    """Exact IEEE arithmetic in CSR column order: padding adds exact zeros, so the
    serial products equal SciPy's bit for bit (the parallel transposed products
    add per-thread partial sums and are only within the tolerance)."""
    if not literal:
        monkeypatch.setattr(bsr, "LITERAL_SHAPES", frozenset())
    A = block_matrix(30, 25, 3, 3, 0.15, seed=11)
    A = sp.csr_array(A + sp.random_array(A.shape, density=0.05, rng=12, format="csr"))
    F = bsr.from_csr(A, r=3, c=3)
    assert F.work("matvec", 3) < PARALLEL_MIN_WORK
    x, y = rng_vector(A.shape[1], np.float64, 1), rng_vector(A.shape[0], np.float64, 2)
    X, Y = rng_vector(A.shape[1], np.float64, 3, 3), rng_vector(A.shape[0], np.float64, 4, 3)
    np.testing.assert_array_equal(F.matvec(x), A @ x)
    np.testing.assert_array_equal(F.rmatvec(y), A.T @ y)
    np.testing.assert_array_equal(F.matmat(X), A @ X)
    np.testing.assert_array_equal(F.rmatmat(Y), A.T @ Y)
