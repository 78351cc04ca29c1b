"""The KTO workflow (alignax/workflows/unpaired.py): unpaired examples from annotated pairs and
from a KTO file, mismatched pairs for the reference point, and an end-to-end run on runlocal
settings."""

import json

import numpy as np
import pytest

from alignax.workflows import unpaired
from configs import kto as kto_config
from tests.helpers import preset_config, short_run


def test_unpair_splits_pairs_into_labelled_examples():
    """Pair n becomes rows 2n (chosen, label 1) and 2n + 1 (rejected, label 0)."""
    tokens = np.arange(2 * 2 * 3).reshape(2, 2, 3)
    pairs = {"tokens": tokens, "input_mask": tokens > 0, "loss_mask": tokens % 2}
    out = unpaired.unpair(pairs)
    np.testing.assert_array_equal(out["tokens"], tokens.reshape(4, 3))
    np.testing.assert_array_equal(out["label"], [1, 0, 1, 0])


def test_mismatched_pairs_join_a_prompt_with_another_completion():
    """Row i of the kl_* arrays is example i's prompt then example (i + k)'s completion (k = 1
    for two examples), with the loss mask on the completion only."""
    examples = {
        # prompt [1, 5] + completion [6, 7, 2] | prompt [1, 8, 9] + completion [2]
        "tokens": np.array([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]]),
        "input_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]),
        "loss_mask": np.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0]]),
        "label": np.array([1, 0]),
    }
    out = unpaired.with_mismatched_pairs(examples, seed=0)
    np.testing.assert_array_equal(out["kl_tokens"], [[1, 5, 2, 0, 0, 0], [1, 8, 9, 6, 7, 2]])
    np.testing.assert_array_equal(out["kl_loss_mask"], [[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(out["kl_input_mask"], [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])


def test_kto_file_gives_labelled_examples(tmp_path, monkeypatch):
    """A {prompt, completion, label} JSONL file is read, once, as unpaired examples with its
    labels; a quarter of its prompts (5 of 20) are held out with both their completions."""
    from alignax.data import sources
    from alignax.data.tokenizer import SentencePieceTokenizer

    read_examples = sources.read_examples

    rng = np.random.default_rng(0)
    words = {1: ["great", "lovely", "superb"], 0: ["awful", "boring", "dull"]}
    records = [
        {
            "prompt": f"the film {i // 2}",  # 20 prompts, a good and a bad completion each
            "completion": f"was {words[i % 2][rng.integers(3)]}.",
            "label": bool(i % 2),
        }
        for i in range(40)
    ]
    path = tmp_path / "kto.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    texts = [r["prompt"] for r in records] + [r["completion"] for r in records]
    SentencePieceTokenizer.train(texts, vocab_size=40).save(tmp_path / "spm.model")
    config = preset_config(
        kto_config,
        **{
            "data.path": str(path),
            "data.tokenizer": str(tmp_path / "spm.model"),
            "data.eval_fraction": 0.25,
        },
    )
    reads = []
    monkeypatch.setattr(
        sources, "read_examples", lambda *a, **k: reads.append(a) or read_examples(*a, **k)
    )
    train, evaluation, task = unpaired.build_examples(config, mesh=None)
    assert len(reads) == 1  # the task reads the file; the examples are its records
    assert len(train["label"]) == 30 and len(evaluation["label"]) == 10
    # The file is the task: its held-out prompts are what the evaluation samples.
    held_out = {task.records[i].prompt for i in task.sample_prompts(50, 0, split="eval")}
    assert len(held_out) == 5 and held_out <= {r["prompt"] for r in records}
    assert 0 < train["label"].mean() < 1
    assert np.all(train["kl_loss_mask"].sum(1) > 0)


@pytest.mark.slow  # compilation: ~1.5 min on a loaded 2-core CPU
def test_kto_end_to_end_on_runlocal_settings(tmp_path):
    """At step 0 policy = reference, so u = z0 = 0 and every example's KTO loss is 1 - s(0):
    the held-out loss is exactly 0.5. A few steps on annotated generator pairs lower it and give
    desirable held-out examples the higher implicit reward."""
    overrides = {
        "labels.source": "generator",
        # a one-layer model: compilation dominates the run time
        "model.num_layers": 1,
        "model.d_model": 32,
        "model.num_heads": 2,
        "model.num_kv_heads": 1,
        "model.mlp_dim": 64,
        "pairs.num_pairs": 128,
        "pairs.num_eval_pairs": 32,
        "eval.num_prompts": 0,  # no sampling: the test checks the loss
        "eval.max_new_tokens": 8,
        "train.steps": 30,
        "train.checkpoint_every": 30,
        "train.batch_size": 16,
        "optimizer.learning_rate": 3e-3,
        "optimizer.warmup_steps": 1,
    }
    summary = unpaired.run(preset_config(kto_config, **short_run(**overrides)), tmp_path)
    assert summary["initial_eval_loss"] == pytest.approx(0.5, abs=1e-6)
    assert summary["eval_loss"] < 0.5 and summary["eval_margin"] > 0, summary
