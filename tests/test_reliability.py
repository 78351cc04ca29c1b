"""Reliability: every failure either recovers correctly or stops with a message that
names the cause and the fix; no silent wrong results, no lost work. docs/failure_behaviour.md.

Each test reproduces one probe of the issue. The runs use a 4-parameter "model" (a quadratic
pulled towards the batch mean) so that the host loop, the checkpoints and the workdir guards are
exercised in milliseconds per step.
"""

import errno
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from traceback import format_exception

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alignax import sharding
from alignax.checkpoint import (
    CheckpointDamagedError,
    Checkpointer,
    CheckpointMismatchError,
    CheckpointWriteError,
    checkpoint_steps,
    restore_params,
)
from alignax.experiment import setup, validate_config, write_summary
from alignax.metrics import MetricWriter, NonFiniteMetricError, read_metrics
from alignax.state import TrainState
from alignax.training import default_train_config, train_loop
from alignax.workdir import (
    ConfigChangedError,
    StaleUpstreamError,
    WorkdirLockedError,
    acquire_workdir_lock,
    config_changes,
    upstream_paths,
)

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8  # one row per fake device


# ------------------------------------------------------------------------------ a tiny run
class Killed(Exception):
    """A simulated kill -9 of the run (KeyboardInterrupt would stop pytest itself)."""


class Batches:
    """Resumable iterator; batch i is a function of i. `fail_at` simulates a kill."""

    def __init__(self, fail_at=None):
        self.index = 0
        self.fail_at = fail_at

    def __next__(self):
        if self.index == self.fail_at:
            raise Killed(f"killed before batch {self.index}")
        x = np.random.default_rng(self.index).normal(size=(BATCH, 4)).astype(np.float32)
        self.index += 1
        return {"x": x}

    def state(self):
        return {"index": self.index}

    def restore(self, state):
        self.index = state["index"]


def _config(**train):
    config = ml_collections.ConfigDict(
        {
            "seed": 0,
            "multihost": False,
            "mesh": sharding.default_mesh_config(),
            "learning_rate": 0.1,
            "init_from": "",
            "train": default_train_config(),
        }
    )
    config.train.update(
        dict(steps=4, batch_size=BATCH, log_every=1, eval_every=2, checkpoint_every=2)
    )
    config.train.update(train)
    return config


def _make_step(learning_rate, poison_at=None):
    """SGD on 0.5 |w - mean(x)|^2. The metrics describe the state before the update (as real
    steps' do); with `poison_at`, that step's update writes NaN into the params."""
    tx = optax.sgd(learning_rate)

    @jax.jit
    def step(state, batch, rng):
        del rng
        grads = {"w": state.params["w"] - batch["x"].mean(0)}
        loss = 0.5 * jnp.sum(grads["w"] ** 2)
        new = state.apply_gradients(grads, tx)
        if poison_at is not None:
            bad = jnp.where(new.step == poison_at, jnp.nan, 0.0)
            new = new.replace(params={"w": new.params["w"] + bad})
        return new, {"loss": loss}

    return tx, step


def _run(workdir, config=None, *, batches=None, eval_fn=None, poison_at=None, **setup_kwargs):
    config = _config() if config is None else config
    workdir, mesh = setup(config, workdir, **setup_kwargs)
    tx, step = _make_step(config.learning_rate, poison_at)
    state = TrainState.create({"w": jnp.zeros(4)}, tx, mesh)
    return train_loop(
        state=state,
        step_fn=step,
        batches=Batches() if batches is None else batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=jax.random.key(0),
        name="tiny",
        eval_fn=eval_fn,
    )


def _like(mesh=None):
    mesh = mesh or sharding.make_mesh(sharding.default_mesh_config())
    return TrainState.create({"w": jnp.zeros(4)}, optax.sgd(0.1), mesh)


