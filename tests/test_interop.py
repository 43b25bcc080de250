"""TunedMatrix in scipy.sparse.linalg solvers on real corpus matrices.

Each solver runs twice, on the SciPy matrix and on the tuned operator, and
must take the same number of iterations and reach the same solution (to a
tolerance: the kernels may sum in another order, which moves results by a
few ulps).  Plans: whatever ``tune`` picks (which may be the SciPy baseline),
and fixed plans built with ``build`` so the solvers run on real non-CSR
layouts: SELL with a second SELL copy for Aᴴ, BSR 2×2 (padded blocks, Aᴴ by
its scatter kernel), DIA where the library deems it applicable, and CSR with
a CSR copy for Aᴴ, so both routing paths are exercised.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse import linalg as sla

import autosparse as asp
from autosparse import formats, verify
from autosparse.plan import Layout, Plan

from conftest import CORPUS, NO_CORPUS, corpus_entries, load

pytestmark = pytest.mark.skipif(not corpus_entries(), reason=NO_CORPUS)


def matrix(name):
    entry = next((e for e in corpus_entries() if e["name"] == name), None)
    if entry is None:
        pytest.skip(f"{name} not in the corpus at {CORPUS}")
    return load(entry)


FIXED = {
    "csr+AH copy": Plan((Layout("csr"), Layout("csr", {}, "AH")), {"matvec": 0, "rmatvec": 1}),
    "sell+AH sell copy": Plan((Layout("sell", {"C": 8, "sigma": 64}), Layout("sell", {"C": 4, "sigma": 1}, "AH")),
                              {"matvec": 0, "rmatvec": 1}),
    "bsr 2x2": Plan.single("bsr", r=2, c=2),
    "dia": Plan.single("dia"),
}


def products_match_scipy(label, T, A):
    """Each of the operator's products, through the LinearOperator interface, against SciPy
    (the solvers' tolerances alone would let an error of 1e-6 through)."""
    rng = np.random.default_rng(7)
    m, n = A.shape
    kind = np.result_type(A.dtype, np.float64)
    for op, rows, cols in (("matvec", n, None), ("rmatvec", m, None), ("matmat", n, 3), ("rmatmat", m, 3)):
        shape = (rows,) if cols is None else (rows, cols)
        x = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if kind.kind == "c" else 0)
        ok, ratio = verify.check(getattr(T, op)(x), A, x, op)
        assert ok, (label, op, ratio)


def operators(A, workload, *, dia):
    """The tuned operator, then one per fixed plan; ``dia``: whether DIA applies to A
    (asserted against the library's own rule, so the DIA case cannot silently vanish)."""
    assert bool(formats.get("dia").configurations(asp.profile(A))) == dia
    T = asp.tune(A, workload, store=False, seed=1)
    products_match_scipy("tuned", T, A)
    yield "tuned", T
    for label, plan in FIXED.items():
        if label == "dia" and not dia:
            continue
        T = asp.build(A, plan)
        assert T.plan == plan, label
        assert [lay.name for lay in T._layouts] == [lay.format for lay in plan.layouts], label
        products_match_scipy(label, T, A)
        yield label, T


def counted(solver, A, *args, **kwargs):
    calls = []
    kwargs.setdefault("callback", lambda *a: calls.append(1))
    out = solver(A, *args, **kwargs)
    return out, len(calls)


@pytest.mark.parametrize("name,dia", [("gr_30_30", True), ("lshp3466", False)])
def test_cg(name, dia):
    A = matrix(name)
    b = np.ones(A.shape[0])
    (x_ref, info_ref), it_ref = counted(sla.cg, A, b, rtol=1e-10, maxiter=5000)
    assert info_ref == 0
    for label, T in operators(A, asp.Workload(matvec=2000), dia=dia):
        (x, info), it = counted(sla.cg, T, b, rtol=1e-10, maxiter=5000)
        assert info == 0, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-9 * np.abs(x_ref).max(), err_msg=label)


