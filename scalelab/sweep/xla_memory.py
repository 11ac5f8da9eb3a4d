"""XLA's own accounting of a sweep group's memory: compile its chunk program on abstract shapes.

`xla_member_bytes(plan, group)` is the exact per-member number that the planner's analytic
estimate (`scalelab.sweep.plan.memory_per_member`) approximates: the fused chunk program of one
group (`FusedRunner`) is lowered for 1 and for 2 members of the group's network on
`jax.ShapeDtypeStruct` inputs (nothing is allocated, nothing runs), compiled, and read with
`memory_analysis()`:

    program bytes B(M) = arguments + outputs + temporaries - aliased (donated state) bytes
    per member         = B(2) - B(1)

B(2) - B(1) leaves out what the group shares whatever its size (the environment's read-only data,
e.g. MNIST's 47 MB of images, and the program's fixed scalars). It is measured at the batch
schedule's largest num_envs, where the chunk program is largest.

Cost: two compiles per group. They run with XLA's backend (LLVM) optimization level 0, which
leaves the buffer assignment (an HLO-level decision, made before code generation) unchanged and
compiles about 3x faster on CPU; `tests/test_sweep_memory.py` checks the two agree.

The number is for the backend the program is compiled for: the default one (`jax.devices()[0]`),
so on a GPU host it is the GPU's buffer assignment, which fuses and schedules differently from the
CPU's (and uses library convolutions, `scalelab.networks`' "lax" formulation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.xla_options import compile_lowered

__all__ = ["FAST_COMPILE", "program_bytes", "xla_member_bytes"]

# Compiler options that change code generation only (the buffer assignment stays the same).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def program_bytes(compiled: Any) -> int:
    """Device bytes a compiled program holds while it runs, from XLA's `memory_analysis()`:
    arguments + outputs + temporaries - bytes aliased between arguments and outputs (donated)."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def _group_program_bytes(plan: Any, group: Any, members: int,
                         compiler_options: dict[str, Any] | None) -> int:
    """program_bytes of the chunk program of `members` members of `group`'s network (their
    seeds 0..members-1; hyperparameter axes do not change shapes), on one device."""
    net = group.network
    axes: dict[str, tuple] = {"width": (net.width,), "seed": tuple(range(members))}
    if "depth" in plan.spec.axes:
        axes["depth"] = (net.depth,)
    spec = dataclasses.replace(plan.spec, axes=axes, max_padding_overhead=0.0)
    runner = FusedRunner(make_plan(spec), devices=jax.devices()[:1])
    state = runner.abstract_state(num_envs=max(plan.chunk_envs))
    lowered = runner.lower_chunk(state)
    return program_bytes(compile_lowered(lowered, {**runner.compile_options, **compiler_options}))


def xla_member_bytes(plan: Any, group: Any, compiler_options: dict[str, Any] | None = None
                     ) -> int:
    """Bytes one more member adds to `group`'s compiled chunk program (module docstring).

    plan: a `scalelab.sweep.plan.Plan`; group: one of its groups. compiler_options: passed to
    XLA's compile (default FAST_COMPILE).
    """
    options = FAST_COMPILE if compiler_options is None else compiler_options
    one, two = (_group_program_bytes(plan, group, m, options) for m in (1, 2))
    return two - one