# ------------------------------------------------------------------------------ pipeline staleness
def test_stage_refuses_to_resume_on_a_changed_upstream_stage(tmp_path):
    up, down = tmp_path / "sft", tmp_path / "ppo"
    _run(up, _config(steps=2))
    downstream = _config(steps=4)
    with downstream.unlocked():
        downstream.init_from = str(up)
    with pytest.raises(Killed):  # killed after its step-2 checkpoint
        _run(down, downstream, batches=Batches(fail_at=3))
    record = json.loads((down / "upstream.json").read_text())["init_from"]
    assert record["step"] == 2 and len(record["config_sha256"]) == 64
    # The upstream stage is continued to 4 steps (on purpose): the downstream work is stale.
    _run(up, _config(steps=4), allow_config_change=True)
    with pytest.raises(StaleUpstreamError, match=rf"stage {down} .*step 2.*now at step 4.*Delete"):
        _run(down, downstream)
    assert checkpoint_steps(down / "checkpoints") == [2]  # nothing trained on the mix


def test_unchanged_upstream_resumes_and_a_rebuilt_one_is_detected_through_its_own_upstream(
    tmp_path,
):
    base, up, down = tmp_path / "pretrain", tmp_path / "sft", tmp_path / "ppo"
    _run(base, _config(steps=2))
    mid, downstream = _config(steps=2), _config(steps=4)
    with mid.unlocked(), downstream.unlocked():
        mid.init_from, downstream.init_from = str(base), str(up)
    _run(up, mid)
    with pytest.raises(Killed):
        _run(down, downstream, batches=Batches(fail_at=3))
    _run(down, downstream)  # same upstream: resumes
    assert checkpoint_steps(down / "checkpoints")[-1] == 4
    # sft rebuilt (same config, same step) on a different pretrain: its fingerprint changes.
    _run(base, _config(steps=4), allow_config_change=True)
    for path in (up / "checkpoints").iterdir():
        os.rename(path, tmp_path / f"old-{path.name}")
    _run(up, mid)
    with pytest.raises(StaleUpstreamError, match="init_from"):
        _run(down, downstream)


def test_a_stage_from_a_pretrained_checkpoint_resumes_and_notices_it_replaced(tmp_path):
    """A pretrained upstream (a GGUF file here) is recorded by its files' stamps, not a stage's
    step: an unchanged file resumes (it raised KeyError 'step'); one replaced by another of the
    same size, or of another size, is refused."""
    gguf = tmp_path / "base.gguf"
    gguf.write_bytes(b"GGUF weights")
    config = _config(steps=4)
    with config.unlocked():
        config.init_from = str(gguf)
    for name in ("same", "touched", "replaced"):
        down = tmp_path / name
        with pytest.raises(Killed):  # killed after its step-2 checkpoint
            _run(down, config, batches=Batches(fail_at=3))
        record = json.loads((down / "upstream.json").read_text())["init_from"]
        assert record["pretrained"]["base.gguf"][0] == len(b"GGUF weights")
    _run(tmp_path / "same", config)
    assert checkpoint_steps(tmp_path / "same" / "checkpoints")[-1] == 4
    stat = gguf.stat()
    gguf.write_bytes(b"GGUF WEIGHTS")  # same size, a later modification time
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(StaleUpstreamError, match=r"init_from=.*whose files changed.*Delete"):
        _run(tmp_path / "touched", config)
    gguf.write_bytes(b"other GGUF weights")
    with pytest.raises(StaleUpstreamError, match=r"init_from=.*whose files changed.*Delete"):
        _run(tmp_path / "replaced", config)
    for name in ("touched", "replaced"):
        assert checkpoint_steps(tmp_path / name / "checkpoints") == [2]


def test_an_empty_link_or_an_off_switch_added_later_is_no_change_and_any_other_new_key_is():
    """A workdir written before a stage had the link `reference_from` (or the switch
    `preferences.scored_logits_only`) resumes under a config whose `reference_from` is empty (no
    upstream either way), or whose switch is off (False: the behaviour before it existed); a
    set link, a switch on, or a new key of any other kind (0.0 included), is a change."""
    old = {"ppo": {"kl_coef": 0.05}, "init_from": "runs/sft"}
    assert config_changes(old, {**old, "reference_from": ""}) == {}
    assert config_changes(old, {**old, "reference_from": "runs/sft"}) == {
        "reference_from": (None, "runs/sft")
    }
    assert config_changes(old, {**old, "labels": {"length_bias": 0.0}}) == {
        "labels.length_bias": (None, 0.0)
    }
    switch = {"preferences": {"scored_logits_only": False}}
    assert config_changes(old, {**old, **switch}) == {}
    assert config_changes({**old, **switch}, old) == {}
    assert config_changes(old, {**old, "preferences": {"scored_logits_only": True}}) == {
        "preferences.scored_logits_only": (None, True)
    }


