"""ELL-family kernels: a column-major ELL part plus an optional remainder.

Layout.  The ELL part stores ``W`` slots for each of the ``m`` rows,
column-major: slot ``j`` of row ``i`` sits at ``j * m + i`` in ``cols`` and
``data``.  Padding slots hold value 0 and a valid column, so the kernels have
no branch.  Rows are processed in blocks of ``B`` (a compile-time literal):
for each slot ``j`` the ``B`` consecutive rows of a block are contiguous, so
the lane loop runs across rows in SIMD registers (``lane_sums``: vector
loads of values and indices, gathers from ``x``; checked with
``inspect_asm``).

Remainder (HYB).  Entries of rows longer than ``W`` live in a compressed
remainder: ``rrows`` (ascending ids of the rows that overflow), ``rptr``
(their pointers) and ``rcols``/``rdata``.  Each row block adds its rows'
remainder in the same pass (one fused kernel), and since ``rrows`` is sorted,
parallel chunks of blocks own disjoint rows and remainder ranges
(``qstart[t]`` = first remainder row of chunk ``t``).  ELL is the case of an
empty remainder, so ELL and HYB share these kernels (and their compiled code).

Exact arithmetic (no fastmath, ``_runtime.FASTMATH``).  Each row is summed
in column order - ELL slots, then its remainder entries, into the same
accumulator - so ``matvec``/``matmat`` equal SciPy's CSR results bit for bit
(padding adds exact zeros at the end of a row).  The serial transposed
products scatter row by row (rows ascending, each in column order), SciPy's
order too; parallel ones reduce private buffers, which reorders the sums.

Every kernel fully writes ``out`` and returns a count that is non-zero
whenever padding may have produced a NaN - the padded-format contract of
``formats/_base.py``, which then redoes the product exactly if ``x`` has a
non-finite entry.  ``matvec`` and ``rmatvec`` count NaN results (one
compare per result, fused with the store or the reduction); ``matmat`` and
``rmatmat`` count zero slots that met a non-finite row of X instead - one
compare per slot rather than k per result row (padding is the only zero
slot besides the input's explicit zeros, which only cause a harmless redo).
"""

from __future__ import annotations

import numpy as np
import llvmlite.ir as ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np import arrayobj

from ._runtime import FASTMATH, jit, pjit
from ._values import cvalue, value

BLOCK = 8           # rows per ELL block: one 8-wide gather per slot (float64) measured best


@intrinsic
def lanes(typingctx, n, dtype):
    """A zeroed 1-D array of ``n`` (an integer literal) elements on the stack.

    Stack memory that does not escape is promoted to registers by LLVM, so a
    fixed-size accumulator costs nothing - unlike ``np.zeros`` (a heap
    allocation per call, opaque to the optimiser).
    """
    if not isinstance(n, types.IntegerLiteral):
        return None
    if isinstance(dtype, types.DType):
        dt = dtype.dtype
    elif isinstance(dtype, types.NumberClass):
        dt = dtype.instance_type
    else:
        return None
    size = n.literal_value
    arrty = types.Array(dt, 1, "C")

    def codegen(context, builder, sig, args):
        lty = context.get_value_type(dt)
        itemsize = context.get_abi_sizeof(lty)
        intp = lambda v: context.get_constant(types.intp, v)  # noqa: E731
        ptr = cgutils.alloca_once(builder, lty, size=intp(max(size, 1)))
        cgutils.memset(builder, ptr, intp(max(size, 1) * itemsize), 0)
        ary = context.make_array(arrty)(context, builder)
        arrayobj.populate_array(ary, data=ptr, shape=cgutils.pack_array(builder, [intp(size)]),
                                strides=cgutils.pack_array(builder, [intp(itemsize)]),
                                itemsize=intp(itemsize), meminfo=None)
        return ary._getvalue()

    return arrty(n, dtype), codegen


@jit
def nonfinite_row(X, i):
    """1 if row ``i`` of ``X`` holds a NaN or infinity, else 0."""
    for t in range(X.shape[1]):
        d = X[i, t] - X[i, t]
        if d != d:
            return 1
    return 0


# -- SIMD lanes ---------------------------------------------------------------
#
# LLVM only vectorises a lane loop by itself when it is long (C >= 32): shorter
# ones are fully unrolled first into scalar code, and exact arithmetic forbids
# the reassociation other schemes need.  So the lane sums are written as LLVM
# vector IR: per slot, one vector load of values (or of codes, then a gather
# from the value table), one of column indices, a gather from x, a multiply
# and an add - each lane summing its row in slot order, exactly as a scalar
# loop would (no FMA contraction).  Complex values take the scalar loop.

