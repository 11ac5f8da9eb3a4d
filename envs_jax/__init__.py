"""JAX environments with gymnax's API: MNIST-as-RL and Procgen-like games."""

from envs_jax.registry import make, register, registered_names

__all__ = ["make", "register", "registered_names"]
