"""DIA-specific behaviour: layout, value tables, unrolled and blocked kernels,
padding with non-finite operands, sizes and configurations.

The generic products are covered by test_conformance.py; here every check is
against SciPy or numpy on matrices chosen to reach each kernel path:
serial / parallel, literal (<= LITERAL_MAX diagonals) / blocked, interior and
edge blocks, rectangular shapes, small (tuple) / large (array) / uint16 value
tables.

Compile budget: the parallel kernels are specialised on the diagonal count,
so every parallel test here uses six diagonals (one compile per dtype and
table kind), and the other dtypes run a subset of the operations.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import dia as D
from autosparse.profile import profile

from conftest import PARALLEL_TEST_WORK as PARALLEL_MIN_WORK, corpus_params, load, rng_vector

pytestmark = pytest.mark.usefixtures("parallel_from_test_work")


def banded(m, n, offsets, dtype=np.float64, seed=0, values=None):
    """m x n matrix with the given diagonals full; ``values``: draw from these."""
    rng = np.random.default_rng(seed)
    diags = []
    for o in offsets:
        length = max(0, min(m, n - o) - max(0, -o))
        v = rng.standard_normal(length) if values is None else rng.choice(values, length)
        if np.dtype(dtype).kind == "c":      # as many distinct values as in ``values``
            v = v + 1j * (rng.standard_normal(length) if values is None else 0.5 * v)
        diags.append(v)
    A = sp.diags_array(diags, offsets=list(offsets), shape=(m, n), format="csr")
    return sp.csr_array(A.astype(dtype))


OPS = ("matvec", "rmatvec", "matmat", "rmatmat")


def assert_bitwise(F, A, k=3, seed=0, ops=OPS):
    """Finite operands: every product equals SciPy's bit for bit (same summation order)."""
    m, n = A.shape
    for op in ops:
        length = n if op in ("matvec", "matmat") else m
        x = rng_vector(length, F.dtype, seed, None if op.endswith("vec") else k)
        M = A.T.conj() if op.startswith("r") else A
        np.testing.assert_array_equal(getattr(F, op)(x), M @ x, err_msg=op)


def check_ops(F, A, k=3, seed=0, conj_too=True, ops=OPS):
    m, n = A.shape
    dt = F.dtype
    shapes = {"matvec": (n,), "rmatvec": (m,), "matmat": (n, k), "rmatmat": (m, k)}
    for op in ops:
        shape = shapes[op]
        x = rng_vector(shape[0], dt, seed, None if len(shape) == 1 else k)
        y = getattr(F, op)(x)
        ok, ratio = verify.check(y, A, x, op)
        assert ok, f"{F!r} {op}: error ratio {ratio}"
        if conj_too and op.startswith("r"):
            y = getattr(F, op)(x, conj=False)
            ok, ratio = verify.check(y, A, x, op, conj=False)
            assert ok, f"{F!r} {op} conj=False: error ratio {ratio}"


# -- layout ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 7), (5, 9), (9, 4)])
@pytest.mark.parametrize("values", ["full", "table"])
def test_layout_is_row_aligned_diagonals(shape, values):
    m, n = shape
    A = sp.random_array(shape, density=0.4, rng=1, format="csr")
    A.data[:] = np.round(A.data * 4) + 1
    F = D.from_csr(A, values=values)
    dense = A.toarray()
    occupied = np.unique(A.tocoo().col - A.tocoo().row)
    np.testing.assert_array_equal(F.offsets, occupied)
    vals = F.data if F.table is None else F.table[F.data]
    assert vals.shape == (occupied.size, m)
    for k, o in enumerate(F.offsets):
        for i in range(m):
            expect = dense[i, i + o] if 0 <= i + o < n else 0.0
            assert vals[k, i] == expect
    if values == "table":
        assert F.data.dtype == np.uint8 and F.table[0] == 0.0   # code 0 is the padding
    np.testing.assert_array_equal(F.to_csr().toarray(), dense)


def test_params_rebuild_and_index_dtypes():
    A = banded(300, 300, [-3, 0, 2])
    F = D.from_csr(A)
    assert F.params == {"index_dtype": "int32", "values": "full"}
    G = D.from_csr(A, **F.params)
    np.testing.assert_array_equal(G.data, F.data)
    # int16 offsets on a large matrix: only the offsets must fit, not the shape
    big = banded(100_000, 100_000, [-2, -1, 0, 1, 3, 5], values=[1.0, 3.0])
    F16 = D.from_csr(big, index_dtype="int16", values="table")
    assert F16.offsets.dtype == np.int16 and F16.params["index_dtype"] == "int16"
    x = rng_vector(100_000, np.float64)
    assert verify.check(F16.matvec(x), big, x, "matvec")[0]
    far = sp.csr_array(([1.0, 2.0], ([0, 1], [0, 40_000])), shape=(2, 40_001))
    with pytest.raises(ValueError, match="int16"):
        D.from_csr(far, index_dtype="int16")
    assert D.from_csr(far, index_dtype="int32").offsets.tolist() == [0, 39_999]
    with pytest.raises(ValueError, match="values must be 'full' or 'table'"):
        D.from_csr(A, values="codes")


