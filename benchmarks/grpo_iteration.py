"""One GRPO iteration on both sides: sample a group of `GROUP` completions for each prompt
(exactly `response_len` new tokens, temperature 1, KV cache), score them, form group-normalised
advantages, and take one optimizer step on the clipped GRPO loss (epsilon 0.2 / 0.28,
sequence-mean aggregation, the k3 KL to the reference times the importance ratio (TRL's default
bias correction) with beta 0.04, so the reference forward is in the iteration); AdamW (lr 1e-6,
betas 0.9/0.999, no decay) after global-norm clipping at 1.0. The reward is the share of even
token ids in a completion (cheap on both sides, so the iteration is the model's work).

alignax: `rl.make_grpo_step` (rollout, scoring, advantages and the update in one jitted program;
its rollout also computes the sampled tokens' log-probs under the current policy, which TRL
skips with one update per generation). TRL: `GRPOTrainer.training_step` (generation with
`transformers` generate, rewards, advantages, reference forward, loss, backward) then clipping,
`optimizer.step()`, the scheduler and `zero_grad()`, as the Trainer's loop runs them. Both start
from the same weights and prompts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from alignax import rl, sharding
from alignax.models import build_model
from alignax.state import TrainState
from benchmarks.common import (
    Shape,
    as_words,
    clipped_adamw,
    compiled_step,
    even_token_share,
    one_device_mesh,
    trl_peer,
    trl_runner,
    trl_training_args,
    word_tokenizer,
)

GROUP = 4
LEARNING_RATE = 1e-6
BETA = 0.04
CLIP_LOW, CLIP_HIGH = 0.2, 0.28


def prompts(shape: Shape, seed: int = 2) -> np.ndarray:
    """`shape.batch // GROUP` prompts, so that an iteration trains on `shape.batch` completions."""
    rng = np.random.default_rng(seed)
    count = shape.batch // GROUP
    return rng.integers(3, shape.vocab, size=(count, shape.prompt_len)).astype(np.int32)


def alignax_iteration(shape: Shape, params, prompt_tokens):
    """A zero-argument callable running one compiled iteration (blocking)."""
    model = build_model(shape.model_config())
    mesh = one_device_mesh()
    tx = clipped_adamw(LEARNING_RATE)
    params = jax.device_put(params, sharding.replicated(mesh))
    ref_params = jax.tree.map(jnp.copy, params)
    state = TrainState.create(params, tx, mesh, ref_params=ref_params)
    step_fn = rl.make_grpo_step(
        policy=model,
        score_fn=even_token_share,
        tx=tx,
        config=rl.GRPOConfig(
            beta=BETA,
            clip_eps_low=CLIP_LOW,
            clip_eps_high=CLIP_HIGH,
            epochs=1,
            num_minibatches=1,
            loss="grpo",
            aggregation="sequence_mean",
            scale_rewards="group",
            kl_importance_weighted=True,  # TRL's use_bias_correction_kl (its default)
        ),
        rollout_config=rl.RolloutConfig(
            max_new_tokens=shape.response_len, group_size=GROUP, temperature=1.0
        ),
        eos_id=-1,  # exactly response_len tokens, like the TRL side
    )
    batch = sharding.shard_batch(
        {"prompt_tokens": prompt_tokens, "prompt_mask": np.ones_like(prompt_tokens)}, mesh
    )
    return compiled_step(step_fn, state, batch, mesh)


def trl_iteration(shape: Shape, params, prompt_tokens):
    """The TRL side, or (None, reason) when TRL or torch is missing."""
    try:
        import datasets
        import torch
        import trl
    except ImportError as error:
        return None, f"TRL side skipped: {error} (pip install -r benchmarks/requirements.txt)"
    from alignax.models.hf import save_hf

    # TRL loads the policy and its reference from a checkpoint directory; kept with the runner.
    scratch = tempfile.TemporaryDirectory(prefix="alignax-bench-grpo-")
    checkpoint = Path(scratch.name) / "model"
    save_hf(checkpoint, shape.model_config(), jax.device_get(params))
    # An end-of-sequence id outside the model's vocabulary: every completion has all its tokens.
    tokenizer = word_tokenizer(shape.vocab, eos_id=shape.vocab)
    args = trl.GRPOConfig(
        output_dir=str(Path(scratch.name) / "out"),
        per_device_train_batch_size=shape.batch,
        num_generations=GROUP,
        max_completion_length=shape.response_len,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        beta=BETA,
        epsilon=CLIP_LOW,
        epsilon_high=CLIP_HIGH,
        loss_type="grpo",
        use_bias_correction_kl=True,
        scale_rewards="group",
        num_iterations=1,
        model_init_kwargs={"dtype": torch.float32},
        shuffle_dataset=False,
        **trl_training_args(LEARNING_RATE),
    )
    rows = [{"prompt": as_words(p)} for p in prompt_tokens]

    def even_share(completion_ids, **_):
        return [float(np.mean(np.asarray(ids) % 2 == 0)) if ids else 0.0 for ids in completion_ids]

    trainer = trl.GRPOTrainer(
        model=str(checkpoint),
        reward_funcs=even_share,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    # The generation batch as TRL's sampler yields it: each prompt `GROUP` times in a row.
    inputs = [row for row in rows for _ in range(GROUP)]
    return trl_runner(trainer, trainer.model, inputs, scratch), trl_peer()
