"""Smoke test of the kernel benchmark harness (benchmarks/kernels.py --quick).

Runs the harness in a subprocess on a tiny subset (one small corpus matrix,
or a reduced generated matrix when the corpus is absent; CSR only; one
configuration) and checks that it writes a CSV with sane rows, a PNG figure and
a summary.  Skipped when the bench extras (matplotlib) are missing.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "kernels.py"

pytest.importorskip("matplotlib", reason="bench extras not installed (pip install autosparse[bench])")


def _corpus_has(name):
    d = Path(os.environ.get("AUTOSPARSE_MATRICES", ROOT.parent / "shared" / "matrices"))
    return (d / f"{name}.mtx.gz").is_file()


def test_kernels_quick(tmp_path):
    only = "bcsstk09" if _corpus_has("bcsstk09") else "banded_2M"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--only", only, "--formats", "csr", "--max-configs", "1",
           "--ops", "matvec,rmatvec", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    with open(tmp_path / "kernels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    final = [r for r in rows if r["stage"] == "final" and r["matrix"] == only]
    assert {r["op"] for r in final} == {"matvec", "rmatvec"}
    ok = {(r["candidate"], r["op"]): r for r in final if r["status"] == "ok"}
    for op in ("matvec", "rmatvec"):
        assert ("csr", op) in ok or ("csr-plain", op) in ok, f"no CSR timing for {op}: {final}"
        assert ("scipy", op) in ok
        base = ok[("scipy", op)]
        assert float(base["seconds"]) > 0 and abs(float(base["speedup_scipy"]) - 1.0) < 1e-9
    for r in ok.values():
        assert 0 < float(r["seconds"]) < 1.0, r
        assert float(r["speedup_scipy"]) > 0
        if r["kind"] == "format":
            assert float(r["error_ratio"]) <= 1.0
            assert int(r["nbytes"]) > 0 and 0 < float(r["bw_fraction"]) < 10, r
    assert not [r for r in rows if r["status"] in ("wrong", "error")], "csr failed in the benchmark"
    overhead = [r for r in rows if r["stage"] == "overhead" and r["status"] == "ok"]
    assert [r["candidate"] for r in overhead] == ["csr"]
    assert any(r["stage"] == "bandwidth" and float(r["gbps"]) > 0.1 for r in rows)

    png = (tmp_path / "kernels.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = (tmp_path / "summary.md").read_text()
    assert "Per-call overhead" in summary and "csr" in summary


TUNE_SCRIPT = ROOT / "benchmarks" / "tune.py"


def test_tune_quick(tmp_path):
    """benchmarks/tune.py on one small corpus matrix: every measurement present and sane.

    The oracle is effort="estimate" (an exhaustive search would compile every
    kernel on a cold cache); the start-up subprocesses are skipped.
    """
    name = "gr_30_30"
    if not _corpus_has(name):
        pytest.skip("matrix corpus absent")
    cmd = [sys.executable, str(TUNE_SCRIPT), "--matrices", name, "--no-startup", "--oracle-effort", "estimate",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"[1/1] {name} " in proc.stderr          # one progress line per matrix, on stderr

    with open(tmp_path / "tune.csv", newline="") as fh:
        rows = {r["measurement"]: r for r in csv.DictReader(fh) if r["matrix"] == name}
    assert set(rows) == {"tune", "matvec", "oracle", "one_call", "rmatvec_heavy"}, rows
    assert all(r["status"] == "ok" for r in rows.values()), rows

    tune = rows["tune"]
    assert tune["plan"] and tune["workload"] == "matvec=1000" and tune["effort"] == "measure"
    assert 0 < float(tune["tuning_seconds"]) < 60 and float(tune["tuning_scipy_matvecs"]) > 0
    mv = rows["matvec"]
    assert mv["plan"] == tune["plan"] and float(mv["error_ratio"]) <= 1.0
    assert 0 < float(mv["seconds"]) < 0.01 and 0 < float(mv["scipy_seconds"]) < 0.01
    assert abs(float(mv["speedup_scipy"]) - float(mv["scipy_seconds"]) / float(mv["seconds"])) < 1e-3 * float(
        mv["speedup_scipy"])
    for peer in ("mkl", "graphblas"):
        if mv[f"{peer}_seconds"]:
            assert float(mv[f"speedup_{peer}"]) > 0
    orc = rows["oracle"]
    assert orc["oracle_plan"] and math.isfinite(float(orc["regret"])) and float(orc["regret"]) > -1
    if orc["oracle_plan"] != orc["plan"]:
        # the regret is the median of per-round cost ratios, the costs are medians over the same
        # rounds: two estimates of one ratio, which agree up to the machine's noise
        cost = float(orc["tuned_cost"]) / float(orc["oracle_cost"]) - 1
        assert float(orc["tuned_cost"]) > 0 and float(orc["oracle_cost"]) > 0
        assert abs(cost - float(orc["regret"])) < 0.25, (cost, orc["regret"])
    else:
        assert float(orc["regret"]) == 0.0
    one = rows["one_call"]
    assert one["plan"] == "scipy()" and float(one["ratio"]) > 0.5     # one call never pays for tuning
    rh = rows["rmatvec_heavy"]
    assert rh["op"] == "rmatvec" and float(rh["error_ratio"]) <= 1.0 and float(rh["speedup_scipy"]) > 0

    png = (tmp_path / "tune.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (tmp_path / "tune.md").read_text()
    assert name in md and "## Targets" in md and "regret" in md and "one call" in md
