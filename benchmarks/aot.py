"""Pod scale without a pod: alignax's steps compiled ahead of time for real TPU slices, from a CPU.

    pip install libtpu==0.0.42.1                       # in requirements-test.txt
    python -m benchmarks.aot --preset 1b --topology v5e:16x16
    python -m benchmarks.aot --out runs/aot            # every preset x slice: the README's table
    python -m experiments.publish aot runs/aot

libtpu describes a slice's chips and hosts (`jax.experimental.topologies`) without owning one, and
XLA's TPU compiler compiles for them. Each step is the stages' own program (benchmarks/programs.py:
SFT, the Bradley-Terry reward model, DPO, the PPO and GRPO iterations scored by a reward model of
the policy's shape, sampling), built on a mesh of the slice's devices with the parameters sharded
by `alignax.sharding`'s rules and the batch split over data x fsdp: the same checks as a run,
including that every host of the slice places the same number of rows. For each compiled step:

- per-chip memory from XLA's accounting (`memory_analysis()`: arguments + outputs + temporaries,
  donated buffers counted once) against the chip's HBM;
- model FLOPs per step, counted as `benchmarks/roofline.py` counts (a trained forward is three
  forwards), and the step time they would take at the chip's peak bf16 rate and an assumed model
  FLOPs utilisation (`ASSUMED_MFU`); sampling decodes one token at a time and is bound by memory
  bandwidth, not FLOPs, so the RL rows' estimates are lower bounds;
- the collectives XLA inserted, read from the compiled HLO: count and bytes of the results of
  all-gather, reduce-scatter, all-reduce and the rest (all-to-all, collective-permute) per chip
  and step, with each op inside a loop (the layers' scan, the decoding loop) counted once per trip.

Nothing here runs on a TPU: a compile proves the program is valid for the slice and gives XLA's
memory plan, not a measured time.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import re
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import jax
import ml_collections

from alignax import sharding
from alignax.models import ModelConfig
from alignax.models.presets import mesh_config, model_config
from alignax.provenance import provenance, written_by
from benchmarks.common import markdown_table
from benchmarks.programs import Placement, offline_programs, rl_programs
from benchmarks.roofline import forward_flops, train_step_flops

# libtpu takes a lock file so that one process owns a host's TPU; here no process owns one, and
# each compile runs in a process of its own (`compile_isolated`) beside the one describing slices.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

GIB = 2**30
ASSUMED_MFU = 0.4
PRESETS = ("1b", "llama3_8b")
TOPOLOGIES = ("v5e:4x4", "v5p:4x4x4", "v5e:16x16", "v6e:16x16")
STEPS = ("SFT", "reward model", "DPO", "PPO iteration", "GRPO iteration", "sampling")
# Steps whose batch a stage can split with `train.grad_accum_steps`; one that does not fit is
# compiled again with 2, 4, ... slices while each slice still gives every chip a row.
ACCUMULATING = ("SFT", "reward model", "DPO")


@dataclasses.dataclass(frozen=True)
class Chip:
    """One JAX device of a slice, from the Cloud TPU documentation of each generation."""

    hbm_bytes: float
    bf16_flops: float


# By `device.device_kind`. A v4 chip's two TensorCores are two JAX devices in these topologies,
# each with half the chip's 32 GiB and 275 TFLOP/s; v5p's two are one device (megacore).
CHIPS = {
    "TPU v4": Chip(16 * GIB, 137.5e12),
    "TPU v5 lite": Chip(16 * GIB, 197e12),
    "TPU v5": Chip(95 * GIB, 459e12),
    "TPU v6 lite": Chip(32 * GIB, 918e12),
}


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Global batch of every step (the same on every slice, so a bigger slice holds less of it
    per chip): `batch` sequences (SFT), pairs (reward model, DPO) or prompts (PPO, GRPO,
    sampling; GRPO samples `group` completions of each) of `length` tokens, or of `prompt_len`
    prompt tokens and `new_tokens` sampled ones."""

    batch: int = 256
    length: int = 2048
    prompt_len: int = 512
    new_tokens: int = 512
    group: int = 4

    def describe(self) -> str:
        return (
            f"global batch {self.batch}: SFT {self.batch} sequences x {self.length} tokens; "
            f"reward model and DPO {self.batch} pairs x {self.length}; PPO and sampling "
            f"{self.batch} prompts of {self.prompt_len} tokens + {self.new_tokens} new; GRPO "
            f"{self.batch} prompts x {self.group} samples"
        )


