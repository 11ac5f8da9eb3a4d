"""A tiny CartPole sweep spec shared by the run-directory, refusal, integrity and distributed
tests."""


def tiny_spec(name: str, *, rollout_length: int = 8, num_minibatches: int = 1,
              interactions: int = 128, updates_per_chunk: int = 1, checkpoint_every: int = 1,
              plan: str = "", axes: str = "width = 0.25\nseed = [0, 1]") -> str:
    """A width-1/4 MLP on CartPole, 4 envs, 1 epoch; by default 2 seeds, 8 steps, 4 chunks of
    1 update and a checkpoint each. plan: the [plan] table's lines ("" for none)."""
    plan_table = f"[plan]\n{plan}\n" if plan else ""
    return f"""
name = "{name}"
[env]
name = "CartPole-v1"
[network]
family = "mlp"
[train]
num_envs = 4
rollout_length = {rollout_length}
update_epochs = 1
num_minibatches = {num_minibatches}
[budget]
interactions = {interactions}
updates_per_chunk = {updates_per_chunk}
log_interval = 1
checkpoint_every = {checkpoint_every}
[lr]
base = 1e-3
{plan_table}[axes]
{axes}
"""
