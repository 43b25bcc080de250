"""Profiler kernels: the exact pass over the index arrays, block sampling,
the sampled values.

Pure functions on flat arrays, like every kernel module.  Nothing here
converts the matrix: the kernels read ``indptr``/``indices`` (and, in the
sampled windows only, ``data``) as they are and write a few counters.
Integer results (and sums of 64-bit hashes mod 2**64), so nothing depends
on how the work is chunked.  Index arrays arrive as unsigned views and loop
counters are unsigned where they index: numba then emits no wraparound code
(with it, the copy test below ran as gathers, 4x slower).

* ``exact_chunk`` (``exact_serial`` / ``exact_parallel``): the one exact
  pass, reading indptr and indices once, per block of rows:

  - ``_row_block``: the row lengths: histogram, long rows, and the padded
    slots of SELL-C-sigma for the whole (nested) grid;
  - ``_hash_rows`` / ``_hash_pairs``: the pattern digest, sums of 64-bit
    mixes of (row, length) and of (position, two column indices);
  - ``_diag_rows``: the occupied diagonals, a bitmap of m + n - 1 bits, and
    the exact lengths of a hashed sample of columns.  A row that is a copy
    of the row p above shifted right by p (stencils, banded and block FEM
    matrices: nearly every row) has that row's diagonals and is only
    compared, vectorised, not marked; its sampled columns are counted from
    the row it copies.

* ``block_windows``: OSKI block counting in sampled windows of H rows.  The
  window's rows are sorted runs; merging them pairwise (``_merge_level``, a
  bottom-up merge sort) makes runs of 2, 4, ... rows, which are exactly the
  aligned block rows; ``_count_blocks`` counts the nonempty r x c blocks for
  c = 1..8 in one vectorised sweep (divisions as multiplications) and
  ``_count_tiles`` the dense tiles.  ``cut_rows`` finds the strata.
  ``row_sample`` reads the same sampled rows for the narrow offsets, column
  scatter and distance from the diagonal.
* ``value_windows``: the values of the sampled windows: NaN/Inf, explicit
  zeros, distinct bit patterns up to a cap (open addressing).

Measured on this machine class, these details each cost 2-10x when missing:
unsigned indexing, branch-free counters and merges (the comparisons are coin
tosses on random columns), flat vectorised sweeps rather than loops over
runs of a few entries, small helpers inlined (a call passing arrays costs
~0.2 us), no division by a runtime value in hot loops (shifts: the SELL
grid's C are powers of two), interleaved histograms (equal lengths would
chain through one memory cell).
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from ._runtime import FASTMATH, jit, pjit

# small helpers are inlined into their callers (numba IR inlining): calls
# passing arrays cost more than the work of a short row
inl = njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")

U = np.uint64
_Z = U(0)
_ONE = U(1)
_TWO = U(2)
_THREE = U(3)
_S6 = U(6)
_16 = U(16)
_63 = U(63)
_64 = U(64)
_S29 = U(29)
_S31 = U(31)
_S32 = U(32)
_LO32 = U(0xFFFFFFFF)
_M1 = U(0x9E3779B97F4A7C15)
_M2 = U(0xBF58476D1CE4E5B9)
_M3 = U(0x94D049BB133111EB)
_K1 = U(0x85EBCA6B)
_K2 = U(0xC2B2AE35)
_CKEY = U(0x9E3779B1)  # the column sample: j -> j * _CKEY mod 2**32 is a bijection

LONG_ROW = 64          # row lengths below this are histogrammed, longer rows listed
FAST_SPAN = 8          # windows whose row lengths span at most this many values take the bitmask path
PIECE = 2048           # entries per piece of equal-length rows tested for copies
PMAX = 8               # copy periods tried: row i = row i - p shifted right by p, p = 1..PMAX
SUB_ENTRIES = 16384    # entries per sub-block of the exact pass (read once from memory, then from cache)
_PIECE = U(PIECE)
_PMAX = U(PMAX)
_SUB = U(SUB_ENTRIES)


# ---------------------------------------------------------------------------
# helpers

@intrinsic
def popcount(typingctx, x):
    """Set bits of a uint64 (LLVM ctpop)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


@intrinsic
def trailing_zeros(typingctx, x):
    """Trailing zero bits of a nonzero uint64 (LLVM cttz)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))
    return types.uint64(types.uint64), codegen


@intrinsic
def leading_zeros(typingctx, x):
    """Leading zero bits of a nonzero uint64 (LLVM ctlz)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))
    return types.uint64(types.uint64), codegen


# ---------------------------------------------------------------------------
# the exact pass: index arrays only