def test_pipeline_stages_record_every_upstream_they_read():
    from alignax.study import rlhf_stage_config
    from configs import pipeline as pipeline_config

    config, root = pipeline_config.get_config(), Path("runs/p")
    ppo = upstream_paths(rlhf_stage_config(config, "ppo", 0, root))
    assert ppo == {"init_from": "runs/p/sft", "rewards.reward_model_from": "runs/p/reward_model"}
    dpo = upstream_paths(rlhf_stage_config(config, "dpo", 0, root))
    assert dpo == {"init_from": "runs/p/sft", "labels.policy_from": "runs/p/sft"}
    assert upstream_paths(rlhf_stage_config(config, "pretrain", 0, root)) == {}


# ------------------------------------------------------------------------------ NaN guard
def test_nan_update_is_never_checkpointed(tmp_path):
    # Step 3's metrics are finite (computed before its update) but its update is NaN.
    config = _config(steps=4, log_every=2, checkpoint_every=1)
    with pytest.raises(NonFiniteMetricError, match=r"step 3: NaN/Inf in params/w.*step 2\)"):
        _run(tmp_path, config, poison_at=3)
    assert checkpoint_steps(tmp_path / "checkpoints") == [1, 2]
    restored, _ = Checkpointer(tmp_path / "checkpoints", save_every=1).restore_latest(_like())
    assert np.isfinite(np.asarray(restored.params["w"])).all()


def test_checkpointer_refuses_a_non_finite_state(tmp_path):
    state = _like()
    state = state.replace(params={"w": state.params["w"].at[1].set(jnp.inf)})
    checkpointer = Checkpointer(tmp_path, save_every=1)
    with pytest.raises(NonFiniteMetricError, match="not saving step 1: .*params/w"):
        checkpointer.save(1, state, force=True)
    assert checkpoint_steps(tmp_path) == []


def test_nan_training_metric_still_stops_the_run(tmp_path):
    config = _config()
    with config.unlocked():
        config.learning_rate = float("inf")
    with pytest.raises(NonFiniteMetricError, match="step"):
        _run(tmp_path, config)


class NanBatches(Batches):
    """Batch `nan_at` (0-based) holds a NaN: that step's loss is NaN."""

    def __init__(self, nan_at):
        super().__init__()
        self.nan_at = nan_at

    def __next__(self):
        batch = super().__next__()
        if self.index - 1 == self.nan_at:
            batch["x"][0, 0] = np.nan
        return batch


def test_nan_metric_names_the_checkpoint_a_rerun_resumes_from_or_none(tmp_path):
    # A NaN loss at step 1, before any save: there is no checkpoint to call intact.
    with pytest.raises(NonFiniteMetricError, match=r"step 1: loss=nan") as error:
        _run(tmp_path / "fresh", batches=NanBatches(nan_at=0))
    assert checkpoint_steps(tmp_path / "fresh" / "checkpoints") == []
    assert "intact" not in str(error.value)
    assert "no checkpoint was written" in str(error.value)
    # A NaN loss at step 3, after the save of step 2: that one is named, and it is intact.
    with pytest.raises(NonFiniteMetricError, match=r"step 3: loss=nan") as error:
        _run(tmp_path / "later", batches=NanBatches(nan_at=2))
    assert checkpoint_steps(tmp_path / "later" / "checkpoints") == [2]
    assert "the latest checkpoint (step 2) in " in str(error.value)
    restored, _ = Checkpointer(tmp_path / "later" / "checkpoints", save_every=1).restore_latest(
        _like()
    )
    assert int(restored.step) == 2 and np.isfinite(np.asarray(restored.params["w"])).all()


