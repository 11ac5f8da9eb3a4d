"""A tiny CartPole sweep spec shared by the run-directory, refusal and distributed tests."""


def tiny_spec(name: str) -> str:
    """2 seeds of a width-1/4 MLP, 4 envs x 8 steps, 4 chunks of 1 update, a checkpoint each."""
    return f"""
name = "{name}"
[env]
name = "CartPole-v1"
[network]
family = "mlp"
[train]
num_envs = 4
rollout_length = 8
update_epochs = 1
num_minibatches = 1
[budget]
interactions = 128
updates_per_chunk = 1
log_interval = 1
checkpoint_every = 1
[lr]
base = 1e-3
[axes]
width = 0.25
seed = [0, 1]
"""
