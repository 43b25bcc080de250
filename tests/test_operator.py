"""TunedMatrix: LinearOperator semantics, routing to copies, views, out=, threads."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import autosparse as asp
from autosparse import verify
from autosparse.plan import Layout, Plan

from conftest import rng_vector

PLANS = {
    "csr": Plan.single("csr"),
    "baseline": Plan.baseline(),
    "csr+AH": Plan((Layout("csr"), Layout("csr", {}, "AH")), {"matvec": 0, "rmatvec": 1}),
    "AH only": Plan((Layout("csr", {}, "AH"),), {"matvec": 0, "rmatvec": 0}),
}


def matrix(dtype, m=41, n=33, seed=0):
    A = sp.random_array((m, n), density=0.2, rng=seed, format="csr")
    if np.dtype(dtype).kind == "c":
        A = A + 1j * sp.random_array((m, n), density=0.2, rng=seed + 1, format="csr")
    return sp.csr_array(A.astype(dtype))


@pytest.mark.parametrize("plan", PLANS, ids=list(PLANS))
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_products_and_views(plan, dtype):
    A = matrix(dtype)
    T = asp.build(A, PLANS[plan])
    assert isinstance(T, LinearOperator)
    assert T.shape == A.shape and T.dtype == A.dtype
    m, n = A.shape
    views = {"A": (T, A), "T": (T.T, A.T), "H": (T.H, A.conj().T), "conj": (T.H.T, A.conj()),
             "TT": (T.T.T, A), "HH": (T.H.H, A)}
    for name, (op, ref) in views.items():
        ref = sp.csr_array(ref)
        rm, rn = ref.shape
        assert op.shape == ref.shape, name
        x = rng_vector(rn, dtype, 1)
        y = rng_vector(rm, dtype, 2)
        X = rng_vector(rn, dtype, 3, 4)
        Y = rng_vector(rm, dtype, 4, 4)
        for got, r, v, kind in [(op.matvec(x), ref, x, "matvec"), (op @ x, ref, x, "matvec"),
                                (op.rmatvec(y), ref, y, "rmatvec"), (op.matmat(X), ref, X, "matmat"),
                                (op @ X, ref, X, "matmat"), (op.rmatmat(Y), ref, Y, "rmatmat"),
                                (op.dot(x), ref, x, "matvec")]:
            ok, ratio = verify.check(got, ref, v, kind)
            assert ok, (plan, name, kind, ratio)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_linear_operator_conventions():
    A = matrix(np.float64)
    T = asp.build(A, Plan.single("csr"))
    m, n = A.shape
    x = rng_vector(n, np.float64)
    col = T.matvec(x.reshape(n, 1))
    assert col.shape == (m, 1)
    np.testing.assert_allclose(col[:, 0], A @ x)
    mat = T.matvec(np.asmatrix(x).T)
    assert isinstance(mat, np.matrix) and mat.shape == (m, 1)
    np.testing.assert_allclose(T @ x.tolist(), A @ x)          # lists work like SciPy's
    np.testing.assert_allclose((2 * T) @ x, 2 * (A @ x))      # SciPy's operator algebra still applies
    np.testing.assert_allclose((T + aslinearoperator(A)) @ x, 2 * (A @ x))
    np.testing.assert_allclose((T * T.H) @ rng_vector(m, np.float64), A @ (A.T @ rng_vector(m, np.float64)))
    with pytest.raises(ValueError, match="dimension mismatch"):
        T.matvec(np.ones(n + 1))
    with pytest.raises(ValueError, match="dimension mismatch"):
        T.matvec(np.ones((n, 2)).reshape(2 * n, 1))
    with pytest.raises(TypeError, match="sparse"):
        T @ sp.csr_array(np.ones((n, 1)))
    with pytest.raises(ValueError):
        T @ 3.0


def test_out_arguments():
    A = matrix(np.float64)
    m, n = A.shape
    T = asp.build(A, PLANS["csr+AH"])
    x, y = rng_vector(n, np.float64), rng_vector(m, np.float64)
    out = np.empty(m)
    assert T.matvec(x, out=out) is out
    np.testing.assert_allclose(out, A @ x)
    out2 = np.empty(n)
    assert T.rmatvec(y, out=out2) is out2
    np.testing.assert_allclose(out2, A.T @ y)
    col = np.empty((m, 1))
    assert T.matvec(x.reshape(n, 1), out=col) is col
    np.testing.assert_allclose(col[:, 0], A @ x)
    X = rng_vector(n, np.float64, 5, 3)
    outF = np.asfortranarray(np.empty((m, 3)))
    assert T.matmat(X, out=outF) is outF
    np.testing.assert_allclose(outF, A @ X)
    with pytest.raises(ValueError, match="out must have shape"):
        T.matvec(x, out=np.empty(m + 2))


def test_to_scipy_and_nbytes():
    for dtype in (np.float32, np.complex64):
        A = matrix(dtype)
        for name, plan in PLANS.items():
            T = asp.build(A, plan)
            B = T.to_scipy()
            assert isinstance(B, sp.csr_array) and B.dtype == A.dtype
            np.testing.assert_array_equal(B.toarray(), A.toarray())
            np.testing.assert_array_equal(T.H.to_scipy().toarray(), A.conj().T.toarray())
            assert T.nbytes > 0
    T2 = asp.build(A, PLANS["csr+AH"])
    assert T2.nbytes >= 2 * asp.build(A, PLANS["csr"]).nbytes * 0.9


def test_build_accepts_json_and_rejects_junk():
    A = matrix(np.float64)
    T = asp.build(A, Plan.single("csr", index_dtype="int16").to_json())
    assert T.plan.index_dtype == "int16"
    with pytest.raises(TypeError, match="plan must be"):
        asp.build(A, 42)
    with pytest.raises(ValueError, match="unknown format"):
        asp.build(A, {"version": 1, "layouts": [{"format": "zzz"}], "serves": {}})
    with pytest.raises(TypeError, match="scipy.sparse"):
        asp.build(np.eye(3), Plan.single("csr"))


def test_concurrent_calls_from_threads_do_not_crash():
    """Parallel kernels launched from several Python threads at once (in a subprocess:
    numba's workqueue layer would abort the whole process)."""
    code = textwrap.dedent("""
        import threading, numpy as np, scipy.sparse as sp
        import autosparse as asp
        from autosparse.plan import Plan, Layout
        from autosparse.kernels._runtime import threading_layer
        A = sp.random_array((20000, 20000), density=5e-4, rng=0, format="csr")
        T = asp.build(A, Plan((Layout("csr"), Layout("csr", {}, "AH")), {"matvec": 0, "rmatvec": 1}))
        x = np.random.default_rng(1).standard_normal(20000)
        ref, rref = A @ x, A.T @ x
        errors = []
        def work():
            out = np.empty(20000)
            for _ in range(200):
                T.matvec(x, out=out)
                if not np.allclose(out, ref): errors.append("matvec")
                if not np.allclose(T.rmatvec(x), rref): errors.append("rmatvec")
        ts = [threading.Thread(target=work) for _ in range(6)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print("LAYER", threading_layer(), "ERRORS", len(errors))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ERRORS 0" in res.stdout
    assert "LAYER workqueue" not in res.stdout or "serialised" in res.stderr


def test_kernels_load_from_the_disk_cache_without_numbas_full_refresh():
    """A kernel on disk loads with numba's runtime alone (``_runtime._light_loads``): numba's
    implementation registries (its linalg among them) stay unimported, and loaded kernels,
    serial and threaded, give SciPy's results, before and after numba compiles something
    in the same process.  With AUTOSPARSE_NUMBA_FULL_LOAD=1 numba's own load runs."""
    code = textwrap.dedent("""
        import sys, numba, numpy as np, scipy.sparse as sp
        from autosparse import formats
        from autosparse.kernels._runtime import use_parallel
        cases = []
        for n, dens in ((300, 0.02), (3000, 0.03)):                  # serial, then threaded
            A = sp.random_array((n, n), density=dens, rng=1, format="csr")
            cases.append((A, np.random.default_rng(2).standard_normal(n), formats.convert(A, "csr")))
        def errors():
            return [(use_parallel(A.nnz), float(np.abs(F.matvec(x) - A @ x).max()),
                     float(np.abs(F.rmatvec(x) - A.T @ x).max())) for A, x, F in cases]
        out = [errors(), "numba.np.linalg" in sys.modules]
        add = numba.njit(lambda a: a + 1)                              # compiled now, not cached
        out += [add(1), errors()]
        print("RESULT", out)
    """)
    env = {k: v for k, v in os.environ.items() if k != "AUTOSPARSE_NUMBA_FULL_LOAD"}

    def run(**extra):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                             env=dict(env, **extra))
        assert res.returncode == 0, res.stderr[-2000:]
        return eval(res.stdout.split("RESULT", 1)[1])                  # noqa: S307 - our own literal

    run()                                                              # on disk from here on
    for full in (False, True):
        before, registries, two, after = run(**({"AUTOSPARSE_NUMBA_FULL_LOAD": "1"} if full else {}))
        assert registries is full                                     # refreshed only by numba's own load
        assert two == 2
        for errs in (before, after):
            assert [threaded for threaded, _, _ in errs] == [False, True]
            assert all(e < 1e-12 for _, e1, e2 in errs for e in (e1, e2)), errs
