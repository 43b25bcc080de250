"""Storage formats, one module each, registered by name.

Every format module provides:

* ``NAME`` and a ``Format`` subclass (the immutable container),
* ``from_csr(A, **params)``: the conversion (vectorised numpy or numba),
* ``estimate_nbytes(profile, **params)``: bytes before anything is allocated,
* ``configurations(profile)``: every parameter setting that applies,
* ``space(trial, profile)``: the optuna subspace, names prefixed by ``NAME``.

Modules are imported on first use, so a process only loads (and compiles)
the formats it touches.
"""

from __future__ import annotations

import importlib
import importlib.util

_MODULES = {
    "scipy": "baseline",       # the untouched input, multiplied by SciPy
    "csr": "csr",
    "csc": "csc",
    "coo": "coo",
    "bsr": "bsr",
    "ell": "ell",
    "sell": "sell",
    "dia": "dia",
    "dense": "dense",
    "hyb": "hyb",
    "dbh": "denseblock",      # dense-block hybrid: dense tiles + CSR remainder
    "csrc": "csr_compressed",  # CSR with compressed (per-row narrow offset) column indices
}


def names() -> list[str]:
    """Names of the registered formats whose module is present."""
    return [n for n in _MODULES if importlib.util.find_spec(f"{__name__}.{_MODULES[n]}") is not None]


def get(name: str):
    """The module of format ``name``; ValueError naming the accepted ones."""
    mod = _LOADED.get(name) if isinstance(name, str) else None
    if mod is not None:
        return mod
    try:
        mod = _MODULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown format {name!r}; accepted: {', '.join(names())}") from None
    mod = _LOADED[name] = importlib.import_module(f"{__name__}.{mod}")
    return mod


_LOADED: dict = {}        # name -> imported module: get() is on every tune() call's path


def convert(A, name: str, **params):
    """``A`` (any SciPy sparse matrix) in format ``name``."""
    return get(name).from_csr(A, **params)
