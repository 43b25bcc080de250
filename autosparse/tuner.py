"""tune(), build() and lookup(): the public entry points.

Data flows one way: A -> profile -> fingerprint -> store lookup -> (hit: plan)
or (miss: search -> plan -> store save) -> build -> TunedMatrix.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np

from . import formats, timing
from ._checks import as_csr
from .formats import baseline as _baseline
from .kernels._runtime import compile_seconds
from .operator import TunedMatrix
from .plan import BASELINE, Plan
from .search import EFFORTS, Report, Search
from .workload import Workload

log = logging.getLogger("autosparse")

# A search costs at least this many baseline products (profile, baseline
# timing, one candidate's build, check and timing) plus fixed Python work.
MIN_SEARCH_PRODUCTS = 12
MIN_SEARCH_SECONDS = 5e-3
BEST_CASE_SAVING = 0.7      # no layout saves more than this share of the workload
_FEW_CALLS = MIN_SEARCH_PRODUCTS / BEST_CASE_SAVING     # below: not worth a search, whatever the matrix

# tune()'s too-small path as module globals: a one-call tune() has about a microsecond
_clock = timing.clock
_from_csr = _baseline.from_csr
_of_baseline = TunedMatrix._of_baseline
_as_given = TunedMatrix._as_given


def tune(A, workload=None, *, effort="measure", time_limit=None, memory_limit=None, store=None, seed=0) -> TunedMatrix:
    """The layout(s) of ``A`` that make ``workload`` fastest, as a LinearOperator.

    Parameters
    ----------
    A : scipy.sparse matrix or array
        Any SciPy sparse format; integer and bool matrices compute in float64.
    workload : Workload, dict, str or None
        Expected calls, e.g. ``Workload(matvec=2000, rmatvec=2000)`` or
        ``"matvec=1000,matmat16=10"``.  None: a matvec-heavy default.
    effort : {"estimate", "measure", "patient", "exhaustive", "cache_only"}
    time_limit : float seconds or None — bounds the search.
    memory_limit : int bytes or None — bounds the tuned storage, all copies
        counted, checked from estimates before anything is allocated.
    store : None (default store), path, PlanStore, or False (no store).
    seed : int — random operands and the sampler; results are reproducible
        apart from timing noise.
    """
    # The path to a one-call workload's answer is a few microseconds long: on a small
    # matrix tune() plus one product must cost no more than SciPy's product alone.
    t_start = _clock()
    if effort not in EFFORTS:
        raise ValueError(f"unknown effort {effort!r}; accepted: {', '.join(EFFORTS)}")
    if time_limit is not None or memory_limit is not None:
        time_limit = _positive(time_limit, "time_limit", numbers.Real)
        memory_limit = _positive(memory_limit, "memory_limit", numbers.Integral)
    if type(seed) is not int or not 0 <= seed < 2**32:
        _check_seed(seed)
    if type(workload) is not Workload:
        workload = Workload.coerce(workload)
    if workload._vector_equivalents <= _FEW_CALLS and memory_limit is None:
        # the commonest too-small answer, a CSR or CSC SciPy's kernels take as it is, in one
        # object: its Report is made when asked for (building it is a fifth of this path)
        tuned = _as_given(A, (_TOO_SMALL, effort, workload, _clock() - t_start))
        if tuned is not None:
            return tuned
    base = _from_csr(A)                               # validates A; copies nothing
    if memory_limit is not None and memory_limit < base.nbytes:
        raise ValueError(f"memory_limit={memory_limit} bytes is below the {base.nbytes} bytes the matrix "
                         "itself takes (the SciPy baseline); raise it or pass None")

    if _too_small_to_tune(base, workload):
        return _of_baseline(base, (_TOO_SMALL, effort, workload, _clock() - t_start))

    c_start = compile_seconds()                       # nothing before this point compiles

    def finish(layouts, plan, report):
        report.plan = plan
        report.tuning_s = timing.clock() - t_start
        report.compile_s = compile_seconds() - c_start
        return TunedMatrix(layouts, plan, report)

    A_csr = as_csr(A)
    from .profile import profile
    t = timing.clock()
    prof = profile(A_csr, seed=seed)
    profile_s = timing.clock() - t

    st = _resolve_store(store)
    warm = []
    if st is not None:
        hit = st.lookup(prof, workload, effort)
        if hit is not None:
            rep = Report("store", effort, str(workload), profile_s=profile_s)
            try:
                layouts = _build_layouts(A_csr, hit, base)
                return finish(layouts, hit, rep)
            except (ValueError, TypeError) as exc:     # a stored plan that no longer applies
                log.warning("stored plan %s does not apply (%s); searching", hit.describe(), exc)
        warm = st.warm_starts(prof, workload)
    if effort == "cache_only":
        rep = Report("baseline (cache_only: no stored plan)", effort, str(workload), profile_s=profile_s)
        return finish([base], Plan.baseline(), rep)

    search = Search(A_csr, prof, workload, effort=effort, time_limit=time_limit, memory_limit=memory_limit,
                    seed=seed, warm_starts=warm, baseline_format=base)
    if effort == "estimate":
        plan, predicted = search.estimate()
        rep = Report("estimate (cost model, nothing timed)", effort, str(workload), objective=predicted,
                     profile_s=profile_s)
        layouts = _build_layouts(A_csr, plan, base)
        return finish(layouts, plan, rep)

    plan, value = search.run()
    base_cand = search.candidates[next(iter(search.candidates))]
    rep = Report("search", effort, str(workload), candidates=[search.candidates[k] for k in search.order],
                 baseline_times=dict(base_cand.times), objective=value,
                 baseline_objective=search.workload_cost(base_cand.times, 0.0), profile_s=profile_s,
                 stop_reason=search.stop_reason, trials=search.trials, notes=list(search.notes))
    layouts = [f for f in search.formats_of(plan)]
    if any(f is None for f in layouts):
        layouts = _build_layouts(A_csr, plan, base)
    tuned = finish(layouts, plan, rep)
    if st is not None:
        st.save(prof, workload, effort, plan, rep)
    return tuned


def build(A, plan) -> TunedMatrix:
    """Apply ``plan`` (a Plan, its dict or its JSON) to ``A``; nothing is timed."""
    if isinstance(plan, str):
        plan = Plan.from_json(plan)
    elif isinstance(plan, dict):
        plan = Plan.from_dict(plan)
    elif not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan, dict or JSON string, got {type(plan).__name__}")
    base = formats.get(BASELINE).from_csr(A)
    A_csr = as_csr(A) if not plan.is_baseline else None
    return TunedMatrix(_build_layouts(A_csr, plan, base), plan, None)


def lookup(A, workload=None, *, effort="measure", store=None) -> Plan | None:
    """The stored plan for ``A`` and ``workload``, or None; never times anything."""
    if effort not in EFFORTS:
        raise ValueError(f"unknown effort {effort!r}; accepted: {', '.join(EFFORTS)}")
    workload = Workload.coerce(workload)
    st = _resolve_store(store)
    if st is None:
        return None
    from .profile import profile
    return st.lookup(profile(as_csr(A)), workload, effort)


# -- helpers -------------------------------------------------------------------

def _build_layouts(A_csr, plan: Plan, base):
    out = []
    AH = None
    for lay in plan.layouts:
        if lay.format == BASELINE:
            if lay.of != "A":
                raise ValueError("the scipy baseline layout can only be of A")
            out.append(base)
            continue
        src = A_csr
        if lay.of == "AH":
            if AH is None:
                AH = as_csr(A_csr.T.conj())
            src = AH
        out.append(formats.get(lay.format).from_csr(src, **lay.params))
    return out


_TOO_SMALL = "baseline (workload too small for tuning to pay off)"


def _too_small_to_tune(base, workload) -> bool:
    """O(1): can even the best layout repay a minimal search?  (OSKI's rule, before starting.)"""
    calls = workload._vector_equivalents                # 0 exactly when there are no calls
    if calls <= _FEW_CALLS:                             # whatever the matrix
        return True
    m, n = base.shape
    nnz = base.nnz
    if m == 0 or n == 0 or nnz == 0:
        return True
    t_product = nnz * 1.5e-9 + (m + n) * 1e-9 + 2e-6        # a rough SciPy matvec
    best_saving = BEST_CASE_SAVING * calls * t_product
    return best_saving < MIN_SEARCH_PRODUCTS * t_product + MIN_SEARCH_SECONDS


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")


def _positive(value, name, kind):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an integer' if kind is numbers.Integral else 'a number'} or None, "
                        f"got {type(value).__name__}")
    if not value > 0 or (isinstance(value, float) and not np.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _resolve_store(store):
    if store is False:
        return None
    from .store import resolve
    return resolve(store)
