"""The training programs the benchmarks time and compile: SFT, reward model, DPO, KTO, the PPO and
GRPO iterations, sampling and a rollout, each built from the stages' own pieces (the losses of
`alignax.objectives`, `alignax.rl`'s iterations, `alignax.sampling.sample`) on random tokens.

A `Placement` says where a program's inputs live: on this process's devices (the scaling tables
run them), or as `jax.ShapeDtypeStruct`s on any mesh, a TPU slice's included, for a program
compiled ahead of time and never run (`benchmarks/aot.py`). Each builder returns name ->
(jitted program, state, batch); a program is called as `program(state, batch, rng)`.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from alignax import objectives, rl, sharding, steps
from alignax.models import build_model
from alignax.rl.rollout import actor_critic_response_fn, collect
from alignax.sampling import sample
from alignax.state import TrainState
from benchmarks.common import even_token_share
from configs import dpo as dpo_config
from configs import kto as kto_config
from configs import reward_model as reward_model_config

EOS = 2


@dataclasses.dataclass(frozen=True)
class Placement:
    """Concrete inputs on `mesh` (`abstract=False`: params initialised in their shards, batches
    placed), or their shapes, dtypes and shardings only (`abstract=True`)."""

    mesh: Mesh
    abstract: bool = False

    def params(self, model, seed: int):
        if self.abstract:
            return sharding.abstract_params(model, self.mesh)
        return sharding.init_params(model, jax.random.key(seed), self.mesh)

    def state(self, params, tx: optax.GradientTransformation, **slots) -> TrainState:
        make = TrainState.abstract if self.abstract else TrainState.create
        return make(params, tx, self.mesh, **slots)

    def batch(self, arrays: dict) -> dict:
        place = sharding.abstract_batch if self.abstract else sharding.shard_batch
        return place(arrays, self.mesh)

    def rng(self):
        key = jax.random.key(0)
        if self.abstract:
            return jax.ShapeDtypeStruct(
                key.shape, key.dtype, sharding=sharding.replicated(self.mesh)
            )
        return key


def tokens(batch: int, length: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, vocab, (batch, length)).astype(np.int32)


def comparisons(vocab: int, batch: int, length: int, k: int = 2) -> dict:
    """`batch` groups of `k` sequences whose second half is the response."""
    ids = tokens(batch * k, length, vocab).reshape(batch, k, length)
    ones = np.ones_like(ids)
    loss_mask = ones.copy()
    loss_mask[..., : length // 2] = 0
    ranks = np.tile(np.arange(k, dtype=np.int32), (batch, 1))
    return {"tokens": ids, "input_mask": ones, "loss_mask": loss_mask, "ranks": ranks}


def prompts(vocab: int, batch: int, prompt_len: int) -> dict:
    ids = tokens(batch, prompt_len, vocab, seed=1)
    return {"prompt_tokens": ids, "prompt_mask": np.ones_like(ids)}


def offline_programs(
    model_config: ml_collections.ConfigDict,
    place: Placement,
    batch: int,
    length: int,
    *,
    kto: bool = True,
    grad_accum_steps: int = 1,
) -> dict:
    """The supervised, reward-model and preference steps (AdamW) on `batch` sequences (SFT),
    pairs (reward model, DPO) or labelled sequences with their mismatched KL pairs (KTO) of
    `length` tokens, accumulating gradients over `grad_accum_steps` slices of the batch (as
    `train.grad_accum_steps` does in a stage)."""
    tx = optax.adamw(1e-4)
    out = {}
    policy = build_model(model_config)
    vocab = policy.config.vocab_size
    params = place.params(policy, 0)

    def add(name, loss_fn, params, data, **slots):
        state = place.state(params, tx, **slots)
        data = place.batch(data)
        step_fn = steps.make_train_step(loss_fn, tx, grad_accum_steps=grad_accum_steps)
        step = steps.jit_step(step_fn, state, data, place.mesh)
        out[name] = (step, state, data)

    lm = {k: v[:, 0] for k, v in comparisons(vocab, batch, length, k=1).items() if k != "ranks"}
    add("SFT", objectives.lm_loss_fn(policy), params, lm)
    reward_model = build_model(model_config, heads=("reward",))
    add(
        "reward model (Bradley-Terry)",
        objectives.reward_model_loss_fn(reward_model, reward_model_config.get_config().loss),
        place.params(reward_model, 1),
        comparisons(vocab, batch, length),
    )
    pairs = {k: v for k, v in comparisons(vocab, batch, length).items() if k != "ranks"}
    dpo = dpo_config.get_config("dpo").loss
    add("DPO", objectives.preference_loss_fn(policy, dpo), params, pairs, ref_params=params)
    if kto:
        unpaired = {**lm, "label": np.arange(batch, dtype=np.int32) % 2}
        unpaired.update({f"kl_{k}": np.roll(v, 1, axis=0) for k, v in lm.items()})
        loss = kto_config.get_config("kto").loss
        add("KTO", objectives.unpaired_loss_fn(policy, loss), params, unpaired, ref_params=params)
    return out


def rl_programs(
    model_config: ml_collections.ConfigDict,
    place: Placement,
    batch: int,
    prompt_len: int,
    new_tokens: int,
    *,
    group: int = 4,
    grpo_prompts: int | None = None,
    reward_model: bool = False,
) -> dict:
    """The PPO iteration (value head on the policy, one sample per prompt of `batch`), the GRPO
    iteration (`grpo_prompts` prompts, default `batch // group`, `group` samples each),
    sampling `new_tokens` tokens per prompt, and the PPO rollout (sampling + the policy,
    reference and value forwards + the score). The score is a Bradley-Terry reward model of the
    policy's shape riding in the state (`reward_model=True`, as the PPO stage scores), or a rule
    on the sampled ids."""
    tx = optax.adamw(1e-5)
    policy = build_model(model_config, heads=("lm", "value"))
    vocab = policy.config.vocab_size
    params = place.params(policy, 0)
    data = place.batch(prompts(vocab, batch, prompt_len))
    slots = {"ref_params": params}
    score_fn = even_token_share
    if reward_model:
        scorer = build_model(model_config, heads=("reward",))
        slots["reward_params"] = place.params(scorer, 1)

        def score_fn(state, tokens, input_mask, loss_mask):
            del loss_mask
            return scorer.apply(state.reward_params, tokens, input_mask)["rewards"]

    ppo_config = rl.PPOConfig(kl_control="fixed")
    controller = rl.kl_controller_from_config(ppo_config)
    state = place.state({"policy": params}, tx, aux={"kl": controller.init()}, **slots)
    ppo = rl.make_ppo_step(
        policy=policy,
        value_model=None,
        score_fn=score_fn,
        tx=tx,
        kl_controller=controller,
        config=ppo_config,
        rollout_config=rl.RolloutConfig(max_new_tokens=new_tokens),
        eos_id=EOS,
    )
    out = {"PPO iteration": (steps.jit_step(ppo, state, data, place.mesh), state, data)}
    grpo_prompts = batch // group if grpo_prompts is None else grpo_prompts
    grpo_data = place.batch(prompts(vocab, grpo_prompts, prompt_len))
    grpo_params = place.params(policy, 0)
    grpo_slots = {**slots, "ref_params": grpo_params}
    grpo_state = place.state(grpo_params, tx, **grpo_slots)
    grpo = rl.make_grpo_step(
        policy=policy,
        score_fn=score_fn,
        tx=tx,
        config=rl.GRPOConfig(),
        rollout_config=rl.RolloutConfig(max_new_tokens=new_tokens, group_size=group),
        eos_id=EOS,
    )
    out["GRPO iteration"] = (
        steps.jit_step(grpo, grpo_state, grpo_data, place.mesh),
        grpo_state,
        grpo_data,
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
            score_fn=lambda *s: score_fn(state, *s),
            max_new_tokens=new_tokens,
            eos_id=EOS,
        )

    out["sampling"] = (sampling, state, data)
    out["rollout"] = (rollout, state, data)
    return out
