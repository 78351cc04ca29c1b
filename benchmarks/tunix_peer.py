"""Google Tunix as a peer of the DPO step benchmark, run in Tunix's own virtual environment:

    python3 -m venv /work/tunix-venv
    /work/tunix-venv/bin/pip install -r benchmarks/requirements-tunix.txt
    /work/tunix-venv/bin/python benchmarks/tunix_peer.py REQUEST.json

Tunix pins packages that conflict with alignax's, so this script runs in a separate process and
imports only tunix, jax, flax, optax, numpy, safetensors and the standard library (never alignax).
The parent (alignax's benchmark) drives it over stdin/stdout so that it can interleave Tunix's
steps with its own cases:

REQUEST.json: `checkpoint` (a Hugging Face Llama checkpoint directory, config.json and
model.safetensors, float32, untied embeddings, as `alignax.models.hf.save_hf` writes it), `pairs`
(an .npz of int arrays `prompt` [B, P], `chosen` [B, R], `rejected` [B, R], unpadded), `beta`,
`learning_rate` and `warmup` (untimed steps, compilation included).

The script builds two `tunix.models.llama3.model.Llama3` models holding the checkpoint's weights
(loaded with Tunix's own `tunix.models.llama3.params.create_model_from_safe_tensors`, float32):
the policy and the reference. It builds `tunix.sft.dpo.dpo_trainer.DPOTrainer` with
`DPOTrainingConfig(algorithm="dpo", beta=beta, label_smoothing=0)` (the sigmoid DPO loss), the
optimizer `optax.chain(clip_by_global_norm(1.0), adamw(lr, b1=0.9, b2=0.999, weight_decay=0))`,
no checkpoint directory, no metrics backends, no mesh (one device), and one batch of all B pairs.
It runs `warmup` steps, prints `ready`, then reads commands, one a line, from stdin:

    step   run one DPO optimizer step; print its wall time in seconds, e.g. `0.8123`
    loss   print the last step's loss
    quit   (or end of input) exit; any other command is answered `error`

Only these answers go to stdout (each flushed); everything else that Tunix, JAX or absl print is
sent to stderr (file descriptor 1 is pointed at stderr before anything is imported).

One step is what `PeftTrainer.train`'s loop does per batch, less its bookkeeping (metrics
buffering, progress bar, hooks, the in-flight throttler, checkpoint manager calls):

1. `DPOTrainer._prepare_inputs(TrainingInput)`: concatenates chosen and rejected behind their
   prompts into one [2B, P+R] batch, builds the causal attention mask
   (`tunix.rl.common.make_causal_attn_mask`) and positions (`build_positions_from_mask`), and runs
   the reference model's forward, `dpo_trainer.compute_logps(ref_model, ...)` (an `nnx.jit`),
   giving the reference's summed completion log-probabilities;
2. `tunix.sft.sharding_utils.shard_input` (a no-op without a mesh, kept as the loop has it);
3. the trainer's jitted train step, `trainer.jit_train_and_eval_step(cache_nnx_graph=True)[0]`
   (as `train()` builds it: `nnx.jit(PeftTrainer._train_step, donate_argnames="optimizer")` on
   `nnx.cached_partial(model, optimizer)`): `nnx.value_and_grad` of `dpo_loss_fn` (the policy
   forward on the 2B sequences, the sigmoid loss), `optax.global_norm` of the gradients and
   `nnx.Optimizer.update` (clipping and AdamW);
4. blocking until the loss, the gradient norm and the updated weights are ready.

Warm-up needs two steps: the first compiles `compute_logps` and the train step, the second
compiles the train step again (without a mesh the optimizer state starts uncommitted to a device
and comes back from the first step committed, a new input sharding); Tunix's own loop does the
same. From the third step on nothing compiles.

So the reference forward is a separate jitted call before the train step, as in Tunix's own loop
(alignax and TRL run it inside their step); the time printed covers 1-4.

Deviation needed for sameness: Tunix 0.1.7's Llama3 attention calls `apply_rope` without the
config's `rope_theta` (its default, 1e6, is always used). The script rebinds
`tunix.models.llama3.model.apply_rope` to the same function with the checkpoint's `rope_theta`
(config.json) before any model is traced; nothing else of Tunix is changed.

`--check-logits LOGITS.npz` (an .npz of `tokens` [N, T] and another implementation's `logits`
[N, T, V] on them, no padding) prints the max abs difference of Tunix's logits instead, and exits.
"""

from __future__ import annotations

import os
import sys

# The protocol's channel: a copy of the original stdout. Everything else written to fd 1 (by
# Python or by C libraries) goes to stderr from here on.
_PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

import functools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from tunix.models.llama3 import model as llama3_model  # noqa: E402
from tunix.models.llama3 import params as llama3_params  # noqa: E402
from tunix.rl import common as rl_common  # noqa: E402
from tunix.sft import sharding_utils  # noqa: E402
from tunix.sft.dpo import dpo_trainer  # noqa: E402

_APPLY_ROPE = llama3_model.apply_rope


def answer(line: str) -> None:
    _PROTOCOL.write(line + "\n")
    _PROTOCOL.flush()


