"""Did the search pay? The finalized winner against the baseline, seed by seed.

Both are retrained with the same seeds and budget, so each seed gives one paired difference
(winner − baseline); the verdict is their mean with a 95% Student-t interval, on validation
(what selection used) and on the test split (reported, never used to choose), with the cost
ratios. If the winner is not better than the baseline on validation, the search did not pay
at this budget and the baseline is what ships. Pure functions: no training, no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with the half-width of its 95% interval (None with one seed)."""

    mean: float
    half: float | None
    n: int

    def text(self, digits: int = 4) -> str:
        if math.isnan(self.mean):
            return "n/a"
        if self.half is None:
            return f"{self.mean:+.{digits}f} (1 seed: no interval)"
        return f"{self.mean:+.{digits}f} ± {self.half:.{digits}f}"

    @property
    def excludes_zero(self) -> bool:
        return self.half is not None and abs(self.mean) > self.half


def paired_interval(a: Sequence[float | None], b: Sequence[float | None]) -> Interval:
    """Mean of ``a[i] - b[i]`` over the pairs where both are known, with a 95% t interval."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    if not diffs:
        return Interval(float("nan"), None, 0)
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Interval(mean, None, 1)
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Interval(mean, half, len(diffs))


@dataclass(frozen=True)
class Verdict:
    winner: str  # "t07 bottleneck d1-1-1 w16 s122"
    baseline: str  # "t00 baseline regular d3-3-3 w16 s122 (default)"
    val: Interval  # winner − baseline, validation accuracy
    test: Interval  # winner − baseline, test accuracy
    macs_ratio: float | None
    params_ratio: float | None
    latency_ratio: float | None
    baseline_over_budget: bool = False  # the baseline breaks the study's constraints: it cannot ship
    differs: tuple[str, ...] = ()  # the settings winner and baseline differ in ("trainer.learning_rate: 0.27 vs 0.05")

    @property
    def paid(self) -> bool:
        """The winner is better than the baseline on validation (the split selection used)."""
        return not math.isnan(self.val.mean) and self.val.mean > 0

    @property
    def ships_winner(self) -> bool:
        """The better of the two ships, unless the baseline is over the budget the user set."""
        return self.paid or self.baseline_over_budget

    def line(self) -> str:
        """The terminal's one line."""
        cost = ", ".join(
            f"{r:.2f}x {name}"
            for name, r in (("MACs", self.macs_ratio), ("params", self.params_ratio), ("latency", self.latency_ratio))
            if r is not None
        )
        diff = f"val accuracy {self.val.text()}, test {self.test.text()} (95% interval over {self.val.n} seeds)"
        if self.differs:  # (what the search changed: the two names may be the same architecture)
            keys = [d.split(":", 1)[0] for d in self.differs]
            diff += f"; they differ in {', '.join(keys[:4])}" + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        if self.paid:
            noise = "" if self.val.excludes_zero else "; the interval includes 0"
            return f"verdict: the search paid: {self.winner} beats {self.baseline}: {diff}, at {cost}{noise}; shipped the winner"
        shipped = (
            "the baseline is over the study's budget: shipped the winner"
            if self.ships_winner
            else ("shipped the baseline")
        )
        return f"verdict: the search did not pay at this budget: {self.winner} vs {self.baseline}: {diff}, at {cost}; {shipped}"

    def table(self) -> str:
        """The verdict as a plain-text table (finalize/verdict.txt)."""
        rows = [
            ("winner", self.winner),
            ("baseline", self.baseline),
            ("val accuracy, winner − baseline", self.val.text()),
            ("test accuracy, winner − baseline", self.test.text()),
            ("seeds (paired)", str(self.val.n)),
            *((("winner vs baseline" if i == 0 else ""), d) for i, d in enumerate(self.differs)),
            ("MACs ratio (winner / baseline)", _ratio(self.macs_ratio)),
            ("params ratio", _ratio(self.params_ratio)),
            ("latency ratio (batch 1, this machine)", _ratio(self.latency_ratio)),
            ("search paid (better on validation)", "yes" if self.paid else "no"),
            ("baseline within the study's budget", "no" if self.baseline_over_budget else "yes"),
            ("shipped", "the winner" if self.ships_winner else "the baseline"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def to_dict(self) -> dict:
        return {
            "winner": self.winner, "baseline": self.baseline,
            "val_diff_mean": self.val.mean, "val_diff_ci95": self.val.half,
            "test_diff_mean": self.test.mean, "test_diff_ci95": self.test.half, "seeds": self.val.n,
            "macs_ratio": self.macs_ratio, "params_ratio": self.params_ratio, "latency_ratio": self.latency_ratio,
            "search_paid": self.paid, "baseline_over_budget": self.baseline_over_budget, "differs": list(self.differs),
            "shipped": "winner" if self.ships_winner else "baseline",
        }  # fmt: skip


def _ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
