"""Registers the environments that ship with envs_jax."""
