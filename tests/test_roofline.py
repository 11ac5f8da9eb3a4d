"""The roofline benchmark's smoke mode runs and writes one well-formed line per program."""

import json

import pytest

from benchmarks import roofline


def test_roofline_smoke_writes_fractions_of_the_measured_peak(tmp_path):
    out = tmp_path / "roofline.jsonl"
    roofline.main(["--smoke", "--out", str(out)])
    lines = [json.loads(text) for text in out.read_text().splitlines()]
    assert [line["program"] for line in lines] == ["matmul_peak", "act", "update", "iteration"]
    peak = lines[0]["peak_gflops"]
    assert peak > 0
    act, update, iteration = lines[1:]
    flops = act["forward_flops"]
    assert act["flops_per_call"] == flops * act["items_per_call"] == flops * 4
    assert update["flops_per_call"] == 3 * flops * update["items_per_call"] == 3 * flops * 8
    # MNIST smoke: 4 envs x 4 steps, 1 epoch: (1 + 3) forward passes per interaction
    assert iteration["flops_per_call"] == 4 * flops * 16
    for line in lines[1:]:
        assert line["peak_gflops"] == peak and line["median_s"] > 0
        assert line["fraction_of_peak"] == pytest.approx(line["gflops"] / peak, rel=1e-2, abs=1e-5)
        assert "loadavg_1m" in line
