"""DIA: the occupied diagonals, each stored row-aligned over all rows.

``data[k, i] = A[i, i + offsets[k]]`` (zero where the diagonal leaves the
matrix or has no entry), so a DIA matrix stores ``n_diagonals * m`` slots and
``Profile.dia_fill = nnz / (n_diagonals * m)``.  No per-entry indices at all:
a product streams the values (or 1-byte codes) and ``x`` with unit stride,
which is why stencil and banded matrices run at the bandwidth limit in DIA.

Parameters
----------
index_dtype : "int16" | "int32" | "int64"
    Width of the offsets array (one entry per diagonal); must hold the
    largest ``|offset|``.  Default: int32 when it fits.
values : "full" | "table"
    ``"table"`` stores a uint8/uint16 code per slot into a table of the
    distinct values plus 0.0 for the padding (code 0).  Stencil matrices have
    1-3 distinct values, so a slot streams 1 byte instead of 8-16, and tables
    of up to 4 entries are decoded by compares in registers.

Padding: ``padded = True``.  The input's explicit zeros are kept aside
(``explicit_zeros``); every stored zero is padding.  Products are exact IEEE
sums in SciPy's order (see ``kernels/dia.py``): equal to SciPy's bit for bit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._checks import as_csr, index_dtype_for
from ..kernels import dia as K
from ..kernels._runtime import num_threads
from ..kernels._values import value_table
from . import csr as _csr
from ._base import (MATMAT, MATVEC, RMATMAT, RMATVEC, Format, _all_finite, merge_explicit_zeros,
                    split_explicit_zeros)
from ._grids import MAX_TABLE

NAME = "dia"

LITERAL_MAX = 16          # diagonal counts up to this get kernels with the diagonal loop unrolled
BLOCK_BYTES = 16384       # bytes of ``out`` one block of rows keeps in L1
MAX_BYTES_VS_CSR = 2.0    # configurations(): DIA bytes at most this times CSR's
MIN_TABLE_FILL = 1 / 8    # configurations(): a value table still does nd*m multiply-adds


class DIA(Format):
    name = NAME
    padded = True

    def __init__(self, shape, offsets, data, table, explicit_zeros, nnz, params):
        dtype = data.dtype if table is None else table.dtype
        super().__init__(shape, dtype, nnz, params)
        self.offsets, self.data, self.table = offsets, data, table
        self.explicit_zeros = explicit_zeros
        self._tables = {}
        self._offsets = offsets.astype(np.int64)    # kernels take int64 offsets: one compile for all widths
        # An explicit zero on a diagonal that is not stored has no padding slot to
        # turn 0 * inf into NaN, so the kernels' NaN count cannot flag it.
        rows, cols, _ = explicit_zeros
        self._unstored_zeros = bool(rows.size) and not np.isin(cols - rows, self._offsets).all()

    @property
    def n_diagonals(self) -> int:
        return int(self.offsets.size)

    def work(self, op, k=1):
        return self.data.size * k

    def _run(self, op, x, out, conj):
        if self._unstored_zeros and not _all_finite(x):
            self._exact_product(op, x, out, conj)
            return
        super()._run(op, x, out, conj)

    def _table(self, conj):
        """The table as the kernels take it: None, a 4-tuple (small) or an array; conjugated for Aᴴ."""
        if self.table is None:
            return None
        conj = bool(conj) and self.dtype.kind == "c"
        t = self._tables.get(conj)
        if t is None:
            t = self.table.conj() if conj else self.table
            if t.size <= K.SMALL_TABLE:
                t = tuple(t[j] if j < t.size else t.dtype.type(0) for j in range(K.SMALL_TABLE))
            self._tables[conj] = t
        return t

    def _block(self, op, k=1):
        """Rows (columns for the transposed products) per block."""
        m, n = self.shape
        length = n if op in (RMATVEC, RMATMAT) else m
        rows = max(8, BLOCK_BYTES // (self.dtype.itemsize * k))
        # enough blocks to share between the threads
        rows = min(rows, max(64, -(-length // (4 * num_threads()))))
        return int(rows)

    def _kernel(self, op, parallel, conj):
        table = self._table(conj)
        nd = self.n_diagonals
        lit = parallel and 1 <= nd <= LITERAL_MAX
        n = self.shape[1]
        if op == MATVEC:
            B = self._block(op)
            if lit:
                return K.matvec_lit_par, (self._offsets, self.data, table, n, nd, B), (4,)
            return (K.matvec_par if parallel else K.matvec), (self._offsets, self.data, table, n, B), ()
        if op == RMATVEC:
            B = self._block(op)
            if lit:
                return K.rmatvec_lit_par, (self._offsets, self.data, table, nd, B), (3,)
            return (K.rmatvec_par if parallel else K.rmatvec), (self._offsets, self.data, table, B), ()
        # blocks sized for k = 16 columns; the kernels are right for any k
        B = self._block(op, 16)
        if op == MATMAT:
            if lit:
                return K.matmat_lit_par, (self._offsets, self.data, table, n, nd, B), (4,)
            return (K.matmat_par if parallel else K.matmat), (self._offsets, self.data, table, n, B), ()
        if lit:
            return K.rmatmat_lit_par, (self._offsets, self.data, table, nd, B), (3,)
        return (K.rmatmat_par if parallel else K.rmatmat), (self._offsets, self.data, table, B), ()

    def arrays(self):
        return {"offsets": self.offsets, "data": self.data, "table": self.table}

    def stored_csr(self) -> sp.csr_array:
        """The stored slots that are non-zero, as CSR (padding dropped)."""
        m, n = self.shape
        vals = self.data if self.table is None else self.table[self.data]
        k, i = np.nonzero(vals)
        j = i + self._offsets[k]
        return sp.csr_array((vals[k, i], (i, j)), shape=(m, n))

    def to_csr(self):
        return merge_explicit_zeros(self.stored_csr(), self.explicit_zeros)


def _encode(data, values):
    """(values or codes, table or None); the table's code 0 is 0.0, the padding."""
    if values == "full":
        return data, None
    enc = value_table(data, MAX_TABLE, include_zero=True)
    if enc is None:
        raise ValueError(f"values='table' needs at most {MAX_TABLE - 1} distinct non-zero values; "
                         "this matrix has more")
    return enc