def slice_devices(topology: str) -> list:
    """The devices of a TPU slice named like `v5e:16x16` (generation:chips per dimension)."""
    from jax.experimental import topologies

    try:
        return list(topologies.get_topology_desc(topology_name=topology, platform="tpu").devices)
    except Exception as error:  # libtpu missing, or a name it does not know
        raise ValueError(
            f"--topology {topology!r}: libtpu cannot describe it ({error}). Install libtpu "
            "(requirements-test.txt pins it) and name a slice as generation:shape, e.g. "
            "v5e:16x16, v5p:4x4x4, v6e:4x4"
        ) from None


def step_programs(
    config: ml_collections.ConfigDict, place: Placement, shapes: Shapes, grad_accum_steps: int = 1
) -> dict:
    """`STEPS` -> (jitted program, abstract state, abstract batch) on `place`'s mesh; the
    training steps accumulate gradients over `grad_accum_steps` slices of the batch."""
    offline = offline_programs(
        config, place, shapes.batch, shapes.length, kto=False, grad_accum_steps=grad_accum_steps
    )
    rl = rl_programs(
        config,
        place,
        shapes.batch,
        shapes.prompt_len,
        shapes.new_tokens,
        group=shapes.group,
        grpo_prompts=shapes.batch,
        reward_model=True,
    )
    return {
        "SFT": offline["SFT"],
        "reward model": offline["reward model (Bradley-Terry)"],
        "DPO": offline["DPO"],
        "PPO iteration": rl["PPO iteration"],
        "GRPO iteration": rl["GRPO iteration"],
        "sampling": rl["sampling"],
    }


def step_flops(step: str, config: ModelConfig, shapes: Shapes) -> float:
    """Model FLOPs of one step. RL: sampling is a forward over prompt + response; the rollout
    adds the policy's (with its value head), the reference's and the reward model's forwards;
    PPO trains 2 epochs on every sample, GRPO 1 (their configs' defaults)."""
    b, t = shapes.batch, shapes.length
    rl_length = shapes.prompt_len + shapes.new_tokens
    if step == "SFT":
        return train_step_flops(config, b, t)
    if step == "reward model":
        return train_step_flops(config, 2 * b, t)
    if step == "DPO":
        return train_step_flops(config, 2 * b, t) + forward_flops(config, 2 * b, t)
    if step == "sampling":
        return forward_flops(config, b, rl_length)
    rows, epochs = (b, 2) if step == "PPO iteration" else (b * shapes.group, 1)
    return 4 * forward_flops(config, rows, rl_length) + epochs * train_step_flops(
        config, rows, rl_length
    )


