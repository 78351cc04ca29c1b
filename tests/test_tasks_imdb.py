"""The IMDb task on a small review file the tests write: roles disjoint by construction, a gold
classifier that learns the file's sentiment, the jitted reward equal to a NumPy reference, the
datasets' layouts, errors that name the key or the line, and the cache."""

import csv

import jax
import numpy as np
import pytest

from alignax.data.tokenizer import SentencePieceTokenizer
from alignax.tasks import Annotator, ImdbTask, imdb_config
from alignax.tasks import imdb as imdb_lib

POSITIVE = ("wonderful", "superb", "delightful", "moving", "brilliant", "charming")
NEGATIVE = ("awful", "boring", "dreadful", "clumsy", "tedious", "painful")
FILLER = ("the", "film", "story", "actor", "scene", "plot", "was", "and", "with", "a", "of")


def _review(rng, words):
    body = [str(rng.choice(FILLER if rng.random() < 0.6 else words)) for _ in range(40)]
    return " ".join(body).capitalize() + ".<br /><br />The end."


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A CSV of 400 IMDb reviews (half positive) and 20 Rotten Tomatoes rows, and a
    sentencepiece tokenizer trained on it."""
    root = tmp_path_factory.mktemp("imdb")
    rng = np.random.default_rng(0)
    rows = [(_review(rng, POSITIVE if i % 2 else NEGATIVE), i % 2, "imdb") for i in range(400)]
    rows += [("a fine sentence", 1, "rotten_tomatoes")] * 20
    path = root / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "source"])
        writer.writerows(rows)
    tokenizer = SentencePieceTokenizer.train([r[0] for r in rows], vocab_size=120)
    tokenizer.save(root / "spm.model")
    return root


def _config(files, **overrides):
    config = imdb_config()
    settings = {
        "csv_path": str(files / "reviews.csv"),
        "tokenizer": str(files / "spm.model"),
        "cache_dir": str(files / "cache"),
        "max_review_tokens": 96,
        "num_buckets": 4096,
    }
    config.update({**settings, **overrides})
    return config


@pytest.fixture(scope="module")
def task(files):
    return ImdbTask(_config(files))


def test_roles_partition_the_reviews_by_their_text(task, files):
    rows = task.rows
    every = np.concatenate([rows["gold"], rows["train"], rows["eval"]])
    assert sorted(every) == list(range(400))  # the Rotten Tomatoes rows are left out
    assert all(len(rows[r]) for r in rows)
    texts, _ = imdb_lib.read_reviews(files / "reviews.csv")
    # The role is a function of the text alone: a review keeps it in any file.
    assert all(task._role(texts[i]) == "gold" for i in rows["gold"])
    assert all(task._role(texts[i]) == "eval" for i in rows["eval"])


def test_gold_classifier_learns_the_sentiment_and_the_reward_is_its_log_odds(task):
    assert task.gold_accuracy > 0.9  # on reviews it never saw
    encode = task.tokenizer.encode
    good = [encode("a wonderful superb film")] * 2
    bad = [encode("an awful boring film")] * 2
    batch = task.encode([[] for _ in range(4)], good + bad)
    reward = np.asarray(jax.jit(task.reward)(batch["tokens"], batch["loss_mask"]))
    assert reward[0] > 0 > reward[2]
    # The jitted reward equals the NumPy reference of the hashed-feature logistic regression.
    buckets, weight = imdb_lib.hashed_features(
        batch["tokens"], batch["loss_mask"], task.config.num_buckets, xp=np
    )
    reference = np.sum(task.weights[buckets] * weight, axis=1) + task.bias
    np.testing.assert_allclose(reward, reference, rtol=1e-5, atol=1e-6)
    # Only the response counts: not the prompt before it, nor the tokens after its mask.
    tokens = batch["tokens"].copy()
    tokens[batch["loss_mask"] == 0] = 7
    np.testing.assert_allclose(task.gold_reward_np(tokens, batch["loss_mask"]), reward, rtol=1e-6)
    prefixed = task.encode([bad[0]], [good[0]])
    np.testing.assert_allclose(
        task.gold_reward_np(prefixed["tokens"], prefixed["loss_mask"])[0], reward[0], rtol=1e-5
    )


def test_datasets_layouts(task):
    k, m = task.config.prompt_tokens, task.config.response_tokens
    prompts = task.prompt_dataset(16, seed=0, split="eval")
    assert prompts["prompt_tokens"].shape == (16, 1 + k)
    assert np.all(prompts["prompt_tokens"][:, 0] == task.bos_id)  # long reviews: no padding
    starts = {tuple(task.reviews[r][:k]) for r in task.rows["eval"]}
    assert all(tuple(row[1:]) in starts for row in prompts["prompt_tokens"])
    sft = task.sft_dataset(32, seed=0)
    positive = {tuple(task.reviews[r][: k + m]) for r in task.rows["train"] if task.labels[r]}
    for row, mask in zip(sft["tokens"], sft["input_mask"]):
        assert tuple(row[mask > 0][1:]) in positive
    assert np.all(sft["loss_mask"].sum(1) == m) and np.all(sft["loss_mask"][:, : 1 + k] == 0)
    text = task.pretraining_dataset(8, seed=0)
    assert np.all(text["loss_mask"][:, 1:] == text["input_mask"][:, 1:])
    pairs = task.label_comparisons(
        [task.tokenizer.encode("The film")] * 2,
        [task.tokenizer.encode("was awful"), task.tokenizer.encode("was wonderful")],
        2,
        Annotator(kind="hard"),
        np.random.default_rng(0),
    )
    assert pairs["gold_reward"][0, 0] > pairs["gold_reward"][0, 1]
    assert "wonderful" in task.decode(pairs["tokens"][0, 0])
    film = task.tokenizer.encode("film")
    assert task.decode([*film, task.vocab_size + 5, *film]) == f"film <{task.vocab_size + 5}> film"


def test_bad_input_names_the_key_or_the_line(files, tmp_path):
    with pytest.raises(ValueError, match="task.csv_path=.*no such file"):
        ImdbTask(_config(files, csv_path=str(tmp_path / "missing.csv")))
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label,source\n"good film",1,imdb\n"bad film",maybe,imdb\n')
    with pytest.raises(ValueError, match=r"bad.csv, line 3: .*label 'maybe'"):
        ImdbTask(_config(files, csv_path=str(bad)))
    headless = tmp_path / "headless.csv"
    headless.write_text("review,label\nx,1\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['source', 'text'\]"):
        ImdbTask(_config(files, csv_path=str(headless)))
    with pytest.raises(ValueError, match="task.max_review_tokens=16 must be at least"):
        ImdbTask(_config(files, max_review_tokens=16))


def test_without_a_tokenizer_the_task_trains_one_on_its_training_reviews(files):
    task = ImdbTask(_config(files, tokenizer="", spm_vocab_size=100))
    assert task.tokenizer_path.parent == files / "cache" and task.vocab_size == 100
    written = task.tokenizer_path.stat().st_mtime_ns
    again = ImdbTask(_config(files, tokenizer="", spm_vocab_size=100))
    assert again.tokenizer_path == task.tokenizer_path  # trained once, then read back
    assert again.tokenizer_path.stat().st_mtime_ns == written
    assert task.decode(task.tokenizer.encode("a wonderful film")) == "a wonderful film"


def test_the_gold_classifier_is_cached_per_setting(files, monkeypatch):
    first = ImdbTask(_config(files))
    monkeypatch.setattr(imdb_lib, "train_classifier", lambda *a, **k: 1 / 0)
    again = ImdbTask(_config(files))  # read back: nothing is trained
    np.testing.assert_array_equal(again.weights, first.weights)
    assert again.gold_accuracy == first.gold_accuracy
    with pytest.raises(ZeroDivisionError):  # another setting is another classifier
        ImdbTask(_config(files, num_buckets=2048))


def test_the_pipeline_runs_on_imdb_reviews_from_a_pretrained_checkpoint(files, tmp_path):
    """configs/pipeline.py:imdb_runlocal end to end on the test's review file, the base policy a
    pretrained checkpoint (`base_from`, here one exported by the test) instead of the pretrain
    stage: SFT, reward model, PPO and DPO train on real-text data and the report scores each
    policy with the gold classifier on held-out review openings."""
    import json

    from alignax.models import build_model
    from alignax.models.hf import save_hf
    from alignax.sharding import init_params, make_mesh
    from configs import pipeline as pipeline_config
    from experiments import pipeline

    config = pipeline_config.get_config("imdb_runlocal")
    with config.unlocked():
        config.task.update(
            csv_path=str(files / "reviews.csv"),
            tokenizer=str(files / "spm.model"),
            cache_dir=str(files / "cache"),
            max_review_tokens=96,
            num_buckets=4096,
        )
        # Models over the test tokenizer's 120 pieces (the preset's 4,096 fit the default one).
        config.model.vocab_size = 128
        config.stages.reward_model.model.vocab_size = 128
        model = build_model(config.model, heads=("lm",))
        pretrained = init_params(model, jax.random.key(3), make_mesh(config.mesh))
        config.base_from = str(save_hf(tmp_path / "base", config.model, pretrained))
    summary = pipeline.run(config, tmp_path)
    assert not (tmp_path / "seed0" / "pretrain").exists()
    for policy in ("base", "sft", "ppo", "dpo"):
        assert np.isfinite(summary[f"{policy}/gold_reward"])
        assert summary[f"{policy}/response_length"] <= config.task.response_tokens
    assert summary["sft/kl_to_sft"] == 0.0
    stage = json.loads((tmp_path / "seed0" / "reward_model" / "config.json").read_text())
    assert stage["task_name"] == "imdb" and stage["labels"]["max_new_tokens"] == 24
    sft_stage = json.loads((tmp_path / "seed0" / "sft" / "config.json").read_text())
    assert sft_stage["init_from"] == config.base_from
    report = (tmp_path / "results.md").read_text()
    assert "Written by" in report and "Task imdb" in report and "held-out accuracy" in report
    assert report.startswith("### Pipeline: pretrained base -> SFT")