def test_explicit_zeros_and_nan_entries_round_trip():
    A = banded(40, 40, [-1, 0, 1])
    A.data[::5] = 0.0                 # explicit zeros are kept aside, not stored
    A.data[3] = np.nan
    A.data[7] = -0.0
    for values in ("full", "table"):
        F = D.from_csr(A, values=values)
        C = F.to_csr()
        assert C.nnz == A.nnz
        np.testing.assert_array_equal(C.indices, A.indices)
        np.testing.assert_array_equal(np.signbit(C.data), np.signbit(A.data))
        np.testing.assert_array_equal(C.data, A.data)       # NaN == NaN positions via assert_array_equal
        assert F.explicit_zeros[0].size == np.count_nonzero(A.data == 0)
        x = rng_vector(40, np.float64)
        assert verify.check(F.matvec(x), A, x, "matvec")[0]


# -- padding and non-finite operands -----------------------------------------

def test_explicit_zero_off_the_stored_diagonals_meets_inf():
    # (0, 0) is an explicit zero on a diagonal DIA does not store: 0 * inf is NaN in SciPy
    A = sp.csr_array(([0.0, 1.0, 2.0], ([0, 0, 1], [0, 1, 2])), shape=(2, 3))
    F = D.from_csr(A)
    assert F.offsets.tolist() == [1]
    x = np.array([np.inf, 1.0, 1.0])
    y = F.matvec(x)
    assert np.isnan(y[0]) and y[1] == 2.0
    assert verify.check(y, A, x, "matvec")[0]
    xr = np.array([np.inf, 1.0])
    assert verify.check(F.rmatvec(xr), A, xr, "rmatvec")[0]
    np.testing.assert_array_equal(F.matvec(np.ones(3)), [1.0, 2.0])       # finite x: the fast path

