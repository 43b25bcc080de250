"""The baseline layout: SciPy's products on the user's matrix, and the one-call path of tune().

For CSR and CSC input the baseline calls SciPy's compiled kernels directly
(without ``A @ x``'s Python dispatch), so its results must stay SciPy's to
the bit, for every input it takes that path for, and every other input must
take the general path.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import autosparse as asp
from autosparse.formats import baseline
from autosparse.plan import Plan

from conftest import rng_vector

TYPES = [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array]
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def awkward(kind, dtype, index_dtype, m=37, n=29, seed=0):
    """Unsorted indices, duplicates, an explicit zero and an empty row, in ``kind``."""
    rng = np.random.default_rng(seed)
    nnz = 160
    rows = rng.integers(0, m, nnz)
    rows[rows == 5] = 6                                      # row 5 stays empty
    cols = rng.integers(0, n, nnz)
    vals = rng.standard_normal(nnz)
    if np.dtype(dtype).kind == "c":
        vals = vals + 1j * rng.standard_normal(nnz)
    vals[3] = 0.0
    coo = sp.coo_matrix((vals.astype(dtype), (rows, cols)), shape=(m, n))
    A = kind(coo.tocsr() if kind in (sp.csr_matrix, sp.csr_array) else coo.tocsc())
    # undo SciPy's canonical form: reverse every slice's entries and add a duplicate
    ptr = A.indptr
    order = np.concatenate([np.arange(ptr[i + 1] - 1, ptr[i] - 1, -1) for i in range(len(ptr) - 1)]).astype(int)
    A = kind((A.data[order], A.indices[order], ptr), shape=A.shape)
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    A.has_sorted_indices = False
    return A


def scipy_products(A, x, y):
    """SciPy's own answers: A x, Aᴴ y and Aᵀ y."""
    return A @ x, A.conj().T @ y, A.T @ y


@pytest.mark.parametrize("kind", TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_direct_kernels_are_scipy_to_the_bit(kind, dtype, index_dtype):
    A = awkward(kind, dtype, index_dtype)
    before = [a.copy() for a in (A.data, A.indices, A.indptr)]
    F = baseline.from_csr(A)
    assert F._direct is not None                               # the direct path is the one under test
    m, n = A.shape
    x, y = rng_vector(n, dtype, 1), rng_vector(m, dtype, 2)
    x[0], y[1] = np.inf, np.nan                                # NaN/Inf propagate as in SciPy
    with np.errstate(all="ignore"):
        Ax, AHy, ATy = scipy_products(A, x, y)
        got = {"matvec": F.matvec(x), "rmatvec": F.rmatvec(y), "rmatvec conj=False": F.rmatvec(y, conj=False)}
        outs = {"matvec": np.full(m, np.nan, dtype), "rmatvec": np.full(n, 7.0, dtype)}
        assert F.matvec(x, out=outs["matvec"]) is outs["matvec"]      # overwritten, not added to
        assert F.rmatvec(y, out=outs["rmatvec"]) is outs["rmatvec"]
    for label, value, expect in [("matvec", got["matvec"], Ax), ("rmatvec", got["rmatvec"], AHy),
                                 ("rmatvec conj=False", got["rmatvec conj=False"], ATy),
                                 ("matvec out", outs["matvec"], Ax), ("rmatvec out", outs["rmatvec"], AHy)]:
        assert value.dtype == np.dtype(dtype), label
        np.testing.assert_array_equal(value, expect, err_msg=label)
    for a, b in zip((A.data, A.indices, A.indptr), before):      # the user's matrix is untouched
        np.testing.assert_array_equal(a, b)


class MyCSR(sp.csr_matrix):
    """A subclass may change what products do: it never takes the direct path."""


def test_inputs_outside_the_direct_path_take_scipys_general_path():
    A = sp.random_array((30, 20), density=0.3, rng=0, format="csr")
    mixed = sp.csr_array((A.data, A.indices.astype(np.int32), A.indptr.astype(np.int64)), shape=A.shape)
    cases = {"subclass": MyCSR(A), "coo": A.tocoo(), "int matrix": sp.csr_array(A.astype(np.int64) + A.astype(bool)),
             "mixed index dtypes": mixed}
    x = rng_vector(20, np.float64, 3)
    for label, B in cases.items():
        F = baseline.from_csr(B)
        if label != "mixed index dtypes":     # SciPy itself may normalise these
            assert F._direct is None, label
        np.testing.assert_array_equal(F.matvec(x), np.asarray(B.astype(np.float64) @ x), err_msg=label)
    # a float32 vector on a float64 matrix promotes, as in SciPy
    F = baseline.from_csr(A)
    x32 = x.astype(np.float32)
    y = F.matvec(x32)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, A @ x32)


