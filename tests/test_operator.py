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
    with pytest.raises(ValueError, match="Scalar operands are not allowed, use '\\*' instead"):
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


# ---------------------------------------------------------------------------
# the package's public face: lazy names, profile, float16 input

PUBLIC = {"tune": ("tuner", "tune"), "build": ("tuner", "build"), "lookup": ("tuner", "lookup"),
          "Workload": ("workload", "Workload"), "Plan": ("plan", "Plan"),
          "TunedMatrix": ("operator", "TunedMatrix"), "PlanStore": ("store", "PlanStore")}


def test_public_names_resolve_to_their_modules(monkeypatch):
    """The lazy names: listed by dir() before first use, resolved by the package's
    __getattr__ to their modules' objects, then kept as plain attributes."""
    import importlib
    assert set(asp.__all__) == set(PUBLIC) | {"profile", "__version__"}
    for name in PUBLIC:                      # as if never used (restored after the test)
        monkeypatch.delitem(vars(asp), name, raising=False)
    assert set(asp.__all__) <= set(dir(asp))
    for name, (mod, attr) in PUBLIC.items():
        assert name not in vars(asp)
        assert getattr(asp, name) is getattr(importlib.import_module(f"autosparse.{mod}"), attr), name
        assert vars(asp)[name] is getattr(asp, name)
    assert asp.Plan is Plan and asp.Plan.single("csr") == Plan.single("csr")
    assert set(asp.__all__) <= set(dir(asp))


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'autosparse' has no attribute 'no_such_name'"):
        asp.no_such_name
    assert not hasattr(asp, "Tune") and getattr(asp, "plan_store", None) is None
    with pytest.raises(ImportError, match="no_such_name"):
        from autosparse import no_such_name  # noqa: F401
    assert "no_such_name" not in dir(asp)


def test_plan_store_and_lookup_from_the_top_level(tmp_path):
    """PlanStore, profile, lookup and tune from the package, together: a stored plan is found
    by lookup and applied by tune without a search."""
    A = matrix(np.float64, 300, 200)
    work = asp.Workload(matvec=100_000)
    plan = asp.Plan.single("sell", C=8, sigma=1)
    path = tmp_path / "plans.sqlite"
    store = asp.PlanStore(path)
    assert isinstance(store, asp.PlanStore)
    assert asp.lookup(A, work, store=store) is None
    assert store.save(asp.profile(A), work, "measure", plan)
    assert asp.lookup(A, work, store=store) == plan
    assert asp.lookup(A, work, store=path) == plan                 # a path works as well
    assert asp.lookup(A, work, store=asp.PlanStore(tmp_path / "other.sqlite")) is None
    T = asp.tune(A, work, store=store)
    assert isinstance(T, asp.TunedMatrix) and T.plan == plan and T.report.source == "store"
    assert verify.check(T @ np.ones(200), A, np.ones(200), "matvec")[0]


def test_top_level_profile_is_the_profiler():
    from autosparse.profile import Profile, profile
    A = matrix(np.float64, 300, 200)
    p = asp.profile(A)
    assert isinstance(p, Profile) and p == profile(A)
    assert p.shape == A.shape and p.nnz == A.nnz
    q = asp.profile(A, sample_fraction=1.0, seed=5)                 # keywords pass through
    assert q == profile(A, sample_fraction=1.0, seed=5) and (q.sample_fraction, q.seed) == (1.0, 5)
    with pytest.raises(TypeError, match="scipy.sparse"):
        asp.profile(A.toarray())
    with pytest.raises(TypeError, match="no_such_option"):
        asp.profile(A, no_such_option=1)


