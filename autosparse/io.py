"""Reading Matrix Market files and making the built-in example matrices."""

from __future__ import annotations

import os

import numpy as np
import scipy.io
import scipy.sparse as sp

from ._checks import as_csr

EXAMPLES = ("poisson2d", "poisson3d", "powerlaw", "banded")


def read_matrix(path) -> sp.csr_array:
    """A Matrix Market file (``.mtx`` or ``.mtx.gz``) as canonical CSR.

    Symmetric files are expanded, pattern files get unit values, duplicates
    are summed.  A missing or malformed file is a ValueError naming the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        # a path, not a handle: SciPy's reader aborts the process on bad
        # content read through a Python file object, but raises from a path
        M = scipy.io.mmread(path)
    except (ValueError, OSError, EOFError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable Matrix Market file ({exc})") from None
    if not sp.issparse(M):
        M = sp.csr_array(M)
    return as_csr(sp.csr_array(M))


def example(name: str = "poisson2d", size: int | None = None, *, dtype=np.float64, seed: int = 0) -> sp.csr_array:
    """A built-in example matrix, made on the spot (no download).

    * ``poisson2d``: 5-point Laplacian on a ``size``² grid (default 300).
    * ``poisson3d``: 7-point Laplacian on a ``size``³ grid (default 40).
    * ``powerlaw``: ``size`` rows (default 100k) with Zipf-distributed
      lengths and random columns: a graph-like irregular matrix.
    * ``banded``: ``size`` rows (default 200k), 9 full diagonals, random values.
    """
    rng = np.random.default_rng(seed)
    if name == "poisson2d":
        A = _laplacian((size or 300,) * 2)
    elif name == "poisson3d":
        A = _laplacian((size or 40,) * 3)
    elif name == "powerlaw":
        A = powerlaw(size or 100_000, rng=rng)
    elif name == "banded":
        n = size or 200_000
        offsets = np.arange(-4, 5)
        A = sp.diags_array([rng.standard_normal(n - abs(k)) for k in offsets], offsets=offsets, shape=(n, n))
    else:
        raise ValueError(f"unknown example {name!r}; accepted: {', '.join(EXAMPLES)}")
    return as_csr(sp.csr_array(A, dtype=dtype))


def _laplacian(grid) -> sp.csr_array:
    A = None
    for axis, n in enumerate(grid):
        T = sp.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1])
        parts = [sp.eye_array(k) for k in grid]
        parts[axis] = T
        term = parts[0]
        for p in parts[1:]:
            term = sp.kron(term, p, format="csr")
        A = term if A is None else A + term
    return sp.csr_array(A)


def powerlaw(m: int, n: int | None = None, mean_row: float = 8.0, exponent: float = 2.1, *, rng=None) -> sp.csr_array:
    """Random matrix whose row lengths follow a power law (Zipf), columns uniform."""
    rng = np.random.default_rng(rng)
    n = m if n is None else n
    lengths = rng.zipf(exponent, size=m).astype(np.int64)
    lengths = np.minimum(lengths, n)
    lengths = np.maximum(1, np.round(lengths * (mean_row / lengths.mean()))).astype(np.int64)
    lengths = np.minimum(lengths, n)
    indptr = np.zeros(m + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    cols = rng.integers(0, n, size=int(indptr[-1]))
    vals = rng.standard_normal(int(indptr[-1]))
    A = sp.csr_array((vals, cols, indptr), shape=(m, n))
    A.sum_duplicates()
    return A