def test_direct_path_checks_out_like_every_format():
    A = sp.csr_array(sp.random_array((30, 20), density=0.3, rng=1, format="csr"))
    F = baseline.from_csr(A)
    x = rng_vector(20, np.float64, 4)
    with pytest.raises(ValueError, match="out must have shape"):
        F.matvec(x, out=np.empty(29))
    with pytest.raises(ValueError, match="out must have shape"):
        F.matvec(x, out=np.empty(30, np.float32))
    with pytest.raises(ValueError, match="out is read-only"):
        ro = np.empty(30)
        ro.flags.writeable = False
        F.matvec(x, out=ro)
    buf = np.zeros(50)
    with pytest.raises(ValueError, match="overlap"):
        F.rmatvec(buf[:30], out=buf[10:30])
    with pytest.raises(ValueError, match="dimension mismatch"):
        F.matvec(np.ones(21))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_one_call_tune_is_the_baseline_with_every_product_and_view(dtype):
    A = awkward(sp.csr_array, dtype, np.int32)
    T = asp.tune(A, "matvec=1", store=False)
    assert T.plan == Plan.baseline() and T.layouts[0].matrix is A
    rep = T.report
    assert rep.source.startswith("baseline (workload too small") and rep.plan == T.plan
    assert rep.workload == "matvec=1" and 0 < rep.tuning_s < 1 and rep.compile_s == 0.0
    m, n = A.shape
    x, y, X = rng_vector(n, dtype, 1), rng_vector(m, dtype, 2), rng_vector(n, dtype, 3, 3)
    np.testing.assert_array_equal(T.matvec(x), A @ x)
    np.testing.assert_array_equal(T @ x, A @ x)
    np.testing.assert_array_equal(T.rmatvec(y), A.conj().T @ y)
    np.testing.assert_array_equal(T.H @ y, A.conj().T @ y)
    np.testing.assert_allclose(T.T @ y, A.T @ y, rtol=1e-12)
    np.testing.assert_array_equal(T.matmat(X), A @ X)
    assert T.shape == A.shape and T.dtype == A.dtype
    assert not hasattr(T, "no_such_attribute")                # routing on first use hides nothing else
    with pytest.raises(AttributeError, match="no_such_attribute"):
        T.no_such_attribute


def test_one_call_tune_still_validates_everything():
    A = sp.csr_array(sp.random_array((30, 20), density=0.3, rng=2, format="csr"))
    with pytest.raises(ValueError, match="unknown effort"):
        asp.tune(A, "matvec=1", effort="fast", store=False)
    with pytest.raises(TypeError, match="seed must be an integer"):
        asp.tune(A, "matvec=1", seed=1.5, store=False)
    with pytest.raises(ValueError, match="memory_limit"):
        asp.tune(A, "matvec=1", memory_limit=8, store=False)
    with pytest.raises(TypeError, match="scipy.sparse"):
        asp.tune(A.toarray(), "matvec=1", store=False)
    with pytest.raises(TypeError, match="unsupported matrix dtype"):
        asp.tune(sp.csr_array(A.astype(np.longdouble)), "matvec=1", store=False)
    with pytest.raises(ValueError, match="negative|at least 0|non-negative"):
        asp.tune(A, "matvec=-1", store=False)