# ------------------------------------------------------------------------------ undefined stats
def test_undefined_evaluation_statistic_is_reported_not_fatal(tmp_path, capsys):
    def eval_fn(state):  # a correlation over responses of one length is undefined
        lengths = np.full(8, 12.0)
        return {"length_correlation": float(np.nan), "length": float(lengths.mean())}

    _run(tmp_path, eval_fn=eval_fn)
    assert checkpoint_steps(tmp_path / "checkpoints")[-1] == 4  # the run finished and saved
    evals = [m for m in read_metrics(tmp_path) if "eval/length" in m]
    assert [m["step"] for m in evals] == [2, 4]
    assert all("eval/length_correlation" not in m for m in evals)
    assert "eval/length_correlation undefined" in capsys.readouterr().out
    write_summary(tmp_path, {"accuracy": 0.75, "length_correlation": float("nan")})
    summary = json.loads((tmp_path / "summary.json").read_text())  # strict JSON: no NaN
    assert summary == {"accuracy": 0.75, "length_correlation": None}


# ------------------------------------------------------------------------------ keep_checkpoints=0
def test_keep_zero_still_saves_the_final_state(tmp_path):
    _run(tmp_path, _config(steps=4, keep_checkpoints=0))
    assert checkpoint_steps(tmp_path / "checkpoints") == [4]


# ------------------------------------------------------------------------------ config changes
def test_resume_with_a_changed_config_is_refused_naming_the_keys(tmp_path):
    with pytest.raises(Killed):
        _run(tmp_path, _config(steps=4), batches=Batches(fail_at=3))
    written = (tmp_path / "config.json").read_text()
    changed = _config(steps=6, batch_size=BATCH)
    with changed.unlocked():
        changed.learning_rate = 0.5
    with pytest.raises(ConfigChangedError, match=r"learning_rate: 0\.1 -> 0\.5; train\.steps"):
        _run(tmp_path, changed)
    assert (tmp_path / "config.json").read_text() == written  # not overwritten
    # Cadence keys do not change results: no refusal.
    with pytest.raises(Killed):
        _run(tmp_path, _config(steps=4, log_every=2), batches=Batches(fail_at=3))
    _run(tmp_path, changed, allow_config_change=True)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["event"] == "resume" and history[-1]["allowed_by"] == "allow_config_change"
    assert history[-1]["config_changes"] == {"learning_rate": [0.1, 0.5], "train.steps": [4, 6]}
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 6


def test_cli_flag_allows_config_change(tmp_path):
    (tmp_path / "tiny_config.py").write_text(
        "import ml_collections\n"
        "def get_config(arg=None):\n"
        "    return ml_collections.ConfigDict({'seed': 0})\n"
    )
    code = (
        "from alignax.cli import run_experiment; from alignax import workdir\n"
        "run_experiment(lambda c, w: print('allowed', workdir._ALLOW_CONFIG_CHANGE.get()))"
    )
    args = [sys.executable, "-c", code, "--config", str(tmp_path / "tiny_config.py")]
    args += ["--workdir", str(tmp_path / "run")]
    args.append("--allow_config_change")
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "allowed True" in out.stdout, out.stderr


# ------------------------------------------------------------------------------ workdir lock
def test_second_writer_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # Another run holding the lock as acquire_workdir_lock takes it (flock + holder).
            "import fcntl, json, os, sys, time\n"
            f"f = open({str(tmp_path / '.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.write(json.dumps({'pid': os.getpid(), 'host': 'here'})); f.flush()\n"
            "print('locked', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirLockedError, match=rf"in use by another run .*{holder.pid}"):
            setup(_config(), tmp_path)
        assert not (tmp_path / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The lock file is still there, naming a dead pid: it must not block.
    assert str(holder.pid) in (tmp_path / ".lock").read_text()
    acquire_workdir_lock(tmp_path)
    assert str(os.getpid()) in (tmp_path / ".lock").read_text()


def test_metrics_hold_no_duplicate_steps_after_a_resume(tmp_path):
    config = _config(steps=6, checkpoint_every=4)
    with pytest.raises(Killed):
        _run(tmp_path, config, batches=Batches(fail_at=5), eval_fn=lambda s: {"w": 1.0})
    assert [m["step"] for m in read_metrics(tmp_path) if "loss" in m] == [1, 2, 3, 4, 5]
    _run(tmp_path, config, eval_fn=lambda s: {"w": 1.0})
    steps = [m["step"] for m in read_metrics(tmp_path) if "loss" in m]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in read_metrics(tmp_path) if "eval/w" in m] == [2, 4, 6]


