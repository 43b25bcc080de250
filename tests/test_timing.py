"""autosparse.timing: the one timer every measurement uses."""

import gc
import time

import pytest

from autosparse import timing


def test_the_collector_is_off_while_measuring_and_restored_after():
    seen = []
    t = timing.measure(lambda: seen.append(gc.isenabled()), min_samples=3, max_samples=3)
    assert seen and not any(seen)                 # no collection lands in a sample
    assert gc.isenabled()
    assert t.samples == 3 and t.calls == len(seen) and t.calls > t.samples     # fast calls are batched

    def boom():
        raise RuntimeError("kernel failed")
    with pytest.raises(RuntimeError, match="kernel failed"):
        timing.measure(boom)
    assert gc.isenabled()                          # restored on errors too

    gc.disable()
    try:
        timing.measure(lambda: None, min_samples=1, max_samples=1)
        assert not gc.isenabled()                  # a caller's choice is kept
    finally:
        gc.enable()


def test_measure_reports_the_median_per_call():
    t = timing.measure(lambda: time.sleep(2e-3), min_samples=5, max_samples=5)
    assert t.samples == 5 and t.calls == 6            # one warm-up call, then one call per sample
    assert 2e-3 <= t.best <= t.median < 0.05
    assert t.elapsed >= 6 * 2e-3


def test_interleaved_alternates_the_order_of_candidates():
    order = []
    fns = {name: (lambda name=name: order.append(name) or time.sleep(3e-4)) for name in "abc"}
    out = timing.interleaved(fns, rounds=4, min_samples=1, max_samples=1, warmup=1)
    assert set(out) == set("abc") and all(t.samples == 4 for t in out.values())
    firsts = [order[i] for i in range(0, len(order), 6)]     # each measure: a warm-up and one sample
    assert firsts == ["a", "c", "a", "c"]
