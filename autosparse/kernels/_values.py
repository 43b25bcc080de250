"""Value access shared by kernels: full values, or codes into a value table.

A kernel takes ``data`` and ``table``.  With ``table=None`` the values are
``data`` itself; otherwise ``data`` holds small unsigned codes and the value
is ``table[data[k]]``.  The choice is made at compile time from the type of
``table``, so one kernel source serves both layouts with no runtime branch.
"""

import numpy as np
from numba import types
from numba.extending import overload

from ._runtime import FASTMATH, jit


def value(data, table, k):  # pragma: no cover - replaced by the overload in jitted code
    return data[k] if table is None else table[data[k]]


@overload(value, inline="always", jit_options={"fastmath": FASTMATH})
def _value_impl(data, table, k):
    if isinstance(table, types.NoneType):
        return lambda data, table, k: data[k]
    return lambda data, table, k: table[data[k]]


def cvalue(data, table, k, conj):  # pragma: no cover
    v = value(data, table, k)
    return np.conj(v) if conj else v


@overload(cvalue, inline="always", jit_options={"fastmath": FASTMATH})
def _cvalue_impl(data, table, k, conj):
    dt = table.dtype if not isinstance(table, types.NoneType) else data.dtype
    if isinstance(dt, types.Complex):
        def impl(data, table, k, conj):
            v = value(data, table, k)
            return v.conjugate() if conj else v
        return impl
    return lambda data, table, k, conj: value(data, table, k)


@jit
def encode_words(words, max_codes):
    """Codes of the distinct rows of ``words`` (the values' bits).

    Returns (codes, first, ncodes): ``codes[k]`` numbers the value of entry k,
    ``first[c]`` is an entry holding code c.  Stops with ncodes = -1 as soon
    as more than ``max_codes`` distinct values appear.  Bits are compared, so
    -0.0 and 0.0 (and NaN payloads) stay distinct: decoding is exact.
    """
    nnz, w = words.shape
    cap = 16
    while cap < 4 * max_codes:
        cap *= 2
    mask = cap - 1
    slots = np.full(cap, -1, np.int64)
    first = np.empty(max_codes, np.int64)
    codes = np.empty(nnz, np.uint16)
    ncodes = 0
    for k in range(nnz):
        h = np.uint64(0)
        for j in range(w):
            h = (h ^ np.uint64(words[k, j])) * np.uint64(0x9E3779B97F4A7C15)
        pos = np.int64(h >> np.uint64(40)) & mask
        while True:
            c = slots[pos]
            if c < 0:
                if ncodes == max_codes:
                    return codes, first, -1
                slots[pos] = ncodes
                first[ncodes] = k
                codes[k] = ncodes
                ncodes += 1
                break
            f = first[c]
            same = True
            for j in range(w):
                if words[f, j] != words[k, j]:
                    same = False
                    break
            if same:
                codes[k] = c
                break
            pos = (pos + 1) & mask
    return codes, first, ncodes


def value_table(data, max_codes=256, include_zero=False):
    """(codes, table) with ``table[codes] == data`` bit for bit, or None.

    None when ``data`` has more than ``max_codes`` distinct values.  Codes are
    uint8 up to 256 distinct values, uint16 above.  ``include_zero`` adds 0.0
    to the table (padded formats encode their padding with it).
    """
    if include_zero:
        data = np.concatenate([np.zeros(1, data.dtype), data])
    size = data.dtype.itemsize
    if size == 4:
        words = data.view(np.uint32).reshape(-1, 1)
    else:
        words = data.view(np.uint64).reshape(-1, size // 8)
    codes, first, ncodes = encode_words(words, max_codes)
    if ncodes < 0:
        return None
    table = data[first[:ncodes]].copy()
    codes = codes.astype(np.uint8) if ncodes <= 256 else codes
    if include_zero:
        codes = codes[1:]
    return codes, table
