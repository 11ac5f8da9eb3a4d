"""Registers the environments that ship with envs_jax."""

from envs_jax.mnist import make_mnist
from envs_jax.registry import register

register("MNIST-v0", make_mnist, score_kind="reward_per_step")
