"""Selection you can trust: each accuracy with its standard error, and ties within noise.

A validation accuracy measured on n images is a binomial proportion, so two trials whose
accuracies differ by less than the noise of that measurement are not told apart by the sweep.
Reports mark such ties and warn when the best trial cannot be separated from the others.
Pure functions: no Optuna, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z = 1.96  # two-sided 95% normal quantile
MAX_LISTED = 4  # tied trials named in the warning; the rest are counted


def is_accuracy(objective: str) -> bool:
    """Whether an objective is an accuracy (a proportion of correct images), e.g. ``val/accuracy``."""
    return objective.endswith("accuracy")


def accuracy_index(objectives: Sequence[str]) -> int | None:
    """The index of the first accuracy objective, or None when no objective is an accuracy."""
    return next((i for i, o in enumerate(objectives) if is_accuracy(o)), None)


def accuracy_se(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` validation images."""
    if n <= 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"accuracy_se needs 0 <= p <= 1 and n > 0, got p={p}, n={n}")
    return math.sqrt(p * (1.0 - p) / n)


def within_noise(p_a: float, p_b: float, n: int, z: float = Z) -> bool:
    """Whether two accuracies on the same ``n`` images differ by less than ``z`` standard errors.

    The difference's standard error is ``sqrt(se_a^2 + se_b^2)``. Equal accuracies always tie,
    also at 0 or 1 where both standard errors vanish.
    """
    diff = abs(p_a - p_b)
    return diff == 0.0 or diff < z * math.hypot(accuracy_se(p_a, n), accuracy_se(p_b, n))


def tied_with_best(ranked: Sequence[tuple[int, float]], n: int, z: float = Z) -> list[int]:
    """Trial numbers whose accuracy is within noise of the best one's, in rank order.

    ``ranked`` is (trial number, accuracy), best first; the best trial itself is the
    reference and is not in the result.
    """
    if not ranked:
        return []
    _, best = ranked[0]
    return [number for number, p in ranked[1:] if within_noise(best, p, n, z)]


def fmt_se(p: float, se: float) -> str:
    """``p ± se`` with enough decimals that the standard error shows a significant digit."""
    digits = 3 if se >= 0.001 or se == 0.0 else 4
    return f"{p:.{digits}f} ± {se:.{digits}f}"


def separation_warning(ranked: Sequence[tuple[int, float]], n: int, z: float = Z) -> str | None:
    """A warning when the best trial's accuracy is within noise of another trial's, else None.

    Names the best trial and the trials tied with it, each with its standard error, and
    says what to do: finalize the top trials with several seeds, or validate on more images.
    """
    tied = tied_with_best(ranked, n, z)
    if not tied:
        return None
    accuracy = dict(ranked)
    numbers = [ranked[0][0], *tied]
    shown = [f"t{k:02d} {fmt_se(accuracy[k], accuracy_se(accuracy[k], n))}" for k in numbers[: MAX_LISTED + 1]]
    if len(numbers) > len(shown):
        shown.append(f"{len(numbers) - len(shown)} more")
    listed = ", ".join(shown[:-1]) + " and " + shown[-1]
    return (
        f"validation split too small to separate the top trials: {listed} are within noise "
        f"(n_val={n}); finalize the top trials with several seeds (python -m experiments.sweep.finalize) "
        "or use a larger data.validation_split"
    )
