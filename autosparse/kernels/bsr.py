"""BSR kernels: block rows of r×c dense blocks.

Arrays: ``ptr`` (block-row pointers), ``idx`` (block column indices), both
unsigned views; ``data`` the values, flat, block k at ``data[k*r*c:(k+1)*r*c]``
row-major; ``table`` None (or a value table, see ``_values``).  ``m, n`` are
the matrix's (unpadded) dimensions: the last block row / column may stick out
and is handled with guarded loads and stores.

Every kernel takes the block shape ``R, C`` first.  When the caller resolves
the entry point with ``R, C`` as literals (``entry(..., literals=(0, 1))``)
the block loops are generated per shape with the block written out as
scalars: x values and row sums live in registers, no loop over r or c is left
(see ``_gen_*``).  With plain integer ``R, C`` the same kernels compile once
for all shapes, with runtime loops (``_generic_*``): slower, one compile.

Exact IEEE arithmetic (``_runtime.FASTMATH`` is empty): every output is
summed in CSR column order (block by block, within a block column by
column), and padding adds exact zeros, so the serial products equal SciPy's
bit for bit (up to the sign of a zero result); the r row sums of a block row
are independent chains, which is where the speed comes from.

Padding: stored zeros are padding, so the kernels return the number of NaN
results (int64); the format redoes the product exactly when x is not finite.

Transposed products scatter into the output.  The parallel variants give each
chunk of block rows a private buffer covering only the columns its blocks
touch (``lo[t]:hi[t]``, from ``chunk_columns``), then add the buffers up.
"""

import numpy as np
from numba import prange, types
from numba.extending import overload

from ._runtime import FASTMATH, jit, pjit
from ._simd import _vectorisable, bsr_rows, fence
from ._values import cvalue, value

_OPTS = {"fastmath": FASTMATH, "nogil": True}
_U = {f"U{i}": np.uint64(i) for i in range(65)}


def _literal(t):
    return getattr(t, "literal_value", None) if isinstance(t, types.Literal) else None


def _compile(src, name):
    ns = {"np": np, "value": value, "cvalue": cvalue, **_U}
    exec(compile(src, f"<autosparse.kernels.bsr {name}>", "exec"), ns)  # noqa: S102 - generated kernel source
    return ns["impl"]


# ---------------------------------------------------------------------------
# Generated (literal r, c) block-row kernels.  Each processes block rows
# [b0, b1) and is inlined into the serial and parallel entry points.
# ---------------------------------------------------------------------------

def _header(r, c):
    return [
        f"    RU = U{r}",
        f"    CU = U{c}",
        f"    RCU = U{r * c}",
        "    mu = np.uint64(m)",
        "    nu = np.uint64(n)",
        f"    mbf = m // {r}",
        f"    nbf = np.uint64(n // {c})",
        "    zero = out.dtype.type(0)",
    ]


def _block_loops(fast, guarded, full_rows_only=False):
    """Loops over the blocks of block row bi: the unguarded body for all blocks
    but a last one that sticks out of the matrix (block columns are sorted, so
    only the last can), which gets the guarded body."""
    L = ["        k0 = ptr[bi]",
         "        k1 = ptr[bi + 1]",
         "        ke = k1",
         "        if k1 > k0 and np.uint64(idx[k1 - U1]) >= nbf:",
         "            ke = k1 - U1"]
    if full_rows_only:
        L += ["        if bi >= mbf:", "            ke = k0"]
    L += ["        for k in range(k0, ke):"] + ["            " + line for line in fast]
    L += ["        for k in range(ke, k1):"] + ["            " + line for line in guarded]
    return L


