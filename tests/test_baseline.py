"""The baseline layout: SciPy's products on the user's matrix, and the one-call path of tune().

For CSR and CSC input the baseline calls SciPy's compiled kernels directly
(without ``A @ x``'s Python dispatch), so its results must stay SciPy's to
the bit, for every input it takes that path for, and every other input must
take the general path.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

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


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("kind", TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_one_call_tune_is_the_baseline_with_every_product_and_view(kind, dtype):
    A = awkward(kind, dtype, np.int64 if kind in (sp.csr_matrix, sp.csc_array) else np.int32)
    T = asp.tune(A, "matvec=1", store=False)
    assert isinstance(T, asp.TunedMatrix) and isinstance(T, LinearOperator)
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
    # every input outside A x's fast path: out=, another dtype, (n, 1), np.matrix, a list
    out = np.full(m, np.nan, dtype)
    assert T.matvec(x, out=out) is out
    np.testing.assert_array_equal(out, A @ x)
    xf = x.real.astype(np.float32)
    got = T.matvec(xf)
    assert got.dtype == np.result_type(A.dtype, np.float32)
    np.testing.assert_allclose(got, A @ xf, rtol=1e-6)
    np.testing.assert_array_equal(T.matvec(x[:, None]), (A @ x)[:, None])
    assert isinstance(T.matvec(np.asmatrix(x).T), np.matrix)              # as LinearOperator.matvec
    np.testing.assert_array_equal(T.matvec(list(x)), A @ x)
    np.testing.assert_array_equal(T.matvec(x[::-1].copy()[::-1]), A @ x)         # a strided view
    with pytest.raises(ValueError, match="dimension mismatch"):
        T.matvec(np.ones(n + 1, dtype))
    assert T.nbytes == sum(a.nbytes for a in (A.data, A.indices, A.indptr))
    np.testing.assert_array_equal(T.to_scipy().toarray(), A.toarray())
    assert "scipy()" in repr(T) and repr(T).startswith("<TunedMatrix")


TOO_SMALL = "baseline (workload too small for tuning to pay off)"


def test_one_call_tune_is_safe_from_many_threads_at_first_use():
    """Every product of a fresh one-call TunedMatrix makes its layout on first use; threads
    that race to it must each get SciPy's answer."""
    from concurrent.futures import ThreadPoolExecutor
    A = awkward(sp.csr_matrix, np.float64, np.int32)
    m, n = A.shape
    x, y = rng_vector(n, np.float64, 1), rng_vector(m, np.float64, 2)
    for _ in range(20):
        T = asp.tune(A, "matvec=1", store=False)
        # the Report is made lazily too, and first asked for here, by the threads
        jobs = [(T.rmatvec, y, A.T @ y), (T.matvec, x, A @ x), (lambda v: T.T @ v, y, A.T @ y),
                (lambda v: (T.report.source, T.report.plan, T.report.workload), None,
                 (TOO_SMALL, asp.Plan.baseline(), "matvec=1"))] * 4
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda job: job[0](job[1]), jobs))
        for (_, _, expect), got in zip(jobs, results):
            if isinstance(expect, tuple):
                assert got == expect
            else:
                np.testing.assert_array_equal(got, expect)


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



@pytest.mark.parametrize("kind", [sp.csr_array, sp.csc_matrix], ids=lambda t: t.__name__)
@pytest.mark.parametrize("threads_from", ["default", "this matrix"])
def test_one_call_tune_takes_the_threads_only_for_large_products(kind, threads_from, monkeypatch):
    from autosparse import operator
    from autosparse.kernels._runtime import PARALLEL_MIN_WORK, num_threads
    n = 2000
    A = kind(sp.random_array((n, n), density=1.2 * PARALLEL_MIN_WORK / n**2, rng=9, format="csr"))
    if threads_from == "this matrix":
        monkeypatch.setattr(operator, "ONE_CALL_MIN_THREADED_NNZ", A.nnz)
    x = rng_vector(n, np.float64, 3)
    for wl in ("matvec=1,rmatvec=1", "rmatvec=1,matvec=1"):       # either product first
        T = asp.tune(A, wl, store=False)
        if wl.startswith("matvec"):
            np.testing.assert_allclose(T.matvec(x), A @ x, rtol=1e-13, atol=0)
            np.testing.assert_allclose(T.rmatvec(x), A.T @ x, rtol=1e-13, atol=0)
        else:
            np.testing.assert_allclose(T.rmatvec(x), A.T @ x, rtol=1e-13, atol=0)
            np.testing.assert_allclose(T.matvec(x), A @ x, rtol=1e-13, atol=0)
        threaded = T.layouts[0]._split is not None
        assert threaded == (threads_from == "this matrix" and num_threads() > 1), (wl, threaded)


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


