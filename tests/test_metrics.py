"""Metric writer, NaN guard and progress line."""

import io
import json

import jax.numpy as jnp
import pytest

from alignax.metrics import (
    MetricWriter,
    NonFiniteMetricError,
    Progress,
    check_finite,
    logged_curve,
    read_metrics,
    to_host,
)


def test_nan_guard_names_the_step_and_metric():
    with pytest.raises(NonFiniteMetricError, match=r"step 12: .*loss=nan"):
        check_finite({"loss": float("nan"), "kl": 0.1}, 12, resume_note="none")
    with pytest.raises(NonFiniteMetricError, match=r"grad_norm=inf"):
        check_finite({"grad_norm": float("inf")}, 3, resume_note="none")
    check_finite({"loss": 1.0}, 1, resume_note="none")


def test_writer_appends_jsonl_and_tensorboard(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write(1, to_host({"loss": jnp.float32(2.0), "rewards/chosen": jnp.array([1.0, 3.0])}))
    writer.write(2, {"loss": 1.5})
    writer.write_texts(2, "samples", ["a b c"])
    writer.close()
    assert read_metrics(tmp_path) == [
        {"step": 1, "loss": 2.0, "rewards/chosen": 2.0},
        {"step": 2, "loss": 1.5},
    ]
    assert json.loads((tmp_path / "samples.jsonl").read_text())["texts"] == ["a b c"]
    assert any((tmp_path / "tensorboard").iterdir())


def test_progress_line_shows_rate_and_eta():
    stream = io.StringIO()
    progress = Progress(100, name="sft", stream=stream)
    line = progress.update(50, {"loss": 0.25}, keys=("loss",))
    assert "step 50/100 (50%)" in line and "steps/s" in line and "ETA" in line
    assert "loss=0.25" in line
    assert stream.getvalue().strip() == line.strip()


def test_a_logged_curve_keeps_the_last_line_of_a_step_and_stops_at_max_step(tmp_path):
    lines = [
        {"step": 0, "eval/gold": 0.1, "eval/kl": 0.0},
        {"step": 5, "loss": 1.0},  # a training line: no eval/gold, not a point
        {"step": 10, "eval/gold": 0.2, "eval/kl": 1.0},
        {"step": 10, "eval/gold": 0.3, "eval/kl": 1.5},  # written again by a resumed run
        {"step": 20, "eval/gold": 0.4, "eval/kl": 2.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n")
    fields = {"gold": "eval/gold", "kl": "eval/kl"}
    assert logged_curve(tmp_path, fields, max_step=10) == [
        {"step": 0, "gold": 0.1, "kl": 0.0},
        {"step": 10, "gold": 0.3, "kl": 1.5},
    ]
    assert [p["step"] for p in logged_curve(tmp_path, fields)] == [0, 10, 20]
