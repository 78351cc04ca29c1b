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
import json
from pathlib import Path

import jax

from alignax.models import build_model
from alignax.models.presets import model_config
from alignax.provenance import provenance, written_by
from alignax.runtime import huge_pages_on, use_transparent_huge_pages
from benchmarks import dpo_step, grpo_iteration, memory, mfu, sampling, scaling
from benchmarks.common import Shape, interleave, markdown_table, speedup_spread

DPO_TARGET = 1.5  # alignax at least this many times faster than TRL
SAMPLING_TARGET = 2.0  # than Hugging Face generate
MFU_TARGET = 0.45


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def versus_trl(description: str, ours, theirs, peer: str, rounds: int, target=None):
    """One step against its TRL twin, interleaved: `description` and the peer, the table of
    medians, and the speed-up with its verdict against `target` (none: measured only)."""
    cases = {"alignax": ours} | ({"TRL": theirs} if theirs else {})
    timings = interleave(cases, rounds=rounds)
    rows = [[name, f"{t.median * 1e3:.0f}", t.spread()] for name, t in timings.items()]
    record = {
        "alignax_s": timings["alignax"].median,
        "peer": peer,
        "rounds_s": {name: t.seconds for name, t in timings.items()},
    }
    lines = [
        f"{description} Peer: {peer}.",
        "",
        markdown_table(["side", "median ms", "range ms"], rows),
    ]
    if theirs:
        ratio = timings["TRL"].median / timings["alignax"].median
        record.update(trl_s=timings["TRL"].median, speedup=ratio)
        verdict = (
            "no target" if target is None else f"target {target}x: {_verdict(ratio >= target)}"
        )
        spread = speedup_spread(timings["TRL"], timings["alignax"])
        lines += ["", f"alignax / TRL speed-up: {ratio:.2f}x (per round: {spread}; {verdict})"]
    return "\n".join(lines), record


def bench_dpo(shape: Shape, params, rounds: int) -> tuple[str, dict]:
    pairs = dpo_step.token_pairs(shape)
    ours = dpo_step.alignax_step(shape, params, pairs)
    theirs, peer = dpo_step.trl_step(shape, params, pairs)
    description = (
        f"DPO step: {shape.describe()}; {shape.batch} pairs of {shape.prompt_len} prompt + "
        f"{shape.response_len} response tokens; sigmoid loss, beta {dpo_step.BETA}, AdamW, "
        f"reference forward in the step."
    )
    return versus_trl(description, ours, theirs, peer, rounds, target=DPO_TARGET)


def bench_sampling(shape: Shape, params, rounds: int) -> tuple[str, dict]:
    prompt_tokens = sampling.prompts(shape)
    hf, peer = sampling.hf_model(shape, params)
    rows, record, verdicts = [], {}, []
    for new_tokens in (64, 256):
        cases = {"alignax": sampling.alignax_sampler(shape, params, prompt_tokens, new_tokens)}
        if new_tokens == 64:
            cases["alignax, no cache"] = sampling.alignax_sampler(
                shape, params, prompt_tokens, new_tokens, use_cache=False
            )
        if hf is not None:
            cases["HF generate"] = sampling.hf_sampler(hf, prompt_tokens, new_tokens)
        timings = interleave(cases, rounds=rounds)
        rate = {n: shape.batch * new_tokens / t.median for n, t in timings.items()}
        for name, t in timings.items():
            rows.append(
                [str(new_tokens), name, f"{rate[name]:.0f}", f"{t.median * 1e3:.0f}", t.spread()]
            )
        record[str(new_tokens)] = rate
        if hf is not None:
            ratio = rate["alignax"] / rate["HF generate"]
            record[str(new_tokens)]["speedup"] = ratio
            spread = speedup_spread(timings["HF generate"], timings["alignax"])
            verdicts.append(
                f"{new_tokens} new tokens: {ratio:.2f}x (per round: {spread}; target "
                f"{SAMPLING_TARGET}x: {_verdict(ratio >= SAMPLING_TARGET)})"
            )
    lines = [
        f"Sampling (KV cache): {shape.describe()}; {shape.batch} prompts of {shape.prompt_len} "
        f"tokens, temperature 1. Peer: {peer}.",
        "",
        markdown_table(["new tokens", "side", "tokens/s", "median ms", "range ms"], rows),
    ]
    if verdicts:
        lines += ["", "alignax / HF speed-up: " + "; ".join(verdicts)]
    return "\n".join(lines), record


def bench_grpo(shape: Shape, params, rounds: int) -> tuple[str, dict]:
    prompt_tokens = grpo_iteration.prompts(shape)
    ours = grpo_iteration.alignax_iteration(shape, params, prompt_tokens)
    theirs, peer = grpo_iteration.trl_iteration(shape, params, prompt_tokens)
    description = (
        f"GRPO iteration: {shape.describe()}; {len(prompt_tokens)} prompts of "
        f"{shape.prompt_len} tokens x groups of {grpo_iteration.GROUP}, {shape.response_len} new "
        f"tokens each; sampling with a KV cache, scoring, group advantages, one AdamW step on "
        f"the clipped loss with the reference KL (beta {grpo_iteration.BETA})."
    )
    return versus_trl(description, ours, theirs, peer, rounds)


def bench_mfu(rounds: int, preset: str = "small", batch: int = 8, length: int = 128):
    step, flops = mfu.train_step(preset, batch, length)
    cases = {f"matmul {n}": fn for n, fn in mfu.matmul_peak_cases().items()}
    cases["train step"] = step
    timings = interleave(cases, rounds=rounds)
    peak = max(mfu.matmul_flops(n) / timings[f"matmul {n}"].median for n in mfu.PEAK_SIZES)
    achieved = flops / timings["train step"].median
    case_flops = {f"matmul {n}": mfu.matmul_flops(n) for n in mfu.PEAK_SIZES}
    case_flops["train step"] = flops
    rows = [
        [name, f"{t.median * 1e3:.1f}", f"{case_flops[name] / t.median / 1e9:.0f}"]
        for name, t in timings.items()
    ]
    ratio = achieved / peak
    lines = [
        f"Train-step MFU: preset `{preset}`, {batch} x {length} tokens, float32, AdamW; peak = "
        f"best float32 matmul rate measured in the same run.",
        "",
        markdown_table(["case", "median ms", "GFLOP/s"], rows),
        "",
        f"MFU {ratio:.0%} of the {peak / 1e9:.0f} GFLOP/s peak (target {MFU_TARGET:.0%}: "
        f"{_verdict(ratio >= MFU_TARGET)})",
    ]
    return "\n".join(lines), {
        "peak_gflops": peak / 1e9,
        "achieved_gflops": achieved / 1e9,
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
        choices=("dpo", "sampling", "grpo", "mfu", "scaling", "memory"),
        default=("dpo", "sampling", "grpo", "mfu", "scaling", "memory"),
    )
    args = parser.parse_args()
    shape = Shape()
    # On the host: each side places its own copy (alignax's train step donates its buffers).
    params = jax.device_get(build_model(shape.model_config()).init(jax.random.key(0)))
    benches = {
        "dpo": lambda: bench_dpo(shape, params, args.rounds),
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
