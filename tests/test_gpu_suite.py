"""benchmarks/gpu_suite.py: its command line and line format, and a --smoke run of every part."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module
    spec.loader.exec_module(module)
    return module


suite = load_suite()


def test_args_and_line_format(tmp_path):
    args = suite.parse_args(["--smoke", "--parts", "peak,ppg", "--out", str(tmp_path / "x.jsonl")])
    assert args.smoke and args.parts == ("peak", "ppg") and args.budget_s == float("inf")
    full = suite.parse_args([])
    assert full.parts == suite.PARTS and full.budget_s == 450.0 and not full.smoke
    with pytest.raises(SystemExit):
        suite.parse_args(["--parts", "peak,gpu"])
    row = json.loads(suite.format_line("envs", {"env": "CoinRun-v0", "steps_per_s": 1.5}, 0.0))
    assert row["suite"] == "gpu_suite" and row["part"] == "envs" and row["steps_per_s"] == 1.5
    assert len(row["load_avg"]) == 3 and {"device", "platform", "suite_s"} <= set(row)


@pytest.mark.slow
def test_smoke_runs_every_part(tmp_path):
    out = tmp_path / "suite.jsonl"
    lines = suite.run_suite(suite.parse_args(["--smoke", "--out", str(out)]))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [json.loads(x) for x in lines] == rows
    assert not [r for r in rows if "error" in r or "skipped" in r]
    parts = [r["part"] for r in rows]
    assert set(parts) == set(suite.PARTS)
    assert parts.count("envs") == 1 and parts.count("peak") == 2
    for r in rows:
        if r["part"] in ("mnist", "impala"):
            assert r["interactions_per_s"] > 0 and 0 < r["fraction_of_peak_highest"]
    fused = next(r for r in rows if r["part"] == "fused")
    assert fused["members"] == 4 and fused["speedup_run"] > 0
