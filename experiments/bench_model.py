"""Model benchmark: train-step tokens/s and sampling tokens/s (KV cache vs full recompute).

    python -m experiments.bench_model                      # tiny and small presets
    python -m experiments.bench_model --presets small --new_tokens 64 --repeats 3
    python -m experiments.bench_model --workdir runs/bench   # also writes runs/bench/results.md

Prints one table row per preset. Each number is the median over `--repeats` timed calls after a
compile-and-warm-up call; the KV-cache speed-up is the ratio of the two sampling rows measured in
the same process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import optax

from alignax import objectives, sharding, steps
from alignax.models import build_model
from alignax.provenance import provenance
from alignax.sampling import sample
from alignax.state import TrainState
from configs.models import mesh_config, model_config


def _median_seconds(fn, repeats):
    jax.block_until_ready(fn())  # compile + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(preset, *, batch, seq_len, prompt_len, new_tokens, repeats):
    model = build_model(model_config(preset))
    mesh = sharding.make_mesh(mesh_config(preset))
    params = sharding.init_params(model, jax.random.key(0), mesh)
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size

    tx = optax.adamw(1e-4)
    state = TrainState.create(params, tx, mesh)
    tokens = rng.integers(3, vocab, size=(batch, seq_len)).astype(np.int32)
    ones = np.ones_like(tokens)
    batch_data = sharding.shard_batch(
        {"tokens": tokens, "input_mask": ones, "loss_mask": ones}, mesh
    )
    train_step = steps.jit_step(
        steps.make_train_step(objectives.lm_loss_fn(model), tx), state, batch_data, mesh
    )
    holder = [state]

    def one_train_step():
        holder[0], metrics = train_step(holder[0], batch_data, jax.random.key(0))
        return metrics["loss"]

    train_s = _median_seconds(one_train_step, repeats)

    params = holder[0].params  # the train step donated the original buffers
    prompts = rng.integers(3, vocab, size=(batch, prompt_len)).astype(np.int32)
    prompt_mask = np.ones_like(prompts)

    def sampler(use_cache):
        return lambda: (
            sample(
                model,
                params,
                prompts,
                prompt_mask,
                jax.random.key(1),
                max_new_tokens=new_tokens,
                eos_id=-1,
                use_cache=use_cache,
            ).tokens
        )

    cached_s = _median_seconds(sampler(True), repeats)
    recompute_s = _median_seconds(sampler(False), repeats)
    return {
        "preset": preset,
        "params": model.config.num_params(),
        "train_tok_s": batch * seq_len / train_s,
        "kv_tok_s": batch * new_tokens / cached_s,
        "recompute_tok_s": batch * new_tokens / recompute_s,
        "speedup": recompute_s / cached_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--prompt_len", type=int, default=16)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default="", help="where to write results.md (optional)")
    args = parser.parse_args()
    prov = provenance()
    setting = (
        f"batch {args.batch}, {args.seq_len}-token training sequences, {args.prompt_len}-token "
        f"prompts, {args.new_tokens} new tokens, median of {args.repeats} calls"
    )
    print(f"devices: {jax.devices()}  {setting}")
    header = (
        f"| {'preset':8s} | {'params':>8s} | {'train tok/s':>12s} | {'sample tok/s (KV)':>17s} "
        f"| {'sample tok/s (recompute)':>24s} | {'KV speed-up':>11s} |"
    )
    rows = [header, "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"]
    print("\n".join(rows))
    for preset in args.presets:
        r = bench(
            preset,
            batch=args.batch,
            seq_len=args.seq_len,
            prompt_len=args.prompt_len,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
        )
        rows.append(
            f"| {r['preset']:8s} | {r['params'] / 1e6:7.2f}M | {r['train_tok_s']:12.0f} | "
            f"{r['kv_tok_s']:17.0f} | {r['recompute_tok_s']:24.0f} | {r['speedup']:10.1f}x |"
        )
        print(rows[-1], flush=True)
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        text = [
            "### Speed (CPU)",
            "",
            f"Written by `{prov['command']}` at commit `{prov['commit']}`"
            + (" (with uncommitted changes)" if prov["dirty"] else "")
            + f" on {jax.devices()[0].device_kind} ({os.cpu_count()} cores); {setting}. "
            "Absolute times vary from run to run on a shared machine; ratios less.",
            "",
            *rows,
        ]
        (workdir / "results.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
