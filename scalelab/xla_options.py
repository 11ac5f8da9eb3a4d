"""The XLA compiler options of scalelab's training programs, and the one function that applies
them.

On XLA:CPU, jax 0.10 hands elementwise and reduction fusions to the YNNPACK library by default
(``ynn_fusion`` ops in a profile). For the small conv nets that scalelab scales, those fusions
are slower than XLA's own loop emitter: in a profile of the quickstart's chunk program they held
11 of its 17 thread-seconds, a tap of conv_0's kernel gradient (a multiply-reduce over 2.7M
elements) taking 8 ms. ``CPU_OPTIONS`` turns them off (``xla_cpu_experimental_ynn_fusion_type``
empty); ``benchmarks/compile_options.py`` measures the chunk programs both ways in one run.

These options change which code XLA emits, so float results differ from XLA's defaults in
rounding (after one quickstart chunk, at most 8e-5 in any state or metric value). Every chunk
program of a sweep is compiled with the same options, so a member trained alone still equals the
same member inside a fused or padded sweep.

An XLA that does not know an option (a jax older or newer than the one measured) compiles with
its defaults instead, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

CPU_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}

_unknown: set[str] = set()


def options_for(platform: str) -> dict[str, str]:
    """The compiler options scalelab uses on `platform` ("cpu", "gpu", "tpu", ...)."""
    return {k: v for k, v in CPU_OPTIONS.items() if k not in _unknown} if platform == "cpu" else {}


def compile_lowered(lowered: Any, platform: str, extra: dict[str, Any] | None = None) -> Any:
    """`lowered.compile()` with `options_for(platform)` plus `extra` (which wins).

    If XLA rejects one of scalelab's options as unknown, it is dropped (for the rest of the
    process, with a warning) and the program compiled without it.
    """
    while True:
        opts = {**options_for(platform), **(extra or {})}
        try:
            return lowered.compile(compiler_options=opts or None)
        except Exception as err:  # jax raises JaxRuntimeError; its import path moves
            bad = [k for k in opts if k not in (extra or {})
                   and f"No such compile option: '{k}'" in str(err)]
            if not bad:
                raise
            _unknown.update(bad)
            warnings.warn(f"this XLA does not know the compile option(s) {bad}; compiling "
                          "with XLA's defaults for them (scalelab/xla_options.py)", stacklevel=2)
