"""Name -> environment registry: `make(name, **kwargs) -> (env, env_params)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., tuple[Any, Any]]] = {}
_GYMNAX_PREFIX = "gymnax/"


def register(name: str, factory: Callable[..., tuple[Any, Any]]) -> None:
    """Register `factory(**kwargs) -> (env, env_params)` under `name`."""
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = factory


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
    raise ValueError(
        f"unknown environment {name!r}; known: {', '.join(registered_names())}"
    )
