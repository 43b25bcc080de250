"""Kernels over compressed sparse arrays (CSR rows or CSC columns), and the
scatter plan the CSR, CSC, COO and compressed-CSR kernels share.

Compressed arrays ``(indptr, indices, data)`` hold outer slices (rows of a
CSR matrix, columns of a CSC one) of inner indices.  Two products exist:

* a *gather*: one dot product per outer slice, ``out[j] = Σ_k v_k x[indices[k]]``
  - A x for CSR, Aᴴx for CSC;
* a *scatter*: ``out[indices[k]] += v_k x[j]`` - Aᴴx for CSR, A x for CSC.

Both take ``conj`` (conjugate the values: the adjoint products of complex
matrices) just before ``x, out``; ``gather2``/``scatter2`` are the
multi-vector (matmat) forms.

Loop shapes (measured on Poisson 100³ and a 9-diagonal band, 2 threads):

* Exact IEEE arithmetic (``_runtime.FASTMATH`` is empty): each output is
  summed from 0 in ascending order of the other index, so gathers and the
  serial scatters give SciPy's results bit for bit.  (Parallel scatters add
  the buffered partial sums of rows shared between chunks, so those rows
  may differ from SciPy in the last bits.)
* Gathers walk a running entry pointer through ``indptr[1:]`` with
  unsigned counters: no wraparound code, one pointer load per row.
* The vector gather prefetches the lines of values and indices 8 KB ahead,
  once per line (``_simd.prefetch``), when they do not fit in the caches:
  A x on the large set went from 0.81-0.99x MKL to 1.0-1.2x on one thread.
* Parallel scatters use a *scatter plan* instead of one private copy of the
  output per thread.  Chunk t of the outer dimension touches outputs in
  ``[lo, hi)``; the part of that span no other chunk touches, ``[elo, ehi)``,
  is written directly, and only the rest goes to a private buffer
  (``[lo, elo)`` and ``[ehi, hi)``).  After the parallel loop the calling
  thread writes the outputs outside every exclusive span from the buffers:
  one fork-join per product (under load each join waits for the slowest
  thread, and a second parallel pass measured 40% slower on a busy
  machine).  For banded and mesh matrices the buffers are a few rows per
  thread; for scattered matrices the plan degenerates to full private
  copies, and the serial combine costs a few percent of the scatter.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._runtime import jit, pjit
from ._simd import CACHE_LINE, PREFETCH_BYTES, gather_rows2, prefetch
from ._values import cvalue

_1 = np.uint64(1)


# -- scatter plan (numpy, built once per format) ---------------------------

def scatter_plan(chunk_entries: np.ndarray, inner: np.ndarray, n_out: int):
    """Race-free write plan for a parallel scatter.

    ``chunk_entries`` (nparts + 1) are the entry boundaries of the chunks and
    ``inner`` the output index of each entry.  See ``scatter_plan_spans``.
    """
    nparts = chunk_entries.size - 1
    lo = np.zeros(nparts, np.int64)
    hi = np.zeros(nparts, np.int64)
    for t in range(nparts):                          # loop over chunks, not rows
        seg = inner[chunk_entries[t]:chunk_entries[t + 1]]
        if seg.size:
            lo[t] = seg.min()
            hi[t] = int(seg.max()) + 1
    return scatter_plan_spans(lo, hi, n_out)


def scatter_plan_spans(lo, hi, n_out: int):
    """Race-free write plan for chunks writing outputs in ``[lo[t], hi[t])``.

    Returns ``(plan, items)``, both uint64: ``plan[t] = (lo, elo, ehi, hi,
    offA, offB)`` - chunk t owns ``[elo, ehi)`` exclusively, and buffers
    ``[lo, elo)`` at ``offA`` and ``[ehi, hi)`` at ``offB`` of a flat
    buffer; ``items`` are the ``(r0, r1)`` ranges of outputs outside every
    exclusive span, for the combining pass.
    """
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    nparts = lo.size
    elo, ehi = _exclusive_spans(lo, hi)
    plan = np.zeros((nparts, 6), np.uint64)
    plan[:, 0], plan[:, 1], plan[:, 2], plan[:, 3] = lo, elo, ehi, hi
    sizes_a = elo - lo
    sizes_b = hi - ehi
    offs = np.concatenate([[0], np.cumsum(np.stack([sizes_a, sizes_b], 1).ravel())])
    plan[:, 4] = offs[0:-1:2]
    plan[:, 5] = offs[1::2]
    return plan, _gap_items(elo, ehi, n_out, 1)


def _exclusive_spans(lo, hi):
    """Longest run of outputs covered by chunk t's span only, per chunk."""
    nparts = lo.size
    elo = hi.copy()
    ehi = hi.copy()
    nonempty = hi > lo
    if not nonempty.any():
        return elo, ehi
    points = np.unique(np.concatenate([lo[nonempty], hi[nonempty]]))
    a, b = points[:-1], points[1:]                   # elementary segments [a, b)
    cover = (lo[None, :] <= a[:, None]) & (hi[None, :] >= b[:, None]) & nonempty[None, :]
    single = cover.sum(1) == 1
    owner = np.where(single, cover.argmax(1), -1)
    for t in range(nparts):
        if not nonempty[t]:
            continue
        seg = np.flatnonzero(owner == t)
        if seg.size == 0:
            continue
        # merge consecutive segments (they are contiguous: b[s] == a[s + 1])
        breaks = np.flatnonzero(np.diff(seg) != 1)
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [seg.size - 1]])
        lengths = b[seg[ends]] - a[seg[starts]]
        best = int(np.argmax(lengths))
        elo[t], ehi[t] = a[seg[starts[best]]], b[seg[ends[best]]]
    return elo, ehi


