"""Dense-block hybrid (DBH) specifics: which tiles go dense, the remainder,
edges, explicit zeros and NaN/Inf, parallel kernels, byte estimates."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import denseblock as dbh
from autosparse.formats._grids import DBH_THRESHOLDS, DBH_TILES

from conftest import PARALLEL_TEST_WORK as PARALLEL_MIN_WORK, corpus_params, load, rng_vector, run

pytestmark = pytest.mark.usefixtures("parallel_from_test_work")

OPS = verify.OPS


def assert_ops(F, A, dtype=np.float64, k=3, seed=0):
    m, n = A.shape
    for op in OPS:
        length = n if op in ("matvec", "matmat") else m
        x = rng_vector(length, dtype, seed, None if op in ("matvec", "rmatvec") else k)
        ok, ratio = verify.check(run(F, op, x), A, x, op)
        assert ok, f"{F!r} {op}: {ratio}"


def sparse_plus_blocks(m, n, blocks, density=0.02, seed=0, dtype=np.float64):
    """Random sparse matrix plus dense blocks given as (row, col, height, width, fill)."""
    rng = np.random.default_rng(seed)
    A = sp.lil_array(sp.random_array((m, n), density=density, rng=seed, format="csr"))
    for i, j, h, w, fill in blocks:
        block = rng.standard_normal((h, w)) * (rng.random((h, w)) < fill)
        A[i:i + h, j:j + w] = block
    A = sp.csr_array(A, dtype=dtype)
    A.eliminate_zeros()
    return A


def exact_dense_tiles(A, tile, threshold):
    """(covered fraction, tiles) over full tiles with fill >= threshold, exact."""
    A = sp.csr_array(A)
    m, n = A.shape
    rows = np.repeat(np.arange(m), np.diff(A.indptr))
    cols = A.indices
    full = (rows // tile < m // tile) & (cols // tile < n // tile)
    keys = (rows[full] // tile) * (n // tile + 1) + cols[full] // tile
    _, counts = np.unique(keys, return_counts=True)
    need = max(1, math.ceil(threshold * tile * tile - 1e-9))
    dense = counts >= need
    covered = counts[dense].sum() / A.nnz if A.nnz else 0.0
    return SimpleNamespace(covered_fraction=float(covered), n_tiles=int(dense.sum()))


def exact_profile(A):
    return SimpleNamespace(shape=A.shape, nnz=A.nnz, dtype=A.dtype.name,
                           n_explicit_zeros=int(np.count_nonzero(A.data == 0)),
                           dense_tiles={(t, thr): exact_dense_tiles(A, t, thr)
                                        for t in DBH_TILES for thr in DBH_THRESHOLDS})


# -- structure ---------------------------------------------------------------

def test_dense_tiles_and_remainder():
    blocks = [(8, 16, 8, 8, 1.0), (16, 0, 8, 8, 0.6), (32, 40, 8, 8, 0.3)]
    A = sparse_plus_blocks(50, 60, blocks, density=0.01, seed=1)
    F = dbh.from_csr(A, tile=8, threshold=0.5)
    ref = exact_dense_tiles(A, 8, 0.5)
    assert F.ntiles == ref.n_tiles >= 2
    assert F.ridx.size == A.nnz - round(ref.covered_fraction * A.nnz)
    assert F.tdata.shape == (F.ntiles, 8, 8)
    # every tile stored is a full, aligned tile with fill >= 0.5
    D = A.toarray()
    trow = np.repeat(np.arange(F.tptr.size - 1), np.diff(F.tptr))
    for q, (ti, tj) in enumerate(zip(trow, F.tidx)):
        block = D[ti * 8:(ti + 1) * 8, tj * 8:(tj + 1) * 8]
        np.testing.assert_array_equal(F.tdata[q].T, block)        # tiles are stored column-major
        assert np.count_nonzero(block) >= 32
    for ti in range(F.tptr.size - 1):                     # sorted tile columns per tile row
        seg = F.tidx[F.tptr[ti]:F.tptr[ti + 1]]
        assert np.all(np.diff(seg) > 0)
    assert (F.to_csr() != A).nnz == 0
    assert_ops(F, A)


def test_threshold_extremes():
    A = sparse_plus_blocks(40, 40, [(0, 0, 4, 4, 1.0), (4, 8, 4, 4, 0.5)], density=0.05, seed=2)
    everything = dbh.from_csr(A, tile=4, threshold=1e-9)      # any touched full tile is dense
    assert everything.ridx.size == 0
    assert_ops(everything, A)
    full_only = dbh.from_csr(A, tile=4, threshold=1.0)
    assert full_only.ntiles >= 1
    assert np.all(np.count_nonzero(full_only.tdata.reshape(full_only.ntiles, -1), axis=1) == 16)
    assert_ops(full_only, A)


@pytest.mark.parametrize("shape", [(17, 23), (3, 40), (40, 3), (16, 16)])
@pytest.mark.parametrize("tile", DBH_TILES)
def test_edges_stay_in_the_remainder(shape, tile):
    D = np.random.default_rng(sum(shape)).standard_normal(shape)      # completely dense
    A = sp.csr_array(D)
    F = dbh.from_csr(A, tile=tile, threshold=0.25)
    m, n = shape
    assert F.ntiles == (m // tile) * (n // tile)
    assert F.ridx.size == A.nnz - F.ntiles * tile * tile
    assert_ops(F, A)
    assert (F.to_csr() != A).nnz == 0


def test_empty_matrices():
    for shape in [(0, 0), (0, 9), (9, 0), (20, 20)]:
        A = sp.csr_array(shape)
        F = dbh.from_csr(A, tile=4, threshold=0.5)
        m, n = shape
        np.testing.assert_array_equal(F.matvec(np.ones(n)), np.zeros(m))
        np.testing.assert_array_equal(F.rmatvec(np.ones(m)), np.zeros(n))
        np.testing.assert_array_equal(F.matmat(np.ones((n, 2))), np.zeros((m, 2)))
        np.testing.assert_array_equal(F.rmatmat(np.ones((m, 2))), np.zeros((n, 2)))


def test_explicit_zeros_and_nonfinite_x():
    """Padding in tiles must not make 0 * inf = NaN; explicit zeros (in a tile
    or in the remainder) must, as in SciPy."""
    D = np.zeros((8, 9))
    D[0:4, 0:4] = np.arange(1.0, 17.0).reshape(4, 4)
    D[0, 1] = D[2, 3] = 0.0             # holes in the dense tile: (0, 1) padding, (2, 3) an explicit zero
    D[5, 6] = 7.0
    C = sp.coo_array(D)
    A = sp.coo_array((np.concatenate([C.data, [0.0, 0.0]]),                 # explicit zeros at (2, 3), (6, 8)
                      (np.concatenate([C.row, [2, 6]]), np.concatenate([C.col, [3, 8]]))), shape=(8, 9)).tocsr()
    A.sum_duplicates()
    F = dbh.from_csr(A, tile=4, threshold=0.5)
    assert F.ntiles == 1 and F.explicit_zeros[0].size == 1           # (2, 3) in the tile; (6, 8) in the remainder
    back = F.to_csr()
    assert back.nnz == A.nnz and (back != A).nnz == 0
    for j in range(9):
        for bad in (np.inf, np.nan):
            x = np.arange(1.0, 10.0)
            x[j] = bad
            assert verify.check(F.matvec(x), A, x, "matvec")[0], (j, bad)
            X = np.stack([x, -x], axis=1)
            assert verify.check(F.matmat(X), A, X, "matmat")[0], (j, bad)
    for i in range(8):
        y = np.ones(8)
        y[i] = -np.inf
        assert verify.check(F.rmatvec(y), A, y, "rmatvec")[0], i
        Y = np.stack([y, y], axis=1)
        assert verify.check(F.rmatmat(Y), A, Y, "rmatmat")[0], i


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_conjugate_and_plain_transpose(dtype):
    A = sparse_plus_blocks(30, 26, [(8, 8, 8, 8, 0.9)], density=0.05, seed=3)
    if np.dtype(dtype).kind == "c":
        A = sp.csr_array(A + 1j * A.multiply(A))
    A = sp.csr_array(A.astype(dtype))
    F = dbh.from_csr(A, tile=8, threshold=0.5, index_dtype="int16" if dtype == np.float32 else "int32")
    assert F.ntiles >= 1
    for conj in (True, False):
        y = rng_vector(30, dtype, 2)
        assert verify.check(F.rmatvec(y, conj=conj), A, y, "rmatvec", conj=conj)[0]
        Y = rng_vector(30, dtype, 3, 5)
        assert verify.check(F.rmatmat(Y, conj=conj), A, Y, "rmatmat", conj=conj)[0]


def test_parallel_kernels():
    rng = np.random.default_rng(5)
    m = n = 6003
    blocks = [(int(i), int(j), 16, 16, 0.8) for i, j in zip(rng.integers(0, m - 16, 60), rng.integers(0, n - 16, 60))]
    A = sparse_plus_blocks(m, n, blocks, density=0.002, seed=5)
    for tile in (4, 16):
        F = dbh.from_csr(A, tile=tile, threshold=0.5)
        assert F.ntiles > 0 and F.work("matvec") >= PARALLEL_MIN_WORK
        assert_ops(F, A, k=3)


def test_bad_parameters():
    A = sp.eye_array(8, format="csr")
    with pytest.raises(ValueError, match="tile=5"):
        dbh.from_csr(A, tile=5)
    with pytest.raises(TypeError, match="tile"):
        dbh.from_csr(A, tile="8")
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            dbh.from_csr(A, tile=4, threshold=bad)
    with pytest.raises(TypeError, match="threshold"):
        dbh.from_csr(A, tile=4, threshold="half")
    F = dbh.from_csr(A, tile=4, threshold=0.3)                  # any float in (0, 1]
    assert F.params == {"tile": 4, "threshold": 0.3, "index_dtype": "int32"}
    G = dbh.from_csr(A, **F.params)
    assert G.params == F.params


# -- estimates and configurations --------------------------------------------

def _profile(A):
    try:
        from autosparse.profile import profile
    except ImportError:
        return exact_profile(A), True
    return profile(A), False


def test_estimate_is_exact_with_exact_tiles():
    A = sparse_plus_blocks(64, 64, [(0, 0, 16, 16, 0.9), (16, 32, 8, 8, 0.6), (40, 8, 4, 4, 1.0)], seed=6)
    p = exact_profile(A)
    for tile in DBH_TILES:
        for thr in DBH_THRESHOLDS:
            for idx in ("int16", "int32", "int64"):
                F = dbh.from_csr(A, tile=tile, threshold=thr, index_dtype=idx)
                est = dbh.estimate_nbytes(p, tile=tile, threshold=thr, index_dtype=idx)
                assert est == F.nbytes, (tile, thr, idx)


BLOCKY = ("mbeacxc", "lp_wood1p", "bcsstk13", "pyamg_bar", "bcsstk09", "rbs480a")


def blocky_corpus():
    params = [p for p in corpus_params(max_nnz=200_000) if p.values[0] is None or p.values[0]["name"] in BLOCKY]
    return params or [pytest.param(None, marks=pytest.mark.skip(reason="no blocky corpus matrices"))]


@pytest.mark.parametrize("entry", blocky_corpus())
def test_estimate_on_corpus(entry):
    A = load(entry)
    p, exact = _profile(A)
    for tile, thr in [(4, 0.5), (8, 0.5), (16, 0.25)]:
        F = dbh.from_csr(A, tile=tile, threshold=thr)
        est = dbh.estimate_nbytes(p, tile=tile, threshold=thr, index_dtype="int32")
        real = F.nbytes
        if exact:
            assert est == real, (tile, thr)
        else:
            assert abs(est - real) <= 0.15 * real, (tile, thr, est, real)
        assert_ops(F, A, k=2)


def test_configurations():
    A = sparse_plus_blocks(64, 64, [(0, 0, 32, 32, 0.9)], density=0.01, seed=7)
    p = exact_profile(A)
    conf = dbh.configurations(p)
    assert conf
    for d in conf:
        assert p.dense_tiles[(d["tile"], d["threshold"])].covered_fraction >= 0.2
    tilings = {(d["tile"], d["threshold"]) for d in conf}
    for t in DBH_TILES:
        for thr in DBH_THRESHOLDS:
            assert ((t, thr) in tilings) == (p.dense_tiles[(t, thr)].covered_fraction >= 0.2)
    sparse = sp.csr_array(sp.random_array((64, 64), density=0.02, rng=1, format="csr"))
    assert dbh.configurations(exact_profile(sparse)) == []


def test_space():
    optuna = pytest.importorskip("optuna")
    A = sparse_plus_blocks(64, 64, [(0, 0, 32, 32, 0.9)], density=0.01, seed=7)
    p = exact_profile(A)
    allowed = {(d["tile"], d["threshold"]) for d in dbh.configurations(p)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        params = dbh.space(trial, p)
        assert (params["tile"], params["threshold"]) in allowed
        assert all(name.startswith("dbh_") for name in trial.params)
        study.tell(trial, 0.0)