# ------------------------------------------------------------------------------ damaged checkpoints
def _two_checkpoints(directory):
    state = _like()
    checkpointer = Checkpointer(directory, save_every=1)
    for step in (1, 2):
        params = {"w": jnp.full(4, float(step))}
        checkpointer.save(step, state.replace(step=jnp.int32(step), params=params), force=True)
    checkpointer.close()
    return state


def _truncate_arrays(step_dir):
    for path in step_dir.glob("state/**/d/*"):
        with open(path, "r+b") as f:
            f.truncate(3)


def _zero_metadata(step_dir):
    path = step_dir / "state" / "_METADATA"
    path.write_bytes(b"\0" * path.stat().st_size)


def _delete_state(step_dir):
    import shutil

    shutil.rmtree(step_dir / "state")


def _delete_metadata(step_dir):
    (step_dir / "state" / "_METADATA").unlink()


def _empty_metadata(step_dir):
    (step_dir / "state" / "_METADATA").write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_truncate_arrays, _zero_metadata, _delete_metadata, _empty_metadata, _delete_state],
)
def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, capsys, damage):
    like = _two_checkpoints(tmp_path)
    damage(tmp_path / "2")
    checkpointer = Checkpointer(tmp_path, save_every=1)
    state, _ = checkpointer.restore_latest(like)
    assert int(state.step) == 1 and float(state.params["w"][0]) == 1.0
    assert f"checkpoint step 2 in {tmp_path} is damaged" in capsys.readouterr().err
    assert (tmp_path / "damaged-2").is_dir()  # kept for inspection, out of the way
    assert checkpointer.save(2, state.replace(step=jnp.int32(2)), force=True)  # step 2 redone


@pytest.mark.parametrize("damage", [_delete_metadata, _empty_metadata])
def test_params_of_a_step_without_metadata_are_damaged_not_another_config(tmp_path, damage):
    # Read as "holds no params" this was a CheckpointMismatchError, whose advice (a fresh
    # workdir) throws away the intact step 1.
    _two_checkpoints(tmp_path)
    damage(tmp_path / "2")
    with pytest.raises(CheckpointDamagedError, match=rf"step 2 in {tmp_path} is damaged"):
        restore_params(tmp_path, {"w": jnp.zeros(4)})
    assert float(restore_params(tmp_path, {"w": jnp.zeros(4)}, step=1)["w"][0]) == 1.0
    assert not issubclass(CheckpointDamagedError, CheckpointMismatchError)


def test_no_intact_checkpoint_fails_naming_the_steps_and_the_fix(tmp_path):
    like = _two_checkpoints(tmp_path)
    for step in ("1", "2"):
        _truncate_arrays(tmp_path / step)
    with pytest.raises(CheckpointDamagedError, match=r"steps \[2, 1\] are damaged.*Delete"):
        Checkpointer(tmp_path, save_every=1).restore_latest(like)


def test_restoring_params_does_not_warn_about_the_items_it_skips(tmp_path, caplog, capfd):
    # A stage's checkpoint also holds its data position and config; a stage that takes its
    # params asks for nothing else, and orbax's "Item ... was found in the checkpoint, but
    # could not be restored" (one per skipped item and per read) is not printed.
    like = _two_checkpoints(tmp_path)
    with caplog.at_level(logging.DEBUG):
        params = restore_params(tmp_path, {"w": jnp.zeros(4)})
    assert float(params["w"][0]) == 2.0  # the latest step's params
    assert set(params) == {"w"}
    printed = [r.getMessage() for r in caplog.records] + capfd.readouterr().err.splitlines()
    assert not [line for line in printed if "was found in the checkpoint" in line]
    # The full restore of a run (state, data position, config) stays quiet too.
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        state, _ = Checkpointer(tmp_path, save_every=1).restore_latest(like)
    assert int(state.step) == 2
    assert not [r for r in caplog.records if "was found in the checkpoint" in r.getMessage()]