def _gen_mv(r, c):
    L = ["def impl(R, C, b0, b1, m, n, ptr, idx, data, table, x, out):"] + _header(r, c)
    L += ["    nan = 0",
          "    for bi in range(b0, b1):",
          "        i0 = np.uint64(bi) * RU"]
    L += [f"        s{rr} = zero" for rr in range(r)]
    head = ["j0 = np.uint64(idx[k]) * CU", "kb = k * RCU"]
    fma = [f"s{rr} = s{rr} + " + " + ".join(f"value(data, table, kb + U{rr * c + cc}) * x{cc}" for cc in range(c))
           for rr in range(r)]
    fast = head + [f"x{cc} = x[j0 + U{cc}]" for cc in range(c)] + fma
    guarded = head + [f"x{cc} = x[j0 + U{cc}] if j0 + U{cc} < nu else zero" for cc in range(c)] + fma
    L += _block_loops(fast, guarded)
    L += ["        if bi < mbf:"]
    for rr in range(r):
        L += [f"            out[i0 + U{rr}] = s{rr}", f"            nan += s{rr} != s{rr}"]
    L += ["        else:"]
    for rr in range(r):
        L += [f"            if i0 + U{rr} < mu:",
              f"                out[i0 + U{rr}] = s{rr}",
              f"                nan += s{rr} != s{rr}"]
    L += ["    return nan"]
    return "\n".join(L)


def _gen_rmv(r, c):
    """Scatter of block rows [b0, b1) into out[j - lo] (out pre-zeroed)."""
    L = ["def impl(R, C, b0, b1, m, n, ptr, idx, data, table, conj, x, out, lo):"] + _header(r, c)
    L += ["    lou = np.uint64(lo)",
          "    for bi in range(b0, b1):",
          "        i0 = np.uint64(bi) * RU",
          "        if bi < mbf:"]
    L += [f"            x{rr} = x[i0 + U{rr}]" for rr in range(r)]
    L += ["        else:"]
    L += [f"            x{rr} = x[i0 + U{rr}] if i0 + U{rr} < mu else zero" for rr in range(r)]
    head = ["jg = np.uint64(idx[k]) * CU", "j0 = jg - lou", "kb = k * RCU"]
    terms = [" + ".join(f"cvalue(data, table, kb + U{rr * c + cc}, conj) * x{rr}" for rr in range(r))
             for cc in range(c)]
    fast = head + [f"out[j0 + U{cc}] = out[j0 + U{cc}] + {terms[cc]}" for cc in range(c)]
    guarded = head[:]
    for cc in range(c):
        guarded += [f"if jg + U{cc} < nu:", f"    out[j0 + U{cc}] = out[j0 + U{cc}] + {terms[cc]}"]
    L += _block_loops(fast, guarded)
    L += ["    return 0"]
    return "\n".join(L)


def _gen_mm(r, c):
    L = ["def impl(R, C, b0, b1, m, n, ptr, idx, data, table, stream, X, out):"] + _header(r, c)
    L += ["    nk = X.shape[1]",
          "    nan = 0",
          "    for bi in range(b0, b1):",
          "        i0 = np.uint64(bi) * RU"]
    L += [f"        vr{rr} = i0 + U{rr} < mu" for rr in range(r)]
    for rr in range(r):
        L += [f"        if vr{rr}:", f"            out[i0 + U{rr}, :] = zero"]
    head = ["j0 = np.uint64(idx[k]) * CU", "kb = k * RCU"]
    head += [f"v{rr}_{cc} = value(data, table, kb + U{rr * c + cc})" for rr in range(r) for cc in range(c)]
    fast = head + ["for j in range(nk):"]
    fast += [f"    x{cc} = X[j0 + U{cc}, j]" for cc in range(c)]
    fast += [f"    out[i0 + U{rr}, j] = out[i0 + U{rr}, j] + " + " + ".join(f"v{rr}_{cc} * x{cc}" for cc in range(c))
             for rr in range(r)]
    guarded = head + [f"vc{cc} = j0 + U{cc} < nu" for cc in range(c)] + ["for j in range(nk):"]
    guarded += [f"    x{cc} = X[j0 + U{cc}, j] if vc{cc} else zero" for cc in range(c)]
    for rr in range(r):
        guarded += [f"    if vr{rr}:",
                    f"        out[i0 + U{rr}, j] = out[i0 + U{rr}, j] + "
                    + " + ".join(f"v{rr}_{cc} * x{cc}" for cc in range(c))]
    L += _block_loops(fast, guarded, full_rows_only=True)
    for rr in range(r):
        L += [f"        if vr{rr}:",
              "            for j in range(nk):",
              f"                y = out[i0 + U{rr}, j]",
              "                nan += y != y"]
    L += ["    return nan"]
    return "\n".join(L)


