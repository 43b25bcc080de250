"""autosparse: the fastest storage layout for a sparse matrix and its workload.

    import autosparse as asp
    A_t = asp.tune(A, asp.Workload(matvec=2000, rmatvec=2000))
    x, info = scipy.sparse.linalg.cg(A_t, b)

Public face: tune, build, lookup, profile, Workload, Plan, TunedMatrix,
PlanStore.  Heavy modules (numba kernels, optuna) load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["tune", "build", "lookup", "profile", "Workload", "Plan", "TunedMatrix", "PlanStore", "__version__"]

_LAZY = {
    "tune": ("tuner", "tune"),
    "build": ("tuner", "build"),
    "lookup": ("tuner", "lookup"),
    "Workload": ("workload", "Workload"),
    "Plan": ("plan", "Plan"),
    "TunedMatrix": ("operator", "TunedMatrix"),
    "PlanStore": ("store", "PlanStore"),
}


def profile(A, **kwargs):
    """Sampled structure statistics and fingerprint of ``A`` (see autosparse.profile.Profile)."""
    from importlib import import_module
    return import_module(".profile", __name__).profile(A, **kwargs)


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module
        mod, attr = _LAZY[name]
        value = getattr(import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autosparse' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
