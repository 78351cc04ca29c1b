"""The workdir (alignax/workdir.py): the wall-time ledger, resumes of moved workdirs, what a
start that fails leaves behind, and the keys of a study's cached artefacts."""

import json
import shutil

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alignax import sharding
from alignax.checkpoint import Checkpointer, checkpoint_steps
from alignax.experiment import setup
from alignax.stages import stage_finished
from alignax.state import TrainState
from alignax.training import default_train_config
from alignax.workdir import (
    ConfigChangedError,
    StaleUpstreamError,
    accumulate_timings,
    cache_digest,
    cache_is_current,
    cached_arrays,
    cached_json,
    config_changes_allowed,
    discard_unused_workdirs_on_error,
    record_cache_key,
    release_workdir_lock,
)


def test_timings_add_up_over_stages_and_invocations(tmp_path):
    accumulate_timings(tmp_path, {"seconds/pretrain": 2.0})
    accumulate_timings(tmp_path, {"seconds/ppo": 3.0})
    # e.g. a second width, or a resumed run: added to what is there; other keys kept.
    total = accumulate_timings(tmp_path, {"seconds/pretrain": 1.5})
    assert total == {"seconds/pretrain": 3.5, "seconds/ppo": 3.0}
    assert json.loads((tmp_path / "timings.json").read_text()) == total


def test_timings_ledger_in_a_directory_not_made_yet(tmp_path):
    total = accumulate_timings(tmp_path / "seed0", {"seconds/eval": 1.0})
    assert total == {"seconds/eval": 1.0} and (tmp_path / "seed0" / "timings.json").exists()


# ------------------------------------------------------------------------------ a tiny stage
def _config(init_from=""):
    config = ml_collections.ConfigDict(
        {
            "seed": 0,
            "multihost": False,
            "mesh": sharding.default_mesh_config(),
            "init_from": init_from,
            "train": default_train_config(),
        }
    )
    config.train.update(steps=2, batch_size=8)
    return config


def _stage(workdir, config, *, step=2, **setup_kwargs):
    """What a finished stage leaves: setup's records, a checkpoint at `step`, summary.json."""
    workdir, mesh = setup(config, workdir, **setup_kwargs)
    state = TrainState.create({"w": jnp.full(4, float(step))}, optax.sgd(0.1), mesh)
    checkpointer = Checkpointer(workdir / "checkpoints", save_every=1)
    checkpointer.save(step, state, force=True)
    checkpointer.close()
    (workdir / "summary.json").write_text("{}")
    release_workdir_lock(workdir)