def _gen_rmm(r, c):
    L = ["def impl(R, C, b0, b1, m, n, ptr, idx, data, table, conj, X, out, lo):"] + _header(r, c)
    L += ["    nk = X.shape[1]",
          "    lou = np.uint64(lo)",
          "    for bi in range(b0, b1):",
          "        i0 = np.uint64(bi) * RU"]
    L += [f"        vr{rr} = i0 + U{rr} < mu" for rr in range(r)]
    head = ["jg = np.uint64(idx[k]) * CU", "j0 = jg - lou", "kb = k * RCU"]
    head += [f"v{rr}_{cc} = cvalue(data, table, kb + U{rr * c + cc}, conj)" for rr in range(r) for cc in range(c)]
    fast = head + ["for j in range(nk):"]
    fast += [f"    x{rr} = X[i0 + U{rr}, j]" for rr in range(r)]
    fast += [f"    out[j0 + U{cc}, j] = out[j0 + U{cc}, j] + " + " + ".join(f"v{rr}_{cc} * x{rr}" for rr in range(r))
             for cc in range(c)]
    guarded = head + [f"vc{cc} = jg + U{cc} < nu" for cc in range(c)] + ["for j in range(nk):"]
    guarded += [f"    x{rr} = X[i0 + U{rr}, j] if vr{rr} else zero" for rr in range(r)]
    for cc in range(c):
        guarded += [f"    if vc{cc}:",
                    f"        out[j0 + U{cc}, j] = out[j0 + U{cc}, j] + "
                    + " + ".join(f"v{rr}_{cc} * x{rr}" for rr in range(r))]
    L += _block_loops(fast, guarded, full_rows_only=True)
    L += ["    return 0"]
    return "\n".join(L)


_GENERATORS = {"mv": _gen_mv, "rmv": _gen_rmv, "mm": _gen_mm, "rmm": _gen_rmm}
_generated = {}


def _impl(op, R, C, generic):
    r, c = _literal(R), _literal(C)
    if r is None or c is None:
        return generic
    key = (op, r, c)
    fn = _generated.get(key)
    if fn is None:
        fn = _generated[key] = _compile(_GENERATORS[op](r, c), f"{op} {r}x{c}")
    return fn


# ---------------------------------------------------------------------------
# Generic (runtime r, c) block-row kernels: the same contracts, plain loops.
# ---------------------------------------------------------------------------

def _generic_mv(R, C, b0, b1, m, n, ptr, idx, data, table, x, out):
    nan = 0
    acc = np.empty(R, dtype=out.dtype)
    for bi in range(b0, b1):
        acc[:] = 0
        i0 = bi * R
        for k in range(ptr[bi], ptr[bi + 1]):
            j0 = np.int64(idx[k]) * C
            kb = np.int64(k) * (R * C)
            cn = min(C, n - j0)
            for rr in range(R):
                s = acc[rr]
                for cc in range(cn):
                    s += value(data, table, kb + rr * C + cc) * x[j0 + cc]
                acc[rr] = s
        for rr in range(min(R, m - i0)):
            out[i0 + rr] = acc[rr]
            nan += acc[rr] != acc[rr]
    return nan


def _generic_rmv(R, C, b0, b1, m, n, ptr, idx, data, table, conj, x, out, lo):
    for bi in range(b0, b1):
        i0 = bi * R
        rn = min(R, m - i0)
        for k in range(ptr[bi], ptr[bi + 1]):
            jg = np.int64(idx[k]) * C
            kb = np.int64(k) * (R * C)
            for cc in range(min(C, n - jg)):
                t = out[jg - lo + cc]
                for rr in range(rn):
                    t += cvalue(data, table, kb + rr * C + cc, conj) * x[i0 + rr]
                out[jg - lo + cc] = t
    return 0


