from scalelab.cli import main


def test_envs_lists_gymnax_cartpole(capsys):
    assert main(["envs"]) == 0
    assert "CartPole-v1" in capsys.readouterr().out.split()


def test_quickstart_prints_the_verdict_and_no_nan_interval_when_unresolved(
        monkeypatch, tmp_path, capsys):
    import types

    from scalelab.sweep import cli as sweep_cli

    fit = types.SimpleNamespace(size_exponent=0.746, intervals=None, status="unresolved",
                                status_reason="only 90 of 100 bootstrap resamples converged")
    report = types.SimpleNamespace(experiments=[types.SimpleNamespace(fit=fit)])
    calls = []
    monkeypatch.setattr(sweep_cli, "run_sweep", lambda spec, out, **kw: calls.append(out))
    monkeypatch.setattr(sweep_cli, "fit_run", lambda out, bootstrap: report)
    monkeypatch.setattr(sweep_cli, "format_report", lambda r: "REPORT")
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert calls and "N_opt ∝ C^0.746 (no interval); verdict: unresolved (only 90" in out
    assert "nan" not in out
    fit.intervals, fit.status = {"size_exponent": (0.68, 0.81)}, "resolved"
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--quiet"]) == 0
    assert "C^0.746 (5–95%: 0.680–0.810); verdict: resolved" in capsys.readouterr().out