# ------------------------------------------------------------------------------ unwritable / full
def test_unwritable_checkpoint_directory_fails_at_once_naming_the_path(tmp_path):
    (tmp_path / "file").write_text("in the way")
    start = time.perf_counter()
    with pytest.raises(CheckpointWriteError, match=rf"cannot write checkpoints to {tmp_path}/file"):
        Checkpointer(tmp_path / "file" / "checkpoints", save_every=1)
    with pytest.raises(OSError, match=rf"cannot write the workdir to {tmp_path}/file/run"):
        setup(_config(), tmp_path / "file" / "run")
    assert time.perf_counter() - start < 5


def test_permission_denied_is_reported_with_the_path(tmp_path, monkeypatch):
    real_open = open

    def denied(path, *args, **kwargs):
        if ".write-probe" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(CheckpointWriteError, match=rf"{tmp_path}/ckpt: Permission denied"):
        Checkpointer(tmp_path / "ckpt", save_every=1)


def test_disk_full_fails_within_seconds_naming_the_path_and_cause(tmp_path, monkeypatch):
    from etils import epath

    state = _like()
    checkpointer = Checkpointer(tmp_path, save_every=1)
    checkpointer.save(1, state, force=True)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(epath.Path, "write_text", full)
    monkeypatch.setattr(pathlib.Path, "write_text", full)
    start = time.perf_counter()
    with pytest.raises(CheckpointWriteError, match=rf"step 2 to {tmp_path}: No space left"):
        checkpointer.save(2, state.replace(step=jnp.int32(2)), force=True)
    assert time.perf_counter() - start < 5
    assert checkpoint_steps(tmp_path) == [1]


def test_disk_full_in_the_array_writer_is_one_error_and_leaves_no_partial_step(
    tmp_path, monkeypatch, caplog, capfd
):
    """A full disk as orbax meets it: tensorstore's write raises a ValueError whose text ends in
    the errno (`RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']`, taken
    from a save on a 3 MB tmpfs), in orbax's background threads, which log it four times with
    its whole asyncio traceback (~450 lines) and leave `3.orbax-checkpoint-tmp` behind."""
    from orbax.checkpoint._src.serialization import serialization

    like = _two_checkpoints(tmp_path)
    # keep=2: a finished step 3 would retire step 1; a failed one must not.
    checkpointer = Checkpointer(tmp_path, save_every=1, keep=2)

    async def full_disk(rslices_on_host, tensorstore_spec, **kwargs):
        ocdbt = f"{tmp_path}/3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0"
        raise ValueError(
            f'RESOURCE_EXHAUSTED: Error writing "params.w/0" in OCDBT database at local file '
            f'"{ocdbt}/": Failed writing: "{ocdbt}/d/292042f715ccda7b93b03d760e24ea9e": Failed '
            "to write 1466802 bytes to file 14: No space left on device [os_error_code='28']"
        )

    monkeypatch.setattr(serialization, "async_serialize_from_host", full_disk)
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG), pytest.raises(CheckpointWriteError) as error:
        checkpointer.save(3, like.replace(step=jnp.int32(3)), force=True)
    assert error.value.errno == errno.ENOSPC
    assert f"step 3 to {tmp_path}: No space left on device" in str(error.value)
    # No partial step left, the earlier checkpoints all there.
    assert not list(tmp_path.glob("3*"))
    assert checkpoint_steps(tmp_path) == [1, 2]
    assert "earlier checkpoints [1, 2] are untouched" in str(error.value)
    # One error, not a wall of traces: orbax's reports of it are not printed. (Only reports of
    # this write's error count: under load a background thread of an earlier save in the same
    # worker may log an unrelated exception.)
    reports = [
        r.getMessage()
        for r in caplog.records
        if r.exc_info and "No space left on device" in "".join(format_exception(*r.exc_info))
    ]
    assert not reports, reports
    # (Checked by the error's own text: a background thread of an earlier test in the same
    # worker may print an unrelated traceback, e.g. asyncio's "Event loop is closed".)
    assert "RESOURCE_EXHAUSTED" not in capfd.readouterr().err
    # With space again, the same checkpointer saves step 3 and retires step 1 (keep=2).
    monkeypatch.undo()
    assert checkpointer.save(3, like.replace(step=jnp.int32(3)), force=True)
    assert checkpoint_steps(tmp_path) == [2, 3]


