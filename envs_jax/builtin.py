"""Registers the environments that ship with envs_jax."""

from envs_jax.mnist import make_mnist
from envs_jax.procgen.coinrun import make_coinrun
from envs_jax.procgen.fruitbot import make_fruitbot
from envs_jax.procgen.starpilot import make_starpilot
from envs_jax.registry import register

register("MNIST-v0", make_mnist, score_kind="reward_per_step")
register("CoinRun-v0", make_coinrun)
register("StarPilot-v0", make_starpilot)
register("FruitBot-v0", make_fruitbot)
