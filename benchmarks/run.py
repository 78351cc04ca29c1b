"""Every speed comparison in one command, printed as tables and written to `--out`:

    pip install -r benchmarks/requirements.txt     # the peers (TRL, PEFT); optional
    python -m benchmarks.run --out runs/bench      # about 10 minutes on 2 CPU cores
    python -m benchmarks.run --only smollm2        # the real model's steps, about 12 minutes
    python -m experiments.publish speed runs/bench # its tables into docs/results/speed.md

Every timed side is read against its roofline (benchmarks/roofline.py): its model FLOPs (one
count for every step) over its framework's float32 matmul peak, measured interleaved with it.

1. DPO step: alignax (and its variants: the LM head at response positions only, the reference
   precomputed, bf16 compute) against TRL's DPOTrainer (PyTorch) and Google Tunix's DPOTrainer
   (JAX, in its own virtual environment: `--tunix-python`, benchmarks/requirements-tunix.txt),
   same weights, shape, batch, optimizer.
2. SFT and reward-model steps at the same shape. No peer.
3. Sampling with a KV cache: alignax against Hugging Face `generate`, at 64 and 256 new tokens
   (and alignax without its cache at 64: what the cache saves).
4. GRPO iteration (rollout, scoring, update): alignax against TRL's GRPOTrainer, same weights,
   prompts, group size and loss (benchmarks/grpo_iteration.py). No target: measured only.
5. Train-step model FLOPs utilisation of the `small` preset.
6. Scaling (benchmarks/scaling.py): the `small` LM step's time and XLA memory against batch and
   length; the compile time of every step kind; a PPO iteration split into its parts. No peer.
7. Memory (benchmarks/memory.py): SmolLM2-135M SFT and DPO steps, full fine-tuning against LoRA,
   by XLA's accounting of the compiled steps. No peer.
8. SmolLM2-135M (benchmarks/smollm2.py; only with `--only smollm2`): DPO step, full and LoRA r8,
   against TRL (+ PEFT), and sampling 8 and 32 prompts against `generate`.

Cases of a comparison run interleaved (A B A B ... after warm-up; see benchmarks/common.py) and
are reported as medians with the min-max range; ratios are of medians, with the quartiles and range
of the per-round ratios. Each target prints PASS or FAIL. A missing peer is skipped with the
reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import jax

from alignax.models import ModelConfig, build_model
from alignax.models.presets import model_config
from alignax.provenance import provenance, written_by
from alignax.runtime import huge_pages_on, use_transparent_huge_pages
from benchmarks import (
    dpo_step,
    grpo_iteration,
    memory,
    mfu,
    roofline,
    sampling,
    scaling,
    smollm2,
)
from benchmarks.common import (
    Shape,
    carried,
    interleave,
    markdown_table,
    one_device_mesh,
    speedup_spread,
)
from benchmarks.programs import Placement, offline_programs

DPO_TARGET = 1.5  # alignax at least this many times faster than TRL
TUNIX_TARGET = 1.5  # than Google Tunix's DPO step
SAMPLING_TARGET = 2.0  # than Hugging Face generate
ROOFLINE_TARGET = 0.75  # the DPO, SFT and reward-model steps' fraction of the roofline
MFU_TARGET = 0.45
SMOLLM2_ROOFLINE_TARGET = 0.6  # SmolLM2-135M's DPO steps, full and LoRA
SMOLLM2_ROUNDS = 3  # at most: a step takes seconds
BENCHES = ("dpo", "steps", "sampling", "grpo", "mfu", "scaling", "memory", "smollm2")
SLOW = ("smollm2",)  # run only when named in --only


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def compare(cases: dict, frameworks: dict, flops: dict, rounds: int, warmup: int = 2):
    """Times `cases` ({side: blocking call}) interleaved with the matmul peak cases of their
    frameworks (`frameworks`: {side: 'JAX' | 'torch'}), and reads each side against its roofline
    (`flops`: {side: model FLOPs}). Returns (timings of the sides, {framework: peak FLOP/s},
    table rows [side, median ms, range ms, model GFLOP, GFLOP/s, fraction of the roofline])."""
    used = [frameworks[name] for name in cases]
    timed = interleave(cases | roofline.peak_cases(used), rounds=rounds, warmup=warmup)
    peaks = roofline.peaks(timed)
    timings = {name: t for name, t in timed.items() if not roofline.is_peak_case(name)}
    rows = []
    for name, t in timings.items():
        rate = flops[name] / t.median
        rows.append(
            [
                name,
                f"{t.median * 1e3:.0f}",
                t.spread(),
                f"{flops[name] / 1e9:.1f}",
                f"{rate / 1e9:.0f}",
                f"{rate / peaks[frameworks[name]]:.1%} of {frameworks[name]}'s",
            ]
        )
    return timings, peaks, rows


COMPARE_HEADER = ["side", "median ms", "range ms", "model GFLOP", "GFLOP/s", "roofline"]


def peak_rates(peaks: dict) -> str:
    return ", ".join(f"{name} {rate / 1e9:.0f}" for name, rate in peaks.items())


def peaks_line(peaks: dict) -> str:
    return f"float32 matmul peak in this run (GFLOP/s): {peak_rates(peaks)}."


def roofline_record(timings, peaks, frameworks, flops) -> dict:
    return {
        "peak_gflops": {name: rate / 1e9 for name, rate in peaks.items()},
        "sides": {
            name: {
                "median_s": t.median,
                "rounds_s": t.seconds,
                "model_gflop": flops[name] / 1e9,
                "roofline_fraction": flops[name] / t.median / peaks[frameworks[name]],
            }
            for name, t in timings.items()
        },
    }


@dataclasses.dataclass
class Side:
    """One side of a comparison: its blocking call (None: skipped, `about` says why), the peak
    it is read against ('JAX', 'JAX bf16' or 'torch'), its model FLOPs, what it is, and for a
    peer the speed-up alignax should reach over it (None: no target)."""

    run: Callable[[], object] | None
    framework: str
    flops: float
    about: str = ""
    target: float | None = None


def versus_peers(
    description: str,
    ours: dict[str, Side],
    peers: dict[str, Side],
    rounds: int,
    *,
    roofline_target: float | None,
):
    """alignax's step (the first of `ours`; the others are variants of it) against its peers'
    twins, every side against its roofline: the table, the roofline verdict of each of `ours`
    (against `roofline_target`; None: none) and the speed-up over each peer present."""
    sides = {name: side for name, side in (ours | peers).items() if side.run is not None}
    frameworks = {name: side.framework for name, side in sides.items()}
    flops = {name: side.flops for name, side in sides.items()}
    timings, peaks, rows = compare(
        {name: side.run for name, side in sides.items()}, frameworks, flops, rounds
    )
    for side in sides.values():
        getattr(side.run, "close", lambda: None)()
    record = roofline_record(timings, peaks, frameworks, flops)
    record["peers"] = {name: side.about for name, side in peers.items()}
    lines = [
        f"{description} Peers: " + "; ".join(side.about for side in peers.values()) + ".",
        "",
        markdown_table(COMPARE_HEADER, rows),
        "",
        peaks_line(peaks),
    ]
    if roofline_target is not None:
        fractions = [
            f"{name} {record['sides'][name]['roofline_fraction']:.1%} "
            f"({_verdict(record['sides'][name]['roofline_fraction'] >= roofline_target)})"
            for name in ours
        ]
        lines.append(f"Of the roofline (target {roofline_target:.0%}): " + "; ".join(fractions))
    baseline = next(iter(ours))
    for name, peer in peers.items():
        if name not in timings:
            continue
        ratio = timings[name].median / timings[baseline].median
        record["sides"][name]["speedup"] = ratio
        verdict = (
            "no target"
            if peer.target is None
            else f"target {peer.target}x: {_verdict(ratio >= peer.target)}"
        )
        spread = speedup_spread(timings[name], timings[baseline])
        lines.append(f"{baseline} / {name} speed-up: {ratio:.2f}x (per round: {spread}; {verdict})")
    return "\n".join(lines), record


def bench_dpo(shape: Shape, params, rounds: int, tunix_python: str | None) -> tuple[str, dict]:
    pairs = dpo_step.token_pairs(shape)
    config = shape.config()
    flops = roofline.dpo_step_flops(config, shape.batch, shape.length)
    # A reference precomputed once per pass over the data is not in the step.
    train_flops = roofline.train_step_flops(config, 2 * shape.batch, shape.length)
    variant = functools.partial(dpo_step.alignax_step, shape, params, pairs)
    ours = {
        "alignax": Side(variant(), "JAX", flops),
        "alignax, LM head at responses": Side(variant(scored_logits_only=True), "JAX", flops),
        "alignax, reference precomputed": Side(
            variant(precomputed_reference=True), "JAX", train_flops
        ),
        "alignax, bf16 compute": Side(variant(dtype="bfloat16"), "JAX bf16", flops),
    }
    trl_run, trl_about = dpo_step.trl_step(shape, params, pairs)
    tunix_run, tunix_about = dpo_step.tunix_step(shape, params, pairs, tunix_python)
    peers = {
        "TRL": Side(trl_run, "torch", flops, trl_about, DPO_TARGET),
        "Tunix": Side(tunix_run, "JAX", flops, tunix_about, TUNIX_TARGET),
    }
    description = (
        f"DPO step: {shape.describe()}; {shape.batch} pairs of {shape.prompt_len} prompt + "
        f"{shape.response_len} response tokens; sigmoid loss, beta {dpo_step.BETA}, AdamW, "
        "reference forward in the step (where precomputed, the step's model FLOPs are the "
        "trained pass's alone); bf16 compute is read against the bf16 matmul peak."
    )
    return versus_peers(description, ours, peers, rounds, roofline_target=ROOFLINE_TARGET)


def bench_steps(shape: Shape, rounds: int) -> tuple[str, dict]:
    """alignax's SFT and reward-model steps at the DPO comparison's shape (no peer)."""
    config = shape.config()
    programs = offline_programs(
        shape.model_config(), Placement(one_device_mesh()), shape.batch, shape.length, kto=False
    )
    names = {"SFT": "SFT", "reward model": "reward model (Bradley-Terry)"}
    cases = {name: carried(*programs[key], jax.random.key(0)) for name, key in names.items()}
    flops = {
        "SFT": roofline.train_step_flops(config, shape.batch, shape.length),
        "reward model": roofline.train_step_flops(
            config, 2 * shape.batch, shape.length, lm_head=False
        ),
    }
    frameworks = dict.fromkeys(cases, "JAX")
    timings, peaks, rows = compare(cases, frameworks, flops, rounds)
    record = roofline_record(timings, peaks, frameworks, flops)
    verdicts = [
        f"{name} at {side['roofline_fraction']:.1%} (target {ROOFLINE_TARGET:.0%}: "
        f"{_verdict(side['roofline_fraction'] >= ROOFLINE_TARGET)})"
        for name, side in record["sides"].items()
    ]
    lines = [
        f"SFT and reward-model steps: {shape.describe()}; SFT on {shape.batch} sequences, the "
        f"reward model (scalar head, Bradley-Terry) on {shape.batch} pairs, of {shape.length} "
        f"tokens, the second half scored; AdamW. No peer.",
        "",
        markdown_table(COMPARE_HEADER, rows),
        "",
        peaks_line(peaks),
        "Of the roofline: " + "; ".join(verdicts) + ".",
    ]
    return "\n".join(lines), record


def bench_sampling(shape: Shape, params, rounds: int) -> tuple[str, dict]:
    prompt_tokens = sampling.prompts(shape)
    hf, peer = sampling.hf_model(shape, params)
    rows, record, verdicts, peak_lines = [], {}, [], []
    frameworks = {"alignax": "JAX", "alignax, no cache": "JAX", "HF generate": "torch"}
    for new_tokens in (64, 256):
        cases = {"alignax": sampling.alignax_sampler(shape, params, prompt_tokens, new_tokens)}
        if new_tokens == 64:
            cases["alignax, no cache"] = sampling.alignax_sampler(
                shape, params, prompt_tokens, new_tokens, use_cache=False
            )
        if hf is not None:
            cases["HF generate"] = sampling.hf_sampler(hf, prompt_tokens, new_tokens)
        flops = roofline.sampling_flops(shape.config(), shape.batch, shape.prompt_len + new_tokens)
        flops = dict.fromkeys(cases, flops)
        timings, peaks, table_rows = compare(cases, frameworks, flops, rounds)
        rate = {n: shape.batch * new_tokens / t.median for n, t in timings.items()}
        rows += [[str(new_tokens), row[0], f"{rate[row[0]]:.0f}", *row[1:]] for row in table_rows]
        record[str(new_tokens)] = roofline_record(timings, peaks, frameworks, flops)
        record[str(new_tokens)]["tokens_per_s"] = rate
        if hf is not None:
            ratio = rate["alignax"] / rate["HF generate"]
            record[str(new_tokens)]["speedup"] = ratio
            spread = speedup_spread(timings["HF generate"], timings["alignax"])
            verdicts.append(
                f"{new_tokens} new tokens: {ratio:.2f}x (per round: {spread}; target "
                f"{SAMPLING_TARGET}x: {_verdict(ratio >= SAMPLING_TARGET)})"
            )
        peak_lines.append(f"{new_tokens} new tokens: {peak_rates(peaks)}")
    lines = [
        f"Sampling (KV cache): {shape.describe()}; {shape.batch} prompts of {shape.prompt_len} "
        f"tokens, temperature 1. Peer: {peer}. Decoding reads every weight and the cache once per "
        "token, so it is bound by memory bandwidth: its fraction of the matmul roofline is small "
        "by nature.",
        "",
        markdown_table(["new tokens", "side", "tokens/s", *COMPARE_HEADER[1:]], rows),
    ]
    if verdicts:
        lines += ["", "alignax / HF speed-up: " + "; ".join(verdicts)]
    lines += ["", "float32 matmul peak timed beside them (GFLOP/s): " + "; ".join(peak_lines) + "."]
    return "\n".join(lines), record


def bench_grpo(shape: Shape, params, rounds: int) -> tuple[str, dict]:
    prompt_tokens = grpo_iteration.prompts(shape)
    ours = grpo_iteration.alignax_iteration(shape, params, prompt_tokens)
    theirs, peer = grpo_iteration.trl_iteration(shape, params, prompt_tokens)
    rows = len(prompt_tokens) * grpo_iteration.GROUP
    description = (
        f"GRPO iteration: {shape.describe()}; {len(prompt_tokens)} prompts of "
        f"{shape.prompt_len} tokens x groups of {grpo_iteration.GROUP}, {shape.response_len} new "
        f"tokens each; sampling with a KV cache, scoring, group advantages, one AdamW step on "
        f"the clipped loss with the reference KL (beta {grpo_iteration.BETA})."
    )
    flops = roofline.grpo_iteration_flops(shape.config(), rows, shape.length)
    return versus_peers(
        description,
        {"alignax": Side(ours, "JAX", flops)},
        {"TRL": Side(theirs, "torch", flops, peer)},
        rounds,
        roofline_target=None,
    )


def bench_mfu(rounds: int, preset: str = "small", batch: int = 8, length: int = 128):
    step, flops = mfu.train_step(preset, batch, length)
    timings, peaks, rows = compare(
        {"train step": step}, {"train step": "JAX"}, {"train step": flops}, rounds
    )
    ratio = flops / timings["train step"].median / peaks["JAX"]
    lines = [
        f"Train-step MFU: preset `{preset}`, {batch} x {length} tokens, float32, AdamW; peak = "
        f"best float32 matmul rate measured in the same run.",
        "",
        markdown_table(COMPARE_HEADER, rows),
        "",
        peaks_line(peaks),
        f"MFU {ratio:.1%} of the {peaks['JAX'] / 1e9:.0f} GFLOP/s peak (target {MFU_TARGET:.0%}: "
        f"{_verdict(ratio >= MFU_TARGET)})",
    ]
    return "\n".join(lines), {
        "peak_gflops": peaks["JAX"] / 1e9,
        "achieved_gflops": flops / timings["train step"].median / 1e9,
        "mfu": ratio,
    }


def bench_smollm2(rounds: int) -> tuple[str, dict]:
    """SmolLM2-135M's DPO step (full and LoRA) against TRL (+ PEFT), and its sampling against
    `generate` (benchmarks/smollm2.py); `SMOLLM2_ROUNDS` rounds at most (a step takes seconds)."""
    loaded = smollm2.weights()
    if loaded is None:
        return "SmolLM2-135M: skipped (requirements-data.txt's GGUF is not installed).", {}
    config, params = loaded
    dims = ModelConfig.from_config(config)
    rounds = min(rounds, SMOLLM2_ROUNDS)
    length = smollm2.PROMPT + smollm2.RESPONSE
    token_pairs = smollm2.pairs(dims.vocab_size)
    flops = {
        "full": roofline.dpo_step_flops(dims, smollm2.PAIRS, length),
        "LoRA": roofline.lora_dpo_step_flops(dims, smollm2.PAIRS, length),
    }
    cases, frameworks, case_flops, abouts = {}, {}, {}, []
    for setup, rank in (("full", 0), ("LoRA", smollm2.LORA_RANK)):
        cases[f"alignax, {setup}"] = smollm2.alignax_dpo(config, params, token_pairs, rank)
        theirs, about = smollm2.trl_dpo(config, params, token_pairs, rank)
        abouts.append(about)
        if theirs is not None:
            cases[f"TRL, {setup}"] = theirs
    cases["alignax, LoRA, LM head at responses"] = smollm2.alignax_dpo(
        config, params, token_pairs, smollm2.LORA_RANK, scored_logits_only=True
    )
    for name in cases:
        frameworks[name] = "JAX" if name.startswith("alignax") else "torch"
        case_flops[name] = flops[name.split(", ")[1]]
    timings, peaks, rows = compare(cases, frameworks, case_flops, rounds, warmup=1)
    record = {"dpo": roofline_record(timings, peaks, frameworks, case_flops)}
    verdicts = []
    for setup in flops:
        ours = f"alignax, {setup}"
        fraction = record["dpo"]["sides"][ours]["roofline_fraction"]
        verdict = (
            f"{ours}: {fraction:.1%} of the roofline (target {SMOLLM2_ROOFLINE_TARGET:.0%}: "
            f"{_verdict(fraction >= SMOLLM2_ROOFLINE_TARGET)})"
        )
        if f"TRL, {setup}" in timings:
            ratio = timings[f"TRL, {setup}"].median / timings[ours].median
            record["dpo"]["sides"][ours]["speedup"] = ratio
            verdict += f", {ratio:.2f}x TRL's"
        verdicts.append(verdict)
    lines = [
        f"SmolLM2-135M-Instruct ({dims.num_layers} layers, d {dims.d_model}, GQA "
        f"{dims.num_heads}/{dims.num_kv_heads}, vocab {dims.vocab_size}, "
        f"{'tied' if dims.tie_embeddings else 'untied'}; the shipped GGUF "
        f"dequantised to float32 on every side): DPO step on {smollm2.PAIRS} pairs of "
        f"{smollm2.PROMPT} prompt + {smollm2.RESPONSE} response tokens, sigmoid loss, beta "
        f"{dpo_step.BETA}, AdamW; full fine-tuning (reference copy) and LoRA r"
        f"{smollm2.LORA_RANK} on q and v (the base as reference; its model FLOPs: the forward, "
        f"the backward to the activations and the reference forward). {rounds} rounds after one "
        f"warm-up. Peers: " + "; ".join(dict.fromkeys(abouts)) + ".",
        "",
        markdown_table(COMPARE_HEADER, rows),
        "",
        peaks_line(peaks),
        "; ".join(verdicts) + ".",
    ]
    hf, peer = sampling.hf_model(smollm2._Shape(config), params)
    sample_rows = []
    for count in smollm2.SAMPLING_PROMPTS:
        prompt_tokens = smollm2.sampling_prompts(dims.vocab_size, count)
        cases = {"alignax": smollm2.alignax_sampler(config, params, prompt_tokens)}
        if hf is not None:
            cases["HF generate"] = sampling.hf_sampler(hf, prompt_tokens, smollm2.NEW_TOKENS)
        total = prompt_tokens.shape[1] + smollm2.NEW_TOKENS
        sample_flops = dict.fromkeys(cases, roofline.sampling_flops(dims, count, total))
        sample_frameworks = {"alignax": "JAX", "HF generate": "torch"}
        timings, peaks, table = compare(cases, sample_frameworks, sample_flops, rounds, warmup=1)
        rate = {n: count * smollm2.NEW_TOKENS / t.median for n, t in timings.items()}
        sample_rows += [[str(count), row[0], f"{rate[row[0]]:.0f}", *row[1:]] for row in table]
        record[f"sampling_{count}"] = roofline_record(
            timings, peaks, sample_frameworks, sample_flops
        )
        if hf is not None:
            record[f"sampling_{count}"]["speedup"] = rate["alignax"] / rate["HF generate"]
    lines += [
        "",
        f"Sampling SmolLM2-135M: prompts of 64 tokens, {smollm2.NEW_TOKENS} new tokens, "
        f"temperature 1, KV cache. Peer: {peer}. llama.cpp: not compared (no wheel of "
        "llama-cpp-python for this platform in the package registry).",
        "",
        markdown_table(["prompts", "side", "tokens/s", *COMPARE_HEADER[1:]], sample_rows),
    ]
    if hf is not None:
        lines += [
            "",
            "alignax / HF speed-up: "
            + "; ".join(
                f"{count} prompts {record[f'sampling_{count}']['speedup']:.2f}x"
                for count in smollm2.SAMPLING_PROMPTS
            ),
        ]
    return "\n".join(lines), record


def bench_scaling(rounds: int, preset: str = "small") -> tuple[str, dict]:
    shapes = [(4, 128), (8, 128), (16, 128), (8, 64), (8, 256)]
    table, steps_record = scaling.scaling_table(preset, shapes, rounds)
    programs = scaling.step_programs(preset, batch=8, length=128, prompt_len=32, new_tokens=32)
    compile_text, compile_record, compiled = scaling.compile_table(programs)
    split_text, split_record = scaling.rl_split(programs, compiled, rounds)
    lines = [
        f"Scaling: preset `{preset}` ({model_config(preset).num_layers} layers, d "
        f"{model_config(preset).d_model}), LM train step with AdamW, float32; memory is XLA's "
        "accounting of the compiled step (arguments + outputs + temporaries, donations counted "
        "once).",
        "",
        table,
        "",
        "Compile time of each step kind (batch 8 x 128 tokens; RL: 8 prompts of 32 tokens, 32 new "
        "tokens, GRPO in groups of 4), lowering included, no compilation cache:",
        "",
        compile_text,
        "",
        "A PPO iteration (value head on the policy, 2 epochs of 2 minibatches) split into its "
        "parts, by difference of nested programs' median times:",
        "",
        split_text,
    ]
    return "\n".join(lines), {
        "steps": steps_record,
        "compile_s": compile_record,
        "ppo_split_ms": split_record,
    }


def bench_memory() -> tuple[str, dict]:
    table, records = memory.memory_table()
    config = model_config(memory.PRESET)
    lines = [
        f"Training memory of SmolLM2-135M (preset `{memory.PRESET}`: {config.num_layers} layers, "
        f"d {config.d_model}, GQA {config.num_heads}/{config.num_kv_heads}, vocab "
        f"{config.vocab_size}, float32), AdamW; SFT on {memory.BATCH} rows of "
        f"{memory.LENGTH} tokens, DPO on {memory.BATCH} pairs of {memory.LENGTH}-token sequences "
        "with the reference forward in the step. XLA's accounting of the compiled step on this "
        "backend (peak = arguments + outputs + temporaries, donated buffers once); the steps "
        "are compiled, not run. Full DPO keeps a frozen reference copy; LoRA's base is the "
        "reference.",
        "",
        table,
    ]
    return "\n".join(lines), {"memory": records}


def main():
    use_transparent_huge_pages()  # both sides run in this process, so both get it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench", help="directory for results.md/.json")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHES,
        default=[name for name in BENCHES if name not in SLOW],
    )
    parser.add_argument(
        "--tunix-python",
        default=os.environ.get("ALIGNAX_TUNIX_PYTHON"),
        help="python of a virtual environment made from benchmarks/requirements-tunix.txt "
        "(or $ALIGNAX_TUNIX_PYTHON); without it the Tunix side is skipped",
    )
    args = parser.parse_args()
    shape = Shape()
    # On the host: each side places its own copy (alignax's train step donates its buffers).
    params = jax.device_get(build_model(shape.model_config()).init(jax.random.key(0)))
    benches = {
        "dpo": lambda: bench_dpo(shape, params, args.rounds, args.tunix_python),
        "steps": lambda: bench_steps(shape, args.rounds),
        "sampling": lambda: bench_sampling(shape, params, args.rounds),
        "grpo": lambda: bench_grpo(shape, params, args.rounds),
        "mfu": lambda: bench_mfu(args.rounds),
        "scaling": lambda: bench_scaling(args.rounds),
        "memory": bench_memory,
        "smollm2": lambda: bench_smollm2(args.rounds),
    }
    prov = provenance()
    sections, records = [], {}
    for name in args.only:
        text, records[name] = benches[name]()
        print(text + "\n", flush=True)
        sections.append(text)
    huge_pages = "on" if huge_pages_on() else "off"
    header = (
        written_by(prov)
        + f"; malloc with transparent huge pages (`alignax.runtime`, both sides): {huge_pages}."
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Memory alone is a table of XLA's accounting, not a timing.
    title = "### Training memory" if list(args.only) == ["memory"] else "### Speed"
    (out / "results.md").write_text("\n\n".join([title, header, *sections]) + "\n")
    (out / "results.json").write_text(json.dumps({"provenance": prov, **records}, indent=1))


if __name__ == "__main__":
    main()
