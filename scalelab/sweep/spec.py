"""Sweep specs: parse a TOML sweep description and validate all of it before anything compiles.

A spec names an environment, a network family, trainer hyperparameters, the axes to sweep (model
size as width or parameter ratio, depth, seed, an lr grid, per-member hyperparameters such as γ
and λ), a per-size learning-rate rule and the budget. `sweeps/README.md` documents the schema;
`SCHEMA` below is its single source of truth (the README test checks every key is documented).
Every error is a `SpecError` whose message names the file and the offending key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

import envs_jax
from scalelab.algos import ALGORITHMS
from scalelab.config import SETTINGS, TRACED, TrainConfig

__all__ = [
    "SCHEMA",
    "AXIS_NAMES",
    "LrRule",
    "SpecError",
    "SweepSpec",
    "expand_axis",
    "load_spec",
    "parse_spec",
    "spec_for_config",
    "train_config",
]


class SpecError(ValueError):
    """A malformed sweep spec; the message names the file and the offending key."""


# Keys of TrainConfig that other spec tables own (so `[train]` may not set them).
_OWNED_ELSEWHERE = {
    "env": "[env] name",
    "env_kwargs": "[env.kwargs]",
    "network": "[network] family",
    "width": "[axes] width / param_ratio",
    "depth": "[axes] depth",
    "activation": "[network] activation",
    "seed": "[axes] seed",
    "lr": "[lr] base (with [axes] lr_scale)",
    "total_interactions": "[budget] interactions",
    "updates_per_chunk": "[budget] updates_per_chunk",
}

# Axes swept per member. Hyperparameter axes are the settings traced per member
# (`scalelab.config.TRACED`, the `MemberHparams` fields), so that every value shares one
# compiled program; lr is swept through the lr rule and `lr_scale`.
_SIZE_AXES = ("width", "param_ratio")
_HPARAM_AXES = tuple(name for name in TRACED if name != "lr")
AXIS_NAMES = (*_SIZE_AXES, "depth", "seed", "lr_scale", *_HPARAM_AXES)


@dataclasses.dataclass(frozen=True)
class _Key:
    """One documented spec key: its kind ("int", "float", "str", "bool"), range check, help."""

    kind: str
    check: Callable[[Any], bool] | None
    rule: str
    help: str
    required: bool = False


def _positive(v: Any) -> bool:
    return v > 0


def _nonneg(v: Any) -> bool:
    return v >= 0


def _seed_ok(v: Any) -> bool:
    return 0 <= v < 2**31


SCHEMA: dict[str, dict[str, _Key]] = {
    "": {
        "name": _Key("str", None, "", "sweep name (default: the file's stem)"),
        "description": _Key("str", None, "", "free text"),
    },
    "env": {
        "name": _Key("str", None, "a registered env", "environment, e.g. MNIST-v0", True),
    },
    "network": {
        "family": _Key("str", None, "", "network family: mnist_cnn | mlp | impala | small_cnn "
                       "(default: by observation shape, see scalelab.config.default_family)"),
        "activation": _Key("str", None, "", "activation override (default: family's)"),
    },
    "budget": {
        "interactions": _Key(
            "int", _positive, "> 0", "env interactions per member (rounded down to whole updates)",
            True,
        ),
        "updates_per_chunk": _Key(
            "int", _positive, "> 0", "K: updates per compiled call (default 8)"
        ),
        "log_interval": _Key(
            "int", _positive, "> 0, divides updates_per_chunk",
            "updates per logged point (default 1)",
        ),
        "checkpoint_every": _Key(
            "int", _positive, "> 0", "chunks between checkpoints (default 10)"
        ),
    },
    "lr": {
        "base": _Key("float", _positive, "> 0", "lr at width 1, depth 1", True),
        "width_power": _Key("float", None, "", "p_w in base*width^p_w*depth^p_d (default -0.5)"),
        "depth_power": _Key("float", None, "", "p_d (default 0)"),
    },
    "plan": {
        "max_padding_overhead": _Key(
            "float", _nonneg, ">= 0",
            "extra FLOPs allowed for zero-padding, as a fraction of the unpadded total "
            "(default 0.25; 0 = group equal shapes only)",
        ),
    },
    "axes": {
        "width": _Key("float", _positive, "> 0", "network width multipliers"),
        "param_ratio": _Key("float", _positive, "> 0", "sizes as parameter ratios to width 1"),
        "depth": _Key("int", _positive, ">= 1", "depths (residual blocks per stack / layers)"),
        "seed": _Key("int", _seed_ok, "0 <= seed < 2^31", "seeds (default [0])"),
        "lr_scale": _Key("float", _positive, "> 0", "lr grid: multipliers of the rule's lr"),
        **{name: _Key("float", SETTINGS[name].ok, SETTINGS[name].rule(), SETTINGS[name].help)
           for name in _HPARAM_AXES},
    },
}
# Tables inside tables. `[env.kwargs]` (env params, checked when the planner builds the env)
# and `[train]` (TrainConfig fields, checked against its annotations and validate()) are free-form.
_SUBTABLES = {"": {"env", "network", "budget", "lr", "plan", "axes", "train"}, "env": {"kwargs"}}

_DEFAULTS = {
    ("budget", "updates_per_chunk"): 8,
    ("budget", "log_interval"): 1,
    ("budget", "checkpoint_every"): 10,
    ("lr", "width_power"): -0.5,
    ("lr", "depth_power"): 0.0,
    ("plan", "max_padding_overhead"): 0.25,
}


@dataclasses.dataclass(frozen=True)
class LrRule:
    """Per-size learning rate: lr = base · width^width_power · depth^depth_power."""

    base: float
    width_power: float = -0.5
    depth_power: float = 0.0

    def lr(self, width: float, depth: int | None) -> float:
        """The rule's lr for a member of this width and depth (depth None counts as 1)."""
        d = 1 if depth is None else depth
        return self.base * width**self.width_power * d**self.depth_power


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. `axes` maps each swept axis to its values, in AXIS_NAMES order."""

    path: str
    name: str
    description: str
    env: str
    env_kwargs: Mapping[str, Any]
    family: str | None
    activation: str | None
    train: Mapping[str, Any]
    interactions: int
    updates_per_chunk: int
    log_interval: int
    checkpoint_every: int
    lr_rule: LrRule
    max_padding_overhead: float
    axes: Mapping[str, tuple]
    text: str

    @property
    def size_axis(self) -> str:
        """'width' or 'param_ratio': how this spec names model sizes."""
        return "param_ratio" if "param_ratio" in self.axes else "width"


def _where(path: str, table: str, key: str | None = None) -> str:
    loc = f"[{table}]" if table else "top level"
    return f"{path}: {loc}" + (f" {key}" if key is not None else "")


def _check_value(path: str, table: str, key: str, spec: _Key, value: Any) -> Any:
    """Type- and range-check one scalar; ints are accepted where floats are expected."""
    where = _where(path, table, key)
    kind = spec.kind
    is_bool = isinstance(value, bool)
    if kind == "int" and (is_bool or not isinstance(value, int)):
        raise SpecError(f"{where}: expected an integer, got {value!r}")
    if kind == "float":
        if is_bool or not isinstance(value, int | float):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise SpecError(f"{where}: expected a finite number, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise SpecError(f"{where}: expected a string, got {value!r}")
    if kind == "bool" and not is_bool:
        raise SpecError(f"{where}: expected true or false, got {value!r}")
    if spec.check is not None and not spec.check(value):
        raise SpecError(f"{where}: value {value!r} out of range (must be {spec.rule})")
    return value


def expand_axis(path: str, key: str, raw: Any) -> tuple:
    """Values of axis `key`: a scalar, a list, or `{geom = [lo, hi, n]}` (n geometric points).

    geom gives lo·(hi/lo)^(i/(n-1)) for i = 0..n-1 (integer axes are rounded); duplicates are an
    error. Every value is type- and range-checked.
    """
    spec = SCHEMA["axes"][key]
    where = _where(path, "axes", key)
    if isinstance(raw, dict):
        if set(raw) != {"geom"}:
            raise SpecError(f"{where}: a table axis must be {{geom = [lo, hi, n]}}, got {raw!r}")
        g = raw["geom"]
        if (
            not isinstance(g, list)
            or len(g) != 3
            or any(isinstance(x, bool) or not isinstance(x, int | float) for x in g)
            or isinstance(g[2], float)
        ):
            raise SpecError(f"{where}: geom must be [lo, hi, n] with integer n, got {g!r}")
        lo, hi, n = float(g[0]), float(g[1]), g[2]
        if not (lo > 0 and hi > 0 and n >= 1) or (n == 1 and lo != hi):
            raise SpecError(
                f"{where}: geom needs lo > 0, hi > 0, n >= 1 (n = 1 only if lo == hi), got {g!r}"
            )
        values = [lo * (hi / lo) ** (i / (n - 1)) if n > 1 else lo for i in range(n)]
        if spec.kind == "int":
            values = [round(v) for v in values]
    elif isinstance(raw, list):
        if not raw:
            raise SpecError(f"{where}: empty list")
        values = raw
    else:
        values = [raw]
    checked = tuple(_check_value(path, "axes", key, spec, v) for v in values)
    seen: dict[Any, int] = {}
    for i, v in enumerate(checked):
        if v in seen:
            raise SpecError(f"{where}: duplicate value {v!r} (values {seen[v] + 1} and {i + 1} of "
                            f"{len(checked)}{', after rounding' if isinstance(raw, dict) else ''})")
        seen[v] = i
    return checked


def _train_fields() -> dict[str, Any]:
    """TrainConfig's fields → their resolved type annotations."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a simple annotation (int, float, bool, str, X | None, tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, list)
    return True