@pytest.mark.parametrize("kind", [sp.csr_array, sp.csc_matrix], ids=lambda t: t.__name__)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_large_gathers_run_on_the_threads_and_read_a_as_it_is_now(kind, dtype):
    from autosparse.kernels._runtime import PARALLEL_MIN_WORK, num_threads
    n = 2000
    A = kind(sp.random_array((n, n), density=1.2 * PARALLEL_MIN_WORK / n**2, rng=7, format="csr").astype(dtype))
    if np.dtype(dtype).kind == "c":
        A.data = A.data + 1j * np.linspace(-1, 1, A.nnz)
    F = baseline.from_csr(A)
    x = rng_vector(n, dtype, 8)
    gather = F.rmatvec if kind is sp.csc_matrix else F.matvec        # the gather over A's slices
    expect = (lambda: A.conj().T @ x) if kind is sp.csc_matrix else (lambda: A @ x)
    np.testing.assert_allclose(gather(x), expect(), rtol=1e-13, atol=0)
    if num_threads() > 1:
        assert F._split is not None and F._split[0] is A.indptr      # the parallel kernel ran
    out = np.full(n, np.nan, dtype)
    assert gather(x, out=out) is out
    np.testing.assert_allclose(out, expect(), rtol=1e-13, atol=0)
    A.data *= 2                                                      # changed after wrapping: read anew
    np.testing.assert_allclose(gather(x), expect(), rtol=1e-13, atol=0)
    A.data = A.data[::-1].copy()                                     # new arrays: a new split
    A.indices = A.indices.copy()
    np.testing.assert_allclose(gather(x), expect(), rtol=1e-13, atol=0)
    if num_threads() > 1:
        assert F._split[1] is A.indices and F._split[2] is A.data
    for a in (A.data, A.indices, A.indptr):                          # read-only arrays type differently
        a.flags.writeable = False
    np.testing.assert_allclose(gather(x), expect(), rtol=1e-13, atol=0)


def test_entry_points_key_on_everything_numba_types_by():
    """``entry``'s quick signature must separate exactly what numba.typeof separates."""
    import numba
    from autosparse.kernels import _runtime as R

    @numba.njit
    def kernel(a, b, flag, n):
        return a.sum() + b[0] + n if flag else a.sum()

    base = np.arange(12.0)
    ro = base.copy()
    ro.flags.writeable = False
    cases = {"c": base, "strided": base[::2], "readonly": ro, "float32": base.astype(np.float32),
             "2d c": base.reshape(3, 4), "2d f": np.asfortranarray(base.reshape(3, 4)),
             "2d strided": base.reshape(3, 4)[:, ::2]}
    b = np.ones(3)
    fns = {}
    for label, a in cases.items():
        fns[label] = R.entry(kernel, a, b, True, 1)
        assert R.entry(kernel, a, b, True, 1) is fns[label], label           # the quick path hits
        sig = tuple(numba.typeof(v) for v in (a, b, True, 1))
        assert R._entries[(kernel, sig)] is fns[label], label                 # and names what typeof names
        assert fns[label](a, b, True, 1) == a.sum() + 2
    assert len({id(f) for f in fns.values()}) == len(cases)                   # every type its own entry
    # Python ints beyond int64 type as uint64; numpy scalars by their dtype; None and bool by type
    assert R._quick_signature((2**63,), ()) != R._quick_signature((1,), ())
    assert R._quick_signature((np.uint64(1),), ()) != R._quick_signature((np.int64(1),), ())
    assert R._quick_signature((None, True), ()) == R._quick_signature((None, False), ())
    assert R._quick_signature((3,), (0,)) != R._quick_signature((4,), (0,))       # literals by value
    assert R._quick_signature(([1.0],), ()) is None                                # anything else: typeof


@pytest.mark.parametrize("fmt", ["scipy", "csr", "ell"])
def test_overlap_is_caught_after_a_disjoint_pair_was_remembered(fmt):
    """``disjoint`` remembers the last pair of views found apart; any other pair is checked."""
    from autosparse import formats
    from autosparse.formats._base import disjoint
    A = sp.csr_array(sp.random_array((40, 40), density=0.2, rng=3, format="csr"))
    F = baseline.from_csr(A) if fmt == "scipy" else formats.convert(A, fmt)
    buf = rng_vector(120, np.float64, 5)
    x, out = buf[:40], buf[60:100]                                  # views of one buffer, apart
    for _ in range(3):
        np.testing.assert_allclose(F.matvec(x, out=out), A @ x, rtol=1e-13)
    assert disjoint(x, out)
    with pytest.raises(ValueError, match="overlap"):
        F.matvec(buf[:40], out=buf[20:60])                            # the same buffer, overlapping
    with pytest.raises(ValueError, match="overlap"):
        F.matvec(x, out=buf[30:70])                                   # the remembered x, another out
    assert not disjoint(x, x) and not disjoint(buf[:40], buf[39:79])
    np.testing.assert_allclose(F.matvec(x, out=out), A @ x, rtol=1e-13)   # the remembered pair still works
