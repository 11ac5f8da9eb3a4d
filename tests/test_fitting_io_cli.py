"""Curve files (CSV/JSON) and the `scalelab fit` command."""

import json

import numpy as np
import pytest

from fitting import LearningCurve, read_curves, synthetic, write_curves_csv, write_curves_json
from scalelab.cli import main


def _curves():
    return [LearningCurve(100.0, [1, 2, 3], [0.1, 0.2, 0.4], seed=0, hparams={"lr": 1e-3}),
            LearningCurve(100.0, [1, 2, 3], [0.2, 0.3, 0.5], seed=1, hparams={"lr": 1e-3}),
            LearningCurve(300.0, [1, 2, 4], [0.3, 0.5, 0.6], flops_per_interaction=900.0)]


@pytest.mark.parametrize("writer,suffix", [(write_curves_csv, ".csv"),
                                           (write_curves_json, ".json")])
def test_curves_round_trip(tmp_path, writer, suffix):
    path = tmp_path / ("curves" + suffix)
    writer(_curves(), path)
    back = read_curves(path)
    assert len(back) == 3
    for a, b in zip(_curves(), back, strict=True):
        assert (a.params, a.seed, a.flops_per_interaction, a.hparams) == \
            (b.params, b.seed, b.flops_per_interaction, b.hparams)
        np.testing.assert_array_equal(a.interactions, b.interactions)
        np.testing.assert_array_equal(a.score, b.score)


def test_csv_errors_name_the_problem(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("params,score\n10,0.5\n")
    with pytest.raises(ValueError, match="interactions"):
        read_curves(path)
    path.write_text("params,interactions,score\n10,1,0.5\n10,2,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: column 'score'"):
        read_curves(path)
    path.write_text("params,interactions,score\n10,1,0.5\n10,1,0.6\n")
    with pytest.raises(ValueError, match="strictly increasing"):
        read_curves(path)


def test_scalelab_fit_writes_report_and_plots(tmp_path, capsys):
    design = synthetic.default_design(num_sizes=6, num_points=60, seeds=2)
    true = synthetic.law_for_design(0.5, 0.6, design)
    curves = synthetic.make_curves(true, design, noise=0.01, seed=1)
    # a worse learning rate for every size: the command must keep the better one
    curves += [LearningCurve(c.params, c.interactions, c.score - 0.2, seed=c.seed)
               for c in curves]
    curves = [LearningCurve(c.params, c.interactions, c.score, seed=c.seed,
                            hparams={"lr": 1e-3 if i < len(curves) // 2 else 1e-2})
              for i, c in enumerate(curves)]
    write_curves_csv(curves, tmp_path / "curves.csv")
    out = tmp_path / "out"
    code = main(["fit", str(tmp_path / "curves.csv"), "--out", str(out), "--bootstrap", "16",
                 "--starts", "16"])
    text = capsys.readouterr().out
    assert code == 0 and "alpha_N" in text and "converged" in text
    report = json.loads((out / "fit.json").read_text())
    assert report["curves"] == 24 and report["curves_fitted"] == 12
    assert report["power_law"]["alpha_E"] == pytest.approx(0.6, abs=0.05)
    assert set(report["power_law"]["intervals"]) >= {"alpha_N", "alpha_E", "size_exponent"}
    for name in ("learning_curves", "intrinsic", "law_contours", "optimal_size"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def _pre_frontier_csv(tmp_path):
    design = synthetic.default_design(num_sizes=6, num_points=60, seeds=2)
    true = synthetic.law_for_design(0.5, 0.7, design, frontier_fraction=240.0)
    write_curves_csv(synthetic.make_curves(true, design, noise=0.02, seed=3),
                     tmp_path / "short.csv")
    return tmp_path / "short.csv"


def test_scalelab_fit_prints_the_verdict_first_and_exits_0_when_unresolved(tmp_path, capsys):
    path = _pre_frontier_csv(tmp_path)
    code = main(["fit", str(path), "--bootstrap", "0", "--starts", "16", "--no-plots"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == "power law: UNRESOLVED"
    report = json.loads((tmp_path / "short_fit" / "fit.json").read_text())
    assert report["power_law"]["status"] == "unresolved"
    assert "frontier" in report["power_law"]["status_reason"]


def test_scalelab_fit_exits_2_on_bad_input(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    write_curves_csv(_curves(), tmp_path / "two_sizes.csv")
    assert main(["fit", str(tmp_path / "two_sizes.csv")]) == 2
    assert "at least 3 model sizes" in capsys.readouterr().err
