"""Summaries of a preference file or of the built-in review task.

    python -m alignax.data.describe data/train.jsonl [--format auto] [--on-error skip]
    python -m alignax.data.describe --task review [--num-samples 4096] [--seed 0]

For a file: record counts (read/kept/skipped per reason), prompt and response length histograms
(whitespace words), label/rank balance, duplicate rate. For the review task: the gold-reward
distribution of generator samples (mean, std, quantiles, ascii histogram) and each term's mean.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Sequence

import numpy as np

from alignax.data import formats
from alignax.tasks import get_task


def ascii_histogram(values: Sequence[float], *, bins: int = 12, width: int = 40) -> str:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return "  (no values)"
    counts, edges = np.histogram(values, bins=bins)
    top = max(counts.max(), 1)
    return "\n".join(
        f"  [{lo:8.2f}, {hi:8.2f})  {'#' * round(width * c / top):<{width}} {c}"
        for lo, hi, c in zip(edges[:-1], edges[1:], counts)
    )


def _quantiles(values) -> str:
    qs = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
    return "  ".join(f"q{int(q * 100):02d}={np.quantile(values, q):.3f}" for q in qs)


def describe_file(path: str, *, format: str = "auto", on_error: str = "skip") -> str:
    examples, stats = formats.read_examples(path, format=format, on_error=on_error)
    lines = [f"file: {path}", stats.report()]
    if not examples:
        return "\n".join(lines)
    kinds = collections.Counter(e.kind for e in examples)
    lines.append(f"kinds: {dict(kinds)}")
    prompt_words = [len(e.prompt.split()) for e in examples]
    response_words = [len(r.split()) for e in examples for r in e.responses]
    lines.append(
        f"prompt length (words): mean {np.mean(prompt_words):.1f}, max {max(prompt_words)}"
    )
    lines.append(ascii_histogram(prompt_words, bins=8))
    if response_words:
        lines.append(
            f"response length (words): mean {np.mean(response_words):.1f}, "
            f"max {max(response_words)}"
        )
        lines.append(ascii_histogram(response_words, bins=8))
    comparisons = [e for e in examples if e.kind == "comparison"]
    if comparisons:
        ks = collections.Counter(len(e.responses) for e in comparisons)
        lines.append(f"responses per comparison: {dict(ks)}")
        pairs = [e for e in comparisons if len(e.responses) == 2]
        if pairs:
            longer = np.mean([len(e.responses[0]) > len(e.responses[1]) for e in pairs])
            lines.append(f"chosen longer than rejected (length bias): {longer:.1%}")
    unpaired = [e.label for e in examples if e.kind == "unpaired"]
    if unpaired:
        lines.append(f"label balance: desirable {np.mean(unpaired):.1%} of {len(unpaired)}")
    keys = [(e.prompt, e.responses, e.answer) for e in examples]
    duplicates = len(keys) - len(set(keys))
    prompts = [e.prompt for e in examples]
    lines.append(
        f"duplicate records: {duplicates / len(keys):.1%}; distinct prompts: "
        f"{len(set(prompts))} of {len(prompts)}"
    )
    return "\n".join(lines)


def describe_review(*, num_samples: int = 4096, seed: int = 0) -> str:
    if num_samples <= 0:
        raise ValueError(f"num_samples={num_samples}: must be a positive integer")
    task = get_task("review")
    prompts, responses = task.sample_texts(num_samples, seed=seed)
    batch = task.encode(prompts, responses)
    terms = task.gold_reward_terms_np(batch["tokens"], batch["loss_mask"])
    gold = terms["gold"]
    lengths = np.array([len(r) for r in responses])
    lines = [
        f"review task (config seed {task.config.seed}): {num_samples} generator samples "
        f"(sample seed {seed}), vocab {task.vocab_size} tokens",
        f"response length (tokens incl. EOS): mean {lengths.mean():.1f}, "
        f"min {lengths.min()}, max {lengths.max()}, no EOS {terms['no_eos'].mean():.1%}",
        f"gold reward: mean {gold.mean():.3f}, std {gold.std():.3f}, "
        f"min {gold.min():.3f}, max {gold.max():.3f}",
        "  " + _quantiles(gold),
        ascii_histogram(gold),
        "terms (mean / std): "
        + ", ".join(
            f"{k} {terms[k].mean():.3f} / {terms[k].std():.3f}"
            for k in ("sentiment", "repetition", "fluency", "no_eos", "raw")
        ),
        f"base statistics: fluency {task.base_fluency:.4f}, raw mean {task.base_raw_mean:.4f}, "
        f"raw std {task.base_raw_std:.4f}",
        "examples (gold, prompt || response):",
    ]
    order = np.argsort(gold)
    for i in (order[0], order[len(order) // 2], order[-1]):
        lines.append(f"  {gold[i]:+.2f}  {task.decode(prompts[i])} || {task.decode(responses[i])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alignax.data.describe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", nargs="?", help="a .jsonl or .parquet file")
    parser.add_argument("--task", choices=["review"], help="describe a built-in task instead")
    parser.add_argument("--format", default="auto")
    parser.add_argument("--on-error", default="skip", choices=["skip", "raise"])
    parser.add_argument("--num-samples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_samples <= 0:
        parser.error(f"--num-samples={args.num_samples}: must be a positive integer")
    if args.task:
        print(describe_review(num_samples=args.num_samples, seed=args.seed))
    elif args.path:
        print(describe_file(args.path, format=args.format, on_error=args.on_error))
    else:
        parser.error("give a file or --task review")


if __name__ == "__main__":
    main()
