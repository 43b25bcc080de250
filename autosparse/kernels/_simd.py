"""Explicit SIMD for multi-vector gathers: one LLVM vector accumulator per row.

A multi-vector gather ``out[i, :] = Σ_k v_k X[r_k, :]`` wants the k columns of
a row accumulated in vector registers across the row's entries.  numba cannot
express that: its SLP vectoriser is off (it miscompiled, numba PR #8852), so a
constant-width column loop is unrolled into scalar code, and a runtime-width
loop is vectorised with the accumulator in memory plus alias checks per entry.
Both ran at 0.4-0.9x MKL for k=16.  ``_block`` emits the loop in LLVM IR with a
``<W x T>`` accumulator instead: one broadcast, one vector load, one multiply
and one add per entry, in entry order from 0 (exact IEEE, no contraction), so
each column is SciPy's sum bit for bit.

``gather_rows2`` is the row loop every compressed gather uses: column blocks
of 16, 8, 4, 2, 1 through ``_block`` for real values and C-ordered operands,
the scalar loop otherwise (complex values, other layouts).

Streaming stores.  With ``stream`` an array (a marker; None otherwise: the
choice is made at compile time from its type) the output blocks of 64 bytes
or more are written with non-temporal stores, which skip the read-for-
ownership of each output line: an output far larger than the cache is then
written once instead of read and written (MKL does the same; measured +20-30%
on Poisson 100³ at k=16).  They need 64-byte aligned rows, which the caller
guarantees (``formats._base.streamable``), and an ``sfence`` (``fence``)
before the results are read.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._runtime import FASTMATH
from ._values import cvalue

# Non-temporal stores and the sfence they need are written for x86-64 here.
STREAMING_STORES = platform.machine().lower() in ("x86_64", "amd64")


@intrinsic
def _block(typingctx, k0, k1, indices, data, table, X, out, i, c0, stop, stream, width):
    """``out[i, c0:c0+W] = Σ_{k0<=k<k1} v_k X[indices[k], c0:c0+W]``, summed in k order from 0,
    when ``c0 + W <= stop``; returns the next column (``c0 + W``, or ``c0`` if nothing was done).

    ``v_k`` is ``data[k]``, or ``table[data[k]]`` when ``table`` is an array;
    it is converted to out's dtype before the product (SciPy's promotion).
    X and out must be C-ordered and share out's real dtype.  ``stream`` (an
    array, or None) writes blocks of a multiple of 64 bytes non-temporally.
    """
    if not isinstance(width, types.IntegerLiteral):
        return None
    W = width.literal_value
    has_table = not isinstance(table, types.NoneType)
    vdt = table.dtype if has_table else data.dtype
    streaming = not isinstance(stream, types.NoneType)
    sig = types.intp(k0, k1, indices, data, table, X, out, i, c0, stop, stream, width)

    def codegen(context, builder, signature, args):
        k0v, k1v, indv, datv, tabv, Xv, outv, iv, c0v, stopv, _, _ = args
        intp = context.get_value_type(types.intp)
        first = context.cast(builder, c0v, c0, types.intp)
        after = builder.add(first, ir.Constant(intp, W))
        fits = builder.icmp_signed("<=", after, context.cast(builder, stopv, stop, types.intp))
        with builder.if_then(fits, likely=True):
            _emit(context, builder, W, k0v, k1v, indv, datv, tabv, Xv, outv, iv, first)
        return builder.select(fits, after, first)

    def _emit(context, builder, W, k0v, k1v, indv, datv, tabv, Xv, outv, iv, first):
        intp = context.get_value_type(types.intp)
        T = context.get_value_type(out.dtype)
        VT = ir.VectorType(T, W)
        size = context.get_abi_sizeof(T)
        byte_ptr = ir.IntType(8).as_pointer()
        ind_a = context.make_array(indices)(context, builder, indv)
        dat_a = context.make_array(data)(context, builder, datv)
        X_a = context.make_array(X)(context, builder, Xv)
        out_a = context.make_array(out)(context, builder, outv)
        tab_ptr = context.make_array(table)(context, builder, tabv).data if has_table else None
        x_stride = cgutils.unpack_tuple(builder, X_a.strides, 2)[0]
        out_stride = cgutils.unpack_tuple(builder, out_a.strides, 2)[0]
        col_bytes = builder.mul(first, ir.Constant(intp, size))
        x_base = builder.gep(builder.bitcast(X_a.data, byte_ptr), [col_bytes])
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), W), None)

        acc = cgutils.alloca_once(builder, VT)           # entry block: promoted to a register
        builder.store(ir.Constant(VT, None), acc)
        start = context.cast(builder, k0v, k0, types.intp)
        end = context.cast(builder, k1v, k1, types.intp)
        with cgutils.for_range_slice(builder, start, end, ir.Constant(intp, 1), inc=True) as (k, _):
            r = context.cast(builder, builder.load(builder.gep(ind_a.data, [k])), indices.dtype, types.intp)
            v = builder.load(builder.gep(dat_a.data, [k]))
            if has_table:
                code = context.cast(builder, v, data.dtype, types.intp)
                v = builder.load(builder.gep(tab_ptr, [code]))
            v = context.cast(builder, v, vdt, out.dtype)
            vb = builder.insert_element(ir.Constant(VT, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
            vb = builder.shuffle_vector(vb, ir.Constant(VT, ir.Undefined), lanes)
            row = builder.bitcast(builder.gep(x_base, [builder.mul(r, x_stride)]), VT.as_pointer())
            builder.store(builder.fadd(builder.load(acc), builder.fmul(vb, builder.load(row, align=size))), acc)
        row_i = builder.mul(context.cast(builder, iv, i, types.intp), out_stride)
        dest = builder.gep(builder.bitcast(out_a.data, byte_ptr), [builder.add(row_i, col_bytes)])
        if streaming and (W * size) % 64 == 0:
            st = builder.store(builder.load(acc), builder.bitcast(dest, VT.as_pointer()), align=64)
            st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        else:
            builder.store(builder.load(acc), builder.bitcast(dest, VT.as_pointer()), align=size)

    return sig, codegen


@intrinsic
def fence(typingctx, stream):
    """``sfence`` after streaming stores (``stream`` an array); nothing when it is None."""
    sig = types.void(stream)

    def codegen(context, builder, signature, args):
        if not isinstance(stream, types.NoneType):
            sfence = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                    "llvm.x86.sse.sfence")
            builder.call(sfence, [])
        return context.get_dummy_value()

    return sig, codegen


def gather_rows2(j0, j1, k, ip1, indices, data, table, stream, conj, X, out):  # pragma: no cover
    """Rows j0..j1 of a multi-vector gather, entries from k on (see module doc)."""


def _vectorisable(data, table, X, out) -> bool:
    vdt = data.dtype if isinstance(table, types.NoneType) else table.dtype
    return (isinstance(vdt, (types.Float, types.Integer)) and isinstance(out.dtype, types.Float)
            and X.dtype == out.dtype and X.layout == "C" and out.layout == "C")


@overload(gather_rows2, jit_options={"fastmath": FASTMATH})
def _gather_rows2_impl(j0, j1, k, ip1, indices, data, table, stream, conj, X, out):
    if _vectorisable(data, table, X, out):
        def simd(j0, j1, k, ip1, indices, data, table, stream, conj, X, out):
            nk = X.shape[1]
            for j in range(j0, j1):
                e = ip1[j]
                c = 0
                while c + 16 <= nk:
                    c = _block(k, e, indices, data, table, X, out, j, c, nk, stream, 16)
                c = _block(k, e, indices, data, table, X, out, j, c, nk, stream, 8)
                c = _block(k, e, indices, data, table, X, out, j, c, nk, stream, 4)
                c = _block(k, e, indices, data, table, X, out, j, c, nk, stream, 2)
                _block(k, e, indices, data, table, X, out, j, c, nk, stream, 1)
                k = e
            fence(stream)
        return simd

    def scalar(j0, j1, k, ip1, indices, data, table, stream, conj, X, out):
        nk = X.shape[1]
        acc = np.empty(nk, out.dtype)
        for j in range(j0, j1):
            e = ip1[j]
            for c in range(nk):
                acc[c] = 0
            while k < e:
                v = cvalue(data, table, k, conj)
                r = indices[k]
                for c in range(nk):
                    acc[c] += v * X[r, c]
                k += np.uint64(1)
            for c in range(nk):
                out[j, c] = acc[c]
    return scalar
