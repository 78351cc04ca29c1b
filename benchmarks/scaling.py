"""Scaling tables: the LM train step's time and XLA's memory against batch, sequence length and
model preset; the compile time of every step kind; one RL iteration split into its parts.

Memory is XLA's own accounting of the compiled step (`compiled.memory_analysis()`: arguments,
outputs and temporaries, aliased donations counted once), not a process measurement, so it is
exact and machine-independent. An RL iteration's parts are timed as nested jitted programs:
sampling alone, the whole rollout (sampling + the policy, reference and value forwards + the
score), and the whole iteration; the forwards cost the difference of the first two, the
update (advantages, minibatch epochs, optimizer) that of the last two.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from alignax import sharding, steps
from alignax.models.presets import mesh_config, model_config
from benchmarks import mfu
from benchmarks.common import carried, interleave, markdown_table
from benchmarks.programs import Placement, offline_programs, rl_programs


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def compile_seconds(fn, *args) -> tuple[object, float]:
    """The compiled program of `fn` (a jitted function) on `args`, and the seconds lowering and
    compiling took (the benchmark sets no persistent compilation cache: this is a compile)."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def step_programs(preset: str, batch: int, length: int, prompt_len: int, new_tokens: int):
    """name -> (jitted program, state, batch) of every step kind at the preset's shape, on this
    process's devices (`benchmarks.programs`)."""
    place = Placement(sharding.make_mesh(mesh_config(preset)))
    return {
        **offline_programs(model_config(preset), place, batch, length),
        **rl_programs(model_config(preset), place, batch, prompt_len, new_tokens),
    }


def lm_step(preset: str, batch: int, length: int):
    """(jitted step, state, batch) of the preset's LM train step (`mfu.lm_train_step`)."""
    _, step_fn, state, data, mesh = mfu.lm_train_step(preset, batch, length)
    return steps.jit_step(step_fn, state, data, mesh), state, data


def scaling_table(preset: str, shapes: list[tuple[int, int]], rounds: int) -> tuple[str, list]:
    """LM train-step time, tokens/s and XLA memory at each (batch, length)."""
    rows, records = [], []
    for batch, length in shapes:
        step, state, data = lm_step(preset, batch, length)
        rng = jax.random.key(0)
        compiled, seconds = compile_seconds(step, state, data, rng)
        memory = compiled.memory_analysis()
        timing = interleave({"step": carried(compiled, state, data, rng)}, rounds=rounds)["step"]
        total = memory.argument_size_in_bytes + memory.output_size_in_bytes
        total += memory.temp_size_in_bytes - memory.alias_size_in_bytes
        record = {
            "batch": batch,
            "length": length,
            "step_ms": timing.median * 1e3,
            "range_ms": timing.spread(),
            "tokens_per_s": batch * length / timing.median,
            "temp_mib": memory.temp_size_in_bytes / 2**20,
            "total_mib": total / 2**20,
            "compile_s": seconds,
        }
        records.append(record)
        rows.append(
            [
                str(batch),
                str(length),
                f"{record['step_ms']:.0f}",
                record["range_ms"],
                f"{record['tokens_per_s']:.0f}",
                _mib(memory.temp_size_in_bytes),
                _mib(total),
            ]
        )
    header = ["batch", "length", "step ms", "range ms", "tokens/s", "temp MiB", "total MiB"]
    return markdown_table(header, rows), records


def compile_table(programs: dict) -> tuple[str, dict, dict]:
    """Compile time (lowering included) of each program; the compiled programs."""
    seconds, compiled = {}, {}
    for name, (fn, state, data) in programs.items():
        compiled[name], seconds[name] = compile_seconds(fn, state, data, jax.random.key(0))
    rows = [[name, f"{s:.1f}"] for name, s in seconds.items()]
    return markdown_table(["program", "compile s"], rows), seconds, compiled


def rl_split(programs: dict, compiled: dict, rounds: int) -> tuple[str, dict]:
    """Median time of sampling, of the rollout and of the PPO iteration; the parts by
    difference."""
    cases = {}
    for name in ("sampling", "rollout", "PPO iteration"):
        _, state, data = programs[name]
        rng = jax.random.key(0)
        program = compiled[name]
        if name == "PPO iteration":  # donates its state: a copy of its own, carried
            own = jax.tree.map(lambda x: jnp.array(x, copy=True), state)
            cases[name] = carried(program, own, data, rng)
        else:

            def run(program=program, state=state, data=data, rng=rng):
                jax.block_until_ready(program(state, data, rng))

            cases[name] = run
    t = {name: timing.median for name, timing in interleave(cases, rounds=rounds).items()}
    parts = {
        "sampling": t["sampling"],
        "forwards + score": t["rollout"] - t["sampling"],
        "update (advantages, epochs, optimizer)": t["PPO iteration"] - t["rollout"],
    }
    rows = [[name, f"{s * 1e3:.0f}", f"{s / t['PPO iteration']:.0%}"] for name, s in parts.items()]
    rows.append(["whole iteration", f"{t['PPO iteration'] * 1e3:.0f}", "100%"])
    return markdown_table(["part", "median ms", "share"], rows), {
        name: s * 1e3 for name, s in parts.items()
    }