_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2}
_BYTES.update({"s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8})
_ARRAY = re.compile(r"\b([a-z]+[0-9]*(?:e[0-9]m[0-9][a-z]*)?)\[([0-9,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%[\w.\-]+ = (.*?) ([a-z][a-z0-9\-]*)\((.*)$")
_COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")


def _result_bytes(result_type: str) -> int:
    total = 0
    for dtype, dims in _ARRAY.findall(result_type):
        size = math.prod(int(d) for d in dims.split(",") if d)
        total += size * _BYTES.get(dtype, 1 if dtype.startswith("f8") else 0)
    return total


def _computations(hlo: str) -> tuple[dict[str, list[str]], str]:
    """Instruction lines of each computation of an HLO module's text, and the entry's name."""
    computations, entry, name = {}, None, None
    for line in hlo.splitlines():
        header = re.match(r"^(ENTRY )?%([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(2)
            computations[name] = []
            entry = name if header.group(1) else entry
        elif line.startswith("}"):
            name = None
        elif name is not None:
            computations[name].append(line)
    if entry is None:
        raise ValueError("HLO text has no ENTRY computation")
    return computations, entry


def _trip_count(condition: list[str]) -> int | None:
    """N for a loop whose condition is `counter < N` (a scan's), else None."""
    root = [line for line in condition if line.lstrip().startswith("ROOT")]
    values = {int(v) for v in re.findall(r"constant\((\d+)\)", "\n".join(condition))}
    if len(root) == 1 and "compare(" in root[0] and "direction=LT" in root[0] and len(values) == 1:
        return values.pop()
    return None


def collectives(hlo: str) -> dict:
    """{kind: {'count', 'bytes'}} of the collectives one execution of a compiled program runs
    (per device), from its optimised HLO text: each op's result bytes, ops inside a while loop
    times the loop's trip count (read from its `counter < N` condition; a loop of unknown count
    counts once and sets 'unknown_loops'). An all-reduce inside a fusion XLA named
    all-reduce-scatter counts as a reduce-scatter."""
    computations, entry = _computations(hlo)
    memo: dict[str, dict] = {}
    unknown = [0]

    def total(name: str) -> dict:
        if name in memo:
            return memo[name]
        out = {kind: {"count": 0, "bytes": 0} for kind in _COLLECTIVES}
        for line in computations.get(name, []):
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            result_type, opcode, rest = match.groups()
            kind = opcode.removesuffix("-start")
            if kind in _COLLECTIVES:
                if kind == "all-reduce" and name.startswith("all-reduce-scatter"):
                    kind = "reduce-scatter"
                out[kind]["count"] += 1
                out[kind]["bytes"] += _result_bytes(result_type)
            callees = []
            if opcode == "while":
                body = re.search(r"body=%([\w.\-]+)", rest).group(1)
                condition = re.search(r"condition=%([\w.\-]+)", rest).group(1)
                trips = _trip_count(computations.get(condition, []))
                if trips is None:
                    unknown[0] += 1
                callees.append((body, trips or 1))
            else:
                for key in ("calls", "true_computation", "false_computation"):
                    callees += [(c, 1) for c in re.findall(rf"{key}=%([\w.\-]+)", rest)]
                branches = re.search(r"branch_computations=\{([^}]*)\}", rest)
                if branches:
                    callees += [(c, 1) for c in re.findall(r"%([\w.\-]+)", branches.group(1))]
            for callee, times in callees:
                for kind, inner in total(callee).items():
                    out[kind]["count"] += times * inner["count"]
                    out[kind]["bytes"] += times * inner["bytes"]
        memo[name] = out
        return out

    result = total(entry)
    return {**result, "unknown_loops": unknown[0]}


def out_of_memory(message: str) -> dict:
    """{'temp_bytes', 'available_bytes'} from the TPU compiler's refusal of a program whose
    temporaries exceed the chip's HBM; any other compile error is raised."""
    match = re.search(r"HLO temporaries \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", message)
    if "RESOURCE_EXHAUSTED" not in message or match is None:
        raise RuntimeError(f"the TPU compile failed: {message}")
    return {
        "temp_bytes": float(match.group(1)) * GIB,
        "available_bytes": float(match.group(2)) * GIB,
    }


def peak_bytes(memory) -> int:
    """Peak device memory of a compiled program by XLA's accounting, donations counted once."""
    return (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )


@dataclasses.dataclass(frozen=True)
class Slice:
    """A preset laid out on a slice: its devices, their chip, the model and the mesh."""

    devices: list
    config: ml_collections.ConfigDict
    model: ModelConfig  # `config`, validated
    mesh: jax.sharding.Mesh

    @property
    def kind(self) -> str:
        return self.devices[0].device_kind

    @property
    def chip(self) -> Chip:
        return CHIPS[self.kind]

    @property
    def hosts(self) -> int:
        return len({d.process_index for d in self.devices})


def slice_setup(
    preset: str, topology: str, mesh: dict | None = None, remat_policy: str | None = None
) -> Slice:
    devices = slice_devices(topology)
    kind = devices[0].device_kind
    if kind not in CHIPS:
        raise ValueError(
            f"--topology {topology!r}: no chip specs for {kind!r} (known: {sorted(CHIPS)})"
        )
    config = model_config(preset)
    if remat_policy is not None:
        config.update(remat=True, remat_policy=remat_policy)
    model = ModelConfig.from_config(config)  # a bad override fails here, naming its key
    mesh_spec = mesh_config(preset)
    mesh_spec.update(mesh or {})
    device_mesh = sharding.make_mesh(mesh_spec, devices)
    if device_mesh.size != len(devices):
        raise ValueError(
            f"mesh {dict(device_mesh.shape)} uses {device_mesh.size} of the {len(devices)} chips "
            f"of {topology}: a slice's program runs on every chip (give --mesh a -1 axis)"
        )
    return Slice(devices, config, model, device_mesh)


@dataclasses.dataclass(frozen=True)
class Job:
    """One compile: a step of a preset on a slice, its batch in `grad_accum_steps` slices."""

    preset: str
    topology: str
    step: str
    shapes: Shapes
    grad_accum_steps: int = 1
    mesh: tuple[tuple[str, int], ...] = ()
    remat_policy: str | None = None

    def run(self) -> dict:
        """Builds the step on the slice and compiles it (in `compile_isolated`'s child)."""
        where = slice_setup(self.preset, self.topology, dict(self.mesh), self.remat_policy)
        place = Placement(where.mesh, abstract=True)
        programs = step_programs(where.config, place, self.shapes, self.grad_accum_steps)
        fn, state, batch = programs[self.step]
        start = time.perf_counter()
        try:
            compiled = fn.lower(state, batch, place.rng()).compile()
        except jax.errors.JaxRuntimeError as error:
            compiled, refusal = None, out_of_memory(str(error))
        seconds = time.perf_counter() - start
        if compiled is None:
            peak, found = refusal["temp_bytes"], None
        else:
            peak, found = peak_bytes(compiled.memory_analysis()), collectives(compiled.as_text())
        return {
            # XLA's plan; where the TPU compiler refused the program, its temporaries alone.
            "peak_bytes": peak,
            "refused": compiled is None,
            "crashed": False,
            "fits": compiled is not None and peak <= where.chip.hbm_bytes,
            "collectives": found,
            "compile_s": seconds,
        }


def compile_isolated(job: Job, attempts: int = 2) -> dict:
    """`job.run()` in a fresh process, so that a crash of XLA's TPU compiler costs one compile,
    not the table: libtpu 0.0.42.1 overflowed a compiler thread's stack (SIGSEGV) on 1b's SFT
    step with 8 or 16 slices of gradient accumulation, on some runs and not others, even with
    the stack limit lifted. A job that crashes `attempts` times is recorded as crashed."""
    context = multiprocessing.get_context("spawn")
    for _ in range(attempts):
        with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
            try:
                return pool.submit(job.run).result()
            except BrokenProcessPool:
                continue
    return {
        "peak_bytes": None,
        "refused": False,
        "crashed": True,
        "fits": False,
        "collectives": None,
        "compile_s": None,
    }


def compile_steps(
    preset: str,
    topology: str,
    *,
    shapes: Shapes = Shapes(),
    steps: tuple[str, ...] = STEPS,
    mesh: dict | None = None,
    remat_policy: str | None = None,
    progress=print,
) -> list[dict]:
    """Compiles `steps` of `preset` for the slice `topology`, each in a process of its own
    (`compile_isolated`); one record per step."""
    where = slice_setup(preset, topology, mesh, remat_policy)
    chips, chip = len(where.devices), where.chip
    job = functools.partial(
        Job,
        preset,
        topology,
        shapes=shapes,
        mesh=tuple(sorted((mesh or {}).items())),
        remat_policy=remat_policy,
    )
    records = []
    for step in steps:
        record = compile_isolated(job(step))
        record.update(
            preset=preset,
            step=step,
            topology=topology,
            chip=where.kind,
            chips=chips,
            hosts=where.hosts,
            mesh=dict(where.mesh.shape),
            remat=where.model.remat_policy if where.model.remat else "off",
            dtypes=(
                jax.numpy.dtype(where.model.param_dtype).name,
                jax.numpy.dtype(where.model.dtype).name,
            ),
            hbm_bytes=chip.hbm_bytes,
            model_flops=step_flops(step, where.model, shapes),
            accumulated=None,
        )
        record["estimated_ms"] = (
            record["model_flops"] / (chips * chip.bf16_flops * ASSUMED_MFU) * 1e3
        )
        progress(f"[aot] {preset} {step} on {topology}: {_memory_text(record)}")
        accum = 2
        while not record["fits"] and step in ACCUMULATING and shapes.batch // accum >= chips:
            attempt = {
                **compile_isolated(job(step, grad_accum_steps=accum)),
                "hbm_bytes": chip.hbm_bytes,
            }
            progress(f"[aot]   with gradient accumulation {accum}: {_memory_text(attempt)}")
            if attempt["fits"]:
                record["accumulated"] = {"steps": accum, "peak_bytes": attempt["peak_bytes"]}
                break
            accum *= 2
        records.append(record)
    return records


def _memory_text(record: dict) -> str:
    if record["crashed"]:
        return "XLA's TPU compiler crashed on every attempt"
    what = "temporaries alone (compile refused)" if record["refused"] else "peak"
    verdict = "fits" if record["fits"] else "DOES NOT FIT"
    return (
        f"{what} {record['peak_bytes'] / GIB:.1f} of {record['hbm_bytes'] / GIB:.0f} GiB per "
        f"chip ({verdict}), {record['compile_s']:.0f} s"
    )


def _collective_text(entry: dict) -> str:
    return f"{entry['count']} / {entry['bytes'] / GIB:.2f}" if entry["count"] else "0"


def _accumulated_text(record: dict) -> str:
    if record["fits"] or record["step"] not in ACCUMULATING:
        return "-"
    found = record["accumulated"]
    if found is None:
        return "**no**"
    return f"{found['steps']} slices ({found['peak_bytes'] / GIB:.1f} GiB)"


def _smallest(records: list[dict], fits) -> str:
    best = min(
        (r for r in records if fits(r)), key=lambda r: (r["chips"], r["peak_bytes"]), default=None
    )
    return f"{best['topology']} ({best['chips']} chips)" if best else "none compiled here"


def _dtypes_text(records: list[dict]) -> str:
    kinds = {tuple(r["dtypes"]) for r in records}
    if len(kinds) > 1:
        return "parameters and compute in each preset's dtypes"
    (params, compute), short = kinds.pop(), {"bfloat16": "bf16", "float32": "float32"}
    return f"parameters {params} with {short.get(compute, compute)} compute"


def tables(records: list[dict], shapes: Shapes) -> str:
    """The results block: every compiled step, then the smallest compiled slice each fits."""
    rows = []
    for r in records:
        c = r["collectives"]
        if c is None:
            collective_texts = ["-"] * 4
        else:
            other = {
                key: c["all-to-all"][key] + c["collective-permute"][key]
                for key in ("count", "bytes")
            }
            collective_texts = [
                _collective_text(entry)
                for entry in (c["all-gather"], c["reduce-scatter"], c["all-reduce"], other)
            ]
        if r["crashed"]:
            memory = "compiler crashed"
        else:
            memory = f"{r['peak_bytes'] / GIB:.1f} / {r['hbm_bytes'] / GIB:.0f}"
        mesh = r["mesh"]
        hosts = f"{r['hosts']} host" + ("s" if r["hosts"] > 1 else "")
        rows.append(
            [
                r["preset"],
                r["step"],
                f"{r['topology']} ({r['chips']} chips, {hosts})",
                f"{mesh['data']} x {mesh['fsdp']} x {mesh['tensor']}",
                r["remat"],
                f"> {memory} (refused)" if r["refused"] else memory,
                "yes" if r["fits"] else "**no**",
                _accumulated_text(r),
                f"{r['model_flops'] / 1e12:,.0f}",
                f"{r['estimated_ms']:,.0f}",
                *collective_texts,
            ]
        )
    header = [
        "preset",
        "step",
        "slice",
        "mesh (data x fsdp x tensor)",
        "remat",
        "peak / HBM GiB per chip",
        "fits",
        "fits with gradient accumulation",
        "model TFLOP",
        f"est. ms at {ASSUMED_MFU:.0%} MFU",
        "all-gather n / GiB",
        "reduce-scatter n / GiB",
        "all-reduce n / GiB",
        "other n / GiB",
    ]
    smallest = []
    for preset in dict.fromkeys(r["preset"] for r in records):
        for step in dict.fromkeys(r["step"] for r in records):
            mine = [r for r in records if r["preset"] == preset and r["step"] == step]
            smallest.append(
                [
                    preset,
                    step,
                    _smallest(mine, lambda r: r["fits"]),
                    _smallest(mine, lambda r: r["fits"] or r["accumulated"] is not None),
                ]
            )
    unknown = sum(r["collectives"]["unknown_loops"] for r in records if r["collectives"])
    return "\n".join(
        [
            f"Shapes: {shapes.describe()}; {_dtypes_text(records)}, AdamW; PPO and "
            "GRPO score with a Bradley-Terry reward model of the policy's shape; "
            + (
                "the preset's mesh (FSDP over every chip)"
                if all(r["mesh"]["fsdp"] == r["chips"] for r in records)
                else "the mesh of each row"
            )
            + ". Memory is XLA's plan per chip (arguments + outputs + "
            "temporaries, donations once) against the chip's HBM; where XLA's TPU compiler "
            "refused a program for running out of HBM, its temporaries alone, marked refused. A "
            "training step that does not fit is compiled again with its batch split into 2, 4, "
            "... slices of gradient accumulation (`train.grad_accum_steps`) while every chip "
            "still gets a row. Model FLOPs per step are counted as in the MFU benchmark, and the "
            "time is what they take on the slice at the chip's peak bf16 rate and an assumed "
            f"{ASSUMED_MFU:.0%} MFU (the RL rows decode one token at a time, bound by memory "
            "bandwidth: their times are lower bounds). Collectives are per chip and step (count / "
            "GiB of their results), each op in a loop counted once per trip"
            + (f" ({unknown} loops of unknown trip count counted once)" if unknown else "")
            + "; other = all-to-all and collective-permute.",
            "",
            markdown_table(header, rows),
            "",
            "The smallest slice compiled here on which each step fits:",
            "",
            markdown_table(["preset", "step", "as is", "with gradient accumulation"], smallest),
        ]
    )


def raise_stack_limit() -> None:
    """Lifts this process's soft stack size limit to the hard one before any compile starts:
    the compiles' child processes start with it, and XLA's TPU compiler overflowed its threads'
    stacks under the 8 MiB default more often than without a limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_STACK, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    raise_stack_limit()
    # The slices are described and compiled for by libtpu; nothing needs a TPU backend.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    jax.config.update("jax_platforms", os.environ["JAX_PLATFORMS"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=PRESETS, choices=PRESETS + ("tiny", "small"))
    parser.add_argument("--topology", nargs="+", default=TOPOLOGIES)
    parser.add_argument("--steps", nargs="+", default=STEPS, choices=STEPS)
    parser.add_argument(
        "--mesh",
        help="data,fsdp,tensor (one may be -1: the rest of the chips); default: the preset's",
    )
    parser.add_argument("--remat-policy", choices=("nothing", "dots", "dots_no_batch"))
    parser.add_argument("--batch", type=int, default=Shapes.batch, help="global batch")
    parser.add_argument("--out", default="runs/aot", help="directory for results.md/.json")
    args = parser.parse_args(argv)
    mesh = None
    if args.mesh:
        try:
            data, fsdp, tensor = (int(x) for x in args.mesh.split(","))
        except ValueError:
            parser.error(f"--mesh {args.mesh!r}: expected data,fsdp,tensor, e.g. 1,-1,1")
        mesh = {"data": data, "fsdp": fsdp, "tensor": tensor}
    shapes = Shapes(batch=args.batch)
    prov = provenance()
    records = []
    for preset in args.preset:
        for topology in args.topology:
            records += compile_steps(
                preset,
                topology,
                shapes=shapes,
                steps=tuple(args.steps),
                mesh=mesh,
                remat_policy=args.remat_policy,
                progress=lambda line: print(line, flush=True),
            )
    text = "\n\n".join(
        [
            "### TPU slices, compiled ahead of time",
            written_by(prov) + f", libtpu compiling for the slices (jax {jax.__version__}).",
            tables(records, shapes),
        ]
    )
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {"provenance": prov, "shapes": dataclasses.asdict(shapes), "steps": records}, indent=1
        )
    )


if __name__ == "__main__":
    sys.exit(main())