@pytest.mark.parametrize("values", ["full", "table"])
@pytest.mark.parametrize("m", [50, 60_000])      # serial and parallel kernels
def test_inf_nan_in_x_do_not_leak_through_padding(values, m):
    # tridiagonal with holes: padding slots sit next to the infinite x entries
    A = banded(m, m, [-2, -1, 0, 1, 2, 3], values=[1.0, -2.0])
    A = sp.csr_array(A.multiply(np.arange(m)[:, None] % 3 != 0))
    A.eliminate_zeros()
    F = D.from_csr(A, values=values)
    assert F.nnz < F.data.size                      # there is padding
    x = rng_vector(m, np.float64, 2)
    x[3] = np.inf
    x[m // 2] = -np.inf
    x[m - 2] = np.nan
    for op in ("matvec", "rmatvec"):
        y = getattr(F, op)(x)
        ok, ratio = verify.check(y, A, x, op)
        assert ok, (op, ratio)
    X = np.stack([x, rng_vector(m, np.float64, 3)], axis=1)
    for op in ("matmat", "rmatmat"):
        ok, ratio = verify.check(getattr(F, op)(X), A, X, op)
        assert ok, (op, ratio)


# -- kernel paths -------------------------------------------------------------

# Enough slots for the parallel kernels.  Six diagonals each; interior rows
# (every diagonal inside) and edge blocks, for A and for Aᵀ.
PATH_CASES = [
    ("square", 20_000, 20_000, [-300, -1, 0, 1, 7, 1000]),
    ("wide", 9_000, 15_000, [-2, 0, 3, 50, 6000, 6001]),
    ("tall", 15_000, 9_000, [-6001, -6000, -50, -1, 0, 2]),
    ("corners", 20_000, 20_000, [-19_999, -1, 0, 1, 2, 19_999]),     # no interior block at all
    ("blocked", 6_000, 6_000, list(range(-10, 11))),                # 21 > LITERAL_MAX diagonals
]


@pytest.mark.parametrize("name,m,n,offsets", PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_kernel_paths_match_scipy(name, m, n, offsets):
    A = banded(m, n, offsets, values=[1.0, -1.0, 4.0])
    Ff = D.from_csr(A)
    Ft = D.from_csr(A, values="table")
    assert Ff.work("matvec") >= PARALLEL_MIN_WORK
    assert (Ff.n_diagonals <= D.LITERAL_MAX) == (name != "blocked")
    assert isinstance(Ft._table(False), tuple)                  # 4-entry table: decoded by compares
    assert_bitwise(Ff, A)
    # the blocked kernels with full values are also run by test_conformance
    assert_bitwise(Ft, A, ops=("matvec", "rmatvec") if name == "blocked" else OPS)


def test_serial_kernels_rectangular():
    for m, n in ((30, 70), (70, 30)):
        A = banded(m, n, [-25, -1, 0, 4, 29], values=[2.0, 3.0])
        for values in ("full", "table"):
            F = D.from_csr(A, values=values)
            assert F.work("matvec", 3) < PARALLEL_MIN_WORK
            check_ops(F, A)
            assert_bitwise(F, A)


def test_tables_small_large_and_uint16():
    m = 30_000                          # parallel path
    offsets = [-5, -1, 0, 1, 2, 9]
    small = banded(m, m, offsets, np.complex128, values=[1.0, 2.0])      # <= 4 entries: tuple
    large = banded(m, m, offsets, np.float32, values=np.arange(1.0, 40.0))   # array table, uint8 codes
    huge = banded(m, m, offsets, np.float32, values=np.arange(1.0, 700.0))   # > 256: uint16 codes
    for A, kind, code in ((small, tuple, np.uint8), (large, np.ndarray, np.uint8), (huge, np.ndarray, np.uint16)):
        F = D.from_csr(A, values="table")
        assert isinstance(F._table(True), kind) and F.data.dtype == code
        C = F.to_csr()
        np.testing.assert_array_equal(C.indptr, A.indptr)
        np.testing.assert_array_equal(C.indices, A.indices)
        np.testing.assert_array_equal(C.data, A.data)
        if code == np.uint8:            # uint16 codes run the same kernel source
            check_ops(F, A, ops=("matvec", "rmatvec"))
            assert_bitwise(F, A, ops=("matvec", "rmatvec"))


def test_too_many_distinct_values_for_a_table():
    A = banded(3000, 3000, [-1, 0, 1, 2])           # ~12k distinct values
    with pytest.raises(ValueError, match="values='table'"):
        D.from_csr(A, values="table")


def test_mixed_dtypes_follow_scipy():
    A = banded(30_000, 30_000, [-2, -1, 0, 1, 2, 3], np.float32, values=[1.5, -0.25])
    for values in ("full",):
        F = D.from_csr(A, values=values)
        x = rng_vector(30_000, np.float64, 1)
        y = F.matvec(x)
        assert y.dtype == (A @ x).dtype == np.float64
        assert verify.check(y, A, x, "matvec")[0]


def test_empty_and_degenerate():
    for shape in ((0, 4), (4, 0), (3, 5), (0, 0)):
        A = sp.csr_array(shape)
        F = D.from_csr(A)
        assert F.n_diagonals == 0 and F.nbytes >= 0
        y = F.matvec(np.ones(shape[1]))
        np.testing.assert_array_equal(y, np.zeros(shape[0]))
        np.testing.assert_array_equal(F.rmatvec(np.ones(shape[0])), np.zeros(shape[1]))
        np.testing.assert_array_equal(F.matmat(np.ones((shape[1], 2))), np.zeros((shape[0], 2)))


# -- sizes and configurations -------------------------------------------------

def test_estimate_nbytes_exact_on_generated():
    A = banded(5000, 5000, [-7, -1, 0, 1, 7], values=[1.0, -1.0, 6.0])
    A.data[::11] = 0.0                                          # explicit zeros kept aside
    p = profile(A)
    for cfg in ({"index_dtype": "int16", "values": "full"}, {"index_dtype": "int64", "values": "table"}):
        assert D.estimate_nbytes(p, **cfg) == D.from_csr(A, **cfg).nbytes


@pytest.mark.parametrize("entry", corpus_params(max_nnz=200_000))
def test_estimate_nbytes_on_corpus(entry):
    A = load(entry)
    p = profile(A)
    if p.n_diagonals * A.shape[0] * 8 > 64e6:
        pytest.skip("DIA would not fit a test")
    for values in D.values_options(p):
        real = D.from_csr(A, values=values).nbytes
        est = D.estimate_nbytes(p, "int32", values)
        if p.n_explicit_zeros <= 0.01 * p.nnz:
            assert abs(est - real) <= 0.15 * real + 64, (values, est, real)
        else:   # the profile's diagonals count explicit zeros, which DIA keeps aside: an overestimate
            assert est >= 0.85 * real, (values, est, real)


def test_configurations():
    stencil = profile(banded(20_000, 20_000, [-100, -1, 0, 1, 100], values=[-1.0, 4.0]))
    cfgs = D.configurations(stencil)
    assert {"index_dtype": "int16", "values": "table"} in cfgs
    assert {"index_dtype": "int32", "values": "full"} in cfgs
    scattered = profile(sp.random_array((3000, 3000), density=0.002, rng=0, format="csr"))
    assert D.configurations(scattered) == []
    wide = profile(banded(200, 70_000, [0, 40_000]))
    assert all(c["index_dtype"] != "int16" for c in D.configurations(wide))
    many = profile(banded(3000, 3000, [-1, 0, 1]))                # all values distinct
    assert all(c["values"] == "full" for c in D.configurations(many))


class _Trial:
    def suggest_categorical(self, name, choices):
        assert name.startswith("dia_")
        return choices[-1]


def test_space():
    p = profile(banded(2000, 2000, [-1, 0, 1], values=[1.0, 2.0]))
    params = D.space(_Trial(), p)
    assert params == {"index_dtype": "int64", "values": "table"}
    D.from_csr(banded(2000, 2000, [-1, 0, 1], values=[1.0, 2.0]), **params)
