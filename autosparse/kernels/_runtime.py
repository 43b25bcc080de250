"""What every kernel module shares: jit flavours, disk cache, threads, dispatch.

* ``jit`` / ``pjit``: ``@njit(cache=True, nogil=True)`` in exact IEEE
  arithmetic (see FASTMATH), serial and ``parallel=True``.
* Disk cache: numba writes next to the sources, or to the user cache dir when
  the package is read-only.  When neither is writable we point numba at a
  per-user temp dir, so importing autosparse never fails on caching.  Kernels
  load from it without numba's full context refresh (``_light_loads``).
* Threads: numba's default ``workqueue`` layer aborts the process when two
  Python threads launch parallel kernels at once.  We ask for a thread-safe
  layer (TBB or OpenMP); when none loads, parallel launches are serialised
  with a lock instead.
* Dispatch: ``entry(dispatcher, *args)`` resolves the compiled entry point for
  the argument types once; calling it costs ~0.3 us against ~1.5 us through
  the dispatcher (and ~14 ms for kernels specialised with ``literally``).
  Entry points do no type checks, so callers pass exactly the resolved types.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
import time

import numba
import numba.core.event
import numpy as np
from numba.core import config as _nb_config

log = logging.getLogger("autosparse")

# Exact IEEE arithmetic, no fastmath at all: summing each row in column order
# then gives SciPy's CSR results bit for bit (solvers take the same iterations),
# and NaN/Inf propagate as in SciPy.  SIMD comes from layouts that vectorise
# across rows (SELL lanes, DIA rows, BSR blocks), which needs no reassociation.
FASTMATH = set()     # empty: no fastmath flags (a set, so kernels may derive their own from it)

# Below this many multiply-adds a product runs serially.  Launching the thread team
# costs ~8 us here (~16k nnz of serial CSR work at 2 threads), but on a shared VM a
# team also waits whenever the other core is taken: with 40k, tuned products of the
# 30-150k-nnz corpus matrices measured up to 2x apart from run to run, the tuner's
# choices with them (regret against the exhaustive oracle: 79-95% of matrices within
# 5%, worst +20-98%), for a corpus speed-up of 2.14-2.29x SciPy.  With 150k: 91-93%,
# worst +7-8%, at 2.19-2.21x.
PARALLEL_MIN_WORK = 150_000


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _ensure_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR") or _nb_config.CACHE_DIR:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if _writable_dir(os.path.join(here, "__pycache__")):
        return
    from numba.misc import appdirs
    user = appdirs.AppDirs(appname="numba", appauthor=False).user_cache_dir
    if _writable_dir(user):
        return
    fallback = os.path.join(tempfile.gettempdir(), f"autosparse-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    if _writable_dir(fallback):
        _nb_config.CACHE_DIR = fallback
        log.info("package and user cache dirs are read-only; caching kernels in %s", fallback)


_ensure_cache_dir()

if not os.environ.get("NUMBA_THREADING_LAYER"):
    _nb_config.THREADING_LAYER = "threadsafe"

_njit = numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
_njit_parallel = numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)


def jit(fn):
    """``@njit(cache=True, nogil=True)``, exact arithmetic, light loads from the disk cache."""
    return _light_loads(_njit(fn))


def pjit(fn):
    """``jit`` with ``parallel=True``."""
    return _light_loads(_njit_parallel(fn))


# numba's own load of a kernel from its disk cache first refreshes the target context,
# which imports and registers every implementation numba has (arrays, unicode, dicts,
# random, linalg, ...): 0.4-0.8 s here, half of a warm ``import autosparse`` plus ``tune()``
# of a small matrix, for machine code that needs none of it.  Loaded code needs numba's
# runtime (NRT) and the helper symbols the context installs when it is made.  So our
# dispatchers load with just that; compiling (a kernel not on disk) refreshes as always,
# and any error in a light load hands it to numba's own.  AUTOSPARSE_NUMBA_FULL_LOAD=1
# turns light loads off.
def _light_loads(dispatcher):
    cache = getattr(dispatcher, "_cache", None)
    if _LIGHT_LOAD is not None and hasattr(cache, "_load_overload"):
        cache.load_overload = functools.partial(_light_load_overload, cache)   # this dispatcher's only
    return dispatcher


def _light_load_overload(cache, sig, target_context):
    try:
        _LIGHT_LOAD.initialize(target_context)                 # the NRT: what loaded code calls
        with cache._guard_against_spurious_io_errors():
            return cache._load_overload(sig, target_context)
    except Exception as exc:  # noqa: BLE001 - numba's own load decides
        log.debug("light load of %s failed (%s: %s); numba's own load", cache._name, type(exc).__name__, exc)
        return type(cache).load_overload(cache, sig, target_context)


def _light_load_runtime():
    if os.environ.get("AUTOSPARSE_NUMBA_FULL_LOAD"):
        return None
    try:
        from numba.core.runtime import rtsys
    except ImportError:                              # pragma: no cover - another numba
        return None
    return rtsys if hasattr(rtsys, "initialize") else None


_LIGHT_LOAD = _light_load_runtime()

_threads_state = {"ready": False, "lock": None}
_threads_init_lock = threading.Lock()


def _init_threads():
    from numba.np.ufunc import parallel as _par
    with _threads_init_lock:
        if _threads_state["ready"]:
            return
        try:
            _par._launch_threads()
        except ValueError:
            # No thread-safe layer here: fall back to workqueue and serialise.
            _nb_config.THREADING_LAYER = "workqueue"
            _par._launch_threads()
        if numba.threading_layer() == "workqueue":
            log.warning("numba has no thread-safe threading layer here (install tbb or use "
                        "OpenMP); parallel kernels are serialised across Python threads")
            _threads_state["lock"] = threading.Lock()
        _threads_state["ready"] = True


def threading_layer() -> str:
    """The numba threading layer in use, initialising it if needed."""
    _init_threads()
    return numba.threading_layer()


def num_threads() -> int:
    return numba.get_num_threads()


_entries: dict = {}


def entry(dispatcher, *args, literals: tuple = ()):
    """Compiled entry point of ``dispatcher`` for the types of ``args``.

    ``literals`` lists positions of integer arguments the kernel specialises
    on with ``numba.literally`` (block shapes, slice widths): they are typed
    as literals, so the loops over them are unrolled at compile time.

    Loads from the disk cache or compiles on first use.  For parallel
    dispatchers the thread layer is initialised first, and when it is not
    thread-safe the returned callable holds a lock around the launch.
    """
    quick = _quick_signature(args, literals)
    if quick is not None:
        fn = _quick_entries.get((dispatcher, quick))
        if fn is not None:
            return fn
    sig = tuple(numba.types.literal(a) if i in literals else numba.typeof(a)
                for i, a in enumerate(args))
    key = (dispatcher, sig)
    fn = _entries.get(key)
    if fn is None:
        parallel = dispatcher.targetoptions.get("parallel", False)
        if parallel:
            _init_threads()
        fn = dispatcher.compile(sig)
        lock = _threads_state["lock"] if parallel else None
        if lock is not None:
            raw = fn

            def fn(*a, _raw=raw, _lock=lock):
                with _lock:
                    return _raw(*a)
        _entries[key] = fn
    if quick is not None:
        _quick_entries[(dispatcher, quick)] = fn
    return fn


# numba.typeof costs ~20 us an array (it builds and interns a type object); binding a
# kernel of nine arguments took ~150 us, as much as the product of a 100k-nnz matrix.
# The quick signature keys on exactly what typeof reads: for an ndarray its dtype,
# ndim, layout and writeability; for scalars their type (and range, for Python ints).
_quick_entries: dict = {}
_INT64 = (-2**63, 2**63)


def _quick_signature(args, literals):
    """A hashable stand-in for the numba signature of ``args``, or None (use typeof)."""
    key = []
    for i, a in enumerate(args):
        t = type(a)
        if t is np.ndarray:
            f = a.flags
            key.append((a.dtype, a.ndim, f.c_contiguous or (not f.f_contiguous and None), f.writeable))
        elif i in literals:
            key.append((t, a))
        elif a is None or t is bool or t is float or (t is not int and isinstance(a, np.generic)):
            key.append(t)
        elif t is int:
            key.append((t, _INT64[0] <= a < _INT64[1]))
        else:
            return None
    return tuple(key)


@jit
def _balanced_bounds(indptr, nparts, row_cost):
    """Row boundaries of ``nparts`` chunks of about equal nnz + row_cost*rows."""
    m = indptr.size - 1
    bounds = np.empty(nparts + 1, dtype=np.int64)
    bounds[0] = 0
    bounds[nparts] = m
    total = (indptr[m] - indptr[0]) + row_cost * m
    for p in range(1, nparts):
        target = total * p / nparts
        lo = bounds[p - 1]
        hi = m
        while lo < hi:                         # first row i with weight(i) >= target
            mid = (lo + hi) // 2
            if (indptr[mid] - indptr[0]) + row_cost * mid < target:
                lo = mid + 1
            else:
                hi = mid
        bounds[p] = lo
    return bounds


def balanced_bounds(indptr: np.ndarray, nparts: int | None = None, row_cost: float = 2.0) -> np.ndarray:
    """nnz-balanced row partition (int64 boundaries, ``nparts + 1`` of them).

    Each row is charged its nnz plus ``row_cost`` for its loop overhead, so
    matrices with many empty rows are balanced too.
    """
    if nparts is None:
        nparts = num_threads()
    return _balanced_bounds(indptr, max(1, int(nparts)), float(row_cost))


def use_parallel(work: int) -> bool:
    return work >= PARALLEL_MIN_WORK and num_threads() > 1


class _CompilerClock(numba.core.event.Listener):
    """Per-thread seconds spent in numba's compiler lock: compiles and disk-cache loads.

    The tuner subtracts it from build and search times, so a cold kernel cache
    neither biases the choice of layout nor pollutes the costs it stores.
    """

    def __init__(self):
        self._local = threading.local()

    def on_start(self, event):
        loc = self._local
        depth = getattr(loc, "depth", 0)
        if depth == 0:
            loc.t0 = time.perf_counter()
        loc.depth = depth + 1

    def on_end(self, event):
        loc = self._local
        loc.depth -= 1
        if loc.depth == 0:
            loc.total = getattr(loc, "total", 0.0) + time.perf_counter() - loc.t0


_compiler_clock = _CompilerClock()
numba.core.event.register("numba:compiler_lock", _compiler_clock)


def compile_seconds() -> float:
    """Seconds this thread has spent compiling or loading kernels so far."""
    return getattr(_compiler_clock._local, "total", 0.0)