def _gather(builder, base_ptr, idx, elem, n, itemsize):
    """``base_ptr[idx]`` for an ``<n x i64>`` index vector (llvm.masked.gather, all lanes)."""
    i32 = ir.IntType(32)
    ptrs = builder.gep(base_ptr, [idx], source_etype=elem)        # a vector GEP: base + idx * itemsize
    ptrs.type = ir.VectorType(base_ptr.type, n)                   # (llvmlite types GEPs as scalar)
    vty = ir.VectorType(elem, n)
    mask_ty = ir.VectorType(ir.IntType(1), n)
    fnty = ir.FunctionType(vty, [ptrs.type, i32, mask_ty, vty])
    suffix = "f64" if isinstance(elem, ir.DoubleType) else "f32"
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.gather.v{n}{suffix}.v{n}p0")
    return builder.call(fn, [ptrs, i32(itemsize), ir.Constant(mask_ty, [1] * n), ir.Constant(vty, None)])


def _real(t):
    return isinstance(t, types.Float)


@intrinsic
def lane_sums(typingctx, n, data, table, cols, x, start, stride, width):
    """Tuple of the ``n`` lane sums ``sum_j value[o + r] * x[cols[o + r]]``, ``o = start + j*stride``.

    Real values and ``x`` only; lanes sum in slot order from 0.
    """
    if not isinstance(n, types.IntegerLiteral):
        return None
    value_t = table.dtype if not isinstance(table, types.NoneType) else data.dtype
    if not (_real(x.dtype) and _real(value_t)):
        return None
    C = n.literal_value
    T = x.dtype
    rettype = types.UniTuple(T, C)

    def codegen(context, builder, sig, args):
        _, data_v, table_v, cols_v, x_v, start_v, stride_v, width_v = args
        _, data_t, table_t, cols_t, x_t, start_t, stride_t, width_t = sig.args
        i64 = ir.IntType(64)
        lT, lV = context.get_value_type(T), context.get_value_type(value_t)
        ldata, lcol = context.get_value_type(data_t.dtype), context.get_value_type(cols_t.dtype)
        darr = context.make_array(data_t)(context, builder, data_v)
        carr = context.make_array(cols_t)(context, builder, cols_v)
        xarr = context.make_array(x_t)(context, builder, x_v)
        start = context.cast(builder, start_v, start_t, types.uint64)
        stride = context.cast(builder, stride_v, stride_t, types.uint64)
        width = context.cast(builder, width_v, width_t, types.uint64)
        vT = ir.VectorType(lT, C)
        pre = builder.basic_block
        loop = builder.append_basic_block("lanes.loop")
        body = builder.append_basic_block("lanes.body")
        done = builder.append_basic_block("lanes.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        j = builder.phi(i64)
        acc = builder.phi(vT)
        j.add_incoming(i64(0), pre)
        acc.add_incoming(ir.Constant(vT, None), pre)
        builder.cbranch(builder.icmp_unsigned("<", j, width), body, done)
        builder.position_at_end(body)
        off = builder.add(start, builder.mul(j, stride))
        dptr = builder.bitcast(builder.gep(darr.data, [off]), ir.PointerType(ir.VectorType(ldata, C)))
        vals = builder.load(dptr, align=context.get_abi_sizeof(ldata))
        if not isinstance(table_t, types.NoneType):
            tarr = context.make_array(table_t)(context, builder, table_v)
            vals = _gather(builder, tarr.data, builder.zext(vals, ir.VectorType(i64, C)), lV, C,
                           context.get_abi_sizeof(lV))
        if lV != lT:
            vals = builder.fpext(vals, vT)
        cptr = builder.bitcast(builder.gep(carr.data, [off]), ir.PointerType(ir.VectorType(lcol, C)))
        idx = builder.load(cptr, align=context.get_abi_sizeof(lcol))
        if lcol.width < 64:
            idx = builder.zext(idx, ir.VectorType(i64, C))
        xs = _gather(builder, xarr.data, idx, lT, C, context.get_abi_sizeof(lT))
        nxt = builder.fadd(acc, builder.fmul(vals, xs))
        j.add_incoming(builder.add(j, i64(1)), body)
        acc.add_incoming(nxt, body)
        builder.branch(loop)
        builder.position_at_end(done)
        lanes_out = [builder.extract_element(acc, ir.IntType(32)(r)) for r in range(C)]
        return context.make_tuple(builder, rettype, lanes_out)

    return rettype(n, data, table, cols, x, start, stride, width), codegen


# Longer lane vectors are left to LLVM's loop vectoriser, which handles them
# (measured: 32 float64 lanes as 8 x 4-wide gathers beat 4 x 8-wide ones;
# 8 lanes as one 8-wide gather beat the scalar code LLVM makes of them).
SIMD_MAX_BYTES = 128


def lane_accumulate(n, acc, data, table, cols, x, start, stride, width):  # pragma: no cover - jitted only
    """``acc[r] += sum over slots`` for ``r < n`` (``acc`` is zero on entry)."""


@overload(lane_accumulate, jit_options={"fastmath": FASTMATH})
def _lane_accumulate_impl(n, acc, data, table, cols, x, start, stride, width):
    if not isinstance(n, types.IntegerLiteral):
        return None                     # numba retries with the literal lane count
    value_t = table.dtype if not isinstance(table, types.NoneType) else data.dtype
    width_bytes = n.literal_value * x.dtype.bitwidth // 8 if _real(x.dtype) else 0
    if _real(x.dtype) and _real(value_t) and acc.dtype == x.dtype and width_bytes <= SIMD_MAX_BYTES:
        def simd(n, acc, data, table, cols, x, start, stride, width):
            sums = lane_sums(n, data, table, cols, x, start, stride, width)
            for r in range(n):
                acc[r] = sums[r]
        return simd

    def scalar(n, acc, data, table, cols, x, start, stride, width):
        un = np.uint64(n)
        o = np.uint64(start)
        for j in range(width):
            for r in range(un):
                acc[r] += value(data, table, o + r) * x[cols[o + r]]
            o += np.uint64(stride)
    return scalar


# -- matvec -------------------------------------------------------------------

@jit
def _mv_blocks(B, b0, b1, q, W, cols, data, rrows, rptr, rcols, rdata, x, out):
    m = np.uint64(out.size)
    uB = np.uint64(B)
    nrr = np.uint64(rrows.size)
    q = np.uint64(q)
    nan = 0
    for b in range(b0, b1):
        base = np.uint64(b) * uB
        acc = lanes(B, out.dtype)
        if base + uB <= m:
            nr = uB
            lane_accumulate(B, acc, data, None, cols, x, base, m, W)
        else:
            nr = m - base
            for r in range(nr):
                s = out.dtype.type(0)
                o = base + r
                for j in range(W):
                    s += data[o] * x[cols[o]]
                    o += m
                acc[r] = s
        hi = base + nr
        while q < nrr and rrows[q] < hi:
            r = rrows[q] - base
            s = acc[r]
            for e in range(rptr[q], rptr[q + 1]):
                s += rdata[e] * x[rcols[e]]
            acc[r] = s
            q += np.uint64(1)
        if nr == uB:                   # constant trip count: stores straight from registers
            for r in range(uB):
                v = acc[r]
                out[base + r] = v
                nan += v != v
        else:
            for r in range(nr):
                v = acc[r]
                out[base + r] = v
                nan += v != v
    return nan


@pjit
def matvec_par(B, bounds, qstart, W, cols, data, rrows, rptr, rcols, rdata, x, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _mv_blocks(B, bounds[t], bounds[t + 1], qstart[t], W, cols, data, rrows, rptr, rcols, rdata, x, out)
    return nan


# -- matmat -------------------------------------------------------------------

@jit
def _mm_blocks(B, b0, b1, q, W, cols, data, rrows, rptr, rcols, rdata, X, out):
    """Row by row (each out row stays in L1 while its slots add up, as in CSR).

    Returns the number of zero slots that met a non-finite row of ``X`` - the
    only way padding can create a NaN; cheaper than scanning the outputs.
    """
    m = np.uint64(out.shape[0])
    nk = X.shape[1]
    nrr = np.uint64(rrows.size)
    q = np.uint64(q)
    nan = 0
    for i in range(np.uint64(b0) * np.uint64(B), min(np.uint64(b1) * np.uint64(B), m)):
        for t in range(nk):
            out[i, t] = 0
        o = i
        for j in range(W):
            v = data[o]
            c = cols[o]
            if v == 0:                          # padding (or an explicit zero) times inf/NaN?
                nan += nonfinite_row(X, c)
            for t in range(nk):
                out[i, t] += v * X[c, t]
            o += m
        if q < nrr and rrows[q] == i:
            for e in range(rptr[q], rptr[q + 1]):
                v = rdata[e]
                c = rcols[e]
                for t in range(nk):
                    out[i, t] += v * X[c, t]
            q += np.uint64(1)
    return nan


@pjit
def matmat_par(B, bounds, qstart, W, cols, data, rrows, rptr, rcols, rdata, X, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _mm_blocks(B, bounds[t], bounds[t + 1], qstart[t], W, cols, data, rrows, rptr, rcols, rdata, X, out)
    return nan


# -- rmatvec: scatter row by row into w -------------------------------------------

@jit
def _rmv_blocks(B, b0, b1, q, W, cols, data, rrows, rptr, rcols, rdata, whole, conj, x, w):
    """Scatter the blocks' rows into ``w``; ``whole``: w is the output (zero it, count NaN results)."""
    if whole:
        w[:] = 0
    m = np.uint64(x.size)
    nrr = np.uint64(rrows.size)
    q = np.uint64(q)
    for i in range(np.uint64(b0) * np.uint64(B), min(np.uint64(b1) * np.uint64(B), m)):
        xi = x[i]
        o = i
        for j in range(W):
            w[cols[o]] += cvalue(data, None, o, conj) * xi
            o += m
        if q < nrr and rrows[q] == i:
            for e in range(rptr[q], rptr[q + 1]):
                w[rcols[e]] += cvalue(rdata, None, e, conj) * xi
            q += np.uint64(1)
    nan = 0
    if whole:
        for i in range(w.size):
            nan += w[i] != w[i]
    return nan


@pjit
def rmatvec_par(B, bounds, qstart, W, cols, data, rrows, rptr, rcols, rdata, conj, x, out):
    nparts = bounds.size - 1
    n = out.size
    work = np.zeros((nparts, n), dtype=out.dtype)
    for t in prange(nparts):
        _rmv_blocks(B, bounds[t], bounds[t + 1], qstart[t], W, cols, data, rrows, rptr, rcols, rdata,
                    False, conj, x, work[t])
    nan = 0
    for j in prange(n):
        s = work[0, j]
        for t in range(1, nparts):
            s += work[t, j]
        out[j] = s
        nan += s != s
    return nan


# -- rmatmat ------------------------------------------------------------------

@jit
def _rmm_blocks(B, b0, b1, q, W, cols, data, rrows, rptr, rcols, rdata, whole, conj, X, w):
    if whole:
        w[:, :] = 0
    m = np.uint64(X.shape[0])
    nk = X.shape[1]
    nrr = np.uint64(rrows.size)
    q = np.uint64(q)
    nan = 0
    for i in range(np.uint64(b0) * np.uint64(B), min(np.uint64(b1) * np.uint64(B), m)):
        o = i
        for j in range(W):
            v = cvalue(data, None, o, conj)
            c = cols[o]
            if v == 0:
                nan += nonfinite_row(X, i)
            for t in range(nk):
                w[c, t] += v * X[i, t]
            o += m
        if q < nrr and rrows[q] == i:
            for e in range(rptr[q], rptr[q + 1]):
                v = cvalue(rdata, None, e, conj)
                c = rcols[e]
                for t in range(nk):
                    w[c, t] += v * X[i, t]
            q += np.uint64(1)
    return nan


@pjit
def rmatmat_par(B, bounds, qstart, W, cols, data, rrows, rptr, rcols, rdata, conj, X, out):
    nparts = bounds.size - 1
    n, nk = out.shape
    work = np.zeros((nparts, n, nk), dtype=out.dtype)
    nan = 0
    for t in prange(nparts):
        nan += _rmm_blocks(B, bounds[t], bounds[t + 1], qstart[t], W, cols, data, rrows, rptr, rcols, rdata,
                           False, conj, X, work[t])
    for r in prange(n):
        for j in range(nk):
            s = work[0, r, j]
            for t in range(1, nparts):
                s += work[t, r, j]
            out[r, j] = s
    return nan


# Serial kernels are the block functions themselves, called over all blocks
# (one compiled function less per signature than a wrapper).
matvec, matmat, rmatvec, rmatmat = _mv_blocks, _mm_blocks, _rmv_blocks, _rmm_blocks
KERNELS = {"matvec": (matvec, matvec_par), "matmat": (matmat, matmat_par),
           "rmatvec": (rmatvec, rmatvec_par), "rmatmat": (rmatmat, rmatmat_par)}
TRANSPOSED = ("rmatvec", "rmatmat")      # serial calls take the ``whole`` flag before ``conj``