@pytest.mark.parametrize("name", ["cage8", "add32"])     # (nnc1374 stalls at 0.8 relative residual)
def test_gmres(name):
    A = matrix(name)
    b = np.arange(A.shape[0], dtype=float) / A.shape[0] + 1
    kw = dict(rtol=1e-9, restart=50, maxiter=200, callback_type="pr_norm")
    (x_ref, info_ref), it_ref = counted(sla.gmres, A, b, **kw)
    assert info_ref == 0 and it_ref > 5                 # converged, after real work
    for label, T in operators(A, asp.Workload(matvec=2000), dia=False):
        (x, info), it = counted(sla.gmres, T, b, **kw)
        assert info == info_ref, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(A @ x, A @ x_ref, rtol=1e-6, atol=1e-8 * np.linalg.norm(b), err_msg=label)


def test_minres_symmetric_indefinite():
    A = matrix("gr_30_30")                       # 9-point stencil, spectrum in (0, 12); shifted
    A = sp.csr_array(A - 2.0 * sp.eye_array(A.shape[0]))   # (bcspwr10 - 1.5 I never converged)
    ones = np.ones(A.shape[0])
    checker = (-1.0) ** np.arange(A.shape[0])
    assert ones @ (A @ ones) < 0 < checker @ (A @ checker)      # indefinite
    b = np.sin(np.arange(A.shape[0]))
    (x_ref, info_ref), it_ref = counted(sla.minres, A, b, rtol=1e-10, maxiter=3000)
    assert info_ref == 0 and it_ref > 5
    for label, T in operators(A, asp.Workload(matvec=3000), dia=True):
        (x, info), it = counted(sla.minres, T, b, rtol=1e-10, maxiter=3000)
        assert info == info_ref, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-8 * np.abs(x_ref).max(), err_msg=label)


def test_eigsh():
    A = matrix("bcsstk09")
    v0 = np.ones(A.shape[0])
    ref = np.sort(sla.eigsh(A, k=6, which="LM", v0=v0, tol=1e-10, return_eigenvectors=False))
    for label, T in operators(A, asp.Workload(matvec=500), dia=True):
        got = np.sort(sla.eigsh(T, k=6, which="LM", v0=v0, tol=1e-10, return_eigenvectors=False))
        np.testing.assert_allclose(got, ref, rtol=1e-8, err_msg=label)


@pytest.mark.parametrize("name", ["well1850", "lp_ship04l"])
def test_svds_rectangular(name):
    A = matrix(name)
    v0 = np.ones(min(A.shape))
    ref = np.sort(sla.svds(A, k=5, v0=v0, tol=1e-10, return_singular_vectors=False, random_state=0))
    for label, T in operators(A, asp.Workload(matvec=500, rmatvec=500), dia=False):
        got = np.sort(sla.svds(T, k=5, v0=v0, tol=1e-10, return_singular_vectors=False, random_state=0))
        np.testing.assert_allclose(got, ref, rtol=1e-8, err_msg=label)


def test_lsqr():
    A = matrix("well1850")
    b = np.cos(np.arange(A.shape[0]))
    ref = sla.lsqr(A, b, atol=1e-12, btol=1e-12, iter_lim=5000)
    assert ref[1] in (1, 2) and ref[2] < 5000               # converged (x solves, or least squares)
    for label, T in operators(A, asp.Workload(matvec=1000, rmatvec=1000), dia=False):
        got = sla.lsqr(T, b, atol=1e-12, btol=1e-12, iter_lim=5000)
        assert got[1] == ref[1], label                          # istop
        assert abs(got[2] - ref[2]) <= max(1, ref[2] // 50), (label, got[2], ref[2])
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-9 * np.abs(ref[0]).max(), err_msg=label)


def test_complex_gmres():
    A = matrix("cage8").astype(np.complex128)
    A = sp.csr_array(A + 0.3j * sp.eye_array(A.shape[0]))
    b = np.exp(1j * np.arange(A.shape[0]))
    kw = dict(rtol=1e-10, restart=40, maxiter=100, callback_type="pr_norm")
    (x_ref, info_ref), it_ref = counted(sla.gmres, A, b, **kw)
    assert info_ref == 0 and it_ref > 5
    for label, T in operators(A, asp.Workload(matvec=500), dia=False):
        (x, info), it = counted(sla.gmres, T, b, **kw)
        assert info == 0, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-9, err_msg=label)
