"""One DPO optimizer step on every side: sigmoid loss, beta 0.1, the reference forward inside the
step, AdamW (lr 1e-6, betas 0.9/0.999, no decay) after global-norm clipping at 1.0.

alignax: `objectives.preference_loss_fn` under `steps.make_train_step`, jitted with the state
donated (and variants: the LM head only at response positions, the reference log-probs computed
beforehand, bfloat16 compute). TRL: `DPOTrainer.training_step` (policy and reference forwards,
loss, backward) then clipping, `optimizer.step()`, the scheduler and `zero_grad()`, as the
Trainer's loop runs them.
Tunix: its `DPOTrainer`'s reference forward and jitted train step, in a process of its own
virtual environment (`tunix_step`, benchmarks/tunix_peer.py). Every side starts from the same
weights (alignax's, exported with `alignax.models.hf.save_hf`) and sees the same token ids: each
pair is a prompt and two responses of `response_len` tokens.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import jax
import ml_collections
import numpy as np

from alignax import logprobs, objectives, sharding, steps
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


def alignax_step(
    shape: Shape,
    params,
    pairs,
    *,
    scored_logits_only: bool = False,
    precomputed_reference: bool = False,
    dtype: str = "float32",
):
    """A zero-argument callable running one compiled step (blocking). `scored_logits_only`: the
    LM head only at the positions that predict response tokens; `precomputed_reference`: the
    reference log-probs read from the batch (computed once beforehand), so the step has no
    reference forward; `dtype`: the compute dtype (params and optimizer stay float32)."""
    config = shape.model_config()
    config.dtype = dtype
    model = build_model(config)
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
    arrays = {
        "tokens": tokens.astype(np.int32),
        "input_mask": np.ones_like(tokens, np.int32),
        "loss_mask": loss_mask.astype(np.int32),
    }
    if precomputed_reference:
        arrays["ref_logps"] = np.asarray(objectives.option_logps(model, params, arrays)[0])
    batch = sharding.shard_batch(arrays, mesh)
    width = logprobs.scored_width(loss_mask) if scored_logits_only else None
    loss_fn = objectives.preference_loss_fn(model, loss_config, scored_width=width)
    return compiled_step(steps.make_train_step(loss_fn, tx), state, batch, mesh)


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
    trainer = build_trainer(trl, model, ref_model, args, examples)
    collator = trl.trainer.dpo_trainer.DataCollatorForPreference(pad_token_id=0)
    inputs = trainer._prepare_inputs(collator(examples))
    return trl_runner(trainer, model, inputs, scratch), trl_peer()


def build_trainer(trl, model, ref_model, args, examples, peft_config=None):
    """TRL's DPOTrainer on `examples` (token ids, written as words for its tokenizer); with a
    PEFT `peft_config` (and no `ref_model`), LoRA over `model`."""
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
        peft_config=peft_config,
    )


def tunix_step(shape: Shape, params, pairs, python: str | None):
    """Google Tunix's DPO step (benchmarks/tunix_peer.py) in its own virtual environment's
    `python`, driven over a pipe so its rounds interleave with the other sides'; the same
    weights (exported with `save_hf`), pairs, loss and optimizer. Returns (a blocking call of
    one step, the peer's description), or (None, why it is skipped)."""
    if not python:
        return None, (
            "Tunix side skipped: no --tunix-python (a virtual environment made from "
            "benchmarks/requirements-tunix.txt)"
        )
    from alignax.models.hf import save_hf

    scratch = tempfile.TemporaryDirectory(prefix="alignax-bench-tunix-")
    root = Path(scratch.name)
    save_hf(root / "model", shape.model_config(), jax.device_get(params))
    np.savez(root / "pairs.npz", **pairs)
    request = {
        "checkpoint": str(root / "model"),
        "pairs": str(root / "pairs.npz"),
        "beta": BETA,
        "learning_rate": LEARNING_RATE,
        "warmup": 2,
    }
    (root / "request.json").write_text(json.dumps(request))
    log = open(root / "stderr.txt", "w")  # noqa: SIM115 (open while the peer runs)
    peer = subprocess.Popen(
        [python, str(Path(__file__).with_name("tunix_peer.py")), str(root / "request.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )

    def reply() -> str:
        line = peer.stdout.readline().strip()
        if not line or line == "error":
            raise RuntimeError(
                f"the Tunix peer stopped (rc {peer.poll()}); its log: {root / 'stderr.txt'}\n"
                + (root / "stderr.txt").read_text()[-2000:]
            )
        return line

    if reply() != "ready":
        raise RuntimeError(f"the Tunix peer did not start; its log: {root / 'stderr.txt'}")
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('google-tunix'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    def run():
        peer.stdin.write("step\n")
        peer.stdin.flush()
        return float(reply())

    def close():
        if peer.poll() is None:
            peer.stdin.write("quit\n")
            peer.stdin.flush()
            peer.wait(timeout=60)
        log.close()
        scratch.cleanup()

    run.close = close
    about = (
        f"Tunix {version} (its DPOTrainer's jitted step after its reference forward, in its own "
        f"process and virtual environment, the same jax)"
    )
    return run, about
