"""The search: which layouts to try, how to judge them, when to stop.

Flow of one search (``Search.run``):

1. Time the SciPy baseline on every operation of the workload.  Random
   operands come from ``seed``; SciPy's results on them are the references.
2. Enumerate every format's configurations for this profile, predict their
   cost with the cost model (calibrated by the baseline's measured/predicted
   ratio, on the memory terms alone when the baseline is memory-bound:
   ``_calibrated``) and drop what cannot win or does not fit ``memory_limit``.
3. Measure layouts in this order (``next_layout``): warm starts from the plan
   store; the model's best layout of each format and side (``leaders``);
   then untried storage twins (other index widths or value storage) and then
   neighbours (one parameter changed) of the best plan so far, best predicted
   first (also of its narrowest-index twin when that measured within
   WIDTH_TWIN), so measurements, not the model, steer the parameters;
   then the model's order.  With ``effort="patient"`` these are
   enqueued into an optuna study (TPE sampler, in-memory, ``n_jobs=1``)
   whose define-by-run space (format, then its parameters, then the copies:
   whether Aᴴx gets its own layout) TPE then samples; ``measure`` and
   ``exhaustive`` have no TPE trials, so they evaluate the queue directly
   and never import optuna (0.26 s).  Evaluating a layout: estimate its
   bytes (pruned before allocating when over the limit), build it, check
   every workload operation against SciPy (a disagreeing layout is
   rejected, logged and never returned) and time it.  Compile and
   kernel-cache-load time is measured apart and counts neither in build
   times nor in the search budget.
4. Stop by OSKI's rule - when the saving still expected from the next
   candidate is less than the time the search has already spent - or when
   the effort's budget, ``time_limit`` or the candidates run out, or when the
   next layout's build is expected to end past OVERRUN_FACTOR x the budget
   (``_build_overrun``).  The
   expected saving is E[max(0, best - cost)] with the model's prediction
   of the cost off by a log-normal error, refit from the measured layouts.
5. From everything measured, pick the plan exactly: the single layout or
   pair of layouts (one of A, one of Aᴴ for the adjoint products) that
   minimises build + Σ calls × time within the memory limit.  The copies are
   sampled by TPE but also solved exactly here: it is a small assignment
   over measured layouts, and sampling alone would waste trials on it.
6. Re-time the finalists (``finalists``: the winner, its narrowest-index
   variant, its nearest runner-up, the best of each other format within 2x
   of it, the other runner-ups within 30%; five at most) and the baseline interleaved, so
   the winner is not an artefact of a noisy moment; each is ranked by the
   median over rounds of its cost ratio to the baseline in the same round.
   Where the workload repays it, the ones still within NEAR_TIE are timed
   again over more rounds (``_break_ties``).  Keep the fastest - a plan with narrower indices
   when it is within WIDTH_TIE - and fall back to the baseline unless it is
   faster on the whole workload, build included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import cost, formats, timing, verify
from .kernels._runtime import compile_seconds
from .plan import BASELINE, OPERATIONS, Layout, Plan

log = logging.getLogger("autosparse")

EFFORTS = ("estimate", "measure", "patient", "exhaustive", "cache_only")

# Per effort: search budget in baseline-workload-free units (multiples of the
# baseline's time for one pass over the workload's operations; "measure"
# leaves room under 100 for the profile, the trial that crosses the budget
# and the final interleaved re-timing), a floor in
# seconds for small matrices, how many model-ranked candidates to enqueue,
# extra TPE trials after them, and timing samples per measurement.
EFFORT_SETTINGS = {
    "measure": dict(budget_calls=40, floor=0.3, enqueue=24, leaders=16, tpe=0, samples=5),
    "patient": dict(budget_calls=1500, floor=3.0, enqueue=24, leaders=10, tpe=20, samples=9),
    "exhaustive": dict(budget_calls=math.inf, floor=math.inf, enqueue=None, leaders=None, tpe=0, samples=9),
}
PRUNE_FACTOR = 1.6        # candidates predicted this much slower than the baseline are not measured
FINALIST_SPREAD = 0.3     # runner-ups this close to the winner's search cost are re-timed beside it
FINALIST_FORMAT_SPREAD = 1.0  # the best of another format this close is re-timed too
MAX_FINALISTS = 5
FINALIST_NEAR = 0.10      # runner-ups this close to the winner's search cost are finalists before other formats
NEAR_TIE = 0.2            # finalists this close after the re-timing are timed again, alone, with more rounds
TIE_SHARE = 0.03          # ... for at most this share of the baseline's workload cost
TIE_MAX_SECONDS = 0.1     # ... and at most this long (small matrices keep within their tuning bound)
MAX_TIE_ROUNDS = 25
LEADERS_SHARE = 0.02      # the OSKI rule waits for every format's leader while the search costs less than this
NEIGHBOURS_SHARE = 0.05   # ... and for the best plan's untried neighbours while it costs less than this
OVERRUN_FACTOR = 1.5      # no trial is started whose build is expected to end past this x the budget
WIDTH_TIE = 0.01          # a plan with narrower indices, otherwise equal, wins when this close: fewer bytes
WIDTH_TWIN = 0.04         # the neighbour walk also starts from a narrower twin this close to the best
PAIR_MAX_SECONDS = 2e-3  # candidates of products up to this long are timed beside the baseline (_paired_look)
PAIR_ROUNDS = 5
SUSPECT_FACTOR = 4.0      # a measurement this much slower than the model's prediction is taken again
MODEL_SIGMA = 0.4         # prior spread of log(measured / predicted) cost; refit from 3 measured candidates
MODEL_SIGMA_RANGE = (0.2, 0.8)


@dataclass
class Candidate:
    """One layout the search considered."""
    layout: Layout
    source: str                          # "baseline", "model", "warm-start", "tpe"
    est_bytes: int = 0
    predicted: dict = field(default_factory=dict)      # (op, k) -> s, rescaled
    build_s: float | None = None
    compile_s: float = 0.0
    times: dict = field(default_factory=dict)          # (op, k) -> s per call
    verified: bool | None = None
    error: str | None = None             # why rejected (never returned when set)
    speedup: dict = field(default_factory=dict)        # (op, k) -> baseline / this
    nbytes: int | None = None            # bytes of the built layout
    _format: object = field(default=None, repr=False, compare=False)   # the built layout, while kept

    @property
    def ok(self):
        return self.verified is True and self.error is None

    def to_dict(self):
        return {"layout": self.layout.to_dict(), "key": self.layout.key, "source": self.source,
                "est_bytes": self.est_bytes, "build_s": self.build_s, "compile_s": self.compile_s,
                "times": {f"{op}{k if op in ('matmat', 'rmatmat') else ''}": t for (op, k), t in self.times.items()},
                "verified": self.verified, "error": self.error,
                "speedup": {f"{op}{k if op in ('matmat', 'rmatmat') else ''}": s for (op, k), s in self.speedup.items()}}


@dataclass
class Report:
    """What a tune() did: where the plan came from and everything measured."""
    source: str                          # "search", "estimate", "store", "baseline (...)"
    effort: str
    workload: str
    plan: Plan | None = None
    candidates: list = field(default_factory=list)
    baseline_times: dict = field(default_factory=dict)
    objective: float | None = None       # predicted/measured workload seconds of the plan, build included
    baseline_objective: float | None = None
    tuning_s: float = 0.0
    profile_s: float = 0.0
    compile_s: float = 0.0
    stop_reason: str = ""
    trials: int = 0
    notes: list = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        if self.objective and self.baseline_objective:
            return self.baseline_objective / self.objective
        return None

    def to_dict(self):
        return {"source": self.source, "effort": self.effort, "workload": self.workload,
                "plan": self.plan.to_dict() if self.plan else None,
                "candidates": [c.to_dict() for c in self.candidates],
                "baseline_times": {f"{op}{k if op in ('matmat', 'rmatmat') else ''}": t
                                   for (op, k), t in self.baseline_times.items()},
                "objective": self.objective, "baseline_objective": self.baseline_objective,
                "speedup": self.speedup, "tuning_s": self.tuning_s, "profile_s": self.profile_s,
                "compile_s": self.compile_s, "stop_reason": self.stop_reason, "trials": self.trials,
                "notes": list(self.notes)}

    def __str__(self):
        lines = [f"autosparse report: {self.source}, effort={self.effort}, workload {self.workload}"]
        if self.plan is not None:
            lines.append(f"  plan: {self.plan.describe()}")
        if self.speedup:
            # against the scipy() plan: SciPy's kernel on the input, or the threaded CSR gather on
            # its arrays for large CSR input, which is faster than SciPy: the figure is conservative
            lines.append(f"  workload speed-up over the matrix as given (scipy() plan, build included): "
                         f"{self.speedup:.2f}x")
        lines.append(f"  tuning {self.tuning_s:.3f} s (profile {self.profile_s:.3f} s, "
                     f"kernel compile/load {self.compile_s:.3f} s excluded), {self.trials} trials"
                     + (f", stopped: {self.stop_reason}" if self.stop_reason else ""))
        if self.candidates:
            lines.append(f"  {'layout':44s} {'build ms':>9s} {'verified':>9s}  times (speed-up)")
            for c in self.candidates:
                ver = "yes" if c.verified else ("no" if c.verified is False else "-")
                b = f"{c.build_s * 1e3:9.2f}" if c.build_s is not None else f"{'-':>9s}"
                ts = ", ".join(f"{op}{k if op in ('matmat', 'rmatmat') else ''} {t * 1e6:.1f}us"
                               + (f" ({c.speedup[(op, k)]:.2f}x)" if (op, k) in c.speedup else "")
                               for (op, k), t in c.times.items())
                lines.append(f"  {c.layout.key[:44]:44s} {b} {ver:>9s}  {ts or c.error or ''}"
                             + (f"  [{c.error}]" if c.error and ts else ""))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def workload_ops(workload):
    """(op, k, calls) of the workload, as products on A."""
    return workload.items()


class Search:
    def __init__(self, A, prof, workload, *, effort, time_limit, memory_limit, seed, warm_starts=(),
                 baseline_format=None, clock=timing.clock):
        self.A = A                          # canonical CSR
        self.prof = prof
        self.workload = workload
        self.effort = effort
        self.settings = EFFORT_SETTINGS.get(effort, EFFORT_SETTINGS["measure"])   # estimate: nothing timed
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.seed = seed
        self.warm_starts = list(warm_starts)
        self.clock = clock
        self.ops = workload_ops(workload)
        self.rng = np.random.default_rng(seed)
        self.baseline_format = baseline_format or formats.get(BASELINE).from_csr(A)
        self._operands = {}
        self._pair_calls = {}               # (op, k) -> the baseline's call candidates are timed beside
        self._references = {}
        self._AH = None
        self._prof_AH = None
        self.candidates: dict = {}          # Layout -> Candidate
        self.order: list = []
        for name in formats.names():        # one-time module imports are not search time
            formats.get(name)
        self.excluded = 0.0                 # seconds of one-time setup (optuna's import) not counted
        self.t0 = clock()
        self.compile0 = compile_seconds()
        self.trials = 0
        self.stop_reason = ""
        self.notes: list = []
        self.predicted: dict = {}
        self.queue: list = []
        self.leaders: list = []
        self.predicted_build: dict = {}     # Layout -> the model's build seconds

    # -- operands and references ---------------------------------------------
    def operand(self, op, k):
        key = (op, k)
        if key not in self._operands:
            m, n = self.A.shape
            length = m if op in ("rmatvec", "rmatmat") else n
            shape = (length,) if op in ("matvec", "rmatvec") else (length, k)
            # uniform in [-1, 1): a quarter of standard_normal's time on a large operand
            x = self.rng.uniform(-1.0, 1.0, shape)
            if self.A.dtype.kind == "c":
                x = x + 1j * self.rng.uniform(-1.0, 1.0, shape)
            self._operands[key] = x.astype(self.A.dtype, copy=False)
        return self._operands[key]

    def reference(self, op, k):
        key = (op, k)
        if key not in self._references:
            x = self.operand(op, k)
            y, mag = verify.reference(self.A, x, op)
            self._references[key] = (y, mag, verify.max_terms(self.A, op))
        return self._references[key]

    @property
    def AH(self):
        if self._AH is None:
            self._AH = sp.csr_array(self.A.T.conj().tocsr())
            self._AH.sort_indices()
        return self._AH

    def profile_AH(self):
        if self._prof_AH is None:
            from .profile import profile
            self._prof_AH = profile(self.AH, seed=self.seed)
        return self._prof_AH

    # -- time accounting ---------------------------------------------------------
    def spent(self) -> float:
        """Search seconds so far; kernel compiles, cache loads and one-time imports excluded."""
        return self.clock() - self.t0 - (compile_seconds() - self.compile0) - self.excluded

    # -- evaluation ----------------------------------------------------------
    def _call(self, F, op, k, side):
        """A callable computing op (a product of A) with layout F built from ``side``."""
        x = self.operand(op, k)
        out = np.empty(((self.A.shape[1] if op in ("rmatvec", "rmatmat") else self.A.shape[0]),) +
                       ((k,) if op in ("matmat", "rmatmat") else ()), dtype=np.result_type(self.A.dtype, x.dtype))
        direct = (side == "A") == (op in ("matvec", "matmat"))
        if op in ("matvec", "rmatvec"):
            f = F.matvec if direct else F.rmatvec
        else:
            f = F.matmat if direct else F.rmatmat
        return lambda: f(x, out), out

    def ops_for(self, side):
        """Operations a layout of ``side`` is measured on: all for A, adjoint ones for Aᴴ."""
        if side == "A":
            return self.ops
        return [(op, k, c) for op, k, c in self.ops if op in ("rmatvec", "rmatmat")]

    def measure(self, cand: Candidate, F=None) -> Candidate:
        """Build (unless given), verify and time a candidate on its operations."""
        lay = cand.layout
        c0 = compile_seconds()
        try:
            if F is None:
                src = self.A if lay.of == "A" else self.AH
                t = self.clock()
                F = formats.get(lay.format).from_csr(src, **lay.params)
                cand.build_s = max(0.0, self.clock() - t - (compile_seconds() - c0))
            else:
                cand.build_s = 0.0
            for op, k, _calls in self.ops_for(lay.of):
                fn, out = self._call(F, op, k, lay.of)
                fn()                                    # first call: compiles or loads kernels, output checked
                # SciPy on the user's own matrix is the reference itself; checking it against
                # the canonical copy could only fail on near-cancelling duplicate entries
                if lay.format != BASELINE:
                    y_ref, mag, terms = self.reference(op, k)
                    ratio = verify.error_ratio(out, y_ref, mag, terms, out.dtype)
                    if not ratio <= 1.0:
                        cand.verified = False
                        cand.error = f"{op} disagrees with SciPy (error {ratio:.3g}x tolerance)"
                        log.warning("rejected %s: %s", lay.key, cand.error)
                        return cand
                ref = self._pair_reference(lay, op, k)
                if ref is not None:
                    cand.times[(op, k)] = self._paired_look(fn, *ref)
                    continue

                def look():
                    return timing.measure(fn, budget=self._measure_budget(), max_samples=self.settings["samples"]).median
                t = look()
                expect = self.predicted.get(lay, (None, {}))[1].get((op, k))
                if expect and t > SUSPECT_FACTOR * expect:
                    # far slower than the model says: a layout the model misjudges, or a stall of the
                    # shared machine (one made a 30 us layout measure 8 ms, and the search gave up on
                    # it); a second look costs little against either
                    t = min(t, look())
                cand.times[(op, k)] = t
            cand.verified = True
        except (ValueError, TypeError, MemoryError) as exc:
            cand.error = f"{type(exc).__name__}: {exc}"
            # a ValueError is a layout that does not apply; a TypeError is more likely a bug
            (log.warning if isinstance(exc, TypeError) else log.info)("candidate %s failed: %s", lay.key, cand.error)
        finally:
            cand.compile_s = compile_seconds() - c0
        base = self.candidates.get(Layout(BASELINE))
        if base is not None and base.times and cand.ok:
            cand.speedup = {key: base.times[key] / t for key, t in cand.times.items() if key in base.times and t > 0}
        cand._format = F if cand.ok else None
        return cand

    def _pair_reference(self, lay, op, k):
        """(the baseline's call, its time) to time a candidate's ``op`` beside, or None: the
        baseline itself, fake or missing baseline times, and products too long to pair."""
        if lay.format == BASELINE:
            return None
        base = self.candidates.get(Layout(BASELINE))
        t = base.times.get((op, k)) if base is not None else None
        if not t or t > PAIR_MAX_SECONDS:
            return None
        fns = self._pair_calls
        if (op, k) not in fns:
            fns[(op, k)] = self._call(self.baseline_format, op, k, "A")[0]
        return fns[(op, k)], t

    def _paired_look(self, fn, ref, ref_s) -> float:
        """Seconds per call of ``fn`` as the baseline's ``ref_s`` times the median over
        PAIR_ROUNDS rounds of its time over the baseline's in the same round.

        This VM switches between a fast and a slow speed within milliseconds (the same CSR
        layout measured 3.9 and 8.7 us in one search); timed alone, a candidate was ranked by
        the speed of the moment it was measured in, and the search's order of layouts
        disagreed with every later timing of them.  Both calls of a round share the moment."""
        # samples of at least timing's 0.2 ms batch: 2-3 a round for short products (measured on
        # rajat01, 20 us: 5 rounds of 2-3 samples put the ratio of two layouts within 1% from look
        # to look, 3 rounds of 1-2 within 10%); one for long products, which last long enough
        n = 1 if ref_s > 2e-4 else 2
        t = timing.interleaved({"c": fn, "b": ref}, rounds=PAIR_ROUNDS, budget=self._measure_budget() / PAIR_ROUNDS,
                               min_samples=n, max_samples=n + (n > 1))
        c, b = t["c"], t["b"]
        if len(c.rounds) == len(b.rounds) and c.rounds and all(x > 0 for x in b.rounds):
            ratio = float(np.median([x / y for x, y in zip(c.rounds, b.rounds)]))
        else:
            ratio = c.median / b.median if b.median > 0 else 1.0
        return ratio * ref_s

    def _measure_budget(self):
        return 0.05 if self.effort == "measure" else 0.2

    def workload_cost(self, times_by_op, build_s) -> float:
        return build_s + sum(calls * times_by_op[(op, k)] for op, k, calls in self.ops)

    # -- candidates ------------------------------------------------------------
    def enumerate(self):
        """Model-ranked candidate layouts (A side; Aᴴ copies when the workload has adjoint calls)."""
        out = []
        sides = [("A", self.prof)]
        adjoint_share = sum(c * k for op, k, c in self.ops if op in ("rmatvec", "rmatmat")) / \
            max(self.workload.vector_equivalents(), 1)
        if adjoint_share >= 0.2 and self.A.shape[0] * self.A.shape[1] > 0:
            sides.append(("AH", None))
        for side, prof in sides:
            for name in formats.names():
                if name == BASELINE:
                    continue
                mod = formats.get(name)
                if side == "AH":
                    if name not in AH_FORMATS:
                        continue
                    prof = self.profile_AH()
                try:
                    configs = mod.configurations(prof)
                except Exception as exc:          # a broken format must not break tuning
                    log.warning("format %s: configurations failed: %s", name, exc)
                    continue
                for params in configs:
                    lay = Layout(name, params, side)
                    try:
                        est = int(mod.estimate_nbytes(prof, **params))
                        pred = {(op, k): cost.predict_terms(prof, name, params, _side_op(op, side), k,
                                                            layout_bytes=est)
                                for op, k, _ in self.ops_for(side)}
                        build = cost.predict_build(prof, name, params, of=side, layout_bytes=est)
                    except Exception as exc:
                        log.warning("format %s%s: estimate failed: %s", name, params, exc)
                        continue
                    out.append((lay, est, pred, build))
        return out


    # -- the search ----------------------------------------------------------
    def run(self):
        """Search and return (plan, report fields, {layout: built Format})."""
        base = self.evaluate(Layout(BASELINE), "baseline", F=self.baseline_format)
        if not base.ok:
            raise RuntimeError(f"the SciPy baseline failed its own check: {base.error}")
        self.calibration = self._calibrate(base)
        ranked = self.rank()
        self.queue = ranked
        budget = self.budget(base)
        study = None                # made on the first trial: importing optuna costs ~0.3 s
        n_model = len(ranked) if self.settings["enqueue"] is None else min(len(ranked), self.settings["enqueue"])
        n_trials = n_model + len(self.warm_starts) + self.settings["tpe"]
        while self.trials < n_trials:
            reason = self.should_stop(budget)
            if reason:
                self.stop_reason = reason
                break
            if not self.settings["tpe"]:
                # Without TPE trials every trial is a layout of our own queue, so
                # optuna would only replay it: we evaluate it directly and spare the
                # 0.26 s import of optuna (a quarter of the 1 s start-up target)
                lay = self.next_layout()
                if lay is None:
                    self.stop_reason = "candidates exhausted"
                    break
                overrun = self._build_overrun(lay, budget)
                if overrun:
                    self.stop_reason = overrun
                    break
                self.evaluate(lay, "warm-start" if lay in self.warm_starts else "model")
                self.trials += 1
                continue
            if study is None:
                t = self.clock()
                import optuna  # noqa: F401 - imported here so that its import is not search time
                self.excluded += self.clock() - t
                study, objective, enqueue = self._study(ranked)
            if self.trials < n_trials - self.settings["tpe"]:
                lay = self.next_layout()
                if lay is None:
                    n_trials = self.trials + self.settings["tpe"]
                else:
                    enqueue(lay)
            study.optimize(objective, n_trials=1)
            self.trials += 1
        else:
            untried = any(lay not in self.candidates for _, lay in self.queue)
            self.stop_reason = f"trial limit ({n_trials}) reached" if untried else "candidates exhausted"
        plan, value = self.best_plan()
        plan, value = self.confirm(plan, value)
        return plan, value

    def evaluate(self, lay: Layout, source: str, F=None) -> Candidate:
        cand = self.candidates.get(lay)
        if cand is not None:
            return cand
        cand = Candidate(lay, source)
        self.candidates[lay] = cand
        self.order.append(lay)
        if lay.format == BASELINE:
            cand.est_bytes = F.nbytes if F is not None else 0
        else:
            mod = formats.get(lay.format)
            prof = self.prof if lay.of == "A" else self.profile_AH()
            try:
                cand.est_bytes = int(mod.estimate_nbytes(prof, **lay.params))
            except Exception as exc:      # bad warm-start or sampled params
                cand.error = f"not applicable: {exc}"
                return cand
            if self.memory_limit is not None and cand.est_bytes > self.memory_limit:
                cand.error = f"over memory limit: estimated {cand.est_bytes} bytes > {self.memory_limit}"
                return cand
        self.measure(cand, F)
        if cand.ok:
            cand.nbytes = cand._format.nbytes
            if self.memory_limit is not None and cand.nbytes > self.memory_limit:
                cand.error = f"over memory limit: built {cand.nbytes} bytes > {self.memory_limit}"
                cand._format = None
        self._release()
        return cand

    def _release(self):
        """Keep built layouts only for the current best plan: memory stays bounded."""
        keep = set(self.best_plan()[0].layouts) | {Layout(BASELINE)}
        for lay, c in self.candidates.items():
            if lay not in keep:
                c._format = None

    def _calibrate(self, base):
        """Per operation: (the baseline's measured/predicted ratio, whether its prediction was
        memory-bound), which ``_calibrated`` applies to every prediction."""
        cal = {}
        for op, k, _ in self.ops:
            terms = self._baseline_terms(op, k)
            pred = cost.total(terms)
            cal[(op, k)] = (base.times[(op, k)] / pred if pred > 0 else 1.0, terms[0] >= terms[1])
        return cal

    def _calibrated(self, key, terms) -> float:
        """A prediction's seconds, calibrated by the baseline's ratio (``_calibrate``).

        A memory-bound baseline measures the memory's bandwidth, not the cores: its ratio then
        scales only memory terms.  Scaling compute terms too had ranked elasticity_500's SELL
        value tables first (predicted 0.63x the baseline, compute-bound at 1.5x measured): the
        model's DRAM bandwidth (20 GB/s) is half of this Zen 5's, and the ratio of 0.54 that
        said so had shrunk the cores' time by as much.  A compute-bound baseline (SciPy's
        serial kernel, in cache) scales everything, as the machine's clock and caches do."""
        ratio, memory_bound = self.calibration.get(key, (1.0, False))
        if memory_bound:
            memory, compute, fixed = terms
            return cost.total((memory * ratio, compute, fixed))
        return cost.total(terms) * ratio

    def _baseline_terms(self, op, k):
        """The model's terms (``cost.predict_terms``) for the scipy() plan's product: SciPy's
        serial kernel, or for a large CSR (CSC) input's A x (Aᴴ x) the threaded csr gather it
        runs on A's arrays."""
        threaded = getattr(self.baseline_format, "threaded_gather", None)
        if threaded is not None and k == 1 and threaded(op):
            return cost.predict_terms(self.prof, "csr", {"index_dtype": "int32", "values": "full"}, "matvec", 1)
        return cost.predict_terms(self.prof, BASELINE, {}, op, k)

    def rank(self):
        """Candidates ordered by predicted plan cost, pruned; warm starts go first elsewhere."""
        base = self.candidates[Layout(BASELINE)]
        base_cost = self.workload_cost(base.times, 0.0)
        ranked, dropped, over_memory = [], 0, 0
        self.predicted_build = {}
        for lay, est, pred, build in self.enumerate():
            if self.memory_limit is not None and est > self.memory_limit:
                over_memory += 1
                continue
            pred = {key: self._calibrated(key, terms) for key, terms in pred.items()}
            times = dict(base.times)
            times.update(pred)                 # an Aᴴ copy pairs with the baseline for forward products
            predicted = self.workload_cost(times, build)
            if predicted > PRUNE_FACTOR * base_cost and self.effort != "exhaustive":
                dropped += 1
                continue
            ranked.append((predicted, lay, pred))
            self.predicted_build[lay] = build
        ranked.sort(key=lambda r: (r[0], r[1].key))
        # The model ranks variants of one format close together (they share its
        # errors), so the best of each format and side is measured first
        # (``next_layout``), then the neighbours of whatever measured best.
        leaders, seen = [], set()
        for r in ranked:
            family = (r[1].format, r[1].of)
            if family not in seen:
                leaders.append(r[1])
            seen.add(family)
        self.leaders = leaders
        if dropped:
            self.notes.append(f"{dropped} layouts predicted slower than {PRUNE_FACTOR}x the baseline were not measured")
        if over_memory:
            self.notes.append(f"{over_memory} layouts over the memory limit (estimated) were not built")
        self.predicted = {lay: (p, pred) for p, lay, pred in ranked}
        return [(p, lay) for p, lay, _ in ranked]

    def budget(self, base) -> float:
        """Seconds of search this effort allows (compiles excluded), capped by time_limit."""
        # one pass over the workload's operations, as the settings say: a transpose-heavy
        # workload's candidates are timed on rmatvec too, and the baseline's matvec alone
        # (threaded for large CSR input) left too little to find its Aᴴ layout
        unit = sum(base.times.get((op, k), 0.0) for op, k, _ in self.ops) or sum(base.times.values())
        b = self.settings["budget_calls"] * unit
        if self.A.nnz < 1_000_000:
            b = max(b, self.settings["floor"])
        if self.time_limit is not None:
            b = min(b, self.time_limit)
        return b

    def should_stop(self, budget) -> str:
        spent = self.spent()
        if self.time_limit is not None and spent >= self.time_limit:
            return f"time_limit ({self.time_limit:g} s) reached"
        if spent >= budget:
            return f"{self.effort} budget ({budget:.3g} s) spent"
        if self.effort == "exhaustive":
            return ""
        best = self.best_plan()[1]
        untried = [p for p, lay in self.queue if lay not in self.candidates]
        if not untried:
            return "" if self.settings["tpe"] else "candidates exhausted"
        bias, sigma = self._model_error()
        expected = max(expected_improvement(best, p * bias, sigma) for p in untried)
        if expected < spent and not self._leaders_owed(spent) and not self._neighbours_owed(spent):
            return (f"OSKI rule: expected further saving {expected:.3g} s < {spent:.3g} s spent")
        return ""

    def _build_overrun(self, lay, budget) -> str:
        """Why not to start ``lay``: its build, as the model predicts it scaled by how far this
        search's builds so far have exceeded their predictions, would take the search past
        OVERRUN_FACTOR times its budget; else "".  The first trial always runs.  (A trial that
        ends a little past the budget is what the budget's headroom is for: powerlaw_1M's
        second trial, 0.09 s expected after 0.22 of 0.26 s, found its 2x layout.)  Without this, the trial that crossed the
        budget could cost more than the rest of the search: on elasticity_500 a DIA build of
        0.15-0.3 s (the model said 0.03) after a budget of 0.12 s was nearly spent made the
        search 155 SciPy matvecs long against a bound of 100."""
        if self.trials == 0 or not math.isfinite(budget) or self.effort == "exhaustive":
            return ""
        predicted = self.predicted_build.get(lay)
        if not predicted:
            return ""
        ratios = [c.build_s / self.predicted_build[c.layout] for c in self.candidates.values()
                  if c.ok and c.build_s and c.build_s > 1e-3 and self.predicted_build.get(c.layout)]
        expect = predicted * max(1.0, float(np.median(ratios)) if ratios else 1.0)
        spent = self.spent()
        if spent + expect <= OVERRUN_FACTOR * budget:
            return ""
        return (f"{self.effort} budget ({budget:.3g} s): the next layout's build (~{expect:.2g} s expected) "
                f"would overrun it after {spent:.3g} s spent")

    def _leaders_owed(self, spent) -> bool:
        """Are leaders (each format's best layout by the model) still unmeasured while the
        search has cost under LEADERS_SHARE of the baseline's workload?  The model ranks
        formats less well than it ranks one format's parameters; where the workload is
        large, one look at each format is cheap insurance (a DIA 40% faster than the
        SELL measured first was once left unmeasured)."""
        n_leaders = self.settings["leaders"]
        if not n_leaders or not any(lay not in self.candidates for lay in self.leaders[:n_leaders]):
            return False
        base = self.candidates.get(Layout(BASELINE))
        return base is not None and bool(base.times) and spent < LEADERS_SHARE * self.workload_cost(base.times, 0.0)

    def _neighbours_owed(self, spent) -> bool:
        """Are neighbours of the best plan (one parameter changed) still unmeasured while the
        search has cost under NEIGHBOURS_SHARE of the baseline's workload?  The model's
        constants come from one machine; on another its ranking of one format's variants can
        be wrong where its ranking of formats is right (a DIA value table, predicted 35%
        slower per slot, measured 10% faster on a Zen 5 for in-cache stencils, and the OSKI
        rule stopped before trying it)."""
        base = self.candidates.get(Layout(BASELINE))
        if base is None or not base.times:
            return False
        anchors = self._walk_anchors()
        untried = [lay for _, lay in self.queue if lay not in self.candidates]
        # index widths and value storage first, whatever the search has cost (the budget still
        # bounds it): the model ranks the narrowest first for its bytes, and measured widths of
        # one layout were up to 15% apart either way (COO int32 over int16 on tols4000); a DIA
        # value table, never tried, beat gr_30_30's full-value DIA by 4-10% in four runs of five
        if any(_storage_twin(lay, b) for lay in untried for b in anchors):
            return True
        if spent >= NEIGHBOURS_SHARE * self.workload_cost(base.times, 0.0):
            return False
        return any(_neighbours(lay, b) for lay in untried for b in anchors)

    def _model_error(self):
        """(bias, sigma) of log(measured / predicted) workload cost over the
        measured candidates: median and spread once three are measured, else
        (1, MODEL_SIGMA); clamped so one noisy outlier cannot end the search."""
        ratios = []
        base_times = self.candidates[Layout(BASELINE)].times
        for lay, (p, pred) in self.predicted.items():
            c = self.candidates.get(lay)
            if c is not None and c.ok and p > 0:
                times = dict(base_times)
                times.update(c.times)
                ratios.append(self.workload_cost(times, c.build_s) / p)
        if len(ratios) < 3:
            return 1.0, MODEL_SIGMA
        logs = np.log(ratios)
        return (float(np.clip(np.exp(np.median(logs)), 0.75, 1.5)),
                float(np.clip(np.std(logs), *MODEL_SIGMA_RANGE)))

    def next_layout(self):
        """The next layout to measure: warm starts, then the model's best layout
        of each format (``leaders``), then untried storage twins of the best plan
        so far, then its neighbours (one parameter changed; best predicted first in
        both), then the model's order."""
        for lay in self.warm_starts:
            if lay not in self.candidates:
                return lay
        n_leaders = self.settings["leaders"]
        untried = [lay for _, lay in self.queue if lay not in self.candidates]
        if not untried:
            return None
        if n_leaders is None:
            return untried[0]
        leaders = self.leaders[:n_leaders]
        for lay in leaders:
            if lay not in self.candidates:
                return lay
        anchors = self._walk_anchors()
        for rule in (_storage_twin, _neighbours):   # the queue is in model order
            for lay in untried:
                if any(rule(lay, b) for b in anchors):
                    return lay
        return untried[0]

    def _walk_anchors(self) -> list:
        """Layouts whose neighbours the search walks to: the best plan's, their narrowest-index
        twins, and the best layout of each other format that measured within FINALIST_NEAR
        of the best plan.  A format's model leader is its narrowest index width, but widths
        are not alike everywhere: on tols4000 a COO of int16 indices measured level with the
        best SELL and its int32 twin, never measured, was 15% faster than both."""
        best, best_cost = self.best_plan()
        anchors = list(best.layouts) + [self._narrowest_twin(lay) for lay in best.layouts]
        leaders = {}
        for c in self.candidates.values():
            if c.ok and c.layout.of == "A" and c.layout.format != BASELINE:
                cost = self.plan_cost([c])
                if cost <= best_cost * (1 + FINALIST_NEAR) and cost < leaders.get(c.layout.format, (math.inf,))[0]:
                    leaders[c.layout.format] = (cost, c.layout)
        anchors += [lay for _, lay in leaders.values()]
        return [lay for lay in dict.fromkeys(anchors) if lay is not None]

    def _narrowest_twin(self, lay):
        """The measured layout that is ``lay`` with the narrowest index width, when its cost is
        within WIDTH_TWIN of ``lay``'s; else None.  Widths measure within the noise of each
        other, so a walk anchored on the widest alone (it measured 1% faster) never tries
        the winner's other neighbours at the width the finalists then prefer."""
        cand = self.candidates.get(lay)
        if cand is None or not cand.ok:
            return None
        cost = self.plan_cost([cand])
        twins = [c for c in self.candidates.values()
                 if c.ok and _width_step(c.layout, lay) and self.plan_cost([c]) <= cost * (1 + WIDTH_TWIN)]
        if not twins:
            return None
        return min(twins, key=lambda c: (_layout_width_ranks(c.layout), self.plan_cost([c]))).layout

    def _study(self, ranked):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=5)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        a_formats = sorted({lay.format for _, lay in ranked if lay.of == "A"} |
                           {lay.format for lay in self.warm_starts if lay.of == "A"}) or ["csr"]
        ah_keys = ["none"] + [lay.key for _, lay in ranked if lay.of == "AH"][:4]
        ah_by_key = {lay.key: lay for _, lay in ranked if lay.of == "AH"}

        def enqueue(lay):
            params = {"format": lay.format} if lay.of == "A" else {"format": a_formats[0]}
            if lay.of == "A":
                params.update(trial_params(lay))
            if len(ah_keys) > 1:
                params["adjoint_copy"] = lay.key if lay.of == "AH" and lay.key in ah_by_key else "none"
            study.enqueue_trial(params, user_attrs={"layout": lay.to_dict(),
                                                    "source": "warm-start" if lay in self.warm_starts else "model"},
                                skip_if_exists=False)

        def objective(trial):
            fixed = trial.user_attrs.get("layout")
            if fixed is not None:
                lay = Layout(fixed["format"], fixed["params"], fixed["of"])
                source = trial.user_attrs.get("source", "model")
                if lay.of == "A" and lay.format in a_formats:
                    # record the enqueued params so TPE learns from this trial
                    try:
                        trial.suggest_categorical("format", a_formats)
                        formats.get(lay.format).space(trial, self.prof)
                    except Exception as exc:         # noqa: BLE001 - a learning aid: never fatal, never silent
                        log.warning("format %s: space() failed recording enqueued %s: %s: %s",
                                    lay.format, lay.key, type(exc).__name__, exc)
                if lay.of == "AH":
                    cand = self.evaluate(lay, source)
                    if not cand.ok:
                        raise optuna.TrialPruned(cand.error)
                    return self.best_plan()[1]
            else:
                fmt = trial.suggest_categorical("format", a_formats)
                lay = Layout(fmt, formats.get(fmt).space(trial, self.prof), "A")
                source = "tpe"
            cand = self.evaluate(lay, source)
            if not cand.ok:
                raise optuna.TrialPruned(cand.error)
            value = self.plan_cost([cand])
            if len(ah_keys) > 1:
                key = trial.suggest_categorical("adjoint_copy", ah_keys)
                if key != "none":
                    h = self.evaluate(ah_by_key[key], source)
                    if h.ok:
                        value = min(value, self.plan_cost([cand, h]))
            return value

        return study, objective, enqueue

    # -- choosing the plan -----------------------------------------------------
    def plan_cost(self, cands) -> float:
        """Workload seconds, builds included, with each operation on its fastest layout."""
        if self.memory_limit is not None and sum(getattr(c, "nbytes", c.est_bytes) for c in cands) > self.memory_limit:
            return math.inf
        total = sum(c.build_s or 0.0 for c in cands)
        for op, k, calls in self.ops:
            ts = [c.times[(op, k)] for c in cands if (op, k) in c.times]
            if not ts:
                return math.inf
            total += calls * min(ts)
        return total

    def best_plan(self):
        """(Plan, cost): the best single A layout, or an A layout plus an Aᴴ copy."""
        ok = [c for c in self.candidates.values() if c.ok]
        a_side = [c for c in ok if c.layout.of == "A"]
        ah_side = [c for c in ok if c.layout.of == "AH"]
        best, best_cost = None, math.inf
        for a in a_side:
            cost_a = self.plan_cost([a])
            if cost_a < best_cost:
                best, best_cost = [a], cost_a
            for h in ah_side:
                c2 = self.plan_cost([a, h])
                if c2 < best_cost:
                    best, best_cost = [a, h], c2
        if best is None:
            return Plan.baseline(), math.inf
        return self._plan_of(best), best_cost

    def _plan_of(self, cands) -> Plan:
        layouts = tuple(c.layout for c in cands)
        serves = {}
        for op in OPERATIONS:
            k_ops = [(o, k) for o, k, _ in self.ops if o == op]
            best_i = 0
            if k_ops and len(cands) > 1:
                best_i = min(range(len(cands)), key=lambda i: sum(cands[i].times.get(key, math.inf) for key in k_ops))
            elif op in ("rmatvec", "rmatmat") and len(cands) > 1:
                best_i = 1
            serves[op] = best_i
        used = sorted(set(serves.values()))
        if len(used) < len(layouts):             # a copy no operation ended up using
            layouts = tuple(layouts[i] for i in used)
            serves = {op: used.index(i) for op, i in serves.items()}
        return Plan(layouts, serves)

    def finalists(self, plan, value):
        """The chosen plan; its variant with the narrowest indices (within FINALIST_SPREAD);
        its nearest runner-up within FINALIST_NEAR (index widths and σ of one format are often
        that close); the best plan of each other format within FINALIST_SPREAD, then within
        FINALIST_FORMAT_SPREAD (a format measured in a slow moment gets a second chance);
        then the other runner-ups within FINALIST_NEAR and FINALIST_SPREAD.  At most
        MAX_FINALISTS, best first in each group.

        Other formats come before a second near-tie of the winner's own: first looks misjudged
        formats against each other by 15% (add32: COO measured behind a SELL it beat by 12%
        in every later timing), while one format's variants that close seldom differ by 5%."""
        ok = [c for c in self.candidates.values() if c.ok]
        ah_side = [c for c in ok if c.layout.of == "AH"]
        others = []
        for a in ok:
            if a.layout.of != "A" or a.layout.format == BASELINE or a.layout in plan.layouts:
                continue
            best = min([[a]] + [[a, h] for h in ah_side], key=self.plan_cost)
            others.append((self.plan_cost(best), a.layout.key, a.layout.format, self._plan_of(best)))
        others.sort(key=lambda r: r[:2])
        chosen, formats_seen = [], {lay.format for lay in plan.layouts}

        def take(p, fmt):
            if p not in chosen:
                chosen.append(p)
                formats_seen.add(fmt)
        narrower = [r for r in others if r[0] <= value * (1 + FINALIST_SPREAD) and narrower_indices(r[3], plan)]
        if narrower:                                         # the narrowest-index variant of the winner
            take(min(narrower, key=lambda r: (_width_ranks(r[3]), r[0]))[3], plan.layouts[0].format)
        near = [(fmt, p) for cost_a, _, fmt, p in others if cost_a <= value * (1 + FINALIST_NEAR)]
        if near:                                             # the nearest runner-up, whatever its format
            take(near[0][1], near[0][0])
        for spread in (FINALIST_SPREAD, FINALIST_FORMAT_SPREAD):   # the best of each other format
            for cost_a, _, fmt, p in others:
                if fmt not in formats_seen and cost_a <= value * (1 + spread):
                    take(p, fmt)
        for fmt, p in near:                                  # then the other near-ties
            take(p, fmt)
        for cost_a, _, fmt, p in others:                     # then the closest runner-ups
            if cost_a <= value * (1 + FINALIST_SPREAD):
                take(p, fmt)
        return [plan] + chosen[:MAX_FINALISTS - 1]

    def confirm(self, plan, value):
        """Re-time the finalists and the baseline interleaved; keep the fastest, the baseline unless beaten.

        Single measurements on a shared machine drift by 5-20%; layouts whose
        search costs are that close are ranked again side by side, so a noisy
        moment during the search does not decide between them."""
        base = self.candidates[Layout(BASELINE)]
        if plan.is_baseline:
            return plan, self.workload_cost(base.times, 0.0)
        plans = self.finalists(plan, value)
        # every finalist costs rounds x samples x its calls: large matrices keep the search's winner alone
        per_plan = 3 * 3 * sum(base.times.get((op, k), 0.0) for op, k, _ in self.ops)
        room = max(0.0, self.budget(base) - self.spent())
        if math.isfinite(room):
            plans = plans[:max(1, min(len(plans), int(room // max(per_plan, 1e-9)) - 1))]
        fns = {}
        for op, k, _ in self.ops:
            fns[("base", op, k)] = self._call(self.baseline_format, op, k, "A")[0]
            for i, p in enumerate(plans):
                c = self.candidates[p.layouts[p.serves[op]]]
                fns[(i, op, k)] = self._call(self._built(c), op, k, c.layout.of)[0]
        # near-ties need more rounds to be told apart; cheap where calls are short.  With
        # the budget spent (large matrices), two rounds of two samples: ~12 products in all
        budget_bound = per_plan * (len(plans) + 1) > room
        if budget_bound:
            kw = dict(rounds=2, min_samples=2)
        else:
            kw = dict(rounds=3 if len(plans) == 1 or per_plan * 5 / 3 * (len(plans) + 1) > room else 5)
        t = timing.interleaved(fns, budget=self._measure_budget() / 2, max_samples=self.settings["samples"], **kw)
        base.times.update({(op, k): t[("base", op, k)].median for op, k, _ in self.ops})
        paired = self._paired_costs(t, ["base", *range(len(plans))],
                                    {"base": 0.0, **{i: self._build_s(p) for i, p in enumerate(plans)}})
        baseline = paired["base"]
        costs = [paired[i] for i in range(len(plans))]
        if not budget_bound:
            first = [self.plan_cost([self.candidates[lay] for lay in p.layouts]) for p in plans]
            baseline = self._break_ties(plans, costs, baseline, fns, first)
        best = int(np.argmin(costs))
        # Narrower indices move fewer bytes and do the same work: within a statistical tie they
        # are the better bet.  Only then: on a Zen 5, in cache, int16 CSR measured a steady 4%
        # slower than int32 and int64 (the narrower load is not free there), and a 4% margin
        # picked the slower layout for memory it does not save the user much of
        narrow = [i for i, p in enumerate(plans)
                  if narrower_indices(p, plans[best]) and costs[i] <= costs[best] * (1 + WIDTH_TIE)]
        if narrow:
            pick = min(narrow, key=lambda i: (_width_ranks(plans[i]), costs[i]))
            self.notes.append(f"{plans[pick].describe()} chosen over {plans[best].describe()}: narrower "
                              f"indices, within {WIDTH_TIE:.0%} ({costs[pick]:.3g} s vs {costs[best]:.3g} s)")
            best = pick
        for i, p in enumerate(plans):
            if i != best:
                for lay in p.layouts:
                    if lay not in plans[best].layouts:
                        self.candidates[lay]._format = None
        if len(plans) > 1:
            self.notes.append(f"re-timed {len(plans)} finalists side by side: " +
                              ", ".join(f"{p.describe()} {c:.3g} s" for p, c in zip(plans, costs)))
        plan, tuned = plans[best], costs[best]
        if tuned >= baseline:
            self.notes.append(f"re-timed: {plan.describe()} ({tuned:.3g} s) did not beat SciPy ({baseline:.3g} s)")
            return Plan.baseline(), baseline
        self.confirmed = (tuned, baseline)
        return plan, tuned

    def _break_ties(self, plans, costs, baseline, fns, first=None):
        """Time the finalists (and the baseline) within NEAR_TIE of the best again, alone and
        over more rounds, where the workload is large enough to repay it; updates ``costs``
        in place and returns the baseline's cost.

        Five short rounds tell 10% apart on a shared machine, not 3%, and the layouts
        left at this point (index widths, σ of one format) often differ by about that.
        The value of telling them apart grows with the workload, so does the time spent:
        TIE_SHARE of it, at most TIE_MAX_SECONDS (and the time limit).

        ``first`` (the finalists' search costs, first looks) adds a disagreement: when the
        re-timing's best had a first look more than NEAR_TIE slower than the search's winner
        (``plans[0]``), the winner is timed again beside it.  A few short rounds can be
        turned by the machine's stalls (one took a 30 us layout to 130 us): in the
        benchmark such re-timings picked ell, hyb or CSR with compressed indices over a
        SELL that every longer timing found 20-60% faster."""
        best = min(min(costs), baseline)
        ties = [i for i, c in enumerate(costs) if c <= best * (1 + NEAR_TIE)]
        lead = int(np.argmin(costs))
        if first is not None and lead != 0 and costs[lead] <= baseline and 0 not in ties \
                and first[lead] > first[0] * (1 + NEAR_TIE):
            ties.append(0)
            self.notes.append(f"{plans[lead].describe()} won the re-timing against its first look "
                              f"({first[lead]:.3g} s vs {first[0]:.3g} s for {plans[0].describe()}): both timed again")
        if baseline <= best * (1 + NEAR_TIE):
            ties.append("base")
        if len(ties) < 2:
            return baseline
        allowance = min(TIE_SHARE * baseline, TIE_MAX_SECONDS)
        if self.time_limit is not None:
            allowance = min(allowance, self.time_limit - self.spent())
        # one measure(): a warm-up call and three samples of at least timing's 0.2 ms batch
        per_round = len(ties) * sum(4 * max(self.candidates[Layout(BASELINE)].times.get((op, k), 0.0), 2e-4)
                                    for op, k, _ in self.ops)
        rounds = min(MAX_TIE_ROUNDS, int(allowance / max(per_round, 1e-9)))
        if rounds < 6:
            return baseline
        sub = {(i, op, k): fns[(i, op, k)] for i in ties for op, k, _ in self.ops}
        t = timing.interleaved(sub, rounds=rounds, budget=self._measure_budget() / 2, min_samples=3, max_samples=3)
        again = self._paired_costs(t, ties, {i: 0.0 if i == "base" else self._build_s(plans[i]) for i in ties})
        if "base" not in ties:
            # the baseline was timed in the first re-timing only: these costs are put on its scale
            # through the first tie's cost there (a slow spell during this re-timing had ranked
            # every layout behind a baseline timed before it, and the search kept SciPy)
            scale = costs[ties[0]] / again[ties[0]] if again[ties[0]] > 0 else 1.0
            again = {i: c * scale for i, c in again.items()}
        self.notes.append(f"near-tie of {len(ties)} re-timed over {rounds} rounds: " +
                          ", ".join(f"{'scipy()' if i == 'base' else plans[i].describe()} {c:.3g} s"
                                    for i, c in again.items()))
        for i, c in again.items():
            if i == "base":
                baseline = c
            else:
                costs[i] = c
        return baseline

    def _paired_costs(self, t, labels, builds) -> dict:
        """Workload cost of each label from ``interleaved`` timings keyed (label, op, k): the
        first label's cost (built from its pooled medians), and each other's as that times the
        median over rounds of its cost ratio to the first in the same round.  A slow spell of
        the shared machine scales a whole round, so per-round ratios cancel it; a ratio of
        pooled medians does not (two rounds of 25 and 40 us decide nothing between two layouts
        that are 30 and 33 us in each).  Without per-round times: the pooled costs."""
        pooled = {lab: self.workload_cost({(op, k): t[(lab, op, k)].median for op, k, _ in self.ops}, builds[lab])
                  for lab in labels}
        counts = {len(t[(lab, op, k)].rounds) for lab in labels for op, k, _ in self.ops}
        rounds = counts.pop() if len(counts) == 1 else 0
        if rounds < 2:
            return pooled
        per_round = {lab: np.array([builds[lab] + sum(c * t[(lab, op, k)].rounds[r] for op, k, c in self.ops)
                                    for r in range(rounds)]) for lab in labels}
        ref = per_round[labels[0]]
        if not (ref > 0).all():
            return pooled
        return {lab: pooled[labels[0]] * float(np.median(per_round[lab] / ref)) for lab in labels}

    def _build_s(self, plan) -> float:
        """Measured seconds to build the layouts of ``plan``."""
        return sum(self.candidates[lay].build_s or 0.0 for lay in plan.layouts)

    def _built(self, cand):
        """The candidate's built layout, rebuilt in place when it was released to save memory."""
        if cand._format is None:
            lay = cand.layout
            src = self.A if lay.of == "A" else self.AH
            cand._format = formats.get(lay.format).from_csr(src, **lay.params)
        return cand._format

    def formats_of(self, plan):
        return [self.candidates[lay]._format for lay in plan.layouts]

    # -- effort="estimate": the model alone ------------------------------------
    def estimate(self):
        """(Plan, predicted cost) from the cost model only; nothing is timed."""
        base_pred = {(op, k): cost.total(self._baseline_terms(op, k)) for op, k, _ in self.ops}
        best, best_cost = Plan.baseline(), self.workload_cost(base_pred, 0.0)
        for lay, est, pred, build in self.enumerate():
            if lay.of != "A" or (self.memory_limit is not None and est > self.memory_limit):
                continue
            c = self.workload_cost({key: cost.total(terms) for key, terms in pred.items()}, build)
            if c < best_cost:
                best, best_cost = Plan((lay,), {op: 0 for op in OPERATIONS}), c
        return best, best_cost


def trial_params(lay: Layout) -> dict:
    """The layout's parameters under the names its format's ``space()`` suggests them by, so an
    enqueued trial records what was measured (BSR asks for a shape "rxc", not r and c)."""
    to_trial = getattr(formats.get(lay.format), "trial_params", None)
    if to_trial is not None:
        return to_trial(lay.params)
    return {f"{lay.format}_{k}": v for k, v in lay.params.items()}


AH_FORMATS = ("csr", "sell", "csrc", "bsr", "dia")     # layouts worth keeping of Aᴴ for the adjoint products


def _neighbours(a: Layout, b: Layout) -> bool:
    """Same format and side, parameters differing in exactly one."""
    if a.format != b.format or a.of != b.of or a.params.keys() != b.params.keys():
        return False
    return sum(a.params[k] != b.params[k] for k in a.params) == 1


_WIDTH_PARAMS = ("index_dtype", "offset_dtype")
_WIDTH_RANK = {"int16": 0, "int32": 1, "int64": 2}


def _layout_width_ranks(lay: Layout) -> tuple:
    return tuple(_WIDTH_RANK.get(lay.params[k], 3) for k in _WIDTH_PARAMS if k in lay.params)


def _width_ranks(plan: Plan) -> tuple:
    return sum((_layout_width_ranks(lay) for lay in plan.layouts), ())


def narrower_indices(a: Plan, b: Plan) -> bool:
    """Is ``a`` the plan ``b`` with narrower index widths, and nothing else changed?"""
    if len(a.layouts) != len(b.layouts) or dict(a.serves) != dict(b.serves):
        return False
    steps = [_width_step(la, lb) for la, lb in zip(a.layouts, b.layouts)]
    return None not in steps and any(steps)


_STORAGE_PARAMS = _WIDTH_PARAMS + ("values",)


def _storage_twin(a: Layout, b: Layout) -> bool:
    """Are ``a`` and ``b`` one layout stored two ways: other index widths or value storage
    (full or a table of distinct values), all else equal?  The cost model misjudges exactly
    these on a CPU it was not fitted on (int16 slower than int32, value tables faster)."""
    if a == b or a.format != b.format or a.of != b.of:
        return False
    pa, pb = dict(a.params), dict(b.params)
    for k in _STORAGE_PARAMS:
        pa.pop(k, None)
        pb.pop(k, None)
    return pa == pb


def _width_step(la: Layout, lb: Layout):
    """True when layout ``la`` is ``lb`` with narrower index widths, False when the two are
    equal, None when anything else differs or a width is wider."""
    if la.format != lb.format or la.of != lb.of:
        return None
    narrower = False
    pa, pb = dict(la.params), dict(lb.params)
    for k in _WIDTH_PARAMS:
        wa, wb = pa.pop(k, None), pb.pop(k, None)
        if wa != wb:
            if _WIDTH_RANK.get(wa, 3) > _WIDTH_RANK.get(wb, 3):
                return None
            narrower = True
    return narrower if pa == pb else None


def expected_improvement(best: float, predicted: float, sigma: float) -> float:
    """E[max(0, best - Y)] for a cost Y = predicted · exp(σZ), Z standard normal.

    The stopping rule's expected saving from measuring one more candidate:
    the model's prediction is right only up to a log-normal error, so a
    candidate predicted a little worse than the best measured still has a
    fair chance to win, and one predicted far worse has almost none.
    """
    if not math.isfinite(best):
        return math.inf
    if best <= 0:
        return 0.0
    if predicted <= 0:
        return best
    z = math.log(best / predicted) / sigma
    return max(0.0, best * _phi(z) - predicted * math.exp(sigma * sigma / 2) * _phi(z - sigma))


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _side_op(op, side):
    """The product a layout of ``side`` runs for A's ``op``."""
    if side == "A":
        return op
    return {"rmatvec": "matvec", "rmatmat": "matmat", "matvec": "rmatvec", "matmat": "rmatmat"}[op]