def _generic_mm(R, C, b0, b1, m, n, ptr, idx, data, table, stream, X, out):
    # ``stream`` is ignored: only the SIMD loop (``_simd_mm``) writes with streaming stores
    nk = X.shape[1]
    nan = 0
    for bi in range(b0, b1):
        i0 = bi * R
        rn = min(R, m - i0)
        out[i0:i0 + rn, :] = 0
        for k in range(ptr[bi], ptr[bi + 1]):
            j0 = np.int64(idx[k]) * C
            kb = np.int64(k) * (R * C)
            for rr in range(rn):
                for cc in range(min(C, n - j0)):
                    v = value(data, table, kb + rr * C + cc)
                    for j in range(nk):
                        out[i0 + rr, j] += v * X[j0 + cc, j]
        for rr in range(rn):
            for j in range(nk):
                y = out[i0 + rr, j]
                nan += y != y
    return nan


def _generic_rmm(R, C, b0, b1, m, n, ptr, idx, data, table, conj, X, out, lo):
    nk = X.shape[1]
    for bi in range(b0, b1):
        i0 = bi * R
        rn = min(R, m - i0)
        for k in range(ptr[bi], ptr[bi + 1]):
            jg = np.int64(idx[k]) * C
            kb = np.int64(k) * (R * C)
            for rr in range(rn):
                for cc in range(min(C, n - jg)):
                    v = cvalue(data, table, kb + rr * C + cc, conj)
                    for j in range(nk):
                        out[jg - lo + cc, j] += v * X[i0 + rr, j]
    return 0


def _rows_mv(R, C, b0, b1, m, n, ptr, idx, data, table, x, out):  # pragma: no cover - overloaded
    raise NotImplementedError


def _rows_rmv(R, C, b0, b1, m, n, ptr, idx, data, table, conj, x, out, lo):  # pragma: no cover
    raise NotImplementedError


def _rows_mm(R, C, b0, b1, m, n, ptr, idx, data, table, stream, X, out):  # pragma: no cover
    raise NotImplementedError


def _rows_rmm(R, C, b0, b1, m, n, ptr, idx, data, table, conj, X, out, lo):  # pragma: no cover
    raise NotImplementedError


@overload(_rows_mv, jit_options=_OPTS, prefer_literal=True)
def _ov_mv(R, C, b0, b1, m, n, ptr, idx, data, table, x, out):
    return _impl("mv", R, C, _generic_mv)


@overload(_rows_rmv, jit_options=_OPTS, prefer_literal=True)
def _ov_rmv(R, C, b0, b1, m, n, ptr, idx, data, table, conj, x, out, lo):
    return _impl("rmv", R, C, _generic_rmv)


def _simd_mm(R, C, b0, b1, m, n, ptr, idx, data, table, stream, X, out):
    """Block rows [b0, b1) of A X with vector accumulators (``_simd.bsr_rows``): each X row
    is loaded once per block for all R rows.  ``stream`` (an array marker, or None) writes
    the output with streaming stores (see ``_simd``)."""
    nan = 0
    for bi in range(b0, b1):
        nan += bsr_rows(R, C, ptr[bi], ptr[bi + 1], idx, data, table, X, out, bi * R, m, n, stream)
    fence(stream)
    return nan


@overload(_rows_mm, jit_options=_OPTS, prefer_literal=True)
def _ov_mm(R, C, b0, b1, m, n, ptr, idx, data, table, stream, X, out):
    if _literal(R) is not None and _literal(C) is not None and _vectorisable(data, table, X, out):
        return _simd_mm
    return _impl("mm", R, C, _generic_mm)


@overload(_rows_rmm, jit_options=_OPTS, prefer_literal=True)
def _ov_rmm(R, C, b0, b1, m, n, ptr, idx, data, table, conj, X, out, lo):
    return _impl("rmm", R, C, _generic_rmm)


