"""Cost model: predicted seconds per product from a profile, nothing timed.

It ranks and prunes candidates before the search measures them, and it is
the whole decision at ``effort="estimate"``.  A product costs

    max(bytes moved / bandwidth, stored slots × per-slot cost / threads) + launch

where bytes moved = the layout's ``estimate_nbytes`` + vector traffic, the
bandwidth is memory's or cache's depending on the working set, and the
per-slot cost says how well a format's inner loop runs once data is in cache
(short CSR rows pay loop overhead; DIA and SELL vectorise).  The constants
are for a current x86 server core; a search calibrates them by the ratio
measured/predicted of the SciPy baseline, which it always times: every term
when the baseline is compute-bound, the memory terms alone when it is
memory-bound (``predict_terms``; ``search.Search._calibrated``).
"""

from __future__ import annotations

import numpy as np

from . import formats
from .kernels._runtime import PARALLEL_MIN_WORK, num_threads

BW_MEMORY = 20e9          # bytes/s, all cores, streaming from DRAM
BW_CACHE = 80e9           # bytes/s when the working set fits the last-level cache
CACHE_BYTES = 24 << 20    # working sets above this stream from memory
L2_BYTES = 1 << 20        # an input vector above this is gathered from the shared cache or memory
GATHER_NS = 4.0           # ns per scattered access that misses L2 (latency not hidden), single thread
LAUNCH_SERIAL = 1.5e-6    # s per call: Python wrapper + kernel entry
LAUNCH_PARALLEL = 8e-6    # s per call: + thread team start
SERIAL_BW_SHARE = 0.6     # share of the all-core bandwidth one thread reaches (SciPy's kernels are serial)

# ns per stored slot (entry or padding) and one vector column, single thread
SLOT_NS = {"scipy": 1.3, "csr": 0.9, "csc": 0.9, "coo": 1.2, "csrc": 0.9, "bsr": 0.45, "ell": 0.6,
           "sell": 0.45, "dia": 0.35, "dense": 0.25, "hyb": 0.7, "dbh": 0.6}
SCATTER_FACTOR = {"scipy": 1.3, "csr": 1.5, "coo": 1.5, "csrc": 1.5, "ell": 1.4, "sell": 1.4, "hyb": 1.5,
                  "bsr": 1.2, "dbh": 1.4}    # Aᴴx through a scatter instead of a gather


SELL_C_FACTOR = {4: 1.12, 8: 1.0, 16: 1.15, 32: 1.7}
TABLE_FACTOR = 1.35       # a value-table lookup per slot: pays only when memory-bound ...
# ... except in DIA, which decodes tables of up to 4 entries (3 distinct values and the
# padding's 0) by compares in registers: measured in cache on the Zen 5 development machine,
# such a DIA table ran 0.63-1.0x its full-value twin (6 stencil and FEM matrices, 8k-800k
# nnz; a byte per slot instead of 8).  At 1.35 the model ranked poisson3d_100's full-value
# DIA first whenever the baseline's calibration left it compute-bound, and kept it (2.3x
# MKL, against 5-6x with the table).  A larger table is gathered from memory per slot:
# Trefethen_500's 500 values ran 1.97x.  (The other formats measured: SELL 1.28-1.59, its
# vector loop gathering through the table; CSR 1.07-1.17; COO 0.91-1.07.)
DIA_SMALL_TABLE = 4
TABLE_FACTOR_DIA_SMALL = 1.0
TABLE_FACTOR_DIA_LARGE = 2.0
# Multi-vector gathers of real CSR (A X) and CSC (Aᴴ X) keep a row's k columns
# in vector registers (kernels/_simd.py): measured 0.2-0.4x the per-column
# slot cost of the scalar loops on the corpus, k = 16.
SIMD_GATHER_FACTOR = 0.3
# SELL with sigma > 1 writes each row's result through its permutation: a
# scattered scalar store per row instead of one vector store per C rows
# (measured 5-15% on short-row corpus matrices, which padding does not show).
SELL_PERM_ROW_NS = 0.5


def slot_ns(fmt: str, params: dict, profile=None) -> float:
    """Per-slot cost: blocked layouts amortise index work over the block; value tables cost
    a lookup (``profile`` gives DIA's table size)."""
    base = SLOT_NS.get(fmt, 1.0)
    if fmt == "bsr":
        return max(SLOT_NS["csr"] / (params["r"] * params["c"]) ** 0.5, base * 0.5)
    if fmt == "sell":
        # C = 8 fills one AVX-512 register of doubles; measured in cache on the
        # corpus (2024 Xeon): C = 4 and 16 ~12-15% slower per slot, C = 32 ~70%
        base *= SELL_C_FACTOR.get(params["C"], 1.2)
    if params.get("values") == "table":
        if fmt == "dia" and profile is not None:
            small = profile.n_distinct_values + 1 <= DIA_SMALL_TABLE
            base *= TABLE_FACTOR_DIA_SMALL if small else TABLE_FACTOR_DIA_LARGE
        else:
            base *= TABLE_FACTOR
    return base


