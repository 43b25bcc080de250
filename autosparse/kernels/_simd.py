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
        g = _Gather(context, builder, W, indices, data, table, X, out, indv, datv, tabv, Xv, outv, first)
        acc = g.accumulator()
        start = context.cast(builder, k0v, k0, types.intp)
        end = context.cast(builder, k1v, k1, types.intp)
        with cgutils.for_range_slice(builder, start, end, ir.Constant(g.intp, 1), inc=True) as (k, _):
            r = context.cast(builder, builder.load(builder.gep(g.ind, [k])), indices.dtype, types.intp)
            g.add_product(acc, g.value(k), g.x_row(r))
        g.store_row(acc, context.cast(builder, iv, i, types.intp), streaming)

    return sig, codegen


class _Gather:
    """LLVM for a vector gather's pieces at columns ``first:first+W``: the arrays' data
    pointers and row strides, a ``<W x T>`` accumulator, the broadcast value of entry k
    (``data[k]`` or ``table[data[k]]``, in out's dtype), a row of X, the exact
    ``acc + v*x`` (no contraction), and the store of an output row (non-temporal with
    ``streaming`` when the block is a multiple of 64 bytes)."""

    def __init__(self, context, builder, W, indices, data, table, X, out, indv, datv, tabv, Xv, outv, first):
        self.context, self.builder, self.W = context, builder, W
        self.data_t, self.out_t = data, out
        self.has_table = not isinstance(table, types.NoneType)
        self.vdt = table.dtype if self.has_table else data.dtype
        self.intp = context.get_value_type(types.intp)
        T = context.get_value_type(out.dtype)
        self.VT = ir.VectorType(T, W)
        self.size = context.get_abi_sizeof(T)
        byte_ptr = ir.IntType(8).as_pointer()
        self.ind = context.make_array(indices)(context, builder, indv).data
        self.dat = context.make_array(data)(context, builder, datv).data
        self.tab = context.make_array(table)(context, builder, tabv).data if self.has_table else None
        X_a = context.make_array(X)(context, builder, Xv)
        out_a = context.make_array(out)(context, builder, outv)
        self.x_stride = cgutils.unpack_tuple(builder, X_a.strides, 2)[0]
        self.out_stride = cgutils.unpack_tuple(builder, out_a.strides, 2)[0]
        self.col_bytes = builder.mul(first, ir.Constant(self.intp, self.size))
        self.x_base = builder.gep(builder.bitcast(X_a.data, byte_ptr), [self.col_bytes])
        self.out_base = builder.bitcast(out_a.data, byte_ptr)
        self.lanes = ir.Constant(ir.VectorType(ir.IntType(32), W), None)

    def accumulator(self):
        acc = cgutils.alloca_once(self.builder, self.VT)      # entry block: promoted to a register
        self.builder.store(ir.Constant(self.VT, None), acc)
        return acc

    def value(self, k):
        b = self.builder
        v = b.load(b.gep(self.dat, [k]))
        if self.has_table:
            v = b.load(b.gep(self.tab, [self.context.cast(b, v, self.data_t.dtype, types.intp)]))
        v = self.context.cast(b, v, self.vdt, self.out_t.dtype)
        vb = b.insert_element(ir.Constant(self.VT, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(vb, ir.Constant(self.VT, ir.Undefined), self.lanes)

    def x_row(self, r):
        b = self.builder
        row = b.bitcast(b.gep(self.x_base, [b.mul(r, self.x_stride)]), self.VT.as_pointer())
        return b.load(row, align=self.size)

    def add_product(self, acc, v, x):
        b = self.builder
        b.store(b.fadd(b.load(acc), b.fmul(v, x)), acc)

    def store_row(self, acc, i, streaming):
        b = self.builder
        dest = b.gep(self.out_base, [b.add(b.mul(i, self.out_stride), self.col_bytes)])
        a = b.load(acc)
        if streaming and (self.W * self.size) % 64 == 0:
            st = b.store(a, b.bitcast(dest, self.VT.as_pointer()), align=64)
            st.set_metadata("nontemporal", b.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        else:
            b.store(a, b.bitcast(dest, self.VT.as_pointer()), align=self.size)
        return a


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


# Software prefetch.  A core walking a compressed array's entries in order (one value, one
# index and one x gather per entry) got ~6 GB/s here from the hardware prefetchers, below
# MKL's 7.5.  Asking for each line of data and indices PREFETCH_BYTES ahead, once per line,
# took a single-thread fem3x3 A x from 41 to 30 ms (MKL: 34 ms).  Arrays that stay in the
# caches gain nothing, and the prefetches' own instructions cost 10-18% on the corpus's
# 0.1-5 MB matrices: kernels prefetch only from PREFETCH_MIN_BYTES of values and indices.
PREFETCH_BYTES = 8192
PREFETCH_MIN_BYTES = 16 << 20
CACHE_LINE = 64


def prefetch_ahead(values, indices) -> int:
    """How many entries ahead a streaming kernel over ``values`` and ``indices`` prefetches;
    0 (none) while the two fit in the caches."""
    if values.nbytes + indices.nbytes < PREFETCH_MIN_BYTES:
        return 0
    return PREFETCH_BYTES // values.itemsize


@intrinsic
def prefetch(typingctx, arr, i):
    """A hint to load the line holding ``arr[i]``: no fault and no effect on results, for
    any ``i`` (the address is computed without ``inbounds``; past the end it is ignored)."""
    if not isinstance(arr, types.Array) or not isinstance(i, types.Integer):
        return None
    sig = types.void(arr, i)

    def codegen(context, builder, signature, args):
        av, iv = args
        data = context.make_array(arr)(context, builder, av).data
        ptr = builder.gep(data, [context.cast(builder, iv, i, types.intp)])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        # read, temporal locality 3 (all cache levels), data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
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


@intrinsic
def bsr_rows(typingctx, R, C, k0, k1, indices, data, table, X, out, i0, m, n, stream):
    """``out[i0 + rr, :] = Σ_k Σ_cc v[k, rr, cc] X[indices[k]*C + cc, :]`` for the rows
    ``i0 + rr < m`` of one block row of R×C blocks ``k0 <= k < k1``; returns how many of
    the results are NaN (the padding's zeros times an infinite x).

    Columns go in blocks of 16, 8, 4, 2, 1, each with one ``<W x T>`` accumulator per row;
    one vector load of an X row serves the R rows of a block.  Each row is summed block
    by block, within a block column by column (exact IEEE, no contraction): CSR's column
    order, SciPy's sum bit for bit.  Block columns past ``n`` (only a block row's last
    block can stick out: they are sorted) are skipped.  ``v`` is ``data[k*R*C + rr*C + cc]``
    or its ``table`` entry; R and C must be literals.
    """
    if not (isinstance(R, types.IntegerLiteral) and isinstance(C, types.IntegerLiteral)):
        return None
    r, c = R.literal_value, C.literal_value
    streaming = not isinstance(stream, types.NoneType)
    sig = types.intp(R, C, k0, k1, indices, data, table, X, out, i0, m, n, stream)

    def codegen(context, builder, signature, args):
        _, _, k0v, k1v, indv, datv, tabv, Xv, outv, i0v, mv, nv, _ = args
        intp = context.get_value_type(types.intp)
        one = ir.Constant(intp, 1)
        start = context.cast(builder, k0v, k0, types.intp)
        end = context.cast(builder, k1v, k1, types.intp)
        n_i = context.cast(builder, nv, n, types.intp)
        i0_i = context.cast(builder, i0v, i0, types.intp)
        m_i = context.cast(builder, mv, m, types.intp)
        C_i, RC_i = ir.Constant(intp, c), ir.Constant(intp, r * c)
        nk = cgutils.unpack_tuple(builder, context.make_array(X)(context, builder, Xv).shape, 2)[1]
        ind = context.make_array(indices)(context, builder, indv).data

        def block_col(k):
            return builder.mul(context.cast(builder, builder.load(builder.gep(ind, [k])), indices.dtype,
                                            types.intp), C_i)

        # every block but a last one sticking out past n runs without the column guards
        nonempty = builder.icmp_signed(">", end, start)
        last = builder.select(nonempty, builder.sub(end, one), start)
        sticks = builder.and_(nonempty, builder.icmp_signed(">", builder.add(block_col(last), C_i), n_i))
        fast_end = builder.select(sticks, last, end)
        nan = cgutils.alloca_once_value(builder, ir.Constant(intp, 0))

        def columns(W, first):
            g = _Gather(context, builder, W, indices, data, table, X, out, indv, datv, tabv, Xv, outv, first)
            accs = [g.accumulator() for _ in range(r)]

            def blocks(lo, hi, guarded):
                with cgutils.for_range_slice(builder, lo, hi, one, inc=True) as (k, _):
                    j0 = block_col(k)
                    kb = builder.mul(k, RC_i)
                    for cc in range(c):
                        col = builder.add(j0, ir.Constant(intp, cc))
                        guard = builder.if_then(builder.icmp_signed("<", col, n_i), likely=True) if guarded else None
                        if guard is not None:
                            guard.__enter__()
                        x = g.x_row(col)
                        for rr in range(r):
                            g.add_product(accs[rr], g.value(builder.add(kb, ir.Constant(intp, rr * c + cc))), x)
                        if guard is not None:
                            guard.__exit__(None, None, None)

            blocks(start, fast_end, False)
            blocks(fast_end, end, True)
            for rr in range(r):
                row = builder.add(i0_i, ir.Constant(intp, rr))
                with builder.if_then(builder.icmp_signed("<", row, m_i), likely=True):
                    a = g.store_row(accs[rr], row, streaming)
                    bad = builder.ctpop(builder.bitcast(builder.fcmp_unordered("uno", a, a), ir.IntType(W)))
                    builder.store(builder.add(builder.load(nan), builder.zext(bad, intp)), nan)

        sixteen = ir.Constant(intp, 16)
        with cgutils.for_range(builder, builder.sdiv(nk, sixteen)) as loop:
            columns(16, builder.mul(loop.index, sixteen))
        first = builder.mul(builder.sdiv(nk, sixteen), sixteen)
        for W in (8, 4, 2, 1):
            after = builder.add(first, ir.Constant(intp, W))
            fits = builder.icmp_signed("<=", after, nk)
            with builder.if_then(fits):
                columns(W, first)
            first = builder.select(fits, after, first)
        return builder.load(nan)

    return sig, codegen
