"""MNIST data problems as a sweep user meets them: `scalelab sweep plan` on the quickstart spec."""

import numpy as np
import pytest

from envs_jax.data import ALLOW_CUSTOM_ENV, CustomMnistWarning
from scalelab import specs
from scalelab.cli import main
from scalelab.sweep.plan import make_plan
from scalelab.sweep.spec import parse_spec

QUICKSTART = specs.path("quickstart")


@pytest.fixture
def truncated_mnist(monkeypatch, tmp_path):
    """$SCALELAB_MNIST points at a truncated .npz."""
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(60))
    monkeypatch.setenv("SCALELAB_MNIST", str(path))
    monkeypatch.delenv(ALLOW_CUSTOM_ENV, raising=False)
    return path


def test_plan_refuses_a_broken_file_with_its_path_and_no_traceback(truncated_mnist, capsys):
    assert main(["sweep", "plan", str(QUICKSTART)]) == 2
    err = capsys.readouterr().err
    assert str(truncated_mnist) in err and "$SCALELAB_MNIST" in err
    assert "Traceback" not in err


def test_plan_does_not_blame_env_kwargs_for_a_broken_file(truncated_mnist, capsys):
    main(["sweep", "plan", str(QUICKSTART)])
    assert "[env.kwargs]" not in capsys.readouterr().err


def test_spec_env_kwargs_allow_custom(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    custom = tmp_path / "digits.npz"
    np.savez(custom, x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 20), x_test=rng.integers(0, 256, (4, 28, 28),
             dtype=np.uint8), y_test=rng.integers(0, 10, 4))
    monkeypatch.delenv(ALLOW_CUSTOM_ENV, raising=False)
    text = QUICKSTART.read_text().replace(
        '[env]\nname = "MNIST-v0"\n',
        f'[env]\nname = "MNIST-v0"\n[env.kwargs]\npath = "{custom}"\nallow_custom = true\n',
    )
    assert "allow_custom" in text
    with pytest.warns(CustomMnistWarning, match=str(custom)):
        plan = make_plan(parse_spec(text, "custom.toml"))
    assert len(plan.groups) >= 1
