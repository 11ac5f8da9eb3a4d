"""Registers the environments that ship with envs_jax."""

from envs_jax.procgen.coinrun import make_coinrun
from envs_jax.registry import register

register("CoinRun-v0", make_coinrun)