@pytest.mark.parametrize("fmt", ["csr", "ell", "dia"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_vector_hot_path_hands_everything_else_to_the_checked_path(fmt, dtype):
    """Once a vector kernel is bound, ``matvec``/``rmatvec`` call it after a few identity and
    shape tests.  Every input those tests do not pass must still be right or clearly refused."""
    from autosparse import formats
    A = sp.csr_array(sp.random_array((40, 30), density=0.2, rng=6, format="csr", dtype=dtype))
    F = formats.convert(A, fmt)
    x, w = rng_vector(30, dtype, 1), rng_vector(40, dtype, 2)
    tol = dict(rtol=1e-5 if dtype == np.complex64 else 1e-13, atol=1e-6 if dtype == np.complex64 else 0)
    np.testing.assert_allclose(F.matvec(x), A @ x, **tol)                     # binds the hot kernels
    np.testing.assert_allclose(F.rmatvec(w), A.T.conj() @ w, **tol)
    assert F._mv[0] == np.dtype(dtype) and F._rmv[0] == np.dtype(dtype)
    buf = np.zeros(80, dtype)
    buf[:30] = x
    with pytest.raises(ValueError, match="overlap"):
        F.matvec(buf[:30], out=buf[20:60])
    S = formats.convert(sp.csr_array(A[:30]), fmt)                              # square: out may be x itself
    np.testing.assert_allclose(S.matvec(x), A[:30] @ x, **tol)
    with pytest.raises(ValueError, match="overlap"):
        S.matvec(x, out=x)
    with pytest.raises(ValueError, match="out is read-only"):
        ro = np.zeros(40, dtype)
        ro.flags.writeable = False
        F.matvec(x, out=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        F.matvec(x, out=np.zeros(80, dtype)[::2])
    with pytest.raises(ValueError, match="out must have shape"):
        F.matvec(x, out=np.zeros(40, np.complex128 if dtype == np.complex64 else np.float32))
    with pytest.raises(ValueError, match="dimension mismatch"):
        F.matvec(np.ones(31, dtype))
    with pytest.raises(ValueError, match=r"matvec needs a 1-D x of shape \(30,\)"):
        F.matvec(np.ones((30, 1), dtype))                                       # 2-D: matmat's
    with pytest.raises(ValueError, match=r"rmatvec needs a 1-D x"):
        F.rmatvec(np.ones((40, 1), dtype).tolist())                             # nested lists too
    unaligned = np.zeros(40 * np.dtype(dtype).itemsize + 1, np.uint8)[1:].view(dtype)
    np.testing.assert_allclose(F.matvec(x, out=unaligned), A @ x, **tol)       # not carray: checked, right
    swapped = x.astype(x.dtype.newbyteorder())                                 # another dtype object
    np.testing.assert_allclose(F.matvec(swapped), A @ x, **tol)
    x32 = x.real.astype(np.float32)                                             # promoted as SciPy does
    y = F.matvec(x32)
    assert y.dtype == (A @ x32).dtype
    np.testing.assert_allclose(y, A @ x32, **tol)
    np.testing.assert_allclose(F.rmatvec(w, conj=False), A.T @ w, **tol)       # the other conj: checked
    np.testing.assert_allclose(F.rmatvec(w), A.T.conj() @ w, **tol)            # and the hot one again
    out = np.empty(40, dtype)
    assert F.matvec(x, out=out) is out
    np.testing.assert_allclose(out, A @ x, **tol)
