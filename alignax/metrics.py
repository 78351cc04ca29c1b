"""Metric writing (JSONL + TensorBoard, process 0 only), NaN/Inf guard, and a progress line.

Metrics are flat dicts with '/' namespaces. Steps return them as device arrays; the loop fetches
them only every `log_every` steps (one host transfer for the whole dict).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np


class NonFiniteMetricError(FloatingPointError):
    """Training produced a NaN or Inf; the run stops instead of training on garbage."""


def to_host(metrics: dict) -> dict[str, float]:
    """Device metrics -> {name: float}; array-valued metrics are averaged."""
    host = jax.device_get(metrics)
    return {k: float(np.mean(v)) for k, v in host.items()}


def check_finite(metrics: dict[str, float], step: int, *, resume_note: str) -> None:
    """Raises NonFiniteMetricError naming every NaN/Inf metric of `step`; `resume_note` says
    what a rerun resumes from (`Checkpointer.resume_note`: a checkpoint, or none yet)."""
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise NonFiniteMetricError(
            f"non-finite value at step {step}: "
            + ", ".join(f"{k}={metrics[k]}" for k in bad)
            + f". Lower the learning rate or check the inputs; {resume_note}"
        )


class MetricWriter:
    """Appends `{"step": s, **metrics}` lines to <workdir>/metrics.jsonl and to TensorBoard."""

    def __init__(self, workdir: str | Path, *, tensorboard: bool = True):
        self.workdir = Path(workdir)
        self.active = jax.process_index() == 0
        self.tb = None
        if self.active:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.file = open(self.workdir / "metrics.jsonl", "a")
            if tensorboard:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        try:
            self.file.write(json.dumps({"step": step, **metrics}) + "\n")
            self.file.flush()
        except OSError as e:  # e.g. disk full: name the file, which a bare write does not
            raise OSError(e.errno, f"cannot write {self.file.name}: {e.strerror or e}") from e
        if self.tb is not None:
            for name, value in metrics.items():
                self.tb.add_scalar(name, value, step)

    def write_texts(self, step: int, name: str, texts: list[str]) -> None:
        """Generated samples: one JSON line in <workdir>/samples.jsonl and a TensorBoard text."""
        if not self.active:
            return
        with open(self.workdir / "samples.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "name": name, "texts": texts}) + "\n")
        if self.tb is not None:
            self.tb.add_text(name, "\n\n".join(texts), step)

    def close(self) -> None:
        if self.active:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def read_metrics(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged_curve(
    workdir: str | Path, fields: dict[str, str], *, max_step: int | None = None
) -> list[dict]:
    """A curve a run logged, by step: {"step", name: line[key] for name, key in `fields`} from
    every metrics line that holds the first key (the last line of a step wins: a resumed run
    writes it again), steps past `max_step` left out."""
    first = next(iter(fields.values()))
    points = {}
    for line in read_metrics(workdir):
        if first in line and (max_step is None or line["step"] <= max_step):
            points[line["step"]] = {"step": line["step"], **{k: line[v] for k, v in fields.items()}}
    return [points[step] for step in sorted(points)]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Periodic one-line progress: step, steps/s, ETA and a few chosen metrics."""

    def __init__(self, total_steps: int, *, name: str = "train", start_step: int = 0, stream=None):
        self.total = total_steps
        self.name = name
        self.stream = stream or sys.stdout
        self.last_step = start_step
        self.last_time = time.perf_counter()
        self.start_time = self.last_time

    def update(
        self, step: int, metrics: dict[str, float] | None = None, keys: tuple[str, ...] = ()
    ) -> str:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        shown = " ".join(
            f"{k}={metrics[k]:.4g}" for k in keys if metrics is not None and k in metrics
        )
        line = (
            f"[{self.name}] step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%) "
            f"{rate:.2f} steps/s ETA {_duration(eta) if math.isfinite(eta) else '?'} {shown}"
        )
        if jax.process_index() == 0:
            print(line.rstrip(), file=self.stream, flush=True)
        return line

    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time
