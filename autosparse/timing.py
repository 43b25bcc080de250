"""The one timer every measurement in autosparse uses.

Warm-up first (it also pays for first-touch page faults and cache loads),
then samples of one or more calls, and the median of the samples.  Calls
shorter than ``min_sample`` are batched into one sample so the clock's
resolution and Python's loop do not dominate microsecond kernels.  Sampling
stops when the spread is small, when the time budget is spent, or at
``max_samples``; so a stable 5 ms kernel costs a few calls to time and a noisy
one up to the budget.

``interleaved`` times several candidates round-robin: on a shared, noisy
machine, drifts in available bandwidth then hit all of them alike and their
ratios stay meaningful.

The cyclic garbage collector is off while a measurement runs, as in ``timeit``:
a collection of the caller's objects (in a long-lived process, milliseconds)
landing in one candidate's samples is not that candidate's time.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, replace

clock = time.perf_counter


@dataclass(frozen=True)
class Timing:
    median: float        # seconds per call
    best: float          # fastest sample, seconds per call
    spread: float        # interquartile range / median of the samples
    samples: int
    calls: int           # calls made, warm-up included
    elapsed: float       # wall time the measurement took
    rounds: tuple = ()   # ``interleaved``: the per-round medians, in round order

    def __str__(self):
        return f"{self.median * 1e6:.1f} us (±{self.spread * 100:.0f}%, {self.samples} samples)"


def _summary(per_call: list[float], calls: int, elapsed: float) -> Timing:
    s = sorted(per_call)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    q1, q3 = s[(n - 1) // 4], s[(3 * (n - 1)) // 4]
    spread = (q3 - q1) / med if med > 0 else 0.0
    return Timing(med, s[0], spread, n, calls, elapsed)


def measure(fn, *, budget: float = 0.2, min_samples: int = 3, max_samples: int = 25,
            rel_tol: float = 0.05, warmup: int = 1, min_sample: float = 2e-4) -> Timing:
    """Median seconds per call of ``fn()``.

    ``budget`` bounds the sampling time (seconds) once ``min_samples`` are in.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _measure(fn, budget, min_samples, max_samples, rel_tol, warmup, min_sample)
    finally:
        if collecting:
            gc.enable()


def _measure(fn, budget, min_samples, max_samples, rel_tol, warmup, min_sample) -> Timing:
    start = clock()
    t_warm = 0.0
    for _ in range(max(1, warmup)):
        t0 = clock()
        fn()
        t_warm = clock() - t0
    calls = max(1, warmup)
    batch = 1 if t_warm >= min_sample else max(1, math.ceil(min_sample / max(t_warm, 1e-7)))
    per_call: list[float] = []
    while True:
        t0 = clock()
        for _ in range(batch):
            fn()
        per_call.append((clock() - t0) / batch)
        calls += batch
        n = len(per_call)
        if n >= max_samples:
            break
        if n >= min_samples:
            summary = _summary(per_call, calls, clock() - start)
            if summary.spread <= rel_tol or clock() - start >= budget:
                break
    return _summary(per_call, calls, clock() - start)


def interleaved(fns: dict, *, rounds: int = 5, **kw) -> dict:
    """``measure`` each of ``fns`` (name -> callable) round-robin; Timing per name.

    Each round measures every candidate once with ``kw``; the result per name
    pools the per-round medians and keeps them (``Timing.rounds``), so callers can
    compare candidates round by round.  Every other round runs in reverse order: the
    first of a round measured ~2% faster than an identical copy measured
    second, and a position effect must not decide between near-equal layouts.
    """
    per_round: dict = {name: [] for name in fns}
    calls: dict = {name: 0 for name in fns}
    elapsed: dict = {name: 0.0 for name in fns}
    order = list(fns.items())
    for r in range(rounds):
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            t = measure(fn, **kw)
            per_round[name].append(t.median)
            calls[name] += t.calls
            elapsed[name] += t.elapsed
    return {name: replace(_summary(v, calls[name], elapsed[name]), rounds=tuple(v)) for name, v in per_round.items()}
