"""TunedMatrix in scipy.sparse.linalg solvers on real corpus matrices.

Each solver runs twice, on the SciPy matrix and on the tuned operator, and
must take the same number of iterations and reach the same solution (to a
tolerance: the kernels may sum in another order, which moves results by a
few ulps).  Plans: whatever ``tune`` picks, and fixed plans with a second
layout for Aᴴ, so both routing paths are exercised.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse import linalg as sla

import autosparse as asp
from autosparse.plan import Layout, Plan

from conftest import CORPUS, NO_CORPUS, corpus_entries, load

import importlib
HAVE_PROFILE = hasattr(importlib.import_module("autosparse.profile"), "profile")
pytestmark = pytest.mark.skipif(not corpus_entries(), reason=NO_CORPUS)


def matrix(name):
    entry = next((e for e in corpus_entries() if e["name"] == name), None)
    if entry is None:
        pytest.skip(f"{name} not in the corpus at {CORPUS}")
    return load(entry)


def operators(A, workload):
    if HAVE_PROFILE:
        yield "tuned", asp.tune(A, workload, store=False, seed=1)
    yield "csr+AH copy", asp.build(A, Plan((Layout("csr"), Layout("csr", {}, "AH")), {"matvec": 0, "rmatvec": 1}))


def counted(solver, A, *args, **kwargs):
    calls = []
    kwargs.setdefault("callback", lambda *a: calls.append(1))
    out = solver(A, *args, **kwargs)
    return out, len(calls)


@pytest.mark.parametrize("name", ["gr_30_30", "lshp3466"])
def test_cg(name):
    A = matrix(name)
    b = np.ones(A.shape[0])
    (x_ref, info_ref), it_ref = counted(sla.cg, A, b, rtol=1e-10, maxiter=5000)
    assert info_ref == 0
    for label, T in operators(A, asp.Workload(matvec=2000)):
        (x, info), it = counted(sla.cg, T, b, rtol=1e-10, maxiter=5000)
        assert info == 0, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-9 * np.abs(x_ref).max(), err_msg=label)


@pytest.mark.parametrize("name", ["cage8", "nnc1374"])
def test_gmres(name):
    A = matrix(name)
    b = np.arange(A.shape[0], dtype=float) / A.shape[0] + 1
    kw = dict(rtol=1e-9, restart=50, maxiter=200, callback_type="pr_norm")
    (x_ref, info_ref), it_ref = counted(sla.gmres, A, b, **kw)
    for label, T in operators(A, asp.Workload(matvec=2000)):
        (x, info), it = counted(sla.gmres, T, b, **kw)
        assert info == info_ref, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(A @ x, A @ x_ref, rtol=1e-6, atol=1e-8 * np.linalg.norm(b), err_msg=label)


def test_minres_symmetric_indefinite():
    A = matrix("bcspwr10")                       # symmetric graph; shifted to be indefinite
    A = sp.csr_array(A - 1.5 * sp.eye_array(A.shape[0]))
    b = np.sin(np.arange(A.shape[0]))
    (x_ref, info_ref), it_ref = counted(sla.minres, A, b, rtol=1e-10, maxiter=3000)
    for label, T in operators(A, asp.Workload(matvec=3000)):
        (x, info), it = counted(sla.minres, T, b, rtol=1e-10, maxiter=3000)
        assert info == info_ref, label
        assert abs(it - it_ref) <= max(1, it_ref // 50), (label, it, it_ref)
        np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-8 * np.abs(x_ref).max(), err_msg=label)


def test_eigsh():
    A = matrix("bcsstk09")
    v0 = np.ones(A.shape[0])
    ref = np.sort(sla.eigsh(A, k=6, which="LM", v0=v0, tol=1e-10, return_eigenvectors=False))
    for label, T in operators(A, asp.Workload(matvec=500)):
        got = np.sort(sla.eigsh(T, k=6, which="LM", v0=v0, tol=1e-10, return_eigenvectors=False))
        np.testing.assert_allclose(got, ref, rtol=1e-8, err_msg=label)


@pytest.mark.parametrize("name", ["well1850", "lp_ship04l"])
def test_svds_rectangular(name):
    A = matrix(name)
    v0 = np.ones(min(A.shape))
    ref = np.sort(sla.svds(A, k=5, v0=v0, tol=1e-10, return_singular_vectors=False, random_state=0))
    for label, T in operators(A, asp.Workload(matvec=500, rmatvec=500)):
        got = np.sort(sla.svds(T, k=5, v0=v0, tol=1e-10, return_singular_vectors=False, random_state=0))
        np.testing.assert_allclose(got, ref, rtol=1e-8, err_msg=label)


def test_lsqr():
    A = matrix("well1850")
    b = np.cos(np.arange(A.shape[0]))
    ref = sla.lsqr(A, b, atol=1e-12, btol=1e-12, iter_lim=5000)
    for label, T in operators(A, asp.Workload(matvec=1000, rmatvec=1000)):
        got = sla.lsqr(T, b, atol=1e-12, btol=1e-12, iter_lim=5000)
        assert got[1] == ref[1], label                          # istop
        assert abs(got[2] - ref[2]) <= max(1, ref[2] // 50), (label, got[2], ref[2])
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-9 * np.abs(ref[0]).max(), err_msg=label)


def test_complex_gmres():
    A = matrix("cage8").astype(np.complex128)
    A = sp.csr_array(A + 0.3j * sp.eye_array(A.shape[0]))
    b = np.exp(1j * np.arange(A.shape[0]))
    x_ref, _ = sla.gmres(A, b, rtol=1e-10, restart=40, maxiter=100)
    for label, T in operators(A, asp.Workload(matvec=500)):
        x, info = sla.gmres(T, b, rtol=1e-10, restart=40, maxiter=100)
        assert info == 0, label
        np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-9, err_msg=label)