def _history(workdir):
    return [json.loads(line) for line in (workdir / "history.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ moved workdirs
def test_a_copied_chain_of_stages_resumes_and_is_finished(tmp_path):
    """A stage's links are absolute paths: in a copy of the workdir they name other places
    that hold the same stages. That is no change (it was refused as one)."""
    old, new = tmp_path / "old", tmp_path / "new"
    _stage(old / "sft", _config())
    _stage(old / "ppo", _config(init_from=str(old / "sft")))
    shutil.copytree(old, new)
    moved = _config(init_from=str(new / "sft"))
    assert stage_finished(moved, new / "ppo")
    setup(moved, new / "ppo")  # a resume: no ConfigChangedError
    last = _history(new / "ppo")[-1]
    assert last["event"] == "resume"
    assert last["moved_upstream"] == {"init_from": [str(old / "sft"), str(new / "sft")]}
    assert "config_changes" not in last


def test_a_link_moved_to_another_stage_is_stale_even_when_changes_are_allowed(tmp_path):
    """--allow_config_change lets a key change; it does not let a stage resume on an upstream
    other than the one it was built on (the check was skipped for a changed path)."""
    _stage(tmp_path / "sft", _config())
    _stage(tmp_path / "other_sft", _config(), step=3)
    _stage(tmp_path / "ppo", _config(init_from=str(tmp_path / "sft")))
    other = _config(init_from=str(tmp_path / "other_sft"))
    assert not stage_finished(other, tmp_path / "ppo")
    with pytest.raises(ConfigChangedError, match="init_from"):
        setup(other, tmp_path / "ppo")
    with pytest.raises(StaleUpstreamError, match=r"init_from=.*sft \(now .*other_sft\) at step 2"):
        setup(other, tmp_path / "ppo", allow_config_change=True)


# ------------------------------------------------------------------------------ failed starts
def test_a_start_that_fails_before_computing_leaves_no_workdir(tmp_path):
    workdir = tmp_path / "runs" / "sft"
    with pytest.raises(ValueError, match="bad data"), discard_unused_workdirs_on_error():
        setup(_config(), workdir)
        assert (workdir / "config.json").exists()
        raise ValueError("bad data")
    assert not (tmp_path / "runs").exists()


def test_a_failed_run_keeps_what_it_computed_and_what_was_there(tmp_path):
    computed, existing = tmp_path / "computed", tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(ValueError), discard_unused_workdirs_on_error():
        _stage(computed, _config())
        raise ValueError("later stage failed")
    with pytest.raises(ValueError), discard_unused_workdirs_on_error():
        setup(_config(), existing)
        raise ValueError("bad data")
    assert checkpoint_steps(computed / "checkpoints") == [2]
    assert (existing / "notes.txt").read_text() == "mine" and (existing / "config.json").exists()


def test_a_run_that_never_wrote_its_summary_is_reported_on_the_next_start(tmp_path, capsys):
    """A run killed where nothing in it can record that (out of memory: the kernel's kill) leaves
    a start and no summary.json; the next run says so and history.jsonl keeps it. A finished
    run, resumed and finished again, is not reported."""
    workdir = tmp_path / "sft"
    setup(_config(), workdir)  # started, then "killed": no summary.json
    release_workdir_lock(workdir)
    capsys.readouterr()
    _stage(workdir, _config())
    out = capsys.readouterr().out
    assert "wrote no summary.json: it stopped on an error or was killed" in out
    assert "starting again" in out
    first, second = _history(workdir)
    assert second["after_unfinished_run"] == first["time"]
    _stage(workdir, _config())  # after a finished run: a plain resume
    assert "wrote no summary.json" not in capsys.readouterr().out
    assert "after_unfinished_run" not in _history(workdir)[-1]


# ------------------------------------------------------------------------------ study caches
def test_a_cache_is_reused_only_when_made_from_the_same_key(tmp_path):
    path, key = tmp_path / "pool.npz", {"pool": {"num_prompts": 32}, "seed": (0, 1)}
    assert not cache_is_current(path, key)  # not made yet
    path.write_bytes(b"pool")
    with pytest.raises(ConfigChangedError, match="records no config"):
        cache_is_current(path, key)
    record_cache_key(path, key)
    assert cache_is_current(path, {"pool": {"num_prompts": 32}, "seed": [0, 1]})
    with pytest.raises(ConfigChangedError, match=r"pool\.npz .*pool\.num_prompts: 32 -> 64"):
        cache_is_current(path, {"pool": {"num_prompts": 64}, "seed": (0, 1)})
    with config_changes_allowed():  # --allow_config_change: made again
        assert not cache_is_current(path, {"pool": {"num_prompts": 64}, "seed": (0, 1)})
    assert cache_digest(key) == cache_digest({"seed": [0, 1], "pool": {"num_prompts": 32}})
    assert cache_digest(key) != cache_digest({"pool": {"num_prompts": 64}, "seed": (0, 1)})


def test_a_record_of_an_older_fingerprint_format_is_checked_by_its_step(tmp_path, capsys):
    """upstream.json written before paths left the hash: the same upstream step resumes (with a
    warning), another step is stale; the resume rewrites the record in the current format."""
    _stage(tmp_path / "sft", _config())
    _stage(tmp_path / "ppo", _config(init_from=str(tmp_path / "sft")))
    records = tmp_path / "ppo" / "upstream.json"
    old = json.loads(records.read_text())
    old["init_from"].pop("format")
    old["init_from"]["config_sha256"] = "0" * 64  # hashed with the paths
    records.write_text(json.dumps(old))
    setup(_config(init_from=str(tmp_path / "sft")), tmp_path / "ppo")
    warning = capsys.readouterr().err
    assert "written by an older alignax: init_from is checked by its step" in warning
    assert json.loads(records.read_text())["init_from"]["format"] == 2
    records.write_text(json.dumps(old))
    _stage(tmp_path / "sft", _config(), step=3, allow_config_change=True)
    with pytest.raises(StaleUpstreamError, match="at step 2"):
        setup(_config(init_from=str(tmp_path / "sft")), tmp_path / "ppo")


def test_cached_json_reads_back_for_its_key_and_refuses_another(tmp_path):
    path, calls = tmp_path / "cache.json", []

    def compute(value):
        calls.append(value)
        return {"value": value}

    key = {"run": {"step": 3}, "steps": (1, 2)}  # a tuple keys like the list JSON gives back
    assert cached_json(path, key, lambda: compute(1)) == {"value": 1}
    same = {"run": {"step": 3}, "steps": [1, 2]}
    assert cached_json(path, same, lambda: compute(2)) == {"value": 1}
    other = {"run": {"step": 4}, "steps": [1, 2]}
    with pytest.raises(ConfigChangedError, match="run.step"):
        cached_json(path, other, lambda: compute(3))
    with config_changes_allowed(True):
        assert cached_json(path, other, lambda: compute(3)) == {"value": 3}
    assert calls == [1, 3]
    assert cached_json(path, other, lambda: compute(4)) == {"value": 3}


def test_cached_arrays_read_back_exactly_for_their_key_and_refuse_another(tmp_path):
    path, calls = tmp_path / "eval.npz", []

    def compute(value):
        calls.append(value)
        return {"counts": np.arange(4) * value, "kl": np.full(3, 0.1 * value, np.float32)}

    key = {"eval": {"num_samples": 8}}
    first = cached_arrays(path, key, lambda: compute(1))
    again = cached_arrays(path, {"eval": {"num_samples": 8}}, lambda: compute(2))
    assert set(again) == {"counts", "kl"} and calls == [1]
    for name, array in first.items():
        np.testing.assert_array_equal(again[name], array)
        assert again[name].dtype == array.dtype
    with pytest.raises(ConfigChangedError, match="eval.num_samples"):
        cached_arrays(path, {"eval": {"num_samples": 16}}, lambda: compute(3))
