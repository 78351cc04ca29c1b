"""The functional forms Gao, Schulman & Hilton (2022) fit to gold reward against
d = sqrt(KL(pi || pi_init)):

    best-of-n:  R_bon(d) = d (alpha_bon - beta_bon d)
    RL:         R_rl(d)  = d (alpha_rl  - beta_rl  log d)

Both are linear in (alpha, beta), so the least-squares fit is exact (no optimiser); R(0) = 0
means the gold reward is measured relative to the initial policy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

FORMS = ("bon", "rl")


def _features(d: np.ndarray, form: str) -> np.ndarray:
    d = np.asarray(d, np.float64)
    if form == "bon":
        return np.stack([d, -(d**2)], axis=-1)
    if form == "rl":
        safe = np.where(d > 0, d, 1.0)
        return np.stack([d, -d * np.log(safe)], axis=-1)
    raise ValueError(f"form={form!r}; allowed: {', '.join(FORMS)}")


@dataclasses.dataclass(frozen=True)
class Fit:
    form: str
    alpha: float
    beta: float
    r2: float  # coefficient of determination on the fitted points

    def predict(self, d) -> np.ndarray:
        return _features(d, self.form) @ np.array([self.alpha, self.beta])

    def peak(self) -> tuple[float, float]:
        """(d, R) at the maximum of the fitted curve (d = inf when it never turns over)."""
        if self.beta <= 0:
            return float("inf"), float("inf")
        if self.form == "bon":
            d = self.alpha / (2 * self.beta)
        else:  # d/dd [alpha d - beta d log d] = alpha - beta (log d + 1) = 0
            d = float(np.exp(self.alpha / self.beta - 1))
        return float(d), float(self.predict(d))


def fit_form(d, reward, form: str) -> Fit:
    """Least-squares (alpha, beta) of `form` through the points (d, reward)."""
    d, reward = np.asarray(d, np.float64), np.asarray(reward, np.float64)
    if d.shape != reward.shape or d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need two 1-D arrays of >= 2 points, got {d.shape}, {reward.shape}")
    features = _features(d, form)
    (alpha, beta), *_ = np.linalg.lstsq(features, reward, rcond=None)
    residual = reward - features @ np.array([alpha, beta])
    total = np.sum((reward - reward.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / total if total > 0 else float("nan")
    return Fit(form, float(alpha), float(beta), float(r2))