def model_config(checkpoint: str) -> llama3_model.ModelConfig:
    """Tunix's Llama3 config for a Hugging Face Llama config.json (no RoPE scaling)."""
    with open(os.path.join(checkpoint, "config.json")) as f:
        hf = json.load(f)
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ValueError(f"rope_type {rope_type!r}: Tunix's Llama3 has no RoPE scaling")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ValueError("biases: Tunix's Llama3 has none")
    heads = hf["num_attention_heads"]
    return llama3_model.ModelConfig(
        num_layers=hf["num_hidden_layers"],
        vocab_size=hf["vocab_size"],
        embed_dim=hf["hidden_size"],
        hidden_dim=hf["intermediate_size"],
        num_heads=heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        num_kv_heads=hf.get("num_key_value_heads", heads),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
        norm_eps=float(hf["rms_norm_eps"]),
        weight_tying=bool(hf.get("tie_word_embeddings", False)),
    )


def load_model(checkpoint: str, config: llama3_model.ModelConfig) -> llama3_model.Llama3:
    """A Llama3 holding the checkpoint's weights, in float32, read by Tunix's own loader."""
    # Tunix's attention ignores config.rope_theta (see the module docstring): bind it here.
    llama3_model.apply_rope = functools.partial(_APPLY_ROPE, rope_theta=config.rope_theta)
    model = llama3_params.create_model_from_safe_tensors(checkpoint, config, dtype=jnp.float32)
    for path, value in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)):
        if value.dtype != jnp.float32:
            raise ValueError(f"{jax.tree_util.keystr(path)} is {value.dtype}, not float32")
    return model


def logits(model: llama3_model.Llama3, tokens: np.ndarray) -> np.ndarray:
    """The model's logits on unpadded token sequences [N, T]."""
    mask = jnp.ones(tokens.shape, jnp.int32)
    out, _ = model(
        jnp.asarray(tokens, jnp.int32),
        positions=rl_common.build_positions_from_mask(mask),
        cache=None,
        attention_mask=rl_common.make_causal_attn_mask(mask),
    )
    return np.asarray(out)


def training_input(pairs_path: str) -> dpo_trainer.TrainingInput:
    """All B pairs as one tokenized, unpadded batch (masks all ones)."""
    with np.load(pairs_path) as pairs:
        prompt, chosen, rejected = (
            np.asarray(pairs[k], np.int32) for k in ("prompt", "chosen", "rejected")
        )
    ones = lambda a: np.ones_like(a, np.int32)  # noqa: E731
    return dpo_trainer.TrainingInput(
        prompt_ids=prompt,
        prompt_mask=ones(prompt),
        chosen_ids=chosen,
        chosen_mask=ones(chosen),
        rejected_ids=rejected,
        rejected_mask=ones(rejected),
    )


def build_trainer(request: dict) -> dpo_trainer.DPOTrainer:
    config = model_config(request["checkpoint"])
    policy = load_model(request["checkpoint"], config)
    reference = load_model(request["checkpoint"], config)
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(request["learning_rate"], b1=0.9, b2=0.999, weight_decay=0.0),
    )
    training_config = dpo_trainer.DPOTrainingConfig(
        algorithm="dpo",
        beta=float(request["beta"]),
        label_smoothing=0.0,
        eval_every_n_steps=10**9,
        max_steps=None,
        checkpoint_root_directory=None,
        metrics_logging_options=None,
        pbar_description=None,
    )
    return dpo_trainer.DPOTrainer(policy, reference, optimizer, training_config)


def step_runner(trainer: dpo_trainer.DPOTrainer, batch: dpo_trainer.TrainingInput):
    """A zero-argument call of one DPO optimizer step as `PeftTrainer.train` runs it (see the
    module docstring); blocks until it is done and returns the loss as a float."""
    train_step, _ = trainer.jit_train_and_eval_step(skip_jit=False, cache_nnx_graph=True)

    def run() -> float:
        example = trainer._prepare_inputs(batch)  # the reference forward
        example = sharding_utils.shard_input(example, trainer.config.data_sharding_axis)
        loss, _aux, grad_norm = train_step(example)
        jax.block_until_ready((loss, grad_norm, nnx.state(trainer.model, nnx.Param)))
        return float(loss)

    return run


def check_logits(request: dict, path: str) -> None:
    with np.load(path) as saved:
        tokens, expected = saved["tokens"], saved["logits"]
    config = model_config(request["checkpoint"])
    got = logits(load_model(request["checkpoint"], config), tokens)
    answer(f"{float(np.max(np.abs(got - expected))):.3g}")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--check-logits"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        request = json.load(f)
    if len(argv) == 4:
        check_logits(request, argv[3])
        return 0
    trainer = build_trainer(request)
    run = step_runner(trainer, training_input(request["pairs"]))
    last_loss = float("nan")
    for _ in range(int(request.get("warmup", 2))):
        last_loss = run()
    answer("ready")
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            start = time.perf_counter()
            last_loss = run()
            answer(f"{time.perf_counter() - start:.4f}")
        elif command == "loss":
            answer(repr(last_loss))
        elif command == "quit":
            break
        elif command:
            print(f"tunix_peer: unknown command {command!r}", file=sys.stderr)
            answer("error")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
