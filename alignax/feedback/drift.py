"""A judge drift alarm: a learned judge (a reward model) checked against verifiable outcomes on
the policy's own samples while the policy trains on it (the Kimi K2 idea of grounding a critic
in verifiable rewards).

A reward model is accurate where it was trained; as RL moves the policy away from that
distribution the model's preferences can stop tracking the truth, and the policy then optimises
the model's errors (over-optimisation). Where the truth can be checked (an exact-match verifier,
or on the built-in task the gold reward), pairs of the current policy's responses tell how often
the judge still orders them as the verifier does:

    accuracy, pairs = judge_accuracy(judge_scores_Nx2, verified_Nx2)
    alarm = DriftAlarm(min_accuracy=0.6, patience=2)
    if alarm.update(step, accuracy): ...        # True once, at the check that fires it
    alarm.save(path); alarm = DriftAlarm.load(path)   # across a resume

Calibration: a control run (the policy trained on the verifier, the judge only watched) shows
how low the judge's accuracy goes when nobody optimises against it; `calibrated_thresholds`
sets each seed's threshold from the other seeds' controls, and `first_alarm` replays the alarm
on a run's logged accuracies at that threshold (the control's own alarms are false alarms).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np


def judge_accuracy(judge_scores_Nx2, verified_Nx2) -> tuple[float, int]:
    """Over the pairs the verifier separates (different verified scores), the share the judge
    orders the same way (a judge tie counts one half); and how many such pairs there are
    (accuracy nan when none)."""
    judge = np.asarray(judge_scores_Nx2, np.float64)
    verified = np.asarray(verified_Nx2, np.float64)
    if judge.shape != verified.shape or judge.ndim != 2 or judge.shape[1] != 2:
        raise ValueError(
            f"judge_accuracy: judge scores {judge.shape} and verified scores {verified.shape} "
            "must both be [N, 2]"
        )
    truth = np.sign(verified[:, 0] - verified[:, 1])
    separated = truth != 0
    if not np.any(separated):
        return float("nan"), 0
    agreement = np.sign(judge[:, 0] - judge[:, 1])[separated] * truth[separated]
    return float(np.mean((agreement + 1.0) / 2.0)), int(np.sum(separated))


@dataclasses.dataclass
class DriftAlarm:
    """Fires when the judge's accuracy is below `min_accuracy` at `patience` checks in a row;
    `fired_at` is the step of the check that fired it (None until then). An undefined accuracy
    (no separated pairs) neither counts towards nor resets the run of low checks, and a second
    check of a step already checked is ignored."""

    min_accuracy: float
    patience: int = 1
    fired_at: int | None = None
    _low_checks: int = 0
    _last_step: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ValueError(f"min_accuracy={self.min_accuracy!r}: must be in [0, 1]")
        if self.patience < 1:
            raise ValueError(f"patience={self.patience!r}: must be >= 1")

    def update(self, step: int, accuracy: float) -> bool:
        """Records one check; True only at the check that fires the alarm."""
        if np.isnan(accuracy) or (self._last_step is not None and step <= self._last_step):
            return False
        self._last_step = step
        self._low_checks = self._low_checks + 1 if accuracy < self.min_accuracy else 0
        if self.fired_at is None and self._low_checks >= self.patience:
            self.fired_at = step
            return True
        return False

    def save(self, path: str | Path) -> None:
        """The alarm's whole state as JSON (a resumed run continues from it: `load`)."""
        Path(path).write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> DriftAlarm:
        return cls(**json.loads(Path(path).read_text()))


def first_alarm(steps, accuracies, min_accuracy: float, patience: int) -> float:
    """The step at which `DriftAlarm(min_accuracy, patience)` fires on logged checks (nan when
    it never does): the in-run alarm replayed at another threshold."""
    alarm = DriftAlarm(min_accuracy, patience)
    for step, accuracy in zip(steps, accuracies):
        if alarm.update(int(step), accuracy):
            return float(step)
    return float("nan")


def calibrated_thresholds(control_accuracies: dict, default: float) -> dict:
    """Seed -> alarm threshold: the lowest judge accuracy (nan: undefined, skipped) that the
    control runs of every OTHER seed showed, so that a seed's own control measures the
    false-alarm rate at a threshold it did not set; `default` with no other seed."""
    lowest = {seed: float(np.nanmin(acc)) for seed, acc in control_accuracies.items()}
    return {
        seed: min((v for other, v in lowest.items() if other != seed), default=default)
        for seed in control_accuracies
    }
