"""Actor-critic networks (MNIST CNN, MLP, IMPALA CNN, small-grid CNN) with exact size/FLOP counts
and zero-padding.

Every network has two separate towers: a policy tower (encoder, then a linear head giving one logit
per action) and a value tower (its own encoder, then a linear head giving one scalar). A `width`
multiplier scales every hidden layer: a layer with ``base`` units at width 1 has
``max(1, floor(base * width + 1/2))`` units (round half up).

Families (``NetworkConfig.family``):

- ``"mnist_cnn"`` — the CNN of Hilton et al. (2023) for MNIST-as-RL: 5x5 conv, 2x2 max-pool,
  3x3 conv, 2x2 max-pool, dense 1000, activation after every conv and the dense layer. The paper
  does not give the conv channels or padding; we use 32 and 64 channels at width 1 and VALID
  convolutions (LeNet style: 28x28 -> 24 -> 12 -> 10 -> 5). Parameters grow about as width^2.
  It has no depth knob (``depth`` must be None).
- ``"mlp"`` — ``depth`` hidden layers (default 2) of 64 units at width 1, ``tanh`` by default
  (PureJaxRL's CartPole network); observations are flattened.
- ``"impala"`` — the IMPALA CNN as used by phasic policy gradient: three stacks with channels
  (16, 32, 32) x width, each a 3x3 SAME conv, a 3x3 stride-2 SAME max-pool and ``depth`` residual
  blocks (default 2) ``x + conv(act(conv(act(x))))``; then act, dense 256 x width, act. The width
  multiplier scales the dense layer too, so parameters grow about as width^2.
- ``"small_cnn"`` — for small grids such as MinAtar's 10x10xC: ``depth`` 3x3 SAME convolutions
  (default 1) of 16 x width channels, then dense 128 x width, activation (relu) after each, no
  pooling. MinAtar's baseline network (Young & Tian, 2019) is one 3x3 stride-1 conv with 16
  channels and a 128-unit hidden layer; its conv is unpadded (VALID), ours is SAME so that every
  grid (down to 1x1) and every depth keep their size. Parameters grow about as width^2.

Zero-padding: the dense layer that follows a conv trunk contracts the (H, W, C) axes with a kernel
of shape (H, W, C, out) instead of flattening, so a narrower member's parameters embed into a
wider group's shapes by padding every axis *at its end* with zeros. With zero biases and f(0) = 0
activations the padded units output exactly zero, receive exactly zero gradient, and the member
computes the same function as its unpadded self.

Uint8 observations are scaled to [0, 1] inside; anything else is cast to float32.

Convolutions have two formulations with the same parameters and the same function
(``build(..., conv_impl=...)``): ``"lax"`` is ``nn.Conv`` (``lax.conv_general_dilated``);
``"taps"`` computes a layer with C_in * C_out <= TAPS_MAX_CHANNELS as a sum over kernel taps of a
shifted slice times a (C_in x C_out) matrix (``conv_taps``). XLA:CPU's convolution emitter is
slow for such few-channel layers (the first MNIST conv has one input channel; its forward pass and
kernel gradient dominated the small members' training step), while the tap products fuse into a
few elementwise loops (``benchmarks/cnn_speed.py`` measures both formulations per layer). The
cut-off is 16, chosen on whole chunk programs: against 4 (``benchmarks/backward_ab.py --variant
taps_cutoff``) the quickstart's chunk ran 1.11x, IMPALA width 1/4's 1.08-1.13x and MNIST 1/64's
1.10x faster, MNIST 1/8's 0.99x; in a first, ad-hoc run of cut-offs 4, 8, 16, 32 and 64 on the
same programs, 32 and 64 were slower than 16 on MNIST 1/8 and IMPALA 1/4. The other layers
keep ``"lax"``'s values under "taps" but take their input and kernel gradients as a few matmuls
(``conv_tap_grad``: input gradient per tap, kernel gradient by rows or per tap; the tap sums' own
kernel gradient is the same function): inside the trainer's ``lax.scan`` XLA:CPU runs both
library gradients as slow loop emitters (``benchmarks/scan_vs_steps.py``,
``benchmarks/input_grad.py``). ``"auto"``
(the default) picks ``"taps"`` when the default backend is the CPU and ``"lax"`` elsewhere, where
library convolutions are fast and the tap sum would only add memory traffic. Max-pools are
``nn.max_pool`` under "lax" and ``scalelab.maxpool.max_pool`` under "taps": the same values and
bit-identical gradients, computed by dense compares and pads instead of XLA:CPU's
select-and-scatter.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from scalelab.conv_tap_grad import conv_tap_grad, kernel_grad
from scalelab.maxpool import max_pool as dense_grad_max_pool

FAMILIES = ("mnist_cnn", "mlp", "impala", "small_cnn")
CONV_IMPLS = ("auto", "lax", "taps")
# "taps" computes a convolution as per-tap products only up to this C_in * C_out (module docstring)
TAPS_MAX_CHANNELS = 16


@jax.custom_vjp
def relu(x: jax.Array) -> jax.Array:
    """``jax.nn.relu`` whose backward reads its output: bit-identical values and gradients
    (``y > 0`` exactly where ``x > 0``; at 0 and NaN both give no gradient), but its residual is
    the output, which the next layer (pool or conv) reads anyway. Masking by the input made XLA:CPU
    recompute a tap-sum convolution inside the backward fusion (the MNIST CNN's first conv, 25
    taps, in both towers: nearly a fifth of its op time at width 1/8).

    In a whole network XLA may fuse the surrounding ops differently, which can move results by
    float rounding: ``benchmarks/backward_ab.py --variant relu`` found the chunks of the
    quickstart and of the roofline's sizes bit-identical, and its smoke size's params within
    6e-8."""
    return jnp.maximum(x, 0)


def _relu_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = jnp.maximum(x, 0)
    # without the barrier XLA:CPU still recomputed x (the conv) in the backward's fusion
    return y, lax.optimization_barrier(y)


def _relu_bwd(y: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (jnp.where(y > 0, g, jnp.zeros_like(g)),)


relu.defvjp(_relu_fwd, _relu_bwd)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "tanh": jnp.tanh}
# what a layer's activation of its own output (``Layer.act_out``) computes under conv_impl "taps"
# (under "lax" ``ACTIVATIONS``): the same functions, relu masking its gradient by its output
# (benchmarks/backward_ab.py --variant relu: the quickstart's chunk 1.32x and the MNIST CNN's
# 1.26-1.46x faster, IMPALA's 0.98-1.13x).
# Pre-activations (``act_in``, IMPALA's residual blocks) keep ``nn.relu``: tried there too, it
# gained nothing and moved an IMPALA width-1/4 chunk's results by rounding
OUTPUT_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {**ACTIVATIONS, "relu": relu}


def computed_as_taps(c_in: int, c_out: int) -> bool:
    """Whether conv_impl "taps" computes a C_in -> C_out convolution as per-tap products (few
    channels; wider layers stay library convolutions)."""
    return c_in * c_out <= TAPS_MAX_CHANNELS

_DEFAULT_DEPTH: dict[str, int | None] = {"mnist_cnn": None, "mlp": 2, "impala": 2, "small_cnn": 1}
_DEFAULT_ACTIVATION = {"mnist_cnn": "relu", "mlp": "tanh", "impala": "relu", "small_cnn": "relu"}

_MNIST_BASE = (32, 64, 1000)  # conv1 channels, conv2 channels, dense units at width 1
_MLP_BASE = 64
_IMPALA_BASE = (16, 32, 32, 256)  # stack channels, dense units at width 1
_SMALL_CNN_BASE = (16, 128)  # channels of every conv, dense units at width 1

# Orthogonal init scales (PPO practice): hidden layers sqrt(2), policy head 0.01, value head 1.
_HIDDEN_SCALE = math.sqrt(2.0)
_POLICY_SCALE = 0.01
_VALUE_SCALE = 1.0

Params = Any


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Which actor-critic network to build; ``None`` fields resolve to the family's default.

    Attributes:
      family: "mnist_cnn" | "mlp" | "impala" | "small_cnn".
      width: multiplier (> 0) on the units of every hidden layer.
      depth: mlp: hidden layers (default 2); impala: residual blocks per stack (default 2);
        small_cnn: conv layers (default 1); mnist_cnn: must be None.
      activation: "relu" | "tanh" (default tanh for mlp, relu for the CNNs).
      aux_value_head: add PPG's auxiliary value head (a linear head on the policy tower's
        features, gain 1, zero bias), read with ``apply(params, obs, return_aux=True)``.
    """

    family: str
    width: float = 1.0
    depth: int | None = None
    activation: str | None = None
    aux_value_head: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"NetworkConfig.family={self.family!r}: expected one of {FAMILIES}")
        width = self.width
        if isinstance(width, bool) or not isinstance(width, numbers.Real):
            raise ValueError(f"NetworkConfig.width={width!r}: expected a positive number")
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"NetworkConfig.width={width!r}: expected a finite number > 0")
        object.__setattr__(self, "width", float(width))
        depth = self.depth
        if self.family == "mnist_cnn":
            if depth is not None:
                raise ValueError(
                    f"NetworkConfig.depth={depth!r}: family 'mnist_cnn' has a fixed depth; "
                    "leave depth as None"
                )
        elif depth is None:
            object.__setattr__(self, "depth", _DEFAULT_DEPTH[self.family])
        elif isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
            raise ValueError(f"NetworkConfig.depth={depth!r}: expected an integer >= 1")
        else:
            object.__setattr__(self, "depth", int(depth))
        if not isinstance(self.aux_value_head, bool):
            raise ValueError(
                f"NetworkConfig.aux_value_head={self.aux_value_head!r}: expected a bool"
            )
        activation = self.activation
        if activation is None:
            object.__setattr__(self, "activation", _DEFAULT_ACTIVATION[self.family])
        elif activation not in ACTIVATIONS:
            raise ValueError(
                f"NetworkConfig.activation={activation!r}: expected one of {tuple(ACTIVATIONS)}"
            )


