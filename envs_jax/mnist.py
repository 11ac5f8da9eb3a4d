"""MNIST-as-RL: classify one uniformly drawn training digit per step (Hilton et al. 2023 toy)."""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from envs_jax.data import NUM_CLASSES, load_mnist

DEFAULT_MAX_STEPS = 512


@struct.dataclass
class EnvState(environment.EnvState):
    """Per-environment state: `time` (int32 steps into the episode) and the digit on show."""

    index: jax.Array  # int32 index into EnvParams.images
    label: jax.Array  # int32 label of that digit, the rewarded action


@struct.dataclass(kw_only=True)
class EnvParams(environment.EnvParams):
    """Shared read-only data plus the bookkeeping episode length.

    images: (n, 28, 28, 1) uint8; labels: (n,) int32 in [0, 10). Pass these params once to a
    vmapped trainer (`in_axes=None`) so the images exist on the device once.
    """

    images: jax.Array
    labels: jax.Array
    max_steps_in_episode: int = DEFAULT_MAX_STEPS


class MNISTEnv(environment.Environment[EnvState, EnvParams]):
    """Each step shows a digit drawn uniformly and independently from `params.images`.

    Action: a label in [0, 10). Reward: 1.0 if the action equals the label of the digit that
    was on show, else 0.0. Never terminates; truncates every `max_steps_in_episode` steps for
    bookkeeping only, so mean reward per step equals training accuracy. The horizon of the task
    is set by the learner's discount, not by the environment.
    """

    def __init__(self, path: str | os.PathLike | None = None, allow_custom: bool = False):
        self.path = path
        self.allow_custom = allow_custom

    # Equal envs share jit caches (`self` is a static argument of step/reset), so repeated
    # make() calls do not recompile.
    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.path == self.path
            and other.allow_custom == self.allow_custom
        )

    def __hash__(self) -> int:
        return hash((type(self), self.path, self.allow_custom))

    @property
    def default_params(self) -> EnvParams:
        """Params holding the MNIST training set found by `load_mnist(self.path)`."""
        return mnist_params(self.path, allow_custom=self.allow_custom)

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: int | jax.Array,
        params: EnvParams | None = None,
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """gymnax step with auto-reset; one digit draw per step.

        Returns (obs (28, 28, 1) uint8, state, reward float32, terminated bool (always False),
        truncated bool, info) with info["final_observation"] the pre-reset observation. Digits
        are i.i.d., so the digit that would have followed and the first digit of the next
        episode are the same fresh draw: on truncation only the clock restarts, and
        final_observation equals obs.
        """
        params = self._require_params(params)
        obs, state, reward, terminated, info = self.step_env(key, state, action, params)
        truncated = self.is_truncated(state, params)
        state = state.replace(time=jnp.where(truncated, 0, state.time))
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs,
        }
        return obs, state, reward, terminated, truncated, info

    @partial(jax.jit, static_argnames=("self",))
    def reset(
        self, key: jax.Array, params: EnvParams | None = None
    ) -> tuple[jax.Array, EnvState]:
        """Start an episode: (obs (28, 28, 1) uint8, state with time 0)."""
        return self.reset_env(key, self._require_params(params))

    def step_env(
        self, key: jax.Array, state: EnvState, action: int | jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        """Reward the action against the shown digit's label, then show a fresh digit."""
        reward = (action == state.label).astype(jnp.float32)
        obs, next_state = self._draw(key, state.time + 1, params)
        return obs, next_state, reward, jnp.asarray(False), {}

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Show a fresh digit at time 0."""
        return self._draw(key, jnp.asarray(0, jnp.int32), params)

    def _draw(
        self, key: jax.Array, time: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState]:
        index = jax.random.randint(key, (), 0, params.images.shape[0], dtype=jnp.int32)
        state = EnvState(time=time, index=index, label=params.labels[index])
        return params.images[index], state

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Never: classification goes on forever."""
        return jnp.asarray(False)

    def _require_params(self, params: EnvParams | None) -> EnvParams:
        # Falling back to default_params inside jit would bake the 47 MB image array into the
        # compiled program as a constant.
        if params is None:
            raise ValueError(
                "MNISTEnv.step/reset need env_params (they hold the images); "
                "use `env, env_params = envs_jax.make('MNIST-v0')`"
            )
        return params

    @property
    def name(self) -> str:
        return "MNIST-v0"

    @property
    def num_actions(self) -> int:
        return NUM_CLASSES

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        """Discrete(10): the predicted label."""
        return spaces.Discrete(NUM_CLASSES)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """uint8 images of shape params.images.shape[1:], (28, 28, 1) for MNIST."""
        return spaces.Box(0, 255, tuple(params.images.shape[1:]), jnp.uint8)


def params_from_arrays(
    images: np.ndarray | jax.Array,
    labels: np.ndarray | jax.Array,
    max_steps_in_episode: int = DEFAULT_MAX_STEPS,
) -> EnvParams:
    """EnvParams from images (n, h, w) or (n, h, w, 1) uint8 and labels (n,) in [0, 10)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(
            f"images must be uint8 of shape (n, h, w) or (n, h, w, 1), got {images.dtype} "
            f"{images.shape}"
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels must be integers of shape ({images.shape[0]},), got {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must lie in [0, {NUM_CLASSES}), got [{labels.min()}, "
                         f"{labels.max()}]")
    _check_max_steps(max_steps_in_episode)
    return EnvParams(
        images=jnp.asarray(images),
        labels=jnp.asarray(labels, jnp.int32),
        max_steps_in_episode=max_steps_in_episode,
    )


# Device copies of the training set, keyed by the id of the cached host array (held in the
# value, so the id cannot be reused): make() is called repeatedly and must not re-upload.
_DEVICE_PARAMS: dict[int, tuple[np.ndarray, EnvParams]] = {}


def mnist_params(
    path: str | os.PathLike | None = None, *, allow_custom: bool = False
) -> EnvParams:
    """Default EnvParams holding the MNIST training set from `load_mnist(path)`.

    The data must be canonical MNIST unless `allow_custom` (see `load_mnist`).
    """
    data = load_mnist(path, allow_custom=allow_custom)
    key = id(data["x_train"])
    if key not in _DEVICE_PARAMS:
        _DEVICE_PARAMS[key] = (
            data["x_train"],
            params_from_arrays(data["x_train"], data["y_train"]),
        )
    return _DEVICE_PARAMS[key][1]


def make_mnist(
    path: str | os.PathLike | None = None, allow_custom: bool = False, **overrides: Any
) -> tuple[MNISTEnv, EnvParams]:
    """Factory for `MNIST-v0`: (env, params) with the training set found by `load_mnist(path)`.

    `allow_custom=True` accepts data other than canonical MNIST, with a warning (see
    `load_mnist`). `overrides` replace non-data params fields (`max_steps_in_episode`,
    default 512).
    """
    if not isinstance(allow_custom, bool):
        raise ValueError(f"MNIST-v0: allow_custom must be true or false, got {allow_custom!r}")
    allowed = sorted(
        f.name for f in dataclasses.fields(EnvParams) if f.name not in ("images", "labels")
    )
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"MNIST-v0: unknown env params {unknown}; allowed: {allowed}")
    if "max_steps_in_episode" in overrides:
        _check_max_steps(overrides["max_steps_in_episode"])
    params = mnist_params(path, allow_custom=allow_custom)
    return MNISTEnv(path, allow_custom), params.replace(**overrides)


def _check_max_steps(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"max_steps_in_episode must be a positive integer, got {value!r}")