def test_disk_full_on_metrics_names_the_file(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)

    class Full:
        name = str(tmp_path / "metrics.jsonl")

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    writer.file.close()
    writer.file = Full()
    with pytest.raises(OSError, match=r"cannot write .*metrics\.jsonl: No space left"):
        writer.write(1, {"loss": 1.0})


# ------------------------------------------------------------------------------ config validation
@pytest.mark.parametrize(
    "key, value",
    [
        ("steps", 0),
        ("steps", -3),
        ("log_every", 0),
        ("eval_every", 0),
        ("checkpoint_every", 0),
        ("checkpoint_every", -1),
        ("keep_checkpoints", -1),
        ("grad_accum_steps", 3),  # does not divide batch_size 8
        ("grad_accum_steps", 0),
    ],
)
def test_bad_train_settings_fail_naming_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=rf"config train\.{key}={value}: must be"):
        setup(_config(**{key: value}), tmp_path)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("eval_steps", [(0, 2), (3, 2), (2, 2), (5,)])
def test_eval_steps_outside_the_run_or_unordered_fail_naming_the_key(tmp_path, eval_steps):
    # _config's run has 4 steps.
    with pytest.raises(ValueError, match=r"config train\.eval_steps=.*increasing steps in \[1, "):
        setup(_config(eval_steps=eval_steps), tmp_path)
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_eval_fraction_outside_zero_one_fails_naming_the_key(fraction):
    from alignax.data.sources import default_data_config

    config = _config()
    with config.unlocked():
        config.data = default_data_config()
        config.data.eval_fraction = fraction
    with pytest.raises(ValueError, match=r"config data\.eval_fraction=.*\(0, 1\)"):
        validate_config(config)


def test_nested_stage_settings_are_checked_before_any_stage_runs():
    from configs import pipeline as pipeline_config

    config = pipeline_config.get_config()
    config.stages.ppo.train.log_every = 0
    with pytest.raises(ValueError, match=r"stages\.ppo\.train\.log_every=0"):
        validate_config(config)


# ------------------------------------------------------------------------------ init_from
def test_missing_init_from_fails_and_creates_nothing(tmp_path):
    config = _config()
    with config.unlocked():
        config.init_from = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=rf"init_from='{tmp_path}/nowhere'"):
        setup(config, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        restore_params(tmp_path / "nowhere" / "checkpoints", {"w": jnp.zeros(4)})
    assert not (tmp_path / "nowhere").exists()


# ------------------------------------------------------------------------------ pretrained files
def test_a_truncated_safetensors_file_is_named_with_the_tensor_cut_off(tmp_path):
    from alignax.models.hf import load_hf, save_hf
    from tests.helpers import tiny_config, tiny_model

    model = tiny_model()
    save_hf(tmp_path, tiny_config(), jax.tree.map(jnp.zeros_like, model.abstract_params))
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    header.pop("__metadata__")
    last = max(header, key=lambda k: header[k]["data_offsets"][1])
    start, end = header[last]["data_offsets"]
    # An interrupted copy that stops where the last tensor begins (was: "cannot reshape array
    # of size 0 into shape (32,)", naming neither the file nor the tensor).
    path.write_bytes(data[: len(data) - (end - start)])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is truncated: tensor '{last}'"):
        load_hf(tmp_path)
    path.write_bytes(data[:5])  # cut inside the header
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is truncated"):
        load_hf(tmp_path)


def test_a_gguf_path_that_is_not_gguf_or_is_cut_short_is_named(tmp_path):
    gguf = pytest.importorskip("gguf", reason="test-only dependency (requirements-test.txt)")
    from alignax.models.gguf import load_gguf

    text = tmp_path / "model.gguf"
    text.write_text("a model card, saved under the wrong name\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(text))} is not a GGUF file"):
        load_gguf(text)  # was: "GGUF magic invalid"

    path = tmp_path / "cut.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.ones((8, 16), np.float32))
    writer.add_tensor("output_norm.weight", np.ones(16, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 16 * 4])  # without output_norm's 16 float32s
    pattern = rf"{re.escape(str(path))} is truncated: tensor 'output_norm.weight'"
    with pytest.raises(ValueError, match=pattern):
        load_gguf(path)
    path.write_bytes(data[:30])  # cut inside the header
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} .*truncated"):
        load_gguf(path)