def scaled_units(base: int, width: float) -> int:
    """Units of a layer with ``base`` units at width 1: ``max(1, floor(base * width + 1/2))``."""
    return max(1, math.floor(base * width + 0.5))


def _base_sizes(cfg: NetworkConfig) -> tuple[int, ...]:
    """Per-layer unit counts of one encoder at width 1."""
    if cfg.family == "mnist_cnn":
        return _MNIST_BASE
    if cfg.family == "mlp":
        return (_MLP_BASE,) * cfg.depth
    if cfg.family == "small_cnn":
        channels, units = _SMALL_CNN_BASE
        return (channels,) * cfg.depth + (units,)
    return _IMPALA_BASE


def _hidden_sizes(cfg: NetworkConfig) -> tuple[int, ...]:
    """Per-layer unit counts of one encoder at ``cfg.width``."""
    return tuple(scaled_units(b, cfg.width) for b in _base_sizes(cfg))


def shape_key(cfg: NetworkConfig) -> tuple:
    """What makes two configs the same network: family, depth, activation, heads and every
    layer's units after rounding the width (configs with equal keys have equal parameters)."""
    return (cfg.family, cfg.depth, cfg.activation, cfg.aux_value_head, _hidden_sizes(cfg))


def _check_obs_shape(cfg: NetworkConfig, obs_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in obs_shape)
    if any(d < 1 for d in shape) or not shape:
        raise ValueError(f"obs_shape={tuple(obs_shape)!r}: expected a non-empty positive shape")
    if cfg.family != "mlp" and len(shape) != 3:
        raise ValueError(
            f"obs_shape={shape!r}: family {cfg.family!r} needs image observations (H, W, C)"
        )
    if cfg.family == "mnist_cnn":
        h, w, _ = shape
        if min(h, w) < 12:
            # 5x5 VALID conv, pool 2, 3x3 VALID conv, pool 2 leave nothing below 12 pixels
            raise ValueError(f"obs_shape={shape!r}: mnist_cnn needs H, W >= 12")
    return shape