def _gap_items(elo, ehi, n_out, nitems):
    """Ranges covering [0, n_out) minus the exclusive spans, in ~nitems equal pieces."""
    spans = sorted((int(a), int(b)) for a, b in zip(elo, ehi) if b > a)
    gaps = []
    pos = 0
    for a, b in spans:
        if a > pos:
            gaps.append((pos, a))
        pos = max(pos, b)
    if n_out > pos:
        gaps.append((pos, n_out))
    total = sum(b - a for a, b in gaps)
    if total == 0:
        return np.zeros((0, 2), np.uint64)
    piece = -(-total // nitems)
    items = []
    for a, b in gaps:
        for r in range(a, b, piece):
            items.append((r, min(b, r + piece)))
    return np.array(items, np.uint64).reshape(-1, 2)


@jit
def buffer_size(plan):
    t = plan.shape[0] - 1
    if t < 0:
        return np.uint64(0)
    return plan[t, 5] + plan[t, 3] - plan[t, 2]


@jit
def zero_own(plan, t, out, buf):
    """Zero chunk t's exclusive outputs and its buffer pieces (1-D)."""
    lo, elo, ehi, hi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 3], plan[t, 4], plan[t, 5]
    for r in range(elo, ehi):
        out[r] = 0
    for r in range(oa, oa + (elo - lo)):
        buf[r] = 0
    for r in range(ob, ob + (hi - ehi)):
        buf[r] = 0


@jit
def zero_own2(plan, t, out, buf):
    """Zero chunk t's exclusive output rows and its buffer pieces (2-D)."""
    lo, elo, ehi, hi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 3], plan[t, 4], plan[t, 5]
    nk = out.shape[1]
    for r in range(elo, ehi):
        for j in range(nk):
            out[r, j] = 0
    for r in range(oa, oa + (elo - lo)):
        for j in range(nk):
            buf[r, j] = 0
    for r in range(ob, ob + (hi - ehi)):
        for j in range(nk):
            buf[r, j] = 0


