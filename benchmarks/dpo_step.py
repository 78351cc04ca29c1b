"""One DPO optimizer step on both sides: sigmoid loss, beta 0.1, the reference forward inside the
step, AdamW (lr 1e-6, betas 0.9/0.999, no decay) after global-norm clipping at 1.0.

alignax: `objectives.preference_loss_fn` under `steps.make_train_step`, jitted with the state
donated. TRL: `DPOTrainer.training_step` (policy and reference forwards, loss, backward) then
clipping, `optimizer.step()`, the scheduler and `zero_grad()`, as the Trainer's loop runs them.
Both start from the same weights (alignax's, exported with `alignax.models.hf.save_hf`) and see
the same token ids: each pair is a prompt and two responses of `response_len` tokens.
"""

from __future__ import annotations

import tempfile

import jax
import ml_collections
import numpy as np

from alignax import objectives, sharding, steps
from alignax.models import build_model
from alignax.state import TrainState
from benchmarks.common import (
    Shape,
    as_words,
    clipped_adamw,
    compiled_step,
    hf_models,
    one_device_mesh,
    trl_peer,
    trl_runner,
    trl_training_args,
    word_tokenizer,
)

LEARNING_RATE = 1e-6
BETA = 0.1


def token_pairs(shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    draw = lambda length: rng.integers(3, shape.vocab, size=(shape.batch, length))  # noqa: E731
    return {
        "prompt": draw(shape.prompt_len),
        "chosen": draw(shape.response_len),
        "rejected": draw(shape.response_len),
    }


def alignax_step(shape: Shape, params, pairs):
    """A zero-argument callable running one compiled step (blocking)."""
    model = build_model(shape.model_config())
    mesh = one_device_mesh()
    tx = clipped_adamw(LEARNING_RATE)
    loss_config = ml_collections.ConfigDict({"name": "dpo", "hyperparameters": {"beta": BETA}})
    params = jax.device_put(params, sharding.replicated(mesh))
    state = TrainState.create(
        params, tx, mesh, **objectives.preference_state_slots(loss_config, params)
    )
    prompt = pairs["prompt"]
    tokens = np.stack([np.concatenate([prompt, pairs[k]], 1) for k in ("chosen", "rejected")], 1)
    loss_mask = np.zeros_like(tokens)
    loss_mask[..., prompt.shape[1] :] = 1
    batch = sharding.shard_batch(
        {
            "tokens": tokens.astype(np.int32),
            "input_mask": np.ones_like(tokens, np.int32),
            "loss_mask": loss_mask.astype(np.int32),
        },
        mesh,
    )
    step_fn = steps.make_train_step(objectives.preference_loss_fn(model, loss_config), tx)
    return compiled_step(step_fn, state, batch, mesh)


def trl_step(shape: Shape, params, pairs):
    """The TRL side, or None with the reason when TRL or torch is missing."""
    try:
        import torch  # noqa: F401 (the peer's availability)
        import transformers  # noqa: F401
        import trl
    except ImportError as error:
        return None, f"TRL side skipped: {error} (pip install -r benchmarks/requirements.txt)"
    model, ref_model = hf_models(shape, params, count=2)
    # The trainer's output directory (nothing is saved to it).
    scratch = tempfile.TemporaryDirectory(prefix="alignax-bench-trl-")
    args = trl.DPOConfig(
        output_dir=scratch.name,
        per_device_train_batch_size=shape.batch,
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=None,
        **trl_training_args(LEARNING_RATE),
    )
    examples = [
        {
            "prompt_ids": pairs["prompt"][i].tolist(),
            "chosen_ids": pairs["chosen"][i].tolist(),
            "rejected_ids": pairs["rejected"][i].tolist(),
        }
        for i in range(shape.batch)
    ]
    trainer = _build_trainer(trl, model, ref_model, args, examples)
    collator = trl.trainer.dpo_trainer.DataCollatorForPreference(pad_token_id=0)
    inputs = trainer._prepare_inputs(collator(examples))
    return trl_runner(trainer, model, inputs, scratch), trl_peer()


def _build_trainer(trl, model, ref_model, args, examples):
    import datasets

    tokenizer = word_tokenizer(model.config.vocab_size)
    dataset = datasets.Dataset.from_list(
        [
            {
                "prompt": as_words(e["prompt_ids"]),
                # TRL joins prompt and completion as text: the space keeps the prompt's last
                # word and the completion's first apart.
                "chosen": " " + as_words(e["chosen_ids"]),
                "rejected": " " + as_words(e["rejected_ids"]),
            }
            for e in examples
        ]
    )
    return trl.DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