def stored_slots(profile, fmt: str, params: dict) -> float:
    """Entries plus padding the layout stores (what its inner loops touch)."""
    nnz = max(profile.nnz, 1)
    if fmt == "bsr":
        return nnz / max(profile.block_fill.get((params["r"], params["c"]), 1e-9), 1e-9)
    if fmt == "dia":
        return nnz / max(profile.dia_fill, 1e-9)
    if fmt == "ell":
        return nnz / max(profile.ell_fill, 1e-9)
    if fmt == "sell":
        return nnz / max(profile.sell_fill.get((params["C"], params["sigma"]), 1e-9), 1e-9)
    if fmt == "dense":
        return float(profile.shape[0]) * profile.shape[1]
    return float(nnz)


def predict(profile, fmt: str, params: dict, op: str, k: int = 1, *, of: str = "A", layout_bytes=None) -> float:
    """Predicted seconds of one ``op`` (with k columns) on the layout.

    ``layout_bytes`` (the format's ``estimate_nbytes``) saves recomputing it."""
    return total(predict_terms(profile, fmt, params, op, k, of=of, layout_bytes=layout_bytes))


def total(terms) -> float:
    """Seconds of a prediction from its ``predict_terms``: max(memory, compute) + fixed."""
    memory, compute, fixed = terms
    return max(memory, compute) + fixed


def predict_terms(profile, fmt: str, params: dict, op: str, k: int = 1, *, of: str = "A",
                  layout_bytes=None) -> tuple:
    """``predict``'s terms: (memory seconds, compute seconds, fixed seconds per call); the
    prediction is max(memory, compute) + fixed.  A search calibrates the term that bounds
    the SciPy baseline it measured (``search.Search._calibrate``)."""
    m, n = profile.shape
    if of == "AH":
        m, n = n, m
    itemsize = np.dtype(profile.dtype).itemsize
    if layout_bytes is None:
        layout_bytes = formats.get(fmt).estimate_nbytes(profile, **params)
    adjoint = op in ("rmatvec", "rmatmat")
    n_in, n_out = (m, n) if adjoint else (n, m)
    vec_bytes = (n_in + 2 * n_out) * itemsize * k
    if n_in * itemsize * k > CACHE_BYTES:
        # gathers from a vector that does not fit in cache fetch lines per entry
        vec_bytes += profile.nnz * 64 * min(1.0, 3 * profile.diag_distance) * (1 if k == 1 else 0.5)
    total = layout_bytes + vec_bytes
    bandwidth = BW_MEMORY if total > CACHE_BYTES else BW_CACHE
    work = stored_slots(profile, fmt, params) * k
    threads = num_threads() if work >= PARALLEL_MIN_WORK and fmt != "scipy" else 1
    if threads == 1 and num_threads() > 1:
        bandwidth *= SERIAL_BW_SHARE
    gather_ns = 0.0
    if n_in * itemsize * k > L2_BYTES:
        # scattered reads of x miss the private cache: latency-bound, so threads help
        gather_ns = GATHER_NS * min(1.0, 3 * profile.diag_distance)
    per_slot = slot_ns(fmt, params, profile)
    if k > 1 and fmt == ("csc" if adjoint else "csr") and not np.issubdtype(profile.dtype, np.complexfloating):
        per_slot *= SIMD_GATHER_FACTOR
    row_ns = SELL_PERM_ROW_NS * m * k if fmt == "sell" and params.get("sigma", 1) > 1 else 0.0
    compute = (work * per_slot + profile.nnz * gather_ns + row_ns) * 1e-9 / threads
    memory = total / bandwidth
    if adjoint and fmt not in ("csc", "dia", "dense") and of == "A":
        factor = SCATTER_FACTOR.get(fmt, 1.5)
        merge = threads * n_out * itemsize * k * 2 / bandwidth if threads > 1 else 0.0
        memory, compute = memory * factor + merge, compute * factor + merge
    return memory, compute, (LAUNCH_PARALLEL if threads > 1 else LAUNCH_SERIAL)


def predict_build(profile, fmt: str, params: dict, *, of: str = "A", layout_bytes=None) -> float:
    """Predicted seconds to convert the canonical CSR into the layout."""
    if fmt == "scipy":
        return 0.0
    if fmt == "csr" and params.get("index_dtype") in (None, "int32") and params.get("values", "full") == "full" \
            and of == "A":
        return 0.0                      # shares the input's arrays
    if layout_bytes is None:
        layout_bytes = formats.get(fmt).estimate_nbytes(profile, **params)
    # conversions read the CSR (~12 B/nnz) and write the layout, a few passes each
    passes = 3.0 if of == "A" else 5.0
    return passes * (profile.nnz * 12 + layout_bytes) / BW_MEMORY + 20e-6