def test_fresh_import_is_lazy_and_profile_survives_its_submodule():
    """``import autosparse`` loads no heavy module; ``autosparse.profile`` is the function
    until the submodule of the same name is imported (which rebinds the package attribute),
    and callable with the same answer after."""
    code = textwrap.dedent("""
        import sys, types
        import autosparse as asp
        heavy = [m for m in ("numba", "optuna", "autosparse.tuner", "autosparse.profile",
                             "autosparse.store", "autosparse.formats") if m in sys.modules]
        print("HEAVY", heavy)
        print("FUNCTION", isinstance(asp.profile, types.FunctionType))
        missing = sorted(set(asp.__all__) - set(dir(asp)))
        import scipy.sparse as sp
        A = sp.random_array((300, 200), density=0.05, rng=0, format="csr")
        p1 = asp.profile(A, seed=3)
        rebound = not isinstance(asp.profile, types.FunctionType)
        p2 = asp.profile(A, seed=3)
        from autosparse.profile import Profile, profile
        from autosparse import profile as top
        print("RESULT", [missing, rebound, type(p1) is Profile, p1 == p2 == profile(A, seed=3) == top(A, seed=3),
                         "optuna" in sys.modules])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY []" in res.stdout and "FUNCTION True" in res.stdout, res.stdout
    missing, rebound, is_profile, equal, optuna_loaded = eval(res.stdout.split("RESULT", 1)[1])  # noqa: S307
    assert missing == [] and rebound and is_profile and equal and not optuna_loaded


F16_PLANS = {"csr": Plan.single("csr"), "sell": Plan.single("sell", C=8, sigma=1),
             "csr+AH": PLANS["csr+AH"], "baseline": Plan.baseline()}


def float16_matrix(m=41, n=33, seed=0):
    """SciPy's constructors refuse float16, but its arrays hold it (data set afterwards)."""
    A = matrix(np.float64, m, n, seed)
    A.data = (A.data * 8 - 4).astype(np.float16)
    assert A.dtype == np.float16
    return A


def check_float16_products(T, A16, label, exact=True):
    """Products of a float16 matrix: computed as float32 (float64 with a float64 operand),
    against SciPy on the float32 (float64) matrix."""
    A32, A64 = A16.astype(np.float32), A16.astype(np.float64)
    m, n = A16.shape
    assert T.dtype == np.float32 and T.shape == A16.shape, label
    for op, length, k in (("matvec", n, None), ("rmatvec", m, None), ("matmat", n, 3), ("rmatmat", m, 3)):
        for xdt, ref, rdt in ((np.float16, A32, np.float32), (np.float32, A32, np.float32),
                              (np.float64, A64, np.float64)):
            x = rng_vector(length, np.float64, 5, k).astype(xdt)
            y = getattr(T, op)(x)
            assert y.dtype == rdt, (label, op, xdt)
            # the reference: SciPy's product in float32 (x widened to float32 first)
            ok, ratio = verify.check(y, ref, x.astype(rdt), op)
            assert ok, (label, op, xdt, ratio)
            if exact and xdt is np.float32 and op == "matvec":      # rows summed in SciPy's order
                np.testing.assert_array_equal(y, ref @ x)


@pytest.mark.parametrize("plan", F16_PLANS, ids=list(F16_PLANS))
def test_float16_matrix_is_built_and_computed_in_float32(plan):
    A = float16_matrix()
    T = asp.build(A, F16_PLANS[plan])
    assert T.plan == F16_PLANS[plan]
    check_float16_products(T, A, plan)
    assert T.to_scipy().dtype == np.float32
    assert A.dtype == np.float16                              # the user's matrix untouched


def test_float16_matrix_through_tune():
    A = float16_matrix(300, 200)
    T = asp.tune(A, "matvec=1", store=False)                 # the one-call baseline
    check_float16_products(T, A, "tune, one call")
    T = asp.tune(A, asp.Workload(matvec=100_000, rmatvec=100_000), effort="estimate", store=False)
    assert not T.plan.is_baseline                             # a converted layout, in float32
    check_float16_products(T, A, f"tune, estimate: {T.plan.describe()}", exact=False)