@jit
def _hash_pairs(indices, k0, k1, nnz):
    """Sum over the pairs q with 2q in [k0, k1) of mix(j_2q + 2**32 j_2q+1, q)
    (j_nnz = 0).  Sums of 64-bit terms: independent of how entries are chunked."""
    q0 = (k0 + _ONE) >> _ONE
    q1 = (k1 + _ONE) >> _ONE
    full = min(q1, nnz >> _ONE)
    h1 = _Z
    h2 = _Z
    kc = q0 * _M2
    for q in range(q0, full):
        u = (U(indices[q + q]) | (U(indices[q + q + _ONE]) << _S32)) ^ kc
        kc += _M2
        u ^= u >> _S32
        t = u * _M3
        h1 += t
        h2 += t ^ (t >> _S29)
    if full < q1:                    # the last entry of an odd nnz
        u = U(indices[full + full]) ^ (full * _M2)
        u ^= u >> _S32
        t = u * _M3
        h1 += t
        h2 += t ^ (t >> _S29)
    return h1, h2


@jit
def _hash_rows(indptr, a, b):
    """Sum over the rows i in [a, b) of mix(i, length of row i)."""
    h1 = _Z
    h2 = _Z
    for i in range(a, b):
        u = i * _M1 + (U(indptr[i + _ONE]) - U(indptr[i])) * _K2 + _K1
        u ^= u >> _S32
        t = u * _M2
        h1 += t
        h2 += t ^ (t >> _S29)
    return h1, h2


@inl
def _sampled(j, ksh, coff):
    """Is column j in the column sample?  One column per bucket of 2**ksh
    columns: the one at offset (bucket * _CKEY + coff) mod 2**32 >> (32 - ksh)."""
    b = j >> ksh
    r = ((b * _CKEY + coff) & _LO32) >> (_S32 - ksh)
    return (j & ((_ONE << ksh) - _ONE)) == r


@inl
def _mark_rows(indptr, indices, a, b, m1, bm, ksh, coff, ccount):
    """Mark the diagonals (bit j - i + m - 1 of bm) of the entries of rows
    [a, b), and count those in sampled columns (ccount[j >> ksh])."""
    for i in range(a, b):
        off = m1 - i
        for k in range(U(indptr[i]), U(indptr[i + _ONE])):
            j = U(indices[k])
            d = j + off
            bm[d >> _S6] |= _ONE << (d & _63)
            if _sampled(j, ksh, coff):
                ccount[j >> ksh] += 1


@inl
def _count_copies(indptr, indices, a, c, p, ksh, coff, ccount):
    """Count the sampled columns of the copy rows [a, c): row r holds the
    columns of row r - p plus p, so row b = a - p + u (u < p) and its copies
    b + p, b + 2p, ... < c hold j + v p (v = 0, 1, ...) for each column j of
    row b; the sampled columns among j + p .. j + V p (V copies) are visited
    bucket by bucket, not entry by entry."""
    for u in range(p):
        b = a - p + u
        if b + p >= c:
            continue
        V = (c - _ONE - b) // p
        for k in range(U(indptr[b]), U(indptr[b + _ONE])):
            j = U(indices[k])
            lo = j + p
            hi = j + V * p
            for q in range(lo >> ksh, (hi >> ksh) + _ONE):
                col = (q << ksh) + (((q * _CKEY + coff) & _LO32) >> (_S32 - ksh))
                if lo <= col and col <= hi and (p == _ONE or (col - j) % p == _Z):
                    ccount[q] += 1


@inl
def _run_end(indptr, i, lim, L):
    """The first row c in (i, lim) whose length differs from L (lim if none);
    tested vectorised 16 rows at a time."""
    c = i + _ONE
    while c + _16 <= lim:
        bad = _Z
        for q in range(c, c + _16):
            bad |= (U(indptr[q + _ONE]) - U(indptr[q])) ^ L
        if bad != _Z:
            break
        c += _16
    while c < lim and U(indptr[c + _ONE]) - U(indptr[c]) == L:
        c += _ONE
    return c


@inl
def _is_copy(indices, k0, k1, back, p):
    """indices[k] - indices[k - back] == p for every k in [k0, k1)?  Tested
    vectorised in runs of 64 entries, stopping at the first run that fails."""
    k = k0
    while k < k1:
        e = min(k + _64, k1)
        bad = _Z
        for q in range(k, e):
            bad |= (U(indices[q]) - U(indices[q - back])) ^ p
        if bad != _Z:
            return False
        k = e
    return True


