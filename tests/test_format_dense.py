"""Dense-specific behaviour: serial and parallel loops, bitwise equality with
SciPy, non-finite values, padding, sizes and configurations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from autosparse import verify
from autosparse.formats import dense as DN
from autosparse.profile import profile

from conftest import PARALLEL_TEST_WORK as PARALLEL_MIN_WORK, rng_vector

pytestmark = pytest.mark.usefixtures("parallel_from_test_work")

OPS = ("matvec", "rmatvec", "matmat", "rmatmat")


def operand(A, op, dtype, seed=0, k=3):
    m, n = A.shape
    length = n if op in ("matvec", "matmat") else m
    return rng_vector(length, dtype, seed, None if op.endswith("vec") else k)


def check(F, A, x_dtype=None, seed=0, conj=True, ops=OPS):
    for op in ops:
        x = operand(A, op, x_dtype or F.dtype, seed)
        y = getattr(F, op)(x, conj=conj) if op.startswith("r") else getattr(F, op)(x)
        ok, ratio = verify.check(y, A, x, op, conj=conj)
        assert ok, f"{op}: error ratio {ratio}"
        assert y.dtype == np.result_type(A.dtype, x.dtype)


def mostly_full(m, n, dtype=np.float64, fill=0.7, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal((m, n))
    a[rng.random((m, n)) > fill] = 0
    return sp.csr_array(a.astype(dtype))


@pytest.mark.parametrize("dtype,shape", [(np.float32, (37, 29)), (np.complex128, (300, 200))],
                         ids=["float32-serial", "complex128-parallel"])
def test_products(dtype, shape):
    A = mostly_full(*shape, dtype)
    F = DN.from_csr(A)
    assert F.data.flags.c_contiguous and F.data.shape == shape
    assert (F.work("matvec") >= PARALLEL_MIN_WORK) == (shape[0] > 100)
    check(F, A)
    check(F, A, conj=False)
    for op in OPS:                          # finite operands: SciPy's results bit for bit
        x = operand(A, op, dtype, 1)
        M = A.T.conj() if op.startswith("r") else A
        np.testing.assert_array_equal(getattr(F, op)(x), M @ x, err_msg=op)


def test_mixed_dtypes():
    A = mostly_full(120, 90, np.float32)
    F = DN.from_csr(A)
    check(F, A, x_dtype=np.float64, ops=("matvec", "rmatvec"))


def test_nonfinite_entries_match_scipy():
    # complex BLAS scales by alpha = 1+0j, so 0*inf would make NaN where SciPy has inf: not here
    a = np.zeros((4, 5), np.complex128)
    a[0, 1] = complex(np.inf, 1.0)
    a[1, 2] = complex(-np.inf, -1.3)
    a[2, 0] = complex(np.nan, 0.0)
    a[3, 4] = 2.0 - 1.0j
    A = sp.csr_array(a)
    F = DN.from_csr(A)
    check(F, A)
    r = np.array([[np.nan, 1.0], [2.0, 3.0]])                  # NaN * 0 is NaN, as in SciPy
    R = DN.from_csr(sp.csr_array(r))
    np.testing.assert_array_equal(R.matvec(np.array([0.0, 1.0])), sp.csr_array(r) @ np.array([0.0, 1.0]))


@pytest.mark.parametrize("dtype,shape", [(np.float32, (50, 40)), (np.complex128, (300, 200))],
                         ids=["float32-serial", "complex128-parallel"])
def test_inf_in_x_does_not_leak_through_padding(dtype, shape):
    A = mostly_full(*shape, dtype, fill=0.5)
    F = DN.from_csr(A)
    for op in OPS:
        x = operand(A, op, dtype, 3)
        x.reshape(x.shape[0], -1)[[1, 7], 0] = [np.inf, np.nan]
        ok, ratio = verify.check(getattr(F, op)(x), A, x, op)
        assert ok, (op, ratio)


def test_explicit_zeros_round_trip():
    A = mostly_full(30, 30)
    A.data[::4] = 0.0
    A.data[1] = -0.0
    F = DN.from_csr(A)
    C = F.to_csr()
    assert C.nnz == A.nnz
    np.testing.assert_array_equal(C.indices, A.indices)
    np.testing.assert_array_equal(C.data, A.data)
    np.testing.assert_array_equal(np.signbit(C.data), np.signbit(A.data))
    assert F.params == {}


def test_empty_shapes():
    for shape in ((0, 4), (4, 0), (0, 0), (3, 5)):
        F = DN.from_csr(sp.csr_array(shape))
        m, n = shape
        np.testing.assert_array_equal(F.matvec(np.ones(n)), np.zeros(m))
        np.testing.assert_array_equal(F.rmatvec(np.ones(m)), np.zeros(n))
        np.testing.assert_array_equal(F.matmat(np.ones((n, 2))), np.zeros((m, 2)))
        np.testing.assert_array_equal(F.rmatmat(np.ones((m, 2))), np.zeros((n, 2)))


def test_no_index_dtype_parameter():
    with pytest.raises(TypeError, match="unexpected keyword argument 'index_dtype'"):
        DN.from_csr(sp.eye_array(3, format="csr"), index_dtype="int32")


def test_estimate_nbytes_and_configurations():
    A = mostly_full(400, 300, fill=0.8)
    A.data[::9] = 0.0
    p = profile(A)
    assert DN.estimate_nbytes(p) == DN.from_csr(A).nbytes
    assert DN.configurations(p) == [{}]
    assert DN.space(None, p) == {}
    sparse = profile(sp.random_array((2000, 2000), density=0.01, rng=0, format="csr"))
    assert DN.configurations(sparse) == []
    # 4x CSR bytes: 8 bytes per slot against 12 per entry -> fill >= 1/6 passes
    assert DN.configurations(profile(mostly_full(300, 300, fill=0.25))) == [{}]
    assert DN.configurations(profile(mostly_full(300, 300, fill=0.1))) == []


def test_slot_cap():
    class P:                                 # a profile stand-in: only the fields the rule reads
        shape = (2 ** 13, 2 ** 13 + 1)
        nnz = 2 ** 26
        dtype = "float64"
        n_explicit_zeros = 0
        n_distinct_values = 10
        distinct_capped = False
    assert DN.configurations(P()) == []
    P.shape = (2 ** 13, 2 ** 13)
    assert DN.configurations(P()) == [{}]