# ---------------------------------------------------------------------------
# Entry points.  Signature: (R, C, m, n, [bounds, lo, hi,] ptr, idx, data, table, [conj,] x, out)
# ---------------------------------------------------------------------------

@jit
def matvec(R, C, m, n, ptr, idx, data, table, x, out):
    return _rows_mv(R, C, np.int64(0), np.int64(ptr.size - 1), m, n, ptr, idx, data, table, x, out)


@pjit
def matvec_par(R, C, m, n, bounds, ptr, idx, data, table, x, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _rows_mv(R, C, bounds[t], bounds[t + 1], m, n, ptr, idx, data, table, x, out)
    return nan


@jit
def matmat(R, C, m, n, ptr, idx, data, table, stream, X, out):
    return _rows_mm(R, C, np.int64(0), np.int64(ptr.size - 1), m, n, ptr, idx, data, table, stream, X, out)


@pjit
def matmat_par(R, C, m, n, bounds, ptr, idx, data, table, stream, X, out):
    nan = 0
    for t in prange(bounds.size - 1):
        nan += _rows_mm(R, C, bounds[t], bounds[t + 1], m, n, ptr, idx, data, table, stream, X, out)
    return nan


@jit
def _count_nan(out):
    nan = 0
    for v in out.ravel():
        nan += v != v
    return nan


@jit
def rmatvec(R, C, m, n, ptr, idx, data, table, conj, x, out):
    out[:] = 0
    _rows_rmv(R, C, np.int64(0), np.int64(ptr.size - 1), m, n, ptr, idx, data, table, conj, x, out, np.int64(0))
    return _count_nan(out)


@jit
def rmatmat(R, C, m, n, ptr, idx, data, table, conj, X, out):
    out[:, :] = 0
    _rows_rmm(R, C, np.int64(0), np.int64(ptr.size - 1), m, n, ptr, idx, data, table, conj, X, out, np.int64(0))
    return _count_nan(out)


@pjit
def rmatvec_par(R, C, m, n, bounds, lo, hi, ptr, idx, data, table, conj, x, out):
    """Each chunk scatters into its own buffer over its columns lo[t]:hi[t]."""
    nparts = bounds.size - 1
    off = np.zeros(nparts + 1, np.int64)
    for t in range(nparts):
        off[t + 1] = off[t] + (hi[t] - lo[t])
    work = np.empty(off[nparts], dtype=out.dtype)
    for t in prange(nparts):
        w = work[off[t]:off[t + 1]]
        w[:] = 0
        _rows_rmv(R, C, bounds[t], bounds[t + 1], m, n, ptr, idx, data, table, conj, x, w, lo[t])
    return _reduce(lo, hi, off, work.reshape((-1, 1)), out.reshape((-1, 1)))


@pjit
def rmatmat_par(R, C, m, n, bounds, lo, hi, ptr, idx, data, table, conj, X, out):
    nparts = bounds.size - 1
    nk = X.shape[1]
    off = np.zeros(nparts + 1, np.int64)
    for t in range(nparts):
        off[t + 1] = off[t] + (hi[t] - lo[t])
    work = np.empty((off[nparts], nk), dtype=out.dtype)
    for t in prange(nparts):
        w = work[off[t]:off[t + 1]]
        w[:, :] = 0
        _rows_rmm(R, C, bounds[t], bounds[t + 1], m, n, ptr, idx, data, table, conj, X, w, lo[t])
    return _reduce(lo, hi, off, work, out)


@pjit
def _reduce(lo, hi, off, work, out):
    """out[j] = sum of the chunk buffers covering column j (0 where none does); NaN count."""
    nparts = lo.size
    n, nk = out.shape
    nblk = (n + 1023) // 1024
    nan = 0
    for b in prange(nblk):
        j1 = min(n, (b + 1) * 1024)
        cnt = 0
        for j in range(b * 1024, j1):
            for q in range(nk):
                out[j, q] = 0
            for t in range(nparts):
                if lo[t] <= j < hi[t]:
                    r = off[t] + j - lo[t]
                    for q in range(nk):
                        out[j, q] += work[r, q]
            for q in range(nk):
                y = out[j, q]
                cnt += y != y
        nan += cnt
    return nan


@jit
def chunk_columns(bounds, ptr, idx, C, n):
    """Column range [lo, hi) each chunk of block rows touches (lo = hi = 0 when empty)."""
    nparts = bounds.size - 1
    lo = np.zeros(nparts, np.int64)
    hi = np.zeros(nparts, np.int64)
    for t in range(nparts):
        k0 = ptr[bounds[t]]
        k1 = ptr[bounds[t + 1]]
        if k1 > k0:
            a = np.int64(idx[k0])
            b = a
            for k in range(k0, k1):
                v = np.int64(idx[k])
                a = min(a, v)
                b = max(b, v)
            lo[t] = a * C
            hi[t] = min(n, (b + 1) * C)
    return lo, hi


# ---------------------------------------------------------------------------
# Conversion from CSR: count the distinct blocks of each block row, then
# place them and their values in one pass.  Values travel as their bits
# (``value_words``: uint32 or uint64 words, two per complex128), so these
# compile once per index width and word size, not per value dtype, and copy
# NaN payloads and signed zeros exactly.  ``colblk[j]`` is j's block column
# (a table lookup instead of an integer division per entry).
# ---------------------------------------------------------------------------

def value_words(a):
    """(words, zero_mask): ``a`` viewed as an (size, w) array of unsigned words,
    and the mask whose bits are all clear exactly for the words of a zero."""
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 4:
        return a.view(np.uint32).reshape(-1, 1), np.uint64(0x7FFFFFFF)
    if a.dtype == np.complex64:
        return a.view(np.uint64).reshape(-1, 1), np.uint64(0x7FFFFFFF7FFFFFFF)
    return a.view(np.uint64).reshape(-1, a.dtype.itemsize // 8), np.uint64(0x7FFFFFFFFFFFFFFF)


@jit
def count_blocks(indptr, indices, m, r, colblk, nbc):
    """Distinct blocks per block row."""
    mb = (m + r - 1) // r
    counts = np.zeros(mb, np.int64)
    mark = np.full(nbc, -1, np.int64)
    for bi in range(mb):
        cnt = 0
        for i in range(bi * r, min(m, (bi + 1) * r)):
            for k in range(indptr[i], indptr[i + 1]):
                bj = colblk[indices[k]]
                if mark[bj] != bi:
                    mark[bj] = bi
                    cnt += 1
        counts[bi] = cnt
    return counts


@jit
def sort_run(a, lo, hi):
    """Sort a[lo:hi] in place: insertion sort for short runs (they are short
    and nearly sorted: rows' columns are sorted), heapsort for long ones
    (np.sort would cost seconds of compile here)."""
    if hi - lo <= 32:
        for i in range(lo + 1, hi):
            v = a[i]
            j = i
            while j > lo and a[j - 1] > v:
                a[j] = a[j - 1]
                j -= 1
            a[j] = v
        return
    n = hi - lo
    for start in range(n // 2 - 1, -1, -1):
        _sift(a, lo, start, n)
    for end in range(n - 1, 0, -1):
        v = a[lo]
        a[lo] = a[lo + end]
        a[lo + end] = v
        _sift(a, lo, 0, end)


@jit
def _sift(a, lo, root, n):
    v = a[lo + root]
    while True:
        child = 2 * root + 1
        if child >= n:
            break
        if child + 1 < n and a[lo + child + 1] > a[lo + child]:
            child += 1
        if a[lo + child] <= v:
            break
        a[lo + root] = a[lo + child]
        root = child
    a[lo + root] = v


@jit
def place_blocks(indptr, indices, words, zmask, m, r, c, colblk, nbc, bptr, bidx, bwords, zpos):
    """Block column indices (sorted per block row) into ``bidx``, values (as
    words) into ``bwords`` (nblocks*r*c, w), the flat positions of the input's
    explicit zeros into ``zpos``; returns how many."""
    mb = bptr.size - 1
    nw = words.shape[1]
    slot = np.full(nbc, -1, np.int64)
    nz = 0
    for bi in range(mb):
        start = bptr[bi]
        p = start
        i1 = min(m, (bi + 1) * r)
        for i in range(bi * r, i1):                  # distinct block columns
            for k in range(indptr[i], indptr[i + 1]):
                bj = colblk[indices[k]]
                if slot[bj] < start:
                    slot[bj] = p
                    bidx[p] = bj
                    p += 1
        sort_run(bidx, start, p)
        for q in range(start, p):
            slot[bidx[q]] = q
        for i in range(bi * r, i1):
            base = (i - bi * r) * c
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                bj = colblk[j]
                pos = slot[bj] * (r * c) + base + (j - bj * c)
                zero = True
                for w in range(nw):
                    v = words[k, w]
                    bwords[pos, w] = v
                    zero = zero and (v & zmask) == 0
                if zero:
                    zpos[nz] = pos
                    nz += 1
    return nz


CONVERT_CHUNKS = 256      # chunks of block rows the parallel conversion shares out

# Merge-based conversion for canonical CSR (rows' columns sorted, no duplicates): a block
# row's distinct block columns come out of an r-way merge of its rows in ascending order,
# so no scratch array over all block columns is needed and block rows convert in parallel
# (each writes its own range of blocks).  ``place_blocks`` stays for inputs with explicit
# zeros, whose positions it lists in order.

@jit
def _next_block(indptr, indices, colblk, i0, nrows, heads, none):
    """The smallest block column at the heads of rows i0 .. i0 + nrows - 1, or ``none``."""
    b = none
    for q in range(nrows):
        h = heads[q]
        if h < indptr[i0 + q + 1]:
            bq = colblk[indices[h]]
            if bq < b:
                b = bq
    return b


@pjit
def count_blocks_sorted(indptr, indices, m, r, colblk, nbc, counts):
    """``counts[bi]``: distinct blocks of block row bi (block rows in parallel)."""
    mb = counts.size
    nchunks = min(mb, CONVERT_CHUNKS)
    for t in prange(nchunks):
        heads = np.empty(r, np.int64)              # one scratch per chunk of block rows
        for bi in range(t * mb // nchunks, (t + 1) * mb // nchunks):
            i0 = bi * r
            nrows = min(m, i0 + r) - i0
            for q in range(nrows):
                heads[q] = indptr[i0 + q]
            cnt = 0
            while True:
                b = _next_block(indptr, indices, colblk, i0, nrows, heads, nbc)
                if b == nbc:
                    break
                cnt += 1
                for q in range(nrows):
                    end = indptr[i0 + q + 1]
                    while heads[q] < end and colblk[indices[heads[q]]] == b:
                        heads[q] += 1
            counts[bi] = cnt


@pjit
def place_blocks_sorted(indptr, indices, words, m, r, c, colblk, nbc, bptr, bidx, bwords):
    """``place_blocks`` for canonical CSR without explicit zeros, block rows in parallel."""
    mb = bptr.size - 1
    nw = words.shape[1]
    nchunks = min(mb, CONVERT_CHUNKS)
    for t in prange(nchunks):
        heads = np.empty(r, np.int64)
        for bi in range(t * mb // nchunks, (t + 1) * mb // nchunks):
            i0 = bi * r
            nrows = min(m, i0 + r) - i0
            for q in range(nrows):
                heads[q] = indptr[i0 + q]
            p = bptr[bi]
            while True:
                b = _next_block(indptr, indices, colblk, i0, nrows, heads, nbc)
                if b == nbc:
                    break
                bidx[p] = b
                for q in range(nrows):
                    end = indptr[i0 + q + 1]
                    base = p * (r * c) + q * c - b * c
                    while heads[q] < end and colblk[indices[heads[q]]] == b:
                        k = heads[q]
                        for w in range(nw):
                            bwords[base + indices[k], w] = words[k, w]
                        heads[q] += 1
                p += 1