def _check_num_actions(num_actions: int) -> int:
    if isinstance(num_actions, bool) or not isinstance(num_actions, numbers.Integral):
        raise ValueError(f"num_actions={num_actions!r}: expected an integer >= 1")
    if num_actions < 1:
        raise ValueError(f"num_actions={num_actions!r}: expected an integer >= 1")
    return int(num_actions)


# --------------------------------------------------------------------------- modules


def _dense(features: int, scale: float, name: str, axis: int | tuple[int, ...] = -1) -> nn.Module:
    return nn.DenseGeneral(
        features,
        axis=axis,
        kernel_init=nn.initializers.orthogonal(scale),
        bias_init=nn.initializers.zeros,
        param_dtype=jnp.float32,
        name=name,
    )


def _conv(features: int, kernel: int, padding: str, name: str) -> nn.Module:
    return nn.Conv(
        features,
        (kernel, kernel),
        padding=padding,
        kernel_init=nn.initializers.orthogonal(_HIDDEN_SCALE),
        bias_init=nn.initializers.zeros,
        param_dtype=jnp.float32,
        name=name,
    )


def resolve_conv_impl(conv_impl: str) -> str:
    """``"lax"`` or ``"taps"`` for ``conv_impl`` in CONV_IMPLS; "auto" goes by the default
    backend (module docstring)."""
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl={conv_impl!r}: expected one of {CONV_IMPLS}")
    if conv_impl == "auto":
        return "taps" if jax.default_backend() == "cpu" else "lax"
    return conv_impl