def _check_train(path: str, table: Mapping[str, Any]) -> dict[str, Any]:
    fields = _train_fields()
    out = {}
    for key, value in table.items():
        where = _where(path, "train", key)
        if key in _OWNED_ELSEWHERE:
            raise SpecError(f"{where}: set this with {_OWNED_ELSEWHERE[key]}, not in [train]")
        if key not in fields:
            known = ", ".join(sorted(set(fields) - set(_OWNED_ELSEWHERE)))
            raise SpecError(f"{where}: unknown key; [train] accepts: {known}")
        if not _type_ok(value, fields[key]):
            raise SpecError(f"{where}: expected {fields[key]}, got {value!r}")
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _table(path: str, doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Check one schema table: unknown keys, required keys, types, ranges; fill defaults."""
    raw = doc if name == "" else doc.get(name, {})
    if not isinstance(raw, dict):
        raise SpecError(f"{_where(path, name)}: expected a table, got {raw!r}")
    schema = SCHEMA[name]
    allowed = set(schema) | _SUBTABLES.get(name, set())
    for key in raw:
        if key not in allowed:
            raise SpecError(
                f"{_where(path, name, key)}: unknown key; allowed: {', '.join(sorted(allowed))}"
            )
    out = {}
    for key, spec in schema.items():
        if key in raw:
            if name == "axes":
                out[key] = expand_axis(path, key, raw[key])
            else:
                out[key] = _check_value(path, name, key, spec, raw[key])
        elif spec.required:
            raise SpecError(f"{_where(path, name, key)}: required key is missing")
        elif (name, key) in _DEFAULTS:
            out[key] = _DEFAULTS[(name, key)]
    return out


def parse_spec(text: str, path: str = "<spec>") -> SweepSpec:
    """Parse and validate spec `text` (named `path` in errors) into a `SweepSpec`.

    Checks every key against SCHEMA and TrainConfig, each axis value's type and range, that the
    environment is registered, and that one TrainConfig per combination of hyperparameter values
    passes TrainConfig.validate(). Building the env (its kwargs) is left to the planner.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    top = _table(path, doc, "")
    env = _table(path, doc, "env")
    net = _table(path, doc, "network")
    budget = _table(path, doc, "budget")
    lr = _table(path, doc, "lr")
    plan = _table(path, doc, "plan")
    axes = _table(path, doc, "axes")
    env_kwargs = doc.get("env", {}).get("kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise SpecError(f"{_where(path, 'env.kwargs')}: expected a table, got {env_kwargs!r}")
    train_raw = doc.get("train", {})
    if not isinstance(train_raw, dict):
        raise SpecError(f"{_where(path, 'train')}: expected a table, got {train_raw!r}")
    train = _check_train(path, train_raw)

    if env["name"] not in envs_jax.registered_names():
        raise SpecError(
            f"{_where(path, 'env', 'name')}: unknown environment {env['name']!r}; "
            f"`scalelab envs` lists the known ones"
        )
    if budget["updates_per_chunk"] % budget["log_interval"]:
        raise SpecError(
            f"{_where(path, 'budget', 'log_interval')}: {budget['log_interval']} must divide "
            f"updates_per_chunk = {budget['updates_per_chunk']}"
        )
    if all(a in axes for a in _SIZE_AXES):
        where = _where(path, "axes", "param_ratio")
        raise SpecError(f"{where}: give width or param_ratio, not both")
    axes.setdefault("seed", (0,))
    if not any(a in axes for a in _SIZE_AXES):
        axes["width"] = (1.0,)
    for key in axes:
        if key in train:
            raise SpecError(
                f"{_where(path, 'train', key)}: also swept in [axes]; set it in one place"
            )
    spec = SweepSpec(
        path=path,
        name=top.get("name", Path(path).stem),
        description=top.get("description", ""),
        env=env["name"],
        env_kwargs=dict(env_kwargs),
        family=net.get("family"),
        activation=net.get("activation"),
        train=train,
        interactions=budget["interactions"],
        updates_per_chunk=budget["updates_per_chunk"],
        log_interval=budget["log_interval"],
        checkpoint_every=budget["checkpoint_every"],
        lr_rule=LrRule(lr["base"], lr["width_power"], lr["depth_power"]),
        max_padding_overhead=plan["max_padding_overhead"],
        axes={k: axes[k] for k in AXIS_NAMES if k in axes},
        text=text,
    )
    _validate_train_configs(spec)
    _check_sweepable(spec)
    return spec


def _check_sweepable(spec: SweepSpec) -> None:
    """Errors for trainer settings a sweep cannot run or that would make members identical:
    an axis the algorithm ignores, and the adaptive batch schedule across different settings."""
    cfg = train_config(spec, width=1.0, seed=0, lr=spec.lr_rule.base)
    algorithm = ALGORITHMS[cfg.algo]
    for key in _HPARAM_AXES:
        used, needs = SETTINGS[key].used, SETTINGS[key].needs
        if (key in spec.axes and len(spec.axes[key]) > 1 and used is not None
                and not used(algorithm, cfg.objective)):
            raise SpecError(
                f"{_where(spec.path, 'axes', key)}: has no effect with algo = {cfg.algo!r}, "
                f"objective = {cfg.objective!r} (it needs {needs}); its members would differ "
                f"only in name"
            )
    varied = [k for k, v in spec.axes.items() if k != "seed" and len(v) > 1]
    if cfg.batch_schedule == "adaptive" and varied:
        raise SpecError(
            f"{_where(spec.path, 'train', 'batch_schedule')}: 'adaptive' grows each member's "
            f"batch from its own measured noise scale, so the members of a vmapped group would "
            f"need different batch shapes; a sweep over {', '.join(varied)} runs 'fixed' or "
            f"'power' (deterministic: the whole sweep grows together), and 'adaptive' only over "
            f"seeds (pooling their noise scales). Run an adaptive schedule per setting with "
            f"`scalelab train`, then fit its batch sizes with a power schedule "
            f"(`scalelab.algos.batch_schedule.fit_power_schedule`)"
        )


def train_config(spec: SweepSpec, **member: Any):
    """The TrainConfig of one member: spec defaults overridden by the member's axis values.

    `member` holds width (float), depth (int | None), seed, lr and any hyperparameter axes (and
    network, to resolve a spec without a family).
    """
    fields = {
        "env": spec.env,
        "env_kwargs": dict(spec.env_kwargs),
        "network": spec.family,
        "total_interactions": spec.interactions,
        "updates_per_chunk": spec.updates_per_chunk,
        **spec.train,
        **member,
    }
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if spec.activation is not None:
        fields["activation"] = spec.activation
    return TrainConfig(**{k: v for k, v in fields.items() if k in names})


def _validate_train_configs(spec: SweepSpec) -> None:
    """Run TrainConfig.validate() on every value of every swept hyperparameter.

    TrainConfig's errors start with the field's name; the error is re-located to the spec key
    that set it ([budget] interactions, [axes] gamma, [train] num_envs, ...).
    """
    probe: dict[str, Any] = {"width": 1.0, "seed": spec.axes["seed"][0], "lr": spec.lr_rule.base}
    if "depth" in spec.axes:
        probe["depth"] = spec.axes["depth"][0]
    variants = [dict(probe)]
    for key in _HPARAM_AXES:
        for v in spec.axes.get(key, ()):
            variants.append({**probe, key: v})
    for member in variants:
        try:
            train_config(spec, **member).validate()
        except (ValueError, TypeError) as exc:
            field = str(exc).split(":", 1)[0].strip()
            if field in _OWNED_ELSEWHERE:
                where = f"{spec.path}: {_OWNED_ELSEWHERE[field]}"
            elif field in spec.axes:
                where = _where(spec.path, "axes", field)
            else:
                where = _where(spec.path, "train", field if field in spec.train else None)
            message = str(exc).split(":", 1)[1].strip() if field in str(where) else str(exc)
            raise SpecError(f"{where}: {message}") from None


def spec_for_config(config: TrainConfig, num_seeds: int, name: str = "train") -> str:
    """The TOML text of the sweep that trains `config` for seeds seed .. seed+num_seeds-1: one
    size, lr exactly config.lr, one log point per chunk; what `scalelab.train` runs.

    Raises ValueError when an env kwarg has no TOML form.
    """
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig(env=config.env)
    train = {k: v for k, v in fields.items() if k not in _OWNED_ELSEWHERE and v is not None
             and v != getattr(defaults, k)}
    doc: dict[str, Any] = {
        "name": name,
        "env": {"name": config.env, "kwargs": dict(config.env_kwargs)},
        "network": {k: v for k, v in (("family", config.network),
                                      ("activation", config.activation)) if v is not None},
        "budget": {"interactions": config.total_interactions,
                   "updates_per_chunk": config.updates_per_chunk,
                   "log_interval": config.updates_per_chunk},
        # width_power 0: lr = base exactly, whatever the width
        "lr": {"base": float(config.lr), "width_power": 0.0},
        "axes": {"width": [float(config.width)],
                 "seed": list(range(config.seed, config.seed + num_seeds)),
                 **({"depth": [config.depth]} if config.depth is not None else {})},
        "train": train,
    }
    try:
        return tomli_w.dumps(doc)
    except TypeError as exc:
        raise ValueError(f"env_kwargs: {exc} (a run directory stores settings as TOML)") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the spec file at `path` (see `parse_spec`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"{p}: cannot read spec: {exc.strerror}") from None
    return parse_spec(text, str(p))