# ------------------------------------------------------------------------------ data files
def _pairs(n, **extra):
    return [
        {"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad", **extra} for i in range(n)
    ]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_first_record_of_another_format_is_blamed_at_its_own_line(tmp_path):
    from alignax.data.formats import DataError, read_examples

    odd = {"prompt": "q", "completion": "fine", "label": 1}  # unpaired, in a file of pairs
    path = _write_jsonl(tmp_path / "prefs.jsonl", [odd, *_pairs(5)])
    with pytest.raises(DataError, match=r"prefs\.jsonl:1: .*format 'unpaired'.* 'pairs'"):
        read_examples(path)
    examples, stats = read_examples(path, on_error="skip")
    assert len(examples) == 5 and stats.skipped == {"other_format": 1}


def test_truncated_texts_are_counted_and_reported(tmp_path):
    from alignax.data.formats import load_dataset
    from alignax.data.tokenizer import WordTokenizer

    words = WordTokenizer(["<pad>", "<bos>", "<eos>", "a", "b", "c"])
    records = [
        {"prompt": "a", "chosen": "b", "rejected": "c"},  # fits
        {"prompt": "a " * 20, "chosen": "b", "rejected": "c"},  # prompt cut
        {"prompt": "a", "chosen": "b " * 20, "rejected": "c"},  # response cut
    ]
    path = _write_jsonl(tmp_path / "long.jsonl", records)
    batch, stats = load_dataset(path, words, max_len=10)
    assert batch["tokens"].shape == (3, 2, 10)
    assert stats.truncated == 2 and stats.as_dict()["truncated"] == 2
    report = stats.report()
    assert "truncated 2 of the kept records" in report
    assert "long.jsonl:2: prompt cut" in report and "long.jsonl:3: response cut" in report


def test_an_empty_data_file_fails_naming_it(tmp_path):
    from alignax.data.formats import DataError, load_dataset
    from alignax.data.tokenizer import WordTokenizer

    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match=r"empty\.jsonl holds no usable records"):
        load_dataset(path, WordTokenizer(["<pad>", "<bos>", "<eos>"]), max_len=8)


def test_a_tokenizer_path_that_is_not_a_sentencepiece_model_is_named(tmp_path):
    from alignax.data.tokenizer import SentencePieceTokenizer

    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match=rf"tokenizer {path} is not a sentencepiece model"):
        SentencePieceTokenizer.load(path)
    with pytest.raises(ValueError, match=rf"tokenizer {tmp_path}/missing.model: no such file"):
        SentencePieceTokenizer.load(tmp_path / "missing.model")


def test_describe_refuses_zero_samples(capsys):
    from alignax.data import describe

    with pytest.raises(SystemExit):
        describe.main(["--task", "review", "--num-samples", "0"])
    assert "--num-samples=0: must be a positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------------------ notebooks
def test_notebook_finds_the_repository_from_the_notebooks_folder(tmp_path):
    """Jupyter starts the kernel in notebooks/: the path cell must make `configs` importable and
    point `runs/` at the repository root."""
    cells = json.loads((ROOT / "notebooks" / "walkthrough.ipynb").read_text())["cells"]
    setup_cell = next(
        "".join(c["source"])
        for c in cells
        if c["cell_type"] == "code" and "ROOT" in "".join(c["source"])
    )
    code = (
        "import sys; sys.path = [p for p in sys.path if p not in ('', "
        + repr(str(ROOT))
        + ")]\n"
        + setup_cell
        + "\nimport configs\nprint('configs from', configs.__file__)"
        + "\nprint('runs at', ROOT / 'runs')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"configs from {ROOT / 'configs' / '__init__.py'}" in out.stdout
    assert f"runs at {ROOT / 'runs'}" in out.stdout