@jit
def combine(plan, items, w, buf, out):
    """Outputs of item w (outside every exclusive span) from the buffers (1-D)."""
    r0, r1 = items[w, 0], items[w, 1]
    for r in range(r0, r1):
        out[r] = 0
    for t in range(plan.shape[0]):
        lo, elo, ehi, hi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 3], plan[t, 4], plan[t, 5]
        for r in range(max(r0, lo), min(r1, elo)):
            out[r] += buf[oa + (r - lo)]
        for r in range(max(r0, ehi), min(r1, hi)):
            out[r] += buf[ob + (r - ehi)]


@jit
def combine2(plan, items, w, buf, out):
    """Outputs of item w from the buffers (2-D)."""
    r0, r1 = items[w, 0], items[w, 1]
    nk = out.shape[1]
    for r in range(r0, r1):
        for j in range(nk):
            out[r, j] = 0
    for t in range(plan.shape[0]):
        lo, elo, ehi, hi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 3], plan[t, 4], plan[t, 5]
        for r in range(max(r0, lo), min(r1, elo)):
            b = oa + (r - lo)
            for j in range(nk):
                out[r, j] += buf[b, j]
        for r in range(max(r0, ehi), min(r1, hi)):
            b = ob + (r - ehi)
            for j in range(nk):
                out[r, j] += buf[b, j]


@jit
def slot(lo, elo, ehi, oa, ob, r):
    """(direct, index): where output r of a chunk with plan row
    ``(lo, elo, ehi, hi, oa, ob)`` is accumulated - ``out[r]`` when owned,
    else its place in the buffer.  Scalars only: a jitted helper taking
    arrays costs an atomic incref/decref pair per call when inlined in a
    loop (measured 3-4x slower scatters), so hot loops call only this."""
    if r < elo:
        return False, oa + (r - lo)
    if r < ehi:
        return True, np.uint64(r)
    return False, ob + (r - ehi)


# -- gathers: out[j] = Σ_k v_k x[indices[k]]  (A x in CSR, Aᴴx in CSC) ----

@jit
def _dot(k, e, indices, data, table, conj, x, s):
    """s + the slice's products from entry k to e, in order."""
    while k < e:
        s += cvalue(data, table, k, conj) * x[indices[k]]
        k += _1
    return s


@jit
def gather_range(j0, j1, k, ip1, indices, data, table, ahead, conj, x, out):
    """Dot products of columns j0..j1 (entries from k on), each summed in order from 0.
    With ``ahead`` > 0, after each slice the lines of data and indices ``ahead`` entries on
    that were not asked for yet are prefetched (``_simd.prefetch``), once per line.  (Two
    loops: a test of ``ahead`` per slice cost 10% on short in-cache rows.)"""
    zero = out.dtype.type(0)
    if ahead == 0:
        for j in range(j0, j1):
            e = ip1[j]
            out[j] = _dot(k, e, indices, data, table, conj, x, zero)
            k = e
        return
    step = np.uint64(CACHE_LINE // max(data.itemsize, indices.itemsize))
    uahead = np.uint64(ahead)
    p = k                                   # entries below p + ahead were prefetched
    for j in range(j0, j1):
        e = ip1[j]
        out[j] = _dot(k, e, indices, data, table, conj, x, zero)
        k = e
        while p < k:
            prefetch(data, p + uahead)
            prefetch(indices, p + uahead)
            p += step


@jit
def gather(ip1, indices, data, table, ahead, conj, x, out):
    gather_range(np.uint64(0), np.uint64(ip1.size), np.uint64(0), ip1, indices, data, table, ahead, conj, x, out)


@pjit
def gather_par(bounds, kstart, ip1, indices, data, table, ahead, conj, x, out):
    for t in prange(bounds.size - 1):
        gather_range(bounds[t], bounds[t + 1], kstart[t], ip1, indices, data, table, ahead, conj, x, out)


@jit
def gather_range2(j0, j1, k, ip1, indices, data, table, stream, conj, X, out):
    gather_rows2(j0, j1, k, ip1, indices, data, table, stream, conj, X, out)


@jit
def gather2(ip1, indices, data, table, stream, conj, X, out):
    """``stream``: None, or an array marking an output written with streaming stores
    (64-byte aligned rows, far larger than the cache: see ``_simd``)."""
    gather_range2(np.uint64(0), np.uint64(ip1.size), np.uint64(0), ip1, indices, data, table, stream, conj, X, out)


@pjit
def gather2_par(bounds, kstart, ip1, indices, data, table, stream, conj, X, out):
    for t in prange(bounds.size - 1):
        gather_range2(bounds[t], bounds[t + 1], kstart[t], ip1, indices, data, table, stream, conj, X, out)


# -- scatters: out[indices[k]] += v_k x[j]  (Aᴴx in CSR, A x in CSC) ------

@jit
def scatter(ip1, indices, data, table, conj, x, out):
    for r in range(out.size):
        out[r] = 0
    k = np.uint64(0)
    for j in range(np.uint64(ip1.size)):
        e = ip1[j]
        xj = x[j]
        while k < e:
            out[indices[k]] += cvalue(data, table, k, conj) * xj
            k += _1


@jit
def _scatter_chunk(plan, t, j0, j1, k, ip1, indices, data, table, conj, x, out, buf):
    lo, elo, ehi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 4], plan[t, 5]
    for j in range(j0, j1):
        e = ip1[j]
        if k < e:
            xj = x[j]
            if indices[k] >= elo and indices[e - _1] < ehi:      # whole column in the owned span
                while k < e:
                    out[indices[k]] += cvalue(data, table, k, conj) * xj
                    k += _1
            else:
                while k < e:
                    direct, r = slot(lo, elo, ehi, oa, ob, indices[k])
                    if direct:
                        out[r] += cvalue(data, table, k, conj) * xj
                    else:
                        buf[r] += cvalue(data, table, k, conj) * xj
                    k += _1


