"""Name -> environment registry: `make(name, **kwargs) -> (env, env_params)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., tuple[Any, Any]]] = {}
SCORE_KINDS = ("reward_per_step", "episode_return")
_SCORE_KIND: dict[str, str] = {}


def register(
    name: str,
    factory: Callable[..., tuple[Any, Any]],
    *,
    score_kind: str = "episode_return",
) -> None:
    """Register `factory(**kwargs) -> (env, env_params)` under `name`.

    `score_kind` says how a run is scored (see `score_kind()`): one of `SCORE_KINDS`.
    """
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered")
    if score_kind not in SCORE_KINDS:
        raise ValueError(f"score_kind must be one of {SCORE_KINDS}, got {score_kind!r}")
    _REGISTRY[name] = factory
    _SCORE_KIND[name] = score_kind


def _load_builtins() -> None:
    # Imported lazily so that `import envs_jax` stays cheap and free of cycles.
    import envs_jax.builtin  # noqa: F401


def registered_names() -> list[str]:
    """Names accepted by `make`: ours, then gymnax's own (usable as-is, e.g. CartPole-v1)."""
    _load_builtins()
    import gymnax

    ours = sorted(_REGISTRY)
    theirs = sorted(n for n in gymnax.registered_envs if n not in _REGISTRY)
    return ours + theirs


def make(name: str, **kwargs: Any) -> tuple[Any, Any]:
    """Build environment `name`; kwargs override fields of its default `env_params`.

    Our environments come first; any other gymnax-registered name falls through to
    `gymnax.make`. Unknown names raise `ValueError` listing what exists.
    """
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    import gymnax

    if name in gymnax.registered_envs:
        env, params = gymnax.make(name)
        if kwargs:
            unknown = sorted(set(kwargs) - set(params.__dataclass_fields__))
            if unknown:
                raise ValueError(f"{name}: unknown env params {unknown}")
            params = params.replace(**kwargs)
        return env, params
    raise _unknown(name)


def score_kind(name: str) -> str:
    """How runs on `name` are scored: "reward_per_step" or "episode_return".

    "reward_per_step" (MNIST-v0) is mean reward per step, i.e. training accuracy;
    "episode_return" (every other env, gymnax's included) is the mean return of finished
    episodes. Unknown names raise `ValueError`.
    """
    _load_builtins()
    if name in _REGISTRY:
        return _SCORE_KIND[name]
    import gymnax

    if name in gymnax.registered_envs:
        return "episode_return"
    raise _unknown(name)


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown environment {name!r}; known: {', '.join(registered_names())}")
