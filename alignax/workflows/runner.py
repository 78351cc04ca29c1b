"""The one way a stage trains, whatever its workflow.

    KIND = StageKind("sft", build)                  # a workflow module declares its kind
    summary = run_stage(KIND, config, workdir)      # and the runner runs it

A workflow's `build(config, ctx, **inputs) -> Stage` (`ctx`: the mesh, the random streams and
the workdir, a `Context`) turns its config, and what a caller hands it in `inputs` (e.g. pairs
labelled elsewhere), into what only it knows: the model and its initial params, the training
rows, its loss (or, for an online algorithm, its step), its evaluation and its summary. The
runner owns the rest, the same for every stage:

- `setup` (config checks, multi-host, the mesh, the workdir guard) before anything is built;
- the seed's random streams, split by the names the kind declares (`rng_streams`);
- LoRA (`config.lora.rank > 0`) through one policy view: the adapters (and a head the base
  lacks, in full) train, the base rides in `ref_params` (the reference of any loss or algorithm
  that reads one), and the loss, the step and the evaluation see the merged policy;
- the optimizer, the train state, the jitted step and the shuffled batches;
- the host loop (`alignax.training.train_loop`: resume, metrics and sample texts through one
  writer, checkpoints, progress), the final evaluation and summary.json.

Remat and the compute dtype are the `model` section's (`build_model`), so they hold for every
stage too; tests/test_workflows.py checks each of these for every registered kind.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from alignax import optim, steps
from alignax.experiment import example_batch, setup, write_summary
from alignax.models import Model, Params
from alignax.models.lora import (
    HEADS,
    LoraConfig,
    init_lora,
    lora_loss_fn,
    merge,
    num_lora_params,
)
from alignax.state import TrainState
from alignax.training import train_batches, train_loop

# view(trainable, ref_params) -> the policy's full params (LoRA: the base with adapters merged)
PolicyView = Callable[[Params, Params], Params]


@dataclasses.dataclass(frozen=True)
class Context:
    """What the runner sets up before a builder runs."""

    mesh: Mesh
    rngs: dict[str, jax.Array]  # the kind's `rng_streams`, split from config.seed
    workdir: Path  # the stage's own files (e.g. PPO's judge-drift alarm state)


@dataclasses.dataclass
class Stage:
    """What a workflow's builder hands the runner.

    `evaluate(state, policy_params) -> metrics` (floats; a `texts` entry, a list of sample
    texts, goes to samples.jsonl) runs every `train.eval_every` steps and at the end;
    `summarize(final, initial, state) -> summary` makes summary.json from the final evaluation
    (and, with `evaluate_initial`, the evaluation of the starting state). Exactly one of
    `loss_fn(params, state, batch, rng) -> (loss, metrics)` (made a step by
    `steps.make_train_step`, then `wrap_step`) and `make_step(tx, policy_view) -> step`
    (online algorithms: the step samples, scores and updates) is given."""

    label: str  # the run's name in progress lines
    model: Model  # the model `params` belong to (the policy, for stages that train one)
    params: Params  # the initial trained params
    train: dict  # training rows
    unit: str  # what a row is, for errors ("pairs")
    evaluate: Callable[[TrainState, Params], dict]
    summarize: Callable[[dict, dict | None, TrainState], dict]
    loss_fn: Callable | None = None
    make_step: Callable[[Any, PolicyView | None], Callable] | None = None
    wrap_step: Callable[[Callable], Callable] = lambda step: step
    slots: dict = dataclasses.field(default_factory=dict)  # other TrainState fields
    log_keys: tuple[str, ...] = ("loss",)
    evaluate_initial: bool = False
    # Where the policy sits in `params` (PPO: "policy", beside its value model); None: all.
    policy_key: str | None = None
    stacked_members: bool = False  # params stacked on axis 0 (an ensemble), one optimizer each
    # Params that train in full under LoRA beside the adapters: a head the base does not have.
    lora_heads: tuple[str, ...] = ()
    # Why LoRA cannot train this stage as configured (None: it can); refused naming lora.rank.
    lora_refusal: str | None = None

    def __post_init__(self):
        if (self.loss_fn is None) == (self.make_step is None):
            raise TypeError(f"stage {self.label!r}: give exactly one of loss_fn and make_step")


@dataclasses.dataclass(frozen=True)
class StageKind:
    """A registered workflow: its name, its builder and the named random streams its builder
    reads (`ctx.rngs[name]`; "init" and "train" are the runner's too), split from
    `config.seed` in this order."""

    name: str
    build: Callable[..., Stage]
    rng_streams: tuple[str, ...] = ("init", "train", "eval")


def run_stage(
    kind: StageKind,
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    evaluate_at_start: bool = False,
    **inputs,
) -> dict:
    """Trains the stage `kind` per `config` in `workdir` and returns its summary. With
    `evaluate_at_start`, a fresh run also evaluates the starting state and writes it at step 0
    (so curves start at the initial policy). `inputs` go to the builder."""
    workdir, mesh = setup(config, workdir)
    streams = jax.random.split(jax.random.key(config.seed), len(kind.rng_streams))
    rngs = dict(zip(kind.rng_streams, streams, strict=True))
    stage = kind.build(config, Context(mesh, rngs, workdir), **inputs)
    tx = optim.make_optimizer(config, stacked_members=stage.stacked_members)
    if config.lora.rank > 0 and stage.lora_refusal is not None:
        raise ValueError(f"config lora.rank={config.lora.rank}: {stage.lora_refusal}")
    state, lora = trainable_state(
        config,
        stage.model,
        stage.params,
        tx,
        mesh,
        rngs["init"],
        policy_key=stage.policy_key,
        slots=stage.slots,
        heads=stage.lora_heads,
    )
    view = None if lora is None else functools.partial(_merged, lora=lora)
    if stage.loss_fn is not None:
        loss_fn = stage.loss_fn if lora is None else lora_loss_fn(stage.loss_fn, lora)
        step = stage.wrap_step(
            steps.make_train_step(loss_fn, tx, grad_accum_steps=config.train.grad_accum_steps)
        )
    else:
        step = stage.make_step(tx, view)
    batches = train_batches(config, stage.train, unit=stage.unit)
    train_step = steps.jit_step(
        step, state, example_batch(stage.train, config.train.batch_size), mesh
    )
    policy_params = _policy_params(stage, view)
    evaluations = {}  # step -> metrics: the loop's last evaluation is the final one

    def eval_fn(state):
        evaluations[int(state.step)] = stage.evaluate(state, policy_params(state))
        return evaluations[int(state.step)]

    initial = eval_fn(state) if stage.evaluate_initial else None
    state = train_loop(
        state=state,
        step_fn=train_step,
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=rngs["train"],
        name=stage.label,
        eval_fn=eval_fn,
        log_keys=stage.log_keys,
        evaluate_at_start=evaluate_at_start,
    )
    final = evaluations[int(state.step)] if int(state.step) in evaluations else eval_fn(state)
    summary = stage.summarize(final, initial, state)
    write_summary(workdir, summary)
    return summary


def trainable_state(
    config: ml_collections.ConfigDict,
    model: Model,
    params: Params,
    tx,
    mesh: Mesh,
    rng: jax.Array,
    *,
    policy_key: str | None = None,
    slots: dict | None = None,
    heads: tuple[str, ...] = (),
) -> tuple[TrainState, LoraConfig | None]:
    """(train state, LoRA config or None): `params` with `slots` (other TrainState fields), or
    with `config.lora.rank > 0` LoRA adapters (alignax/models/lora.py) in place of the policy's
    params (`params[policy_key]`, or all of them), whose base rides in `ref_params` (no second
    copy; a later stage loading the checkpoint gets the merged policy); the base's `heads` train
    in full beside the adapters."""
    slots = slots or {}
    if config.lora.rank == 0:
        return TrainState.create(params, tx, mesh, **slots), None
    lora = LoraConfig.from_config(config.lora)
    base = params if policy_key is None else params[policy_key]
    adapters = init_lora(jax.random.fold_in(rng, 1), model, lora, mesh=mesh)
    if heads:
        adapters[HEADS] = {name: base[name] for name in heads}
    trained = adapters if policy_key is None else {**params, policy_key: adapters}
    state = TrainState.create(trained, tx, mesh, **{**slots, "ref_params": base})
    print(
        f"[lora] rank {lora.rank}, targets {', '.join(lora.targets)}: "
        f"{num_lora_params(adapters):,} trained params",
        flush=True,
    )
    return state, lora


def _merged(adapters: Params, base: Params, *, lora: LoraConfig) -> Params:
    """The policy view of a LoRA stage: the base with the adapters merged in."""
    return merge(base, adapters, lora)


def _policy_params(stage: Stage, view: PolicyView | None) -> Callable[[TrainState], Params]:
    """state -> the params `evaluate` gets: the trained params (the whole PPO pytree: policy
    and value), with LoRA's adapters merged into the policy."""
    if view is None:
        return lambda state: state.params
    merged = jax.jit(view)
    if stage.policy_key is None:
        return lambda state: merged(state.params, state.ref_params)
    key = stage.policy_key
    return lambda state: {**state.params, key: merged(state.params[key], state.ref_params)}
