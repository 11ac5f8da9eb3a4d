"""JAX environments with gymnax's API: MNIST-as-RL and Procgen-like games."""

from envs_jax.registry import make, register, registered_names, score_kind

__all__ = ["make", "register", "registered_names", "score_kind"]
