"""CSR kernels: pure functions on (indptr, indices, data[, table]) arrays.

Index arrays arrive as unsigned views.  ``table`` is None for full values or
the value table when ``data`` holds codes (see ``_values``).  Every kernel
writes into ``out``; parallel kernels take nnz-balanced row ``bounds``.
``conj`` selects Aᴴ over Aᵀ for the transposed products.
"""

import numpy as np
from numba import prange

from ._runtime import jit, pjit
from ._values import cvalue, value


@jit
def matvec(indptr, indices, data, table, x, out):
    for i in range(indptr.size - 1):
        s = out.dtype.type(0)
        for k in range(indptr[i], indptr[i + 1]):
            s += value(data, table, k) * x[indices[k]]
        out[i] = s


@pjit
def matvec_par(bounds, indptr, indices, data, table, x, out):
    for t in prange(bounds.size - 1):
        for i in range(bounds[t], bounds[t + 1]):
            s = out.dtype.type(0)
            for k in range(indptr[i], indptr[i + 1]):
                s += value(data, table, k) * x[indices[k]]
            out[i] = s


@jit
def matmat(indptr, indices, data, table, X, out):
    nk = X.shape[1]
    for i in range(indptr.size - 1):
        for j in range(nk):
            out[i, j] = 0
        for k in range(indptr[i], indptr[i + 1]):
            v = value(data, table, k)
            c = indices[k]
            for j in range(nk):
                out[i, j] += v * X[c, j]


@pjit
def matmat_par(bounds, indptr, indices, data, table, X, out):
    nk = X.shape[1]
    for t in prange(bounds.size - 1):
        for i in range(bounds[t], bounds[t + 1]):
            for j in range(nk):
                out[i, j] = 0
            for k in range(indptr[i], indptr[i + 1]):
                v = value(data, table, k)
                c = indices[k]
                for j in range(nk):
                    out[i, j] += v * X[c, j]


@jit
def rmatvec(indptr, indices, data, table, conj, x, out):
    """out = Aᴴx (conj) or Aᵀx: scatter over the rows."""
    out[:] = 0
    for i in range(indptr.size - 1):
        xi = x[i]
        for k in range(indptr[i], indptr[i + 1]):
            out[indices[k]] += cvalue(data, table, k, conj) * xi


@pjit
def rmatvec_par(bounds, indptr, indices, data, table, conj, x, out):
    """Scatter per chunk into private buffers, then a parallel reduction."""
    nparts = bounds.size - 1
    n = out.size
    work = np.zeros((nparts, n), dtype=out.dtype)
    for t in prange(nparts):
        w = work[t]
        for i in range(bounds[t], bounds[t + 1]):
            xi = x[i]
            for k in range(indptr[i], indptr[i + 1]):
                w[indices[k]] += cvalue(data, table, k, conj) * xi
    for j in prange(n):
        s = work[0, j]
        for t in range(1, nparts):
            s += work[t, j]
        out[j] = s


@jit
def rmatmat(indptr, indices, data, table, conj, X, out):
    nk = X.shape[1]
    out[:, :] = 0
    for i in range(indptr.size - 1):
        for k in range(indptr[i], indptr[i + 1]):
            v = cvalue(data, table, k, conj)
            c = indices[k]
            for j in range(nk):
                out[c, j] += v * X[i, j]


@pjit
def rmatmat_par(bounds, indptr, indices, data, table, conj, X, out):
    nparts = bounds.size - 1
    nk = X.shape[1]
    n = out.shape[0]
    work = np.zeros((nparts, n, nk), dtype=out.dtype)
    for t in prange(nparts):
        w = work[t]
        for i in range(bounds[t], bounds[t + 1]):
            for k in range(indptr[i], indptr[i + 1]):
                v = cvalue(data, table, k, conj)
                c = indices[k]
                for j in range(nk):
                    w[c, j] += v * X[i, j]
    for r in prange(n):
        for j in range(nk):
            s = work[0, r, j]
            for t in range(1, nparts):
                s += work[t, r, j]
            out[r, j] = s