@jit
def _diag_rows(indptr, indices, b0, b1, bm, st, ksh, coff, ccount):
    """Occupied diagonals of the rows [b0, b1) into the bitmap bm, and the
    lengths of the sampled columns into ccount (one per bucket of 2**ksh
    columns, see ``_sampled``).

    A row i that is a copy of the row i - p shifted right by p (same length,
    every column + p, p in 1..PMAX) has the same diagonals as that row and is
    not marked; its sampled columns are counted from the row it copies
    (``_count_copies``).  Runs of equal-length rows are cut into pieces of
    about PIECE entries; a piece's rows are tested against the rows p above
    (the period that worked last first, and a one-entry pre-test per period)
    with ``_is_copy``; the rows that cannot be copies (the first p of a run)
    and the rows of pieces that are no copies are marked entry by entry.
    st = (first row of the current run, its row length, last period): the
    state carried from block to block.
    """
    m1 = U(indptr.size - 2)
    runstart = st[0]
    prevL = st[1]
    plast = st[2]
    i = b0
    while i < b1:
        s = U(indptr[i])
        L = U(indptr[i + _ONE]) - s
        if L != prevL:
            runstart = i
            prevL = L
        c = _run_end(indptr, i, min(b1, i + max(_ONE, _PIECE // max(L, _ONE))), L)
        if L > _Z:
            done = False
            if c - runstart > _ONE:
                for tries in range(_Z, _PMAX + _ONE):
                    p = plast if tries == _Z else tries
                    if tries > _Z and p == plast:
                        continue
                    a = max(i, runstart + p)
                    if a >= c:
                        continue
                    back = p * L
                    ka = U(indptr[a])
                    if U(indices[ka]) - U(indices[ka - back]) != p:
                        continue
                    if _is_copy(indices, ka, U(indptr[c]), back, p):
                        if i < a:
                            _mark_rows(indptr, indices, i, a, m1, bm, ksh, coff, ccount)
                        _count_copies(indptr, indices, a, c, p, ksh, coff, ccount)
                        plast = p
                        done = True
                        break
            if not done:
                _mark_rows(indptr, indices, i, c, m1, bm, ksh, coff, ccount)
        i = c
    st[0] = runstart
    st[1] = prevL
    st[2] = plast


@inl
def _sorted_desc(buf, a, b):
    """Sort buf[a:b] in place, descending (Shell sort: long rows are few, and
    np.sort's compile time is not worth it here)."""
    k = b - a
    gap = 1
    while gap < k // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for q in range(a + gap, b):
            v = buf[q]
            p = q
            while p - gap >= a and buf[p - gap] < v:
                buf[p] = buf[p - gap]
                p -= gap
            buf[p] = v
        gap //= 3


@inl
def _level_slots(hist, lev, smax, blong, la, lb, Csh, slots, srow, ns):
    """slots[srow, q] += SELL-C padded slots (C = 2**Csh[q]) of one sorting
    window whose short rows are histogrammed in hist[lev, 0..smax] and whose
    long rows are blong[la:lb].  ns: scratch of LONG_ROW counts.

    slots / C = sum over t >= 1 of ceil(n_t / C), n_t = rows of length >= t:
    the chunks whose longest row is >= t are the first ceil(n_t / C) of the
    sorted window.  Rows of LONG_ROW or more are listed; sorted, the chunk
    maxima among them are every C-th.
    """
    nC = Csh.size
    nl = np.int64(lb - la)
    if nl:
        _sorted_desc(blong, la, lb)
        for q in range(nC):
            sh = Csh[q]
            C = np.int64(1) << sh
            acc = (LONG_ROW - 1 - smax) * ((nl + C - 1) >> sh)
            for c0 in range(la, lb, C):
                acc += blong[c0] - (LONG_ROW - 1)
            slots[srow, q] += acc << sh
    cnt = nl
    us = U(smax)
    for t in range(us, _Z, -1):
        cnt += hist[lev, t]
        ns[t] = cnt
    for q in range(nC):
        sh = Csh[q]
        C1 = (np.int64(1) << sh) - 1
        acc = np.int64(0)
        for t in range(_ONE, us + _ONE):
            acc += (ns[t] + C1) >> sh
        slots[srow, q] += acc << sh


@jit
def _close_levels(first, last, nlev, ratios, hist, smax, lstart, wcount, blong, nb, Csh, slots, s1, rhist, ns):
    """Close the sorting windows that end here, from level ``first`` up:
    level l after ratios[l] windows of level l - 1 (or all of them at the end
    of the block).  The caller counts the windows that close nothing itself:
    a call passing arrays costs more than a row."""
    for lev in range(first, nlev):
        if lev > 0:
            wcount[lev] += 1
            if wcount[lev] < ratios[lev] and not last:
                break
            wcount[lev] = 0
        smx = smax[lev]
        _level_slots(hist, lev, smx, blong, lstart[lev], nb, Csh, slots, s1 + lev, ns)
        if lev + 1 < nlev:
            for t in range(U(smx) + _ONE):
                hist[lev + 1, t] += hist[lev, t]
                hist[lev, t] = 0
            smax[lev + 1] = max(smax[lev + 1], smx)
        else:
            for t in range(U(smx) + _ONE):
                rhist[t] += hist[lev, t]
                hist[lev, t] = 0
        smax[lev] = 0
        lstart[lev] = nb


@jit
def _row_block(indptr, b0, b1, W0, ratios, Csh, has1, hist, smax, lstart, blong, slots, rhist, longs, nlong,
               lw, tmax, sub, wcount, gmask):
    """The row lengths of rows [b0, b1) (b0 a multiple of the largest sorting
    window): SELL-C-sigma padded slots for the whole grid, the row-length
    histogram (lengths < LONG_ROW) and the list of longer rows.

    Sorting windows nest: level 0 windows have W0 rows, level l windows are
    ratios[l] windows of level l - 1; slots[0] is sigma = 1 (unsorted) when
    ``has1``, then one row per level.  hist[l] / smax[l] / lstart[l]: the
    open window of level l.  Windows of W0 <= 64 rows whose lengths span at
    most FAST_SPAN values (stencils, banded and FEM matrices) take a bitmask
    path: the rows of length >= t are the set bits of a mask, the chunks
    holding one are counted by folding it.  Others are histogrammed (8
    interleaved counters: equal lengths in a row would chain through one).
    Scratch: lw (W0 lengths), tmax (W0 maxima), sub (8 histograms, flat),
    wcount (windows per level), gmask (the first row of each chunk, per C).
    """
    nlev = ratios.size
    nC = Csh.size
    s1 = 1 if has1 else 0
    nb = np.int64(0)
    for lev in range(nlev):
        lstart[lev] = 0
        wcount[lev] = 0
    LR = U(LONG_ROW + 1)
    Cmax_sh = Csh[nC - 1]
    fast_ok = W0 <= 64
    for a in range(b0, b1, W0):
        n = min(W0, b1 - a)
        last = a + n == b1
        ua = U(a)
        for q in range(U(n)):
            lw[q] = np.int64(indptr[ua + q + _ONE]) - np.int64(indptr[ua + q])
        for q in range(U(n), U(W0)):
            lw[q] = 0
        mn = lw[0]
        mx = lw[0]
        for q in range(_ONE, U(n)):
            mn = min(mn, lw[q])
            mx = max(mx, lw[q])
        if fast_ok and mx < LONG_ROW and mx - mn <= FAST_SPAN:
            tgt = 1 if nlev > 1 else 0          # into the level-1 histogram, or the matrix's
            for q in range(nC):
                sh = Csh[q]
                base = (mn * ((np.int64(n) + (np.int64(1) << sh) - 1) >> sh)) << sh
                if has1:
                    slots[0, q] += base
                if nlev > 0:
                    slots[s1, q] += base
            prev = np.int64(n)
            for t in range(mn + 1, mx + 1):
                msk = _Z
                for q in range(U(n)):
                    msk |= U(lw[q] >= t) << q
                c = np.int64(popcount(msk))
                if tgt:
                    hist[1, t - 1] += prev - c
                else:
                    rhist[t - 1] += prev - c
                prev = c
                f = msk
                lvl = 0
                for q in range(nC):
                    sh = Csh[q]
                    while lvl < sh:
                        f |= f >> U(1 << lvl)
                        lvl += 1
                    if has1:
                        slots[0, q] += np.int64(popcount(f & gmask[q])) << sh
                    if nlev > 0:
                        slots[s1, q] += ((c + (np.int64(1) << sh) - 1) >> sh) << sh
            if tgt:
                hist[1, mx] += prev
                smax[1] = max(smax[1], mx)
                if last or wcount[1] + 1 >= ratios[1]:
                    _close_levels(1, last, nlev, ratios, hist, smax, lstart, wcount, blong, nb, Csh, slots, s1,
                                  rhist, tmax)
                else:
                    wcount[1] += 1
            else:
                rhist[mx] += prev
            continue
        sm = np.int64(0)
        for q in range(U(n)):
            L = lw[q]
            short = L < LONG_ROW
            sub[(q & U(7)) * LR + U(L if short else LONG_ROW)] += 1
            sm = max(sm, L if short else 0)
            if not short:
                blong[nb] = L
                nb += 1
        if has1:
            # sigma = 1: maxima of aligned chunks of 2, 4, ... rows, pairwise
            half = U(W0) >> _ONE
            for x in range(half):
                tmax[x] = max(lw[x + x], lw[x + x + _ONE])
            lvl = 1
            q = 0
            while True:
                if q < nC and Csh[q] == lvl:
                    acc = np.int64(0)
                    for x in range(half):
                        acc += tmax[x]
                    slots[0, q] += acc << lvl
                    q += 1
                if lvl >= Cmax_sh:
                    break
                half >>= _ONE
                for x in range(half):
                    tmax[x] = max(tmax[x + x], tmax[x + x + _ONE])
                lvl += 1
        for t in range(U(sm) + _ONE):
            acc = np.int64(0)
            for q in range(U(8)):
                acc += sub[q * LR + t]
                sub[q * LR + t] = 0
            hist[0, t] += acc
        for q in range(U(8)):
            sub[q * LR + U(LONG_ROW)] = 0
        if nlev == 0:
            for t in range(U(sm) + _ONE):
                rhist[t] += hist[0, t]
                hist[0, t] = 0
            continue
        # close the level-0 window here; the levels above when theirs end
        smx = max(smax[0], sm)
        _level_slots(hist, 0, smx, blong, lstart[0], nb, Csh, slots, s1, tmax)
        if nlev > 1:
            for t in range(U(smx) + _ONE):
                hist[1, t] += hist[0, t]
                hist[0, t] = 0
            smax[1] = max(smax[1], smx)
        else:
            for t in range(U(smx) + _ONE):
                rhist[t] += hist[0, t]
                hist[0, t] = 0
        smax[0] = 0
        lstart[0] = nb
        if nlev > 1:
            if last or wcount[1] + 1 >= ratios[1]:
                _close_levels(1, last, nlev, ratios, hist, smax, lstart, wcount, blong, nb, Csh, slots, s1, rhist,
                              tmax)
            else:
                wcount[1] += 1
    n0 = nlong[0]
    for q in range(nb):
        longs[n0 + q] = blong[q]
    nlong[0] = n0 + nb


@jit
def exact_chunk(indptr, indices, r0, r1, grid, bm, dig, slots, rhist, longs, nlong, csel, ccount):
    """The exact pass over rows [r0, r1) (r0 a multiple of grid block rows).

    Per block of rows (the largest SELL window): ``_row_block`` over the row
    lengths, the row hashes; then per sub-block of about SUB_ENTRIES entries
    (cache-resident): the entry hashes, the diagonals and the sampled columns.
    grid = (block rows, W0, Csh..., ratios...) as packed by the caller (see
    ``profile._grid``); csel = (shift, offset) of the column sample (see
    ``_sampled``).
    Called directly for one chunk (small matrices never wake the team) and
    by ``exact_parallel``.
    Outputs: bm (diagonal bitmap), dig (2 hash sums), slots (SELL), rhist /
    longs / nlong (row lengths), ccount (lengths of the sampled columns).
    """
    B = grid[0]
    W0 = grid[1]
    nC = grid[2]
    nlev = grid[3]
    has1 = grid[4] != 0
    Csh = grid[5:5 + nC]
    ratios = grid[5 + nC:5 + nC + nlev]
    nh = max(nlev, 1)
    hist = np.zeros((nh, LONG_ROW), np.int64)
    smax = np.zeros(nh, np.int64)
    lstart = np.zeros(nh, np.int64)
    wcount = np.zeros(nh, np.int64)
    blong = np.empty(B, np.int64)
    lw = np.zeros(W0, np.int64)
    tmax = np.zeros(max(W0, LONG_ROW), np.int64)
    sub = np.zeros(8 * (LONG_ROW + 1), np.int64)
    gmask = np.zeros(nC, np.uint64)
    for q in range(nC):
        for b in range(0, 64, 1 << Csh[q]):
            gmask[q] |= _ONE << U(b)
    st = np.zeros(3, np.uint64)
    st[0] = U(r0)
    st[1] = ~_Z
    st[2] = _ONE
    nnz = U(indptr[indptr.size - 1])
    ksh = U(csel[0])
    coff = U(csel[1])
    h1 = _Z
    h2 = _Z
    for b0 in range(r0, r1, B):
        b1 = min(b0 + B, r1)
        _row_block(indptr, b0, b1, W0, ratios, Csh, has1, hist, smax, lstart, blong, slots, rhist, longs, nlong,
                   lw, tmax, sub, wcount, gmask)
        x = _hash_rows(indptr, U(b0), U(b1))
        h1 += x[0]
        h2 += x[1]
        a = U(b0)
        ub1 = U(b1)
        while a < ub1:
            e = a + _ONE
            lim = U(indptr[a]) + _SUB
            while e < ub1 and U(indptr[e + _ONE]) <= lim:
                e += _ONE
            k0 = U(indptr[a])
            k1 = U(indptr[e])
            y = _hash_pairs(indices, k0, k1, nnz)
            h1 += y[0]
            h2 += y[1]
            _diag_rows(indptr, indices, a, e, bm, st, ksh, coff, ccount)
            a = e
    dig[0] += h1
    dig[1] += h2


@pjit
def exact_parallel(indptr, indices, bounds, grid, bm, dig, slots, rhist, longs, lofs, nlong, csel, ccount):
    """The exact pass on the thread team: chunk t takes rows [bounds[t],
    bounds[t + 1]) into its own outputs (row t of each; its long rows start
    at lofs[t])."""
    for t in prange(bounds.size - 1):
        exact_chunk(indptr, indices, bounds[t], bounds[t + 1], grid, bm[t], dig[t], slots[t], rhist[t],
                    longs[lofs[t]:], nlong[t:t + 1], csel, ccount[t])


@jit
def bitmap_summary(bm):
    """(set bits, first set bit, last set bit) of the OR of the rows of bm
    (first = last = -1 when no bit is set)."""
    T, W = bm.shape
    count = np.int64(0)
    first = np.int64(-1)
    last = np.int64(-1)
    for w in range(W):
        x = bm[0, w]
        for t in range(1, T):
            x |= bm[t, w]
        if x != _Z:
            count += np.int64(popcount(x))
            if first < 0:
                first = w * 64 + np.int64(trailing_zeros(x))
            last = w * 64 + 63 - np.int64(leading_zeros(x))
    return count, first, last


def sampled_columns(n, ksh, coff):
    """The column sample, one column per bucket of 2**ksh columns (see
    ``_sampled``): its columns, bucket by bucket (>= n where the last, partial
    bucket has none)."""
    b = np.arange(-(-n >> ksh) if ksh else n, dtype=np.uint64)
    r = ((b * np.uint64(_CKEY) + np.uint64(coff)) & np.uint64(0xFFFFFFFF)) >> np.uint64(32 - ksh)
    return (b << np.uint64(ksh)) + r
# ---------------------------------------------------------------------------
# block sampling (OSKI) and dense tiles

# j // c == (j * _DIVM[c]) >> _DIVS[c] for 0 <= j < 2**31, c = 1..8 (checked in the tests)
_DIV3 = U(2863311531)
_DIV5 = U(3435973837)
_DIV7 = U(2454267027)
_S33 = U(33)
_S34 = U(34)


@inl
def _count_blocks(buf, K, rb, nruns, wt, wide, blocks, z):
    """blocks[z, c - 1] += wt * (nonempty blocks of width c, c = 1..8, in the
    sorted block rows buf[rb[q]:rb[q+1]], q < nruns; entries buf[0:K]).

    A block starts where j // c changes along a block row.  Counted flat over
    the whole buffer (vectorised; column indices < 2**31, divisions as
    multiplications), then corrected at the block-row boundaries.  ``wide``:
    some column index >= 2**31, divide.
    """
    if wide:
        _count_blocks_wide(buf, rb, nruns, wt, blocks, z)
        return
    n1 = _Z
    n2 = _Z
    n3 = _Z
    n4 = _Z
    n5 = _Z
    n6 = _Z
    n7 = _Z
    n8 = _Z
    for k in range(_ONE, U(K)):
        j = U(buf[k])
        i = U(buf[k - _ONE])
        n1 += U(j != i)
        n2 += U((j >> _ONE) != (i >> _ONE))
        n3 += U(((j * _DIV3) >> _S33) != ((i * _DIV3) >> _S33))
        n4 += U((j >> _TWO) != (i >> _TWO))
        n5 += U(((j * _DIV5) >> _S34) != ((i * _DIV5) >> _S34))
        n6 += U(((j * _DIV3) >> _S34) != ((i * _DIV3) >> _S34))
        n7 += U(((j * _DIV7) >> _S34) != ((i * _DIV7) >> _S34))
        n8 += U((j >> _THREE) != (i >> _THREE))
    # each nonempty block row starts a block (for every c); a change across
    # two block rows is not one
    for q in range(nruns):
        k = rb[q]
        if k >= rb[q + 1]:
            continue
        n1 += _ONE
        n2 += _ONE
        n3 += _ONE
        n4 += _ONE
        n5 += _ONE
        n6 += _ONE
        n7 += _ONE
        n8 += _ONE
        if k > 0:
            j = U(buf[k])
            i = U(buf[k - 1])
            n1 -= U(j != i)
            n2 -= U((j >> _ONE) != (i >> _ONE))
            n3 -= U(((j * _DIV3) >> _S33) != ((i * _DIV3) >> _S33))
            n4 -= U((j >> _TWO) != (i >> _TWO))
            n5 -= U(((j * _DIV5) >> _S34) != ((i * _DIV5) >> _S34))
            n6 -= U(((j * _DIV3) >> _S34) != ((i * _DIV3) >> _S34))
            n7 -= U(((j * _DIV7) >> _S34) != ((i * _DIV7) >> _S34))
            n8 -= U((j >> _THREE) != (i >> _THREE))
    w = U(wt)
    blocks[z, 0] += np.int64(w * n1)
    blocks[z, 1] += np.int64(w * n2)
    blocks[z, 2] += np.int64(w * n3)
    blocks[z, 3] += np.int64(w * n4)
    blocks[z, 4] += np.int64(w * n5)
    blocks[z, 5] += np.int64(w * n6)
    blocks[z, 6] += np.int64(w * n7)
    blocks[z, 7] += np.int64(w * n8)


@jit
def _count_blocks_wide(buf, rb, nruns, wt, blocks, z):
    """``_count_blocks`` for column indices of any size (divisions; rare)."""
    for q in range(nruns):
        for c in range(1, 9):
            prev = ~_Z
            cnt = np.int64(0)
            for idx in range(rb[q], rb[q + 1]):
                key = U(buf[idx]) // U(c)
                cnt += key != prev
                prev = key
            blocks[z, c - 1] += wt * cnt


@inl
def _count_tiles(buf, rb, nruns, wt, tile_shift, tile_min, cov, tiles, z):
    """Dense tiles in the sorted block rows: runs of entries with equal
    j >> tile_shift holding >= tile_min[z, k] entries add one tile to
    tiles[z, k] and their entries to cov[z, k] (times wt)."""
    nq = tile_min.shape[1]
    sh = U(tile_shift)
    for q in range(nruns):
        a = rb[q]
        b = rb[q + 1]
        if b <= a:
            continue
        ptile = U(buf[a]) >> sh
        run = np.int64(0)
        for idx in range(a, b):
            key = U(buf[idx]) >> sh
            if key != ptile:
                for k in range(nq):
                    if run >= tile_min[z, k]:
                        cov[z, k] += wt * run
                        tiles[z, k] += wt
                ptile = key
                run = 0
            run += 1
        for k in range(nq):
            if run >= tile_min[z, k]:
                cov[z, k] += wt * run
                tiles[z, k] += wt


@inl
def _merge_level(src, dst, rb, nruns, per):
    """One bottom-up merge level: inside every group of ``per`` consecutive
    runs src[rb[q]:rb[q+1]], merge runs pairwise into dst (an odd last run is
    copied).  Updates rb in place; returns the new number of runs."""
    nper = (per + 1) // 2
    ngroups = nruns // per
    total = rb[nruns]
    for G in range(ngroups):
        for q in range(nper):
            ia = G * per + 2 * q
            a0 = rb[ia]
            if 2 * q + 1 < per:
                a1 = rb[ia + 1]
                b1 = rb[ia + 2]
                i = a0
                j = a1
                o = a0
                while i < a1 and j < b1:
                    # branch-free: the comparison is a coin toss on
                    # interleaved runs, and mispredictions cost 10x
                    x = src[i]
                    y = src[j]
                    t = y < x
                    dst[o] = y if t else x
                    j += t
                    i += 1 - t
                    o += 1
                while i < a1:
                    dst[o] = src[i]
                    i += 1
                    o += 1
                while j < b1:
                    dst[o] = src[j]
                    j += 1
                    o += 1
            else:
                b1 = rb[ia + 1]
                for o in range(a0, b1):
                    dst[o] = src[o]
            rb[G * nper + q] = a0           # reads above are ahead of this write
    nruns = ngroups * nper
    rb[nruns] = total
    return nruns


@jit
def block_windows(indptr, indices, H, wins, weights, sizes, tile_shifts, tile_min, wide_cols, nnz_seen, blocks, cov,
                  tiles):
    """Count blocks in the windows ``wins`` (window w = rows [w H, w H + H)).

    ``sizes``: ascending block heights, each dividing the next and H (e.g.
    1, 2, 4, 8, 16 for H = 16).  For each size r = sizes[z] every aligned
    block row of height r inside the window is counted into row z of
    ``blocks`` (r <= 8) and of ``cov``/``tiles`` when tile_shifts[z] >= 0
    (the tile edge being r, dense meaning >= tile_min[z, q] entries).
    Window p counts ``weights[p]`` times (the windows of its stratum it
    stands for).  nnz_seen[0] += weighted entries in the windows.
    ``wide_cols``: the matrix has 2**31 or more columns.

    The window's rows are sorted runs; merging them pairwise (bottom-up
    merge sort) makes runs of 2, 4, ... rows, and the runs of r rows are
    exactly the aligned block rows of height r.
    """
    m = indptr.size - 1
    nz = sizes.size
    kmax = np.int64(0)
    for p in range(wins.size):
        r0 = wins[p] * H
        k = np.int64(indptr[min(r0 + H, m)]) - np.int64(indptr[r0])
        if k > kmax:
            kmax = k
    wide = wide_cols
    bufa = np.empty(kmax, indices.dtype)
    bufb = np.empty(kmax, indices.dtype)
    rb = np.empty(H + 1, np.int64)
    seen = np.int64(0)
    for p in range(wins.size):
        r0 = wins[p] * H
        base = np.int64(indptr[r0])
        K = np.int64(indptr[min(r0 + H, m)]) - base
        if K == 0:
            continue
        wt = weights[p]
        seen += wt * K
        for q in range(K):
            bufa[q] = indices[base + q]
        for q in range(H + 1):
            rb[q] = np.int64(indptr[min(r0 + q, m)]) - base
        src = bufa                   # the current runs
        dst = bufb
        cur = 1                      # rows per run
        nruns = H
        for z in range(nz):
            g = sizes[z]
            per = g // cur           # runs per group
            while per > 1:
                nruns = _merge_level(src, dst, rb, nruns, per)
                src, dst = dst, src
                per = (per + 1) // 2
            cur = g
            if g <= 8:
                _count_blocks(src, K, rb, nruns, wt, wide, blocks, z)
            if tile_shifts[z] >= 0:
                _count_tiles(src, rb, nruns, wt, tile_shifts[z], tile_min, cov, tiles, z)
    nnz_seen[0] += seen


@jit
def cut_rows(indptr, targets, G):
    """For each target (ascending), the first row i with indptr[i] >= target.

    A walk over every G-th row pointer (a strided stream, prefetched), then a
    search among the G rows that hold the target: binary searches over the
    whole indptr would miss the cache at every step."""
    m = indptr.size - 1
    out = np.empty(targets.size, np.int64)
    k = 0
    for q in range(targets.size):
        t = targets[q]
        while (k + 1) * G <= m and np.int64(indptr[(k + 1) * G]) < t:
            k += 1
        lo = k * G
        hi = min(lo + G, m)
        while lo < hi:
            mid = (lo + hi) // 2
            if np.int64(indptr[mid]) < t:
                lo = mid + 1
            else:
                hi = mid
        out[q] = lo
    return out
@jit
def row_sample(indptr, indices, n, wins, H, weights):
    """Over the rows of the windows ``wins`` (rows [w H, w H + H)), window p
    weighted by weights[p]: (sum of |j - floor(i n / m)|, entries within 255
    / 65535 of their row's first column, sum of row spans (last - first
    column), sum of (length - 1) over nonempty rows, entries)."""
    m = indptr.size - 1
    scale = n / m
    total = np.int64(0)
    n8 = np.int64(0)
    n16 = np.int64(0)
    span = np.int64(0)
    gaps = np.int64(0)
    count = np.int64(0)
    for p in range(wins.size):
        wt = weights[p]
        for i in range(wins[p] * H, min(wins[p] * H + H, m)):
            s = np.int64(indptr[i])
            e = np.int64(indptr[i + 1])
            if e <= s:
                continue
            ci = i if m == n else np.int64(i * scale)
            first = np.int64(indices[s])
            d = np.int64(0)
            a8 = np.int64(0)
            a16 = np.int64(0)
            for k in range(s, e):
                j = np.int64(indices[k])
                d += abs(j - ci)
                a8 += j - first < 256
                a16 += j - first < 65536
            total += wt * d
            n8 += wt * a8
            n16 += wt * a16
            span += wt * (np.int64(indices[e - 1]) - first)
            gaps += wt * (e - s - 1)
            count += wt * (e - s)
    return total, n8, n16, span, gaps, count


# ---------------------------------------------------------------------------
# values: sampled

@inl
def _insert(keys, used, w0, w1):
    """Insert the key (w0, w1); 1 if it was new, else 0."""
    h = (w0 ^ _M1) * _M2
    h = (h ^ (h >> _S31) ^ w1) * _M3
    h ^= h >> _S32
    mask = used.size - 1
    pos = np.int64(h & np.uint64(mask))
    while True:
        if not used[pos]:
            used[pos] = True
            keys[pos, 0] = w0
            keys[pos, 1] = w1
            return 1
        if keys[pos, 0] == w0 and keys[pos, 1] == w1:
            return 0
        pos = (pos + 1) & mask


@jit
def table_size(cap):
    """Open-addressing table size for up to ``cap + 1`` keys (load <= 1/4)."""
    size = 16
    while size < 4 * (cap + 1):
        size *= 2
    return size


@jit
def value_windows(indptr, words, H, wins, weights, expmask, absmask, cap, keys, used, out):
    """The values of the entries of the windows ``wins`` (rows [w H, w H + H)):
    out = (entries seen, entries with a part whose exponent bits are all set
    (NaN/Inf), sum over windows of weight x entries whose parts are all +-0,
    distinct bit patterns counted up to cap + 1).

    ``words``: the values' bits, nnz x 1 (uint32/uint64) or nnz x 2
    (complex128) words; integer tests, exact without fastmath.  Distinct
    values: runs of equal values and values alternating between two skip the
    open-addressing table (``keys``/``used``, ``table_size(cap)`` slots);
    counting stops past ``cap``.
    """
    m = indptr.size - 1
    two = words.shape[1] == 2
    z = np.uint64(0)
    seen = np.int64(0)
    bad = np.int64(0)
    zeros = np.int64(0)
    count = np.int64(0)
    counting = True
    last0 = z
    last1 = z
    prev0 = z
    prev1 = z
    started = False
    for p in range(wins.size):
        r0 = wins[p] * H
        a = np.int64(indptr[r0])
        b = np.int64(indptr[min(r0 + H, m)])
        seen += b - a
        wz = np.int64(0)
        for k in range(a, b):
            x = words[k, 0]
            if two:
                y = words[k, 1]
                bad += ((x & expmask) == expmask) | ((y & expmask) == expmask)
                wz += ((x | y) & absmask) == 0
            else:
                bad += (x & expmask) == expmask
                wz += (x & absmask) == 0
        zeros += weights[p] * wz
        if not counting:
            continue
        for k in range(a, b):
            w0 = np.uint64(words[k, 0])
            w1 = np.uint64(words[k, 1]) if two else z
            if started:
                if w0 == last0 and w1 == last1:
                    continue
                if w0 == prev0 and w1 == prev1:
                    prev0 = last0
                    prev1 = last1
                    last0 = w0
                    last1 = w1
                    continue
            count += _insert(keys, used, w0, w1)
            if count > cap:
                counting = False
                break
            prev0 = last0 if started else w0
            prev1 = last1 if started else w1
            last0 = w0
            last1 = w1
            started = True
    out[0] = seen
    out[1] = bad
    out[2] = zeros
    out[3] = count


@jit
def count_columns(cols, keys, vals):
    """The lengths (occurrences) of the distinct values listed in ``cols``
    (the sampled entries' columns), in no particular order.  keys / vals:
    an open-addressing table of ``table_size`` slots for them."""
    mask = U(keys.size - 1)
    used = np.zeros(keys.size, np.bool_)
    nd = 0
    for k in range(cols.size):
        j = U(cols[k])
        h = j * _M1
        pos = (h ^ (h >> _S32)) & mask
        while True:
            if not used[pos]:
                used[pos] = True
                keys[pos] = j
                vals[pos] = 1
                nd += 1
                break
            if keys[pos] == j:
                vals[pos] += 1
                break
            pos = (pos + _ONE) & mask
    out = np.empty(nd, np.int64)
    q = 0
    for pos in range(keys.size):
        if used[pos]:
            out[q] = vals[pos]
            q += 1
    return out
