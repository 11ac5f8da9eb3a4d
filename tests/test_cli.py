from scalelab.cli import main


def test_envs_lists_gymnax_cartpole(capsys):
    assert main(["envs"]) == 0
    assert "CartPole-v1" in capsys.readouterr().out.split()
