"""Memory check before a sweep initialises anything: the plan's estimate against the devices'.

The estimate is the plan's (`Plan.groups[g].memory_bytes`, see `scalelab sweep plan`). The
capacity is, on accelerators, the sum over the devices used of XLA's per-device limit
(`memory_stats()["bytes_limit"]`); on CPU (and wherever the limit is unknown), the host's
available RAM (MemAvailable, else physical RAM), counted once since CPU devices share it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from scalelab.sweep.plan import Plan

__all__ = ["MemoryRefused", "check_memory", "device_capacity"]


class MemoryRefused(RuntimeError):
    """A plan whose memory estimate exceeds the devices' memory (a refused input, exit 2)."""


def _host_ram() -> tuple[int, str]:
    """(bytes, description) of the host memory available for a new run."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available host RAM (MemAvailable)"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical host RAM"


def device_capacity(devices: Sequence[Any]) -> tuple[int, str]:
    """(bytes, description) of the memory the sweep can use on `devices` (this process's view)."""
    limits = []
    for d in devices:
        stats = d.memory_stats() if d.platform != "cpu" and hasattr(d, "memory_stats") else None
        limits.append((stats or {}).get("bytes_limit"))
    if limits and all(isinstance(x, int) and x > 0 for x in limits):
        return sum(limits), f"{len(limits)} {devices[0].platform} device(s)' memory limit"
    return _host_ram()


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(plan: Plan, devices: Sequence[Any]) -> None:
    """Raise `MemoryRefused` (with the numbers and what to change) if the plan's estimate
    exceeds what `devices` hold. With several processes each checks its own devices against
    their share of the estimate (members are spread evenly over all devices)."""
    local = [d for d in devices if d.process_index == jax.process_index()]
    need = sum(g.memory_bytes for g in plan.groups) * len(local) / len(devices)
    have, what = device_capacity(local)
    if need <= have:
        return
    biggest = max(plan.groups, key=lambda g: g.memory_bytes)
    raise MemoryRefused(
        f"{plan.spec.name}: the plan needs an estimated {_gib(need)} for {len(plan.members)} "
        f"members in {len(plan.groups)} group(s) (largest: group {biggest.index}, "
        f"{len(biggest.members)} members x {_gib(biggest.memory_per_member)}), but the "
        f"{what} is {_gib(have)}. Use fewer members (seeds, lr or other axis values), smaller "
        f"widths, or more devices; `scalelab sweep plan` shows the estimate per group; --force "
        f"(force=True) runs anyway")