@pjit
def scatter_par(bounds, kstart, plan, items, ip1, indices, data, table, conj, x, out):
    nparts = bounds.size - 1
    buf = np.empty(buffer_size(plan), out.dtype)
    for t in prange(nparts):
        zero_own(plan, t, out, buf)
        _scatter_chunk(plan, t, bounds[t], bounds[t + 1], kstart[t], ip1, indices, data, table, conj, x, out, buf)
    for w in range(items.shape[0]):          # serial: one fork-join per product
        combine(plan, items, w, buf, out)


@jit
def scatter2(ip1, indices, data, table, conj, X, out):
    nk = X.shape[1]
    for r in range(out.shape[0]):
        for c in range(nk):
            out[r, c] = 0
    k = np.uint64(0)
    for j in range(np.uint64(ip1.size)):
        e = ip1[j]
        while k < e:
            v = cvalue(data, table, k, conj)
            r = indices[k]
            for c in range(nk):
                out[r, c] += v * X[j, c]
            k += _1


@jit
def _scatter_chunk2(plan, t, j0, j1, k, ip1, indices, data, table, conj, X, out, buf):
    nk = X.shape[1]
    lo, elo, ehi, oa, ob = plan[t, 0], plan[t, 1], plan[t, 2], plan[t, 4], plan[t, 5]
    for j in range(j0, j1):
        e = ip1[j]
        while k < e:
            v = cvalue(data, table, k, conj)
            direct, r = slot(lo, elo, ehi, oa, ob, indices[k])
            if direct:
                for c in range(nk):
                    out[r, c] += v * X[j, c]
            else:
                for c in range(nk):
                    buf[r, c] += v * X[j, c]
            k += _1


@pjit
def scatter2_par(bounds, kstart, plan, items, ip1, indices, data, table, conj, X, out):
    buf = np.empty((buffer_size(plan), X.shape[1]), out.dtype)
    for t in prange(bounds.size - 1):
        zero_own2(plan, t, out, buf)
        _scatter_chunk2(plan, t, bounds[t], bounds[t + 1], kstart[t], ip1, indices, data, table, conj, X, out, buf)
    for w in range(items.shape[0]):          # serial: one fork-join per product
        combine2(plan, items, w, buf, out)
