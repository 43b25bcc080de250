"""SELL-C-σ: sorting windows, chunk layout, value tables, estimates, parameters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import sell
from autosparse.formats._grids import SELL_C, SELL_SIGMA
from autosparse.profile import profile as profile_of

from conftest import corpus_params, load, rng_vector


def exact_sell_fill(A, C, sigma):
    """nnz / slots, computed independently of the format module."""
    lengths = np.diff(A.indptr)
    m = lengths.size
    if sigma > 1:
        w = -(-m // sigma) * sigma
        padded = np.full(w, -1)
        padded[:m] = lengths
        lengths = -np.sort(-padded.reshape(-1, sigma), axis=1).ravel()
        lengths = lengths[lengths >= 0]
    nch = -(-m // C)
    chunks = np.zeros(nch * C, np.int64)
    chunks[:m] = lengths
    slots = chunks.reshape(nch, C).max(axis=1).sum() * C
    return A.nnz / slots if slots else 1.0


def uneven(m=500, n=300, seed=0, dtype=np.float64, values=None):
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.zipf(1.7, m), 40)
    rows = np.repeat(np.arange(m), lengths)
    cols = rng.integers(0, n, rows.size)
    vals = rng.standard_normal(rows.size) if values is None else rng.choice(values, rows.size)
    A = sp.csr_array((vals, (rows, cols)), shape=(m, n)).astype(dtype)
    A.sum_duplicates()
    return A


@pytest.mark.parametrize("C,sigma", [(4, 1), (8, 64), (32, 4096)])
def test_layout(C, sigma):
    A = uneven()
    F = sell.from_csr(A, C=C, sigma=sigma)
    m = A.shape[0]
    lengths = np.diff(A.indptr)
    nch = -(-m // C)
    assert F.cptr.size == nch + 1
    assert F.slots == round(A.nnz / exact_sell_fill(A, C, sigma))
    if sigma == 1:
        assert F.perm is None
    else:
        perm = F.perm.astype(np.int64)
        np.testing.assert_array_equal(np.sort(perm), np.arange(m))
        for w in range(0, m, sigma):                        # sorted descending within each window only
            win = perm[w:w + sigma]
            assert win.min() >= w and win.max() < w + sigma
            assert np.all(np.diff(lengths[win]) <= 0)
    assert (F.cols.astype(np.int64) < A.shape[1]).all()    # padding columns are valid
    np.testing.assert_array_equal(F.to_csr().toarray(), A.toarray())
    assert F.params == {"C": C, "sigma": sigma, "index_dtype": "int32", "values": "full"}


# (the settings and types of the conformance suite, so no extra kernels compile)
@pytest.mark.parametrize("C,sigma,values,dtype", [(8, 1, "full", np.float64), (4, 64, "full", np.complex128),
                                                  (16, 256, "table", np.float64)])
def test_products_in_original_order(C, sigma, values, dtype):
    A = uneven(m=1003, seed=2, dtype=dtype, values=[1.0, -2.0, 0.5])   # m % C != 0: a partial last chunk
    if dtype == np.complex128:
        A = A * (1 - 2j)
    F = sell.from_csr(A, C=C, sigma=sigma, index_dtype="int64" if dtype == np.complex128 else "int32",
                      values=values)
    for op in verify.OPS:
        n_in = A.shape[1] if op in ("matvec", "matmat") else A.shape[0]
        x = rng_vector(n_in, dtype, 7, None if op.endswith("vec") else 3)
        y = getattr(F, op)(x)
        assert verify.check(y, A, x, op)[0], op
        if op in ("matvec", "matmat"):                      # rows summed in column order: SciPy's bits
            np.testing.assert_array_equal(y, A @ x)
    y = rng_vector(A.shape[0], dtype, 8)
    assert verify.check(F.rmatvec(y, conj=False), A, y, "rmatvec", conj=False)[0]


def test_value_table():
    A = uneven(values=[-1.0, 0.5, 2.0, 3.25])
    A.data[::9] = 0.0                                       # explicit zeros stay out of the table's codes
    full = sell.from_csr(A, C=4, sigma=64)
    tab = sell.from_csr(A, C=16, sigma=256, values="table")
    assert tab.data.dtype == np.uint8 and tab.table[0] == 0 and not np.signbit(tab.table[0])
    assert tab.nbytes < sell.from_csr(A, C=16, sigma=256).nbytes * 0.6
    assert tab.dtype == A.dtype
    np.testing.assert_array_equal(tab.to_csr().toarray(), A.toarray())
    x = rng_vector(A.shape[1], np.float64, 0)
    x[A.indices[A.data == 0][0]] = np.inf
    for F in (full, tab):
        assert verify.check(F.matvec(x), A, x, "matvec")[0]
        X = rng_vector(A.shape[0], np.float64, 1, 2)
        assert verify.check(F.rmatmat(X), A, X, "rmatmat")[0]


def test_value_table_too_many_values():
    A = sp.random_array((300, 300), density=0.1, format="csr", rng=0)        # 9000 distinct values
    with pytest.raises(ValueError, match="values='table'"):
        sell.from_csr(A, values="table")


def test_inf_in_x_under_padding():
    A = uneven(seed=4)
    F = sell.from_csr(A, C=8, sigma=1)
    lengths = np.diff(A.indptr)
    r = np.flatnonzero(lengths > 0)[np.argmin(lengths[lengths > 0])]   # a short row: padded in its chunk
    x = rng_vector(A.shape[1], np.float64, 1)
    x[A.indices[A.indptr[r + 1] - 1]] = np.inf
    y = F.matvec(x)
    assert verify.check(y, A, x, "matvec")[0]
    assert np.isnan(y).sum() == np.isnan(A @ x).sum()
    v = rng_vector(A.shape[0], np.float64, 2)
    v[r] = -np.inf
    assert verify.check(F.rmatvec(v), A, v, "rmatvec")[0]


@pytest.mark.parametrize("bad,match", [({"C": 3}, "C=3"), ({"C": 64}, "C=64"), ({"C": 8, "sigma": 12}, "sigma=12"),
                                       ({"C": 8, "sigma": 0}, "sigma=0"), ({"values": "codes"}, "values")])
def test_bad_params(bad, match):
    with pytest.raises(ValueError, match=match):
        sell.from_csr(uneven(), **bad)
    with pytest.raises(TypeError, match="C must be an integer"):
        sell.from_csr(uneven(), C=8.0)


def test_rebuild_from_params():
    A = uneven()
    F = sell.from_csr(A, C=4, sigma=512, index_dtype="int64")
    G = sell.from_csr(A, **F.params)
    for k, a in F.arrays().items():
        b = G.arrays()[k]
        assert (a is None and b is None) or np.array_equal(a, b), k


def test_estimate_matches_nbytes_generated():
    A = uneven(values=[1.0, -1.0, 4.0])
    p = profile_of(A)
    for C in SELL_C:
        for sigma in SELL_SIGMA:
            for values in ("full", "table"):
                est = sell.estimate_nbytes(p, C, sigma, "int32", values)
                real = sell.from_csr(A, C=C, sigma=sigma, index_dtype="int32", values=values).nbytes
                assert abs(est - real) <= 0.02 * real, (C, sigma, values, est, real)


def test_fill_between_grid_windows():
    A = uneven(m=5000, seed=3)
    p = profile_of(A)
    for C, sigma in ((8, 256), (16, 2048), (4, 8192)):
        est = sell.fill(p, C, sigma)
        exact = exact_sell_fill(A, C, sigma)
        assert abs(est - exact) <= 0.15 * exact, (C, sigma, est, exact)
    assert sell.fill(p, 8, 10_000) == pytest.approx(exact_sell_fill(A, 8, 10_000))   # full sort: exact


@pytest.mark.parametrize("entry", corpus_params(max_nnz=300_000, limit=8))
def test_estimate_matches_nbytes_corpus(entry):
    A = load(entry)
    p = profile_of(A)
    for C, sigma in ((8, 1), (32, 4096), (16, 256)):
        est = sell.estimate_nbytes(p, C, sigma, "int32")
        if est > 100e6:
            continue
        real = sell.from_csr(A, C=C, sigma=sigma, index_dtype="int32").nbytes
        assert abs(est - real) <= 0.15 * real, (C, sigma, est, real)


def test_configurations():
    A = uneven(values=[1.0, 2.0])
    p = profile_of(A)
    configs = sell.configurations(p)
    assert configs, "a mildly uneven matrix gets SELL settings"
    limit = 2 * (A.nnz * 12 + (A.shape[0] + 1) * 4)
    for c in configs:
        assert c["sigma"] == 1 or c["sigma"] % c["C"] == 0
        assert sell.estimate_nbytes(p, **c) <= limit
    assert {c["values"] for c in configs} == {"full", "table"}
    # windows beyond m sort the same way: only the first such window is offered
    assert max(c["sigma"] for c in configs) <= 512


def test_space_returns_a_configuration():
    optuna = pytest.importorskip("optuna")
    A = uneven(values=[1.0, 2.0])
    p = profile_of(A)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = sell.configurations(p)
    for _ in range(10):
        trial = study.ask()
        params = sell.space(trial, p)
        assert params in configs
        study.tell(trial, 1.0)


def test_explicit_zero_slots_are_where_the_zero_entries_land():
    """The slots listed as explicit zeros are exactly where the input's zero entries are placed:
    found independently by converting the same pattern with each entry's id as its value
    (sorted rows, ELL widths that cut rows short)."""
    from autosparse.formats import sell as S
    from autosparse.formats.ell import _ell_part
    rng = np.random.default_rng(3)
    A = sp.random_array((300, 200), density=0.05, rng=rng, format="csr")
    A.data[::7] = 0.0
    ids = A.copy()
    ids.data = np.arange(1, A.nnz + 1, dtype=np.float64)
    zero_ids = np.flatnonzero(A.data == 0) + 1
    for C in (4, 8, 32):
        for sigma in (1, C, 8 * C, 4096):
            got = S.from_csr(A, C=C, sigma=sigma).explicit_zeros[0]
            want = np.flatnonzero(np.isin(S.from_csr(ids, C=C, sigma=sigma).data, zero_ids))
            np.testing.assert_array_equal(got, want)
    for width in (1, 3, 6, 40):
        got = _ell_part(A, width, np.int32)[2]
        want = np.flatnonzero(np.isin(_ell_part(ids, width, np.int32)[1], zero_ids))
        np.testing.assert_array_equal(got, want)
