"""Whether a fit resolves the law: how far each size gets towards its frontier, and a verdict.

A size N is on the compute-efficient frontier at E*(N), the interactions where the fitted law
makes N the compute-optimal size (`fitting.law.log_frontier_interactions`). A sweep whose sizes all
stop well before E*(N) only sees each size's early, data-limited regime: the size term of the
law is then extrapolated, and the fit can report a confident but wrong exponent. The verdict:

- "unresolved": the fit did not converge or its constants are not identifiable; or no size
  reaches its frontier (max E < E*(N) for every size); or fewer than 95% of the bootstrap
  resamples converged (then no intervals are reported).
- "resolved": the 5–95% bootstrap interval of the size exponent is at most 0.2 wide and at
  least two sizes reach their frontier.
- "weak": everything else (a wider interval, one size at its frontier, or no bootstrap).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from fitting import law

Status = Literal["resolved", "weak", "unresolved"]
MAX_WIDTH = 0.2
MIN_REACHING = 2
MIN_CONVERGED = 0.95


@dataclasses.dataclass(frozen=True)
class SizeReach:
    """One model size: its largest logged interactions, its frontier point E*(N) under the
    fitted law, their ratio, and whether it reaches the frontier (ratio >= 1)."""

    size: float
    max_interactions: float
    frontier_interactions: float
    ratio: float
    reaches: bool

    def to_dict(self) -> dict:
        """JSON-safe fields."""
        return dataclasses.asdict(self)


def size_reach(sizes: np.ndarray, max_interactions: np.ndarray, alpha_N: float, alpha_E: float,
               N_c: float, E_c: float, k: float) -> tuple[SizeReach, ...]:
    """SizeReach per distinct size (largest interactions over the models of that size)."""
    out = []
    for n in np.unique(sizes):
        e_max = float(np.max(max_interactions[sizes == n]))
        log_e_star = float(law.log_frontier_interactions(n, alpha_N, alpha_E, N_c, E_c, k))
        with np.errstate(over="ignore"):
            e_star = float(np.exp(log_e_star))
            ratio = float(np.exp(np.log(e_max) - log_e_star))
        out.append(SizeReach(float(n), e_max, e_star, ratio, bool(ratio >= 1.0)))
    return tuple(out)


def verdict(*, converged: bool, problem: str | None, reach: tuple[SizeReach, ...],
            resamples: int, resamples_converged: int,
            interval: tuple[float, float] | None, failures: str = "") -> tuple[Status, str]:
    """(status, reason in words) from the fit's state (module docstring for the rules).

    problem: why the fit did not converge (None if it did); interval: the size exponent's
    5–95% interval (None without one); failures: where the unconverged resamples went
    (`boundary_failures`), appended to the reason."""
    reaching = sum(r.reaches for r in reach)
    best = max(r.ratio for r in reach)
    if not converged:
        return "unresolved", f"the fit itself is not trustworthy: {problem}"
    if reaching == 0:
        return "unresolved", (f"no size reaches its compute-efficient frontier (largest max E / "
                              f"E*(N) = {best:.2g} < 1): the size term of the law is "
                              "extrapolated; train longer or add smaller sizes")
    if resamples and resamples_converged < MIN_CONVERGED * resamples:
        return "unresolved", (f"only {resamples_converged} of {resamples} bootstrap resamples "
                              f"converged (< {MIN_CONVERGED:.0%}); the data do not pin the law "
                              "down, so no intervals are reported" + failures)
    if interval is None:
        return "weak", ("no bootstrap intervals (bootstrap=0): how well the size exponent is "
                        f"determined is unknown; {reaching} size(s) reach their frontier")
    width = interval[1] - interval[0]
    problems = []
    if width > MAX_WIDTH:
        problems.append(f"the size exponent's 5–95% interval is {width:.3f} wide "
                        f"(> {MAX_WIDTH})")
    if reaching < MIN_REACHING:
        problems.append(f"only {reaching} size reaches its frontier (need {MIN_REACHING})")
    if problems:
        return "weak", "; ".join(problems)
    return "resolved", (f"size exponent interval {width:.3f} wide (<= {MAX_WIDTH}), "
                        f"{reaching} of {len(reach)} sizes reach their frontier, "
                        f"{resamples_converged} of {resamples} resamples converged")


BOUNDARY = 1e-2  # an exponent below this in a failed resample is running to 0


def boundary_failures(alpha_N: np.ndarray, alpha_E: np.ndarray, ok: np.ndarray) -> str:
    """Where the unconverged bootstrap resamples (ok False) went, in words ("" if nowhere in
    particular): a resample whose alpha_N runs to 0 has no size term left (size exponent -> 1),
    i.e. in that resample the larger sizes' curves are not told apart from the smaller ones';
    alpha_E -> 0 likewise has no data term (size exponent -> 0)."""
    failed = ~np.asarray(ok, bool)
    parts = []
    for name, a, meaning in (("alpha_N", alpha_N, "no size term, size exponent -> 1"),
                             ("alpha_E", alpha_E, "no data term, size exponent -> 0")):
        n = int(np.sum(failed & (np.asarray(a) < BOUNDARY)))
        if n:
            parts.append(f"{n} ran to {name} -> 0 ({meaning})")
    if not parts:
        return ""
    return f"; of the {int(failed.sum())} unconverged, " + " and ".join(parts)
