"""Every refused input is one paragraph on stderr and exit code 2, never a traceback; `--debug`
shows the traceback; an unexpected failure is exit code 1 with a short message."""

from pathlib import Path

import pytest
from sweep_helpers import tiny_spec

from scalelab import cli
from scalelab.cli import main

TINY = tiny_spec("refusals")
MNIST_ENV = '[env]\nname = "MNIST-v0"\n'


def _file(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


CASES = {
    # name: (argv builder from tmp_path, text expected in the message)
    "non_utf8_spec_plan": (lambda t: ["sweep", "plan", _file(t, "s.toml", b'name = "\xff\xfe"')],
                           "not a UTF-8 text file"),
    "non_utf8_spec_run": (lambda t: ["sweep", "run", _file(t, "s.toml", b"\xff\xfe[env]"),
                                     "--out", str(t / "o")], "not a UTF-8 text file"),
    "unknown_activation": (lambda t: ["sweep", "plan", _file(t, "s.toml", TINY.replace(
        'family = "mlp"', 'family = "mlp"\nactivation = "swish"'))], "swish"),
    "depth_axis_with_mnist_cnn": (lambda t: ["sweep", "plan", _file(t, "s.toml", TINY.replace(
        '[env]\nname = "CartPole-v1"\n', MNIST_ENV).replace('"mlp"', '"mnist_cnn"').replace(
        "width = 0.25", "width = 0.25\ndepth = [1, 2]"))], "depth"),
    "missing_mnist_path": (lambda t: ["sweep", "plan", _file(t, "s.toml", TINY.replace(
        '[env]\nname = "CartPole-v1"\n',
        f'{MNIST_ENV}[env.kwargs]\npath = "{t / "nowhere.npz"}"\n'))], "nowhere.npz"),
    "missing_spec": (lambda t: ["sweep", "run", str(t / "none.toml"), "--out", str(t / "o")],
                     "none.toml"),
    "resume_without_run_dir": (lambda t: ["sweep", "run", "--resume", "--out", str(t / "o")],
                               "no sweep to resume"),
    "run_dir_without_spec": (lambda t: ["sweep", "run", "--out", str(
        Path(_file(t, "manifest.json", "{}")).parent)], "no spec.toml"),
    "binary_fit_input": (lambda t: ["fit", _file(t, "c.csv", bytes(range(256)) * 4)],
                         "not a UTF-8 text file"),
    "missing_fit_input": (lambda t: ["fit", str(t / "none.csv")], "none.csv"),
    "fit_input_not_curves": (lambda t: ["fit", _file(t, "c.txt", "hello")], ".csv or .json"),
    "train_out_is_a_file": (lambda t: ["train", "--env", "CartPole-v1", "--out",
                                       _file(t, "f", "x")], "is a file"),
    "export_without_run_dir": (lambda t: ["export", str(t), "--tensorboard", str(t / "tb")],
                               "no manifest.json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_input_exits_2_with_one_paragraph_and_no_traceback(case, tmp_path, capsys):
    argv, expected = CASES[case]
    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and expected in err
    assert err.count("\n") == 1  # one paragraph, one line


def test_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["sweep", "run", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "SpecError" in err and "none.toml" in err
    assert main([*argv, "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_failure_exits_1_with_a_short_message(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("disk on fire")

    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["envs"].set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["envs"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: unexpected RuntimeError: disk on fire (run with --debug for the "
                   "traceback)\n")


def test_a_huge_message_is_cut_to_one_short_paragraph(monkeypatch, capsys):
    def refuse(args):
        raise ValueError("seed values:\n" + "1, " * 300_000)

    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["envs"].set_defaults(func=refuse)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["envs"]) == 2
    err = capsys.readouterr().err
    assert len(err) < 2100 and err.count("\n") == 1 and "more characters)" in err
