"""Multi-host: two CPU processes on localhost, joined by `jax.distributed` (gloo collectives),
train exactly like one process with the same two devices.

Each process has one CPU device; the mesh spans both (data = 2). Each places only its own rows of
the batch, process 0 writes the metrics, and both write the orbax checkpoint collectively.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from alignax.checkpoint import restore_params
from alignax.models import build_model
from alignax.models.presets import mesh_config, model_config
from alignax.sharding import init_params, make_mesh

pytestmark = pytest.mark.slow

_FLAGS = [
    "--config=configs/sft.py:runlocal",
    "--config.train.steps=4",
    "--config.train.log_every=1",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=2",
    "--config.sft.num_examples=128",
    "--config.sft.num_eval_examples=32",
    "--config.eval.num_prompts=16",
    "--config.mesh.data=2",
]


def _env(devices: int) -> dict:
    """The test process's environment with `devices` CPU devices per process (the suite's other
    XLA flags kept)."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}


def _sft(workdir, *extra, devices: int) -> subprocess.Popen:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sft", *_FLAGS, f"--workdir={workdir}", *extra],
        cwd=root,
        env=_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, what: str) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _finish(_sft(one, devices=2), "one process, two devices")
    port = _free_port()
    processes = [
        _sft(
            two,
            "--config.multihost=True",
            f"--config.distributed.coordinator_address=localhost:{port}",
            "--config.distributed.num_processes=2",
            f"--config.distributed.process_id={rank}",
            devices=1,
        )
        for rank in range(2)
    ]
    outputs = [_finish(p, f"process {rank} of 2") for rank, p in enumerate(processes)]
    # Process 0 reports; process 1 trains silently.
    assert "summary" in outputs[0] and "summary" not in outputs[1]

    def lines(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    single, multi = lines(one / "metrics.jsonl"), lines(two / "metrics.jsonl")
    assert [m["step"] for m in multi] == [m["step"] for m in single] == [1, 2, 3, 4, 4]  # + eval
    for a, b in zip(single, multi, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)
    summary_one = json.loads((one / "summary.json").read_text())
    summary_two = json.loads((two / "summary.json").read_text())
    assert summary_one == pytest.approx(summary_two, rel=1e-5)

    # The collectively written checkpoint holds the same params as the single process's.
    model = build_model(model_config("tiny"), heads=("lm",))
    like = init_params(model, jax.random.key(0), make_mesh(mesh_config("tiny")))
    restored = [restore_params(w / "checkpoints", like) for w in (one, two)]
    for a, b in zip(*(jax.tree.leaves(r) for r in restored), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    earlier = restore_params(two / "checkpoints", like, step=2)
    assert any(
        not np.allclose(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(earlier), jax.tree.leaves(restored[1]), strict=True)
    ), "steps 3-4 should have changed the params"