def _same_pads(size: int, kernel: int) -> tuple[int, int]:
    """XLA's SAME padding (before, after) of a stride-1 convolution along one axis."""
    return (kernel - 1) // 2, kernel // 2


def _tap_sum(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    """Stride-1 2-D convolution (cross-correlation) of x [B, H, W, C_in] with ``kernel``
    [kh, kw, C_in, C_out] -> [B, H_out, W_out, C_out], no bias; same as
    ``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` in NHWC/HWIO.

    y[b, h, w, o] = sum_{i, j} sum_c x_pad[b, h + i, w + j, c] * kernel[i, j, c, o], x_pad being
    x zero-padded as XLA pads for ``padding`` ("VALID" or "SAME"): a sum over the kh*kw taps of a
    shifted slice times a (C_in x C_out) matrix. Nothing of size kh*kw*|x| is materialized.

    Reverse mode is a custom VJP: the input gradient is the autodiff of that tap sum, the kernel
    gradient ``conv_tap_grad.kernel_grad`` (by rows for these few-channel layers): equal to the
    autodiff kernel gradient up to float rounding.
    """
    kh, kw, c_in, _ = kernel.shape
    if x.ndim != 4 or x.shape[-1] != c_in:
        raise ValueError(f"conv_taps: x {x.shape} is not [B, H, W, C_in={c_in}]")
    if padding == "SAME":
        x = jnp.pad(x, [(0, 0), _same_pads(x.shape[1], kh), _same_pads(x.shape[2], kw), (0, 0)])
    elif padding != "VALID":
        raise ValueError(f"conv_taps: padding={padding!r}: expected 'VALID' or 'SAME'")
    h_out, w_out = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            tap = lax.dot_general(
                x[:, i : i + h_out, j : j + w_out], kernel[i, j], (((3,), (0,)), ((), ()))
            )
            out = tap if out is None else out + tap
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_taps(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    return _tap_sum(x, kernel, padding)


def _conv_taps_fwd(x: jax.Array, kernel: jax.Array, padding: str) -> tuple[jax.Array, tuple]:
    return _tap_sum(x, kernel, padding), (x, kernel)


def _conv_taps_bwd(padding: str, residuals: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _tap_sum(x, kernel, padding), x)
    return input_vjp(g)[0], kernel_grad(x, g, kernel.shape, padding)


conv_taps.defvjp(_conv_taps_fwd, _conv_taps_bwd)
conv_taps.__doc__ = _tap_sum.__doc__


class TapsConv(nn.Module):
    """``nn.Conv`` (stride 1, orthogonal sqrt(2) kernel, zero bias) computed by ``conv_fn``
    (``conv_taps`` or ``conv_tap_grad``): the same parameters (names, shapes, creation order, so
    the same init) and the same function. [B, H, W, C_in] -> [B, H_out, W_out, features]."""

    features: int
    kernel: int
    padding: str
    conv_fn: Callable[[jax.Array, jax.Array, str], jax.Array] = conv_taps

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel, self.kernel, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.orthogonal(_HIDDEN_SCALE), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return self.conv_fn(x, kernel, self.padding) + bias


class Encoder(nn.Module):
    """One tower's trunk: obs batch [B, *obs_shape] float32 -> features [B, units] float32,
    the layers of ``encoder_layers`` applied in order.

    ``conv_impl`` ("lax" | "taps") picks how its convolutions are computed (module docstring);
    both take the same parameters and compute the same function.
    """

    cfg: NetworkConfig
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        layers = encoder_layers(self.cfg, x.shape[1:])
        act = ACTIVATIONS[self.cfg.activation]
        # the output-masked relu is an XLA:CPU remedy: it goes with the CPU's "taps" formulation
        act_out = OUTPUT_ACTIVATIONS[self.cfg.activation] if self.conv_impl == "taps" else act
        pool = dense_grad_max_pool if self.conv_impl == "taps" else nn.max_pool
        if layers[0].kind == "dense":
            x = x.reshape(x.shape[0], -1)
        for layer in layers:
            if layer.residual == "save":
                block_input = x
            if layer.act_in:
                x = act(x)
            if layer.kind == "dense":
                # contract every non-batch axis: after a conv trunk (H, W, C) with an
                # (H, W, C, out) kernel, so channel padding stays at axis ends
                x = _dense(layer.c_out, _HIDDEN_SCALE, layer.name, tuple(range(1 - x.ndim, 0)))(x)
            elif self.conv_impl == "taps":
                fn = conv_taps if computed_as_taps(layer.c_in, layer.c_out) else conv_tap_grad
                x = TapsConv(layer.c_out, layer.kernel, layer.padding, fn, name=layer.name)(x)
            else:
                x = _conv(layer.c_out, layer.kernel, layer.padding, layer.name)(x)
            if layer.residual == "add":
                x = block_input + x
            if layer.act_out:
                x = act_out(x)
            if layer.pool is not None:
                window, stride, padding = layer.pool
                x = pool(x, (window, window), (stride, stride), padding)
        return x


class ActorCritic(nn.Module):
    """Separate policy and value towers: obs [B, *obs_shape] -> (logits [B, A], value [B]).

    Uint8 observations are divided by 255; outputs are float32. With ``cfg.aux_value_head`` and
    ``return_aux=True`` it returns (logits, value, aux_value [B]), aux_value read off the policy
    tower's features. ``conv_impl`` is "lax" or "taps" (``build`` resolves "auto").
    """

    cfg: NetworkConfig
    num_actions: int
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, obs: jax.Array, return_aux: bool = False) -> tuple[jax.Array, ...]:
        if return_aux and not self.cfg.aux_value_head:
            raise ValueError("return_aux=True needs NetworkConfig.aux_value_head=True")
        if obs.dtype == jnp.uint8:
            x = obs.astype(jnp.float32) / 255.0
        else:
            x = obs.astype(jnp.float32)
        pi = Encoder(self.cfg, self.conv_impl, name="policy_encoder")(x)
        logits = _dense(self.num_actions, _POLICY_SCALE, "policy_head")(pi)
        v = Encoder(self.cfg, self.conv_impl, name="value_encoder")(x)
        value = _dense(1, _VALUE_SCALE, "value_head")(v)[..., 0]
        if self.cfg.aux_value_head:
            aux_value = _dense(1, _VALUE_SCALE, "aux_value_head")(pi)[..., 0]
            if return_aux:
                return logits, value, aux_value
        return logits, value


def build(cfg: NetworkConfig, num_actions: int, conv_impl: str = "auto") -> ActorCritic:
    """The flax module for ``cfg``; ``module.apply(params, obs) -> (logits [B, A], value [B])``.

    ``conv_impl`` ("auto" | "lax" | "taps") picks the convolutions' formulation, resolved here
    (module docstring); every choice has the same parameters and computes the same function.
    """
    return ActorCritic(cfg, _check_num_actions(num_actions), resolve_conv_impl(conv_impl))


def init_params(
    cfg: NetworkConfig, key: jax.Array, obs_shape: Sequence[int], num_actions: int
) -> Params:
    """Fresh float32 parameters (``{"params": ...}``): orthogonal kernels, zero biases.

    Hidden kernels use gain sqrt(2), the policy head 0.01 and the value head 1.0.
    """
    shape = _check_obs_shape(cfg, obs_shape)
    dummy = jnp.zeros((1, *shape), jnp.float32)
    # one compiled program instead of dispatching every initializer op (QR per layer) eagerly
    return jax.jit(build(cfg, num_actions).init)(key, dummy)


# --------------------------------------------------------------------------- layers and counts


def _same_taps(size: int, kernel: int) -> int:
    """Kernel taps, summed over output positions, that fall inside the input for a stride-1
    SAME convolution along one axis (XLA pads ``(kernel-1)//2`` before, the rest after)."""
    lo = (kernel - 1) // 2
    return sum(min(size, i - lo + kernel) - max(0, i - lo) for i in range(size))


class Layer(NamedTuple):
    """One weighted layer of an encoder (the same in both towers): what the flax module builds
    (``Encoder`` applies the list in order) and what the counts derive from.

    name: its module name inside the encoder; kind "conv" or "dense"; kernel: k (1 for dense);
    c_in, c_out: input and output channels (dense: fan-in and units); positions: output
    positions H_out·W_out (1 for dense); taps: kernel taps inside the unpadded input summed over
    the output positions (dense: 1); padding: the conv's "VALID" or "SAME" (stride 1);
    pool: (window, stride, padding) of the max-pool that follows it, or None; act_in / act_out:
    the activation is applied to its input (IMPALA's pre-activation) / to its output, before the
    pool; residual: "save" (its input starts a residual block), "add" (the block's input is
    added to its output, before act_out) or "".
    """

    name: str
    kind: str
    kernel: int
    c_in: int
    c_out: int
    positions: int
    taps: int
    padding: str = "VALID"
    pool: tuple[int, int, str] | None = None
    act_in: bool = False
    act_out: bool = True
    residual: str = ""

    @property
    def params(self) -> int:
        return self.kernel * self.kernel * self.c_in * self.c_out + self.c_out

    @property
    def macs(self) -> int:
        return self.taps * self.c_in * self.c_out


# The top-level modules of ActorCritic and the part of the network each belongs to (PPG steps
# the parts with separate optimizers; the paper's N counts the policy part without the
# auxiliary value head).
TOWERS = {"policy_encoder": "policy", "policy_head": "policy", "aux_value_head": "policy",
          "value_encoder": "value", "value_head": "value"}


def encoder_layers(cfg: NetworkConfig, obs_shape: Sequence[int]) -> tuple[Layer, ...]:
    """The encoder's weighted layers in order: the one description the flax module is built from
    and the counts, the memory model and the parameter labels derive from."""
    shape = _check_obs_shape(cfg, obs_shape)
    *channels, units = sizes = _hidden_sizes(cfg)
    if cfg.family == "mlp":
        fan_ins = (math.prod(shape), *sizes[:-1])
        return tuple(Layer(f"dense_{i}", "dense", 1, n, u, 1, 1)
                     for i, (n, u) in enumerate(zip(fan_ins, sizes, strict=True)))
    h, w, c = shape
    out = []

    def conv(name: str, c_out: int, k: int, padding: str, pool=None, **kw) -> None:
        nonlocal h, w, c
        if padding == "VALID":
            h, w = h - k + 1, w - k + 1
            taps = h * w * k * k
        else:
            taps = _same_taps(h, k) * _same_taps(w, k)
        out.append(Layer(name, "conv", k, c, c_out, h * w, taps, padding, pool, **kw))
        c = c_out
        if pool is not None:
            window, stride, valid = pool[0], pool[1], pool[2] == "VALID"
            h, w = ((n - window) // stride + 1 if valid else -(-n // stride) for n in (h, w))

    if cfg.family == "mnist_cnn":
        for i, (k, c_out) in enumerate(zip((5, 3), channels, strict=True)):
            conv(f"conv_{i}", c_out, k, "VALID", (2, 2, "VALID"))
    elif cfg.family == "small_cnn":
        for i, c_out in enumerate(channels):
            conv(f"conv_{i}", c_out, 3, "SAME")
    else:
        for s, c_out in enumerate(channels):
            conv(f"stack_{s}_conv", c_out, 3, "SAME", (3, 2, "SAME"), act_out=False)
            for b in range(cfg.depth):
                for j, residual in enumerate(("save", "add")):
                    conv(f"stack_{s}_block_{b}_conv_{j}", c_out, 3, "SAME", act_in=True,
                         act_out=False, residual=residual)
    # IMPALA applies the activation to the trunk's output (the last residual sum) too
    out.append(Layer("dense", "dense", 1, h * w * c, units, 1, 1, act_in=cfg.family == "impala"))
    return tuple(out)


def _tower_layers(cfg: NetworkConfig, obs_shape: Sequence[int], num_actions: int
                  ) -> tuple[tuple[Layer, ...], int, int]:
    encoder = encoder_layers(cfg, obs_shape)
    return encoder, encoder[-1].c_out, _check_num_actions(num_actions)


def param_count(cfg: NetworkConfig, obs_shape: Sequence[int], num_actions: int) -> int:
    """Exact number of scalar parameters N of both towers and heads (closed form).

    Conv: k*k*c_in*c_out + c_out; dense: fan_in*units + units;
    N = 2 * encoder + (units*A + A) + (units + 1), plus (units + 1) with aux_value_head.
    """
    encoder, units, num_actions = _tower_layers(cfg, obs_shape, num_actions)
    aux = units + 1 if cfg.aux_value_head else 0
    total = sum(layer.params for layer in encoder)
    return 2 * total + (units * num_actions + num_actions) + (units + 1) + aux


def policy_param_count(cfg: NetworkConfig, obs_shape: Sequence[int], num_actions: int) -> int:
    """Parameters of the policy tower and its logits head only (the paper's N): what acting
    needs, without the value tower, the value head or PPG's auxiliary value head."""
    encoder, units, num_actions = _tower_layers(cfg, obs_shape, num_actions)
    return sum(layer.params for layer in encoder) + units * num_actions + num_actions


def forward_flops(cfg: NetworkConfig, obs_shape: Sequence[int], num_actions: int) -> int:
    """Forward FLOPs for one observation through both towers and heads (closed form).

    2 FLOPs per multiply-add of every conv and dense layer:
    conv 2 * in_bound_taps * c_in * c_out, dense 2 * fan_in * units.
    Taps that land on a SAME convolution's zero padding are not counted (XLA's convention).
    Bias adds, activations, pooling, residual adds and input scaling are not counted.
    An aux_value_head adds 2 * units (counted although acting never evaluates it).
    """
    encoder, units, num_actions = _tower_layers(cfg, obs_shape, num_actions)
    macs = sum(layer.macs for layer in encoder)
    aux = units if cfg.aux_value_head else 0
    return 2 * (2 * macs + units * num_actions + units + aux)


def activation_floats(cfg: NetworkConfig, obs_shape: Sequence[int]) -> dict[str, int]:
    """Per observation, floats of the layer outputs an update's backward pass works on, by kind
    (the planner's memory model): "conv" (every conv layer of both towers), "pool" (conv layers
    followed by a max-pool), "taps" (shifted input slices of the layers computed as tap sums on
    this backend; the first layer's, slices of the shared observation, once), "dense" (dense
    layers of both encoders)."""
    taps = resolve_conv_impl("auto") == "taps"
    out = {"conv": 0, "pool": 0, "taps": 0, "dense": 0}
    for i, layer in enumerate(encoder_layers(cfg, obs_shape)):
        size = layer.positions * layer.c_out
        if layer.kind == "dense":
            out["dense"] += 2 * size
            continue
        out["conv"] += 2 * size
        out["pool"] += 2 * size if layer.pool else 0
        if taps and computed_as_taps(layer.c_in, layer.c_out):
            out["taps"] += (1 if i == 0 else 2) * layer.kernel ** 2 * layer.positions * layer.c_in
    return out


def param_labels(params: Params) -> Params:
    """The params pytree ({"params": {module: ...}}) with every leaf replaced by the part its
    top-level module belongs to (TOWERS: "policy" or "value")."""
    def label(name: str, sub: Params) -> Params:
        return jax.tree.map(lambda _: TOWERS.get(name, "?"), sub)

    return {"params": {name: label(name, sub) for name, sub in params["params"].items()}}


# --------------------------------------------------------------------------- zero-padding


def group_config(cfgs: Sequence[NetworkConfig]) -> NetworkConfig:
    """The smallest config every one of ``cfgs`` zero-pads into: the widest width.

    All configs must share family, depth and activation (depth cannot be padded exactly: a zero
    residual block's output bias would still train).
    """
    cfgs = list(cfgs)
    if not cfgs:
        raise ValueError("group_config: cfgs is empty")
    first = cfgs[0]
    for i, cfg in enumerate(cfgs):
        if not isinstance(cfg, NetworkConfig):
            raise ValueError(f"group_config: cfgs[{i}]={cfg!r} is not a NetworkConfig")
        for field in ("family", "depth", "activation", "aux_value_head"):
            if getattr(cfg, field) != getattr(first, field):
                raise ValueError(
                    f"group_config: cfgs[{i}].{field}={getattr(cfg, field)!r} differs from "
                    f"cfgs[0].{field}={getattr(first, field)!r}; only width may differ in a group"
                )
    return dataclasses.replace(first, width=max(cfg.width for cfg in cfgs))


def param_shapes(cfg: NetworkConfig, obs_shape: Sequence[int], num_actions: int) -> Params:
    """The parameter pytree of ``cfg`` as ``jax.ShapeDtypeStruct`` leaves (nothing allocated)."""
    return jax.eval_shape(lambda: init_params(cfg, jax.random.key(0), obs_shape, num_actions))


def pad_params(
    params: Params,
    cfg: NetworkConfig,
    group_cfg: NetworkConfig,
    obs_shape: Sequence[int],
    num_actions: int,
) -> Params:
    """Zero-pad a member's own-width ``params`` to ``group_cfg``'s shapes (every axis at its end).

    The padded member computes exactly the same logits and value, and its padded entries get
    zero gradient, so they stay zero under Adam (and global-norm clipping).
    """
    if group_config([cfg, group_cfg]) != group_cfg:
        raise ValueError(
            f"pad_params: cfg (width {cfg.width}) does not pad into group_cfg "
            f"(width {group_cfg.width}); group_cfg must be as wide or wider"
        )
    own = param_shapes(cfg, obs_shape, num_actions)
    target = param_shapes(group_cfg, obs_shape, num_actions)
    own_paths = jax.tree_util.tree_flatten_with_path(own)[0]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if len(leaves) != len(own_paths) or treedef != jax.tree_util.tree_structure(own):
        raise ValueError("pad_params: params do not have cfg's parameter structure")
    pads = []
    for (path, spec), leaf, goal in zip(
        own_paths, leaves, jax.tree_util.tree_leaves(target), strict=True
    ):
        if tuple(leaf.shape) != spec.shape:
            raise ValueError(
                f"pad_params: {jax.tree_util.keystr(path)} has shape {tuple(leaf.shape)}, "
                f"expected {spec.shape} for width {cfg.width}"
            )
        pads.append(tuple((0, g - s) for s, g in zip(spec.shape, goal.shape, strict=True)))

    # one compiled program for the whole tree rather than one per leaf shape
    @jax.jit
    def pad_all(leaves):
        return [jnp.pad(leaf, p) for leaf, p in zip(leaves, pads, strict=True)]

    return jax.tree_util.tree_unflatten(treedef, pad_all(leaves))


# --------------------------------------------------------------------------- sizes by ratio


def _width_breakpoints(cfg: NetworkConfig, max_width: float) -> list[float]:
    """Widths in (0, max_width] where some layer's rounded unit count steps up.

    ``floor(base*w + 1/2)`` steps at ``w = (k - 1/2)/base``; the ``max(1, .)`` floor makes the
    first step that matters k = 2.
    """
    points: set[float] = set()
    for base in set(_base_sizes(cfg)):
        k_max = math.floor(base * max_width + 0.5)
        points.update((k - 0.5) / base for k in range(2, k_max + 1))
    return sorted(points)


def width_for_param_ratio(
    family: str,
    ratio: float,
    obs_shape: Sequence[int],
    num_actions: int,
    depth: int | None = None,
) -> float:
    """The width whose parameter count is closest to ``ratio`` x the width-1 count.

    N(width) is a non-decreasing step function (units are rounded). Among the intervals of width
    on which N is constant, pick the one with N closest to ratio * N(1) (ties: the smaller), and
    return the shortest decimal width inside it (so ratio 1 gives exactly 1.0).
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"ratio={ratio!r}: expected a number > 0")
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio={ratio!r}: expected a finite number > 0")
    cfg = NetworkConfig(family, 1.0, depth)

    def count(width: float) -> int:
        return param_count(dataclasses.replace(cfg, width=width), obs_shape, num_actions)

    target = ratio * count(1.0)
    max_width = 1.0
    while count(max_width) < target:
        max_width *= 2.0
    # N is constant between consecutive edges; the last edge lies beyond max_width because
    # breakpoints are at most 1/base <= 1 <= max_width apart
    edges = [0.0, *_width_breakpoints(cfg, 2.0 * max_width)]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    # first interval whose count reaches the target, by bisection (count is monotone)
    lo, hi = 0, len(mids) - 1
    while lo < hi:
        m = (lo + hi) // 2
        if count(mids[m]) >= target:
            hi = m
        else:
            lo = m + 1
    best = lo
    if lo > 0 and abs(count(mids[lo - 1]) - target) <= abs(count(mids[lo]) - target):
        best = lo - 1
    a, b, n_best = edges[best], edges[best + 1], count(mids[best])
    for digits in range(1, 18):
        width = float(f"{mids[best]:.{digits}g}")
        if a < width < b and count(width) == n_best:
            return width
    return mids[best]
