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
import numpy as np
import optax

from alignax import objectives, rl, sharding, steps
from alignax.models import build_model
from alignax.rl.rollout import actor_critic_response_fn, collect
from alignax.sampling import sample
from alignax.state import TrainState
from benchmarks import mfu
from benchmarks.common import carried, even_token_share, interleave, markdown_table
from configs import dpo as dpo_config
from configs import kto as kto_config
from configs import reward_model as reward_model_config
from configs.models import mesh_config, model_config

EOS = 2


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def compile_seconds(fn, *args) -> tuple[object, float]:
    """The compiled program of `fn` (a jitted function) on `args`, and the seconds lowering and
    compiling took (the benchmark sets no persistent compilation cache: this is a compile)."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _tokens(batch: int, length: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, vocab, (batch, length)).astype(np.int32)


def _mesh(preset: str):
    return sharding.make_mesh(mesh_config(preset))


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


def _comparisons(model, batch: int, length: int, k: int = 2) -> dict:
    tokens = _tokens(batch * k, length, model.config.vocab_size).reshape(batch, k, length)
    ones = np.ones_like(tokens)
    loss_mask = ones.copy()
    loss_mask[..., : length // 2] = 0
    ranks = np.tile(np.arange(k, dtype=np.int32), (batch, 1))
    return {"tokens": tokens, "input_mask": ones, "loss_mask": loss_mask, "ranks": ranks}


def offline_steps(preset: str, batch: int, length: int) -> dict:
    """name -> (jitted step, state, batch): the supervised, reward-model and preference steps."""
    mesh = _mesh(preset)
    tx = optax.adamw(1e-4)
    out = {}
    policy = build_model(model_config(preset))
    params = sharding.init_params(policy, jax.random.key(0), mesh)

    def add(name, loss_fn, params, data, **slots):
        state = TrainState.create(params, tx, mesh, **slots)
        data = sharding.shard_batch(data, mesh)
        step = steps.jit_step(steps.make_train_step(loss_fn, tx), state, data, mesh)
        out[name] = (step, state, data)

    sequences = _comparisons(policy, batch, length, k=1)
    lm = {k: v[:, 0] for k, v in sequences.items() if k != "ranks"}
    add("SFT", objectives.lm_loss_fn(policy), params, lm)
    reward_model = build_model(model_config(preset), heads=("reward",))
    add(
        "reward model (Bradley-Terry)",
        objectives.reward_model_loss_fn(reward_model, reward_model_config.get_config().loss),
        sharding.init_params(reward_model, jax.random.key(1), mesh),
        _comparisons(reward_model, batch, length),
    )
    pairs = {k: v for k, v in _comparisons(policy, batch, length).items() if k != "ranks"}
    dpo = dpo_config.get_config("dpo").loss
    add("DPO", objectives.preference_loss_fn(policy, dpo), params, pairs, ref_params=params)
    unpaired = {**lm, "label": np.arange(batch, dtype=np.int32) % 2}
    unpaired.update({f"kl_{k}": np.roll(v, 1, axis=0) for k, v in lm.items()})
    kto = kto_config.get_config("kto").loss
    add("KTO", objectives.unpaired_loss_fn(policy, kto), params, unpaired, ref_params=params)
    return out


def _prompts(model, batch: int, prompt_len: int) -> dict:
    tokens = _tokens(batch, prompt_len, model.config.vocab_size, seed=1)
    return {"prompt_tokens": tokens, "prompt_mask": np.ones_like(tokens)}


def rl_steps(preset: str, batch: int, prompt_len: int, new_tokens: int) -> dict:
    """name -> (jitted iteration, state, prompt batch) for PPO (value head on the policy) and
    GRPO (groups of 4), plus the pieces of the PPO iteration for `rl_split`."""
    mesh = _mesh(preset)
    tx = optax.adamw(1e-5)
    policy = build_model(model_config(preset), heads=("lm", "value"))
    params = sharding.init_params(policy, jax.random.key(0), mesh)
    prompts = sharding.shard_batch(_prompts(policy, batch, prompt_len), mesh)
    ppo_config = rl.PPOConfig(kl_control="fixed")
    controller = rl.kl_controller_from_config(ppo_config)
    state = TrainState.create(
        {"policy": params}, tx, mesh, ref_params=params, aux={"kl": controller.init()}
    )
    ppo = rl.make_ppo_step(
        policy=policy,
        value_model=None,
        score_fn=even_token_share,
        tx=tx,
        kl_controller=controller,
        config=ppo_config,
        rollout_config=rl.RolloutConfig(max_new_tokens=new_tokens),
        eos_id=EOS,
    )
    out = {"PPO iteration": (steps.jit_step(ppo, state, prompts, mesh), state, prompts)}
    group = 4
    grpo_prompts = sharding.shard_batch(_prompts(policy, batch // group, prompt_len), mesh)
    grpo_params = sharding.init_params(policy, jax.random.key(0), mesh)
    grpo_state = TrainState.create(grpo_params, tx, mesh, ref_params=grpo_params)
    grpo = rl.make_grpo_step(
        policy=policy,
        score_fn=even_token_share,
        tx=tx,
        config=rl.GRPOConfig(),
        rollout_config=rl.RolloutConfig(max_new_tokens=new_tokens, group_size=group),
        eos_id=EOS,
    )
    out["GRPO iteration"] = (
        steps.jit_step(grpo, grpo_state, grpo_prompts, mesh),
        grpo_state,
        grpo_prompts,
    )
    response_fn = actor_critic_response_fn(policy, None)

    @jax.jit
    def sampling(state, prompts, rng):
        return sample(
            policy,
            state.params["policy"],
            prompts["prompt_tokens"],
            prompts["prompt_mask"],
            rng,
            max_new_tokens=new_tokens,
            eos_id=EOS,
        )

    @jax.jit
    def rollout(state, prompts, rng):
        return collect(
            policy=policy,
            params=state.params,
            policy_params=state.params["policy"],
            ref_params=state.ref_params,
            response_fn=response_fn,
            prompts=prompts,
            rng=rng,
            score_fn=lambda *s: even_token_share(state, *s),
            max_new_tokens=new_tokens,
            eos_id=EOS,
        )

    out["sampling"] = (sampling, state, prompts)
    out["rollout"] = (rollout, state, prompts)
    return out


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
