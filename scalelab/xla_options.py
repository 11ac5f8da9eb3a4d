"""The XLA compiler options of scalelab's training programs, and the one function that applies
them.

On XLA:CPU, jax 0.10 hands elementwise, reduction and dot fusions to the YNNPACK library by
default (``ynn_fusion`` ops in a profile). For the conv nets that scalelab scales, those fusions
are slower than XLA's own emitters: in a profile of the quickstart's chunk program they held 11
of its 17 thread-seconds, a tap of conv_0's kernel gradient (a multiply-reduce over 2.7M
elements) taking 8 ms. ``CPU_CONV_OPTIONS`` turns every YNNPACK fusion off
(``xla_cpu_experimental_ynn_fusion_type`` empty) for conv nets. The MLP keeps XLA's defaults: on
PureJaxRL's CartPole config its chunk took 69 ms without YNNPACK fusions against 56 ms with them
(YNNPACK's dot fusions help it).
``benchmarks/compile_options.py`` measures the chunk programs both ways in one run.

These options change which code XLA emits, so float results differ from XLA's defaults in
rounding (``benchmarks/compile_options.py`` reports the largest difference after one chunk).
Every chunk program of a sweep is compiled with the same options, so a member trained alone
still equals the same member inside a fused or padded sweep.

An XLA that does not know an option (a jax older or newer than the one measured) compiles with
its defaults instead, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

# for programs of convolutional networks on XLA:CPU (module docstring)
CPU_CONV_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}

_unknown: set[str] = set()


def options_for(platform: str, convolutional: bool) -> dict[str, str]:
    """The compiler options scalelab uses for a program on `platform` ("cpu", "gpu", ...) whose
    network is `convolutional` (has a conv layer): CPU_CONV_OPTIONS for conv nets on the CPU,
    none otherwise."""
    if platform != "cpu" or not convolutional:
        return {}
    return {k: v for k, v in CPU_CONV_OPTIONS.items() if k not in _unknown}


def compile_lowered(lowered: Any, options: dict[str, Any]) -> Any:
    """`lowered.compile()` with compiler `options` (an `options_for`, possibly with more).

    If XLA rejects one of scalelab's own options (CPU_CONV_OPTIONS) as unknown, it is dropped
    (for the rest of the process, with a warning) and the program compiled without it; any other
    error is raised.
    """
    while True:
        try:
            return lowered.compile(compiler_options=dict(options) or None)
        except Exception as err:  # jax raises JaxRuntimeError; its import path moves
            bad = [k for k in options if k in CPU_CONV_OPTIONS
                   and f"No such compile option: '{k}'" in str(err)]
            if not bad:
                raise
            _unknown.update(bad)
            options = {k: v for k, v in options.items() if k not in bad}
            warnings.warn(f"this XLA does not know the compile option(s) {bad}; compiling "
                          "with XLA's defaults for them (scalelab/xla_options.py)", stacklevel=2)
