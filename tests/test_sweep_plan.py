"""Planner: the grouping choice against brute force, and a real plan's counts and memory."""

import itertools
import random

import pytest

from scalelab.sweep.plan import choose_partition


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        yield [[first]] + part
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]


@pytest.mark.parametrize("trial", range(30))
def test_choose_partition_matches_brute_force_over_all_set_partitions(trial):
    rng = random.Random(trial)
    n = rng.randint(1, 6)
    counts = [rng.randint(1, 5) for _ in range(n)]
    flops = sorted(rng.uniform(1, 100) for _ in range(n))
    tol = rng.choice([0.0, 0.05, 0.3, 1.0, 10.0])
    got = choose_partition(counts, lambda i, j: flops[j], tol)

    def cost(groups):
        return sum(sum(counts[i] for i in g) * flops[max(g)] for g in groups)

    unpadded = sum(c * f for c, f in zip(counts, flops, strict=True))
    feasible = [p for p in _set_partitions(list(range(n))) if cost(p) <= (1 + tol) * unpadded]
    fewest = min(len(p) for p in feasible)
    cheapest = min(cost(p) for p in feasible if len(p) == fewest)
    assert sorted(i for a, b in got for i in range(a, b + 1)) == list(range(n))
    assert len(got) == fewest
    assert cost([list(range(a, b + 1)) for a, b in got]) == pytest.approx(cheapest)


def test_choose_partition_zero_tolerance_keeps_distinct_sizes_apart():
    assert choose_partition([2, 2, 2], lambda i, j: [1.0, 2.0, 4.0][j], 0.0) == [
        (0, 0), (1, 1), (2, 2)]


def test_choose_partition_large_tolerance_makes_one_group():
    assert choose_partition([3, 1, 1], lambda i, j: [1.0, 2.0, 4.0][j], 100.0) == [(0, 2)]


def test_set_partitions_enumerates_bell_numbers():
    bell = [1, 1, 2, 5, 15, 52]
    for n, b in enumerate(bell):
        assert len(list(_set_partitions(list(range(n))))) == b
        assert all(sorted(itertools.chain(*p)) == list(range(n))
                   for p in _set_partitions(list(range(n))))
