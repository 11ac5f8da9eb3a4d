"""benchmarks/input_grad.py: its smoke mode writes one well-formed line; its gradients agree."""

import json

from benchmarks import input_grad


def test_input_grad_smoke_line(tmp_path):
    out = tmp_path / "ig.jsonl"
    input_grad.main(["--smoke", "--out", str(out)])
    (line,) = [json.loads(s) for s in out.read_text().splitlines()]
    assert line["bench"] == "input_grad"
    assert set(line["median_ms_per_step"]) == {"per_tap", "xla"}
    assert all(v > 0 for v in line["median_ms_per_step"].values())
    assert 0 <= line["max_rel_diff"] < 2e-6  # the same gradient up to float rounding