def from_csr(A, index_dtype=None, values="full") -> DIA:
    """DIA from any SciPy sparse matrix."""
    A = as_csr(A)
    if values not in ("full", "table"):
        raise ValueError(f"values must be 'full' or 'table', got {values!r}")
    B, zeros = split_explicit_zeros(A)
    m, n = A.shape
    offsets, slot = K.layout(B.indptr, B.indices, n)
    span = int(np.abs(offsets).max()) if offsets.size else 0
    idx = index_dtype_for(span, index_dtype, what="diagonal offsets")
    vals, table = _encode(B.data, values)
    data = np.zeros((offsets.size, m), dtype=vals.dtype)
    K.fill(B.indptr, B.indices, vals, slot, data)   # code 0 is the table's 0.0: padding is right as it is
    params = {"index_dtype": idx.name, "values": values}
    return DIA(A.shape, offsets.astype(idx), data, table, zeros, A.nnz, params)


# -- planning --------------------------------------------------------------------

def estimate_nbytes(profile, index_dtype="int32", values="full") -> int:
    """Bytes of ``from_csr(A, index_dtype, values)`` from the profile alone.

    Slots are n_diagonals * m (exact when A has no explicit zeros; those are
    kept aside as (row, col, value) triples).
    """
    m, _ = profile.shape
    nd = profile.n_diagonals
    itemsize = np.dtype(profile.dtype).itemsize
    if values == "full":
        vb, tb = itemsize, 0
    else:                                      # the table holds the non-zero values and 0.0
        distinct = profile.n_distinct_values + (0 if profile.n_explicit_zeros else 1)
        vb, tb = (1 if distinct <= 256 else 2), distinct * itemsize
    aside = profile.n_explicit_zeros * (16 + itemsize)
    return int(nd * m * vb + nd * np.dtype(index_dtype).itemsize + tb + aside)


def index_dtypes(profile):
    """Offset widths able to hold the largest |offset| (the bandwidth)."""
    return [d for d in ("int16", "int32", "int64") if profile.bandwidth <= np.iinfo(d).max]


def values_options(profile):
    if profile.n_distinct_values < MAX_TABLE and not profile.distinct_capped:
        return ["full", "table"]
    return ["full"]


def _csr_bytes(profile):
    return _csr.estimate_nbytes(profile, index_dtype="int32", values="full")


def configurations(profile) -> list[dict]:
    """Settings whose storage is at most ``MAX_BYTES_VS_CSR`` times CSR's.

    A value table also needs ``dia_fill >= MIN_TABLE_FILL``: it streams few
    bytes but still multiplies every padded slot.
    """
    limit = MAX_BYTES_VS_CSR * _csr_bytes(profile)
    out = []
    for v in values_options(profile):
        if v == "table" and profile.nnz and profile.dia_fill < MIN_TABLE_FILL:
            continue
        for d in index_dtypes(profile):
            if estimate_nbytes(profile, d, v) <= limit:
                out.append({"index_dtype": d, "values": v})
    return out


def space(trial, profile) -> dict:
    return {"index_dtype": trial.suggest_categorical("dia_index_dtype", index_dtypes(profile)),
            "values": trial.suggest_categorical("dia_values", values_options(profile))}
