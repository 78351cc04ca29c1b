"""Every speed comparison in one command, printed as tables and written to `--out`:

    pip install -r benchmarks/requirements.txt     # the peers (TRL); optional
    python -m benchmarks.run --out runs/bench      # about 5 minutes on 2 CPU cores
    python -m experiments.publish speed runs/bench # its tables into docs/results/speed.md

1. DPO step: alignax against TRL's DPOTrainer (PyTorch), same weights, shape, batch, optimizer.
2. Sampling with a KV cache: alignax against Hugging Face `generate`, at 64 and 256 new tokens
   (and alignax without its cache at 64: what the cache saves).
3. GRPO iteration (rollout, scoring, update): alignax against TRL's GRPOTrainer, same weights,
   prompts, group size and loss (benchmarks/grpo_iteration.py). No target: measured only.
4. Train-step model FLOPs utilisation of the `small` preset against this machine's measured
   float32 matmul peak.
5. Scaling (benchmarks/scaling.py): the `small` LM step's time and XLA memory against batch and
   length; the compile time of every step kind; a PPO iteration split into its parts. No peer.
6. Memory (benchmarks/memory.py): SmolLM2-135M SFT and DPO steps, full fine-tuning against LoRA,
   by XLA's accounting of the compiled steps. No peer.

Cases of a comparison run interleaved (A B A B ... after warm-up; see benchmarks/common.py) and
are reported as medians with the min-max range; ratios are of medians, with the quartiles and range
of the per-round ratios. Each target prints PASS or FAIL. A missing peer is skipped with the
reason. Tunix is not compared: its only release pins transformers 5.12, which conflicts with the
version the checkpoint tests pin.
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

from alignax.models import build_model
from alignax.models.presets import model_config
from alignax.provenance import provenance, written_by
from alignax.runtime import huge_pages_on, use_transparent_huge_pages
from benchmarks import dpo_step, grpo_iteration, memory, mfu, roofline, sampling, scaling
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
BENCHES = ("dpo", "steps", "sampling", "grpo", "mfu", "scaling", "memory")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def compare(cases: dict, frameworks: dict, flops: dict, rounds: int):
    """Times `cases` ({side: blocking call}) interleaved with the matmul peak cases of their
    frameworks (`frameworks`: {side: 'JAX' | 'torch'}), and reads each side against its roofline
    (`flops`: {side: model FLOPs}). Returns (timings of the sides, {framework: peak FLOP/s},
    table rows [side, median ms, range ms, model GFLOP, GFLOP/s, fraction of the roofline])."""
    used = [frameworks[name] for name in cases]
    timed = interleave(cases | roofline.peak_cases(used), rounds=rounds)
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
                f"{rate / peaks[frameworks[name]]:.0%} of {frameworks[name]}'s",
            ]
        )
    return timings, peaks, rows


COMPARE_HEADER = ["side", "median ms", "range ms", "model GFLOP", "GFLOP/s", "roofline"]


def peaks_line(peaks: dict) -> str:
    rates = ", ".join(f"{name} {rate / 1e9:.0f}" for name, rate in peaks.items())
    return f"float32 matmul peak in this run (GFLOP/s): {rates}."


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
            f"{name} {record['sides'][name]['roofline_fraction']:.0%} "
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
        f"{name} at {side['roofline_fraction']:.0%} (target {ROOFLINE_TARGET:.0%}: "
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
    rows, record, verdicts = [], {}, []
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
                f"{SAMPLING_TARGET}x: {_verdict(ratio >= SAMPLING_TARGET)}); " + peaks_line(peaks)
            )
    lines = [
        f"Sampling (KV cache): {shape.describe()}; {shape.batch} prompts of {shape.prompt_len} "
        f"tokens, temperature 1. Peer: {peer}. Decoding reads every weight and the cache once per "
        "token, so it is bound by memory bandwidth: its fraction of the matmul roofline is small "
        "by nature.",
        "",
        markdown_table(["new tokens", "side", "tokens/s", *COMPARE_HEADER[1:]], rows),
    ]
    if verdicts:
        lines += ["", "alignax / HF speed-up: " + " ".join(verdicts)]
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
        f"MFU {ratio:.0%} of the {peaks['JAX'] / 1e9:.0f} GFLOP/s peak (target {MFU_TARGET:.0%}: "
        f"{_verdict(ratio >= MFU_TARGET)})",
    ]
    return "\n".join(lines), {
        "peak_gflops": peaks["JAX"] / 1e9,
        "achieved_gflops": flops / timings["train step"].median / 1e9,
        "mfu": ratio,
    }


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
        default=BENCHES,
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
