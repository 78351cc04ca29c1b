"""Exports a stage's policy (LoRA adapters merged) as a Hugging Face checkpoint, with the
tokenizer it trained with, for `transformers.AutoModelForCausalLM.from_pretrained`:

    python -m experiments.export --workdir runs/mine/dpo --out runs/mine/dpo_hf

The tokenizer is the stage's `data.tokenizer` (an HF directory or a GGUF file; a sentencepiece
model or a built-in task's vocabulary is not exported). Heads other than the LM head (a reward
model's) are not exported.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

WORKDIR = flags.DEFINE_string(
    "workdir", None, "the workdir of a finished stage (SFT, DPO, PPO, ...)"
)
OUT = flags.DEFINE_string("out", None, "the directory to write the checkpoint to")
flags.mark_flags_as_required(["workdir", "out"])


def export(workdir: str | Path, out: str | Path) -> Path:
    """Writes the stage's merged policy (and its tokenizer, when it has an HF or GGUF one) to
    `out`; returns it."""
    import jax
    import ml_collections

    from alignax.data.hf_tokenizer import HFTokenizer
    from alignax.data.sources import load_tokenizer
    from alignax.models.hf import save_hf
    from alignax.sharding import make_mesh
    from alignax.stages import load_stage_model

    workdir, out = Path(workdir), Path(out)
    config = json.loads((workdir / "config.json").read_text())
    model, params = load_stage_model(
        workdir,
        heads=("lm",),
        mesh=make_mesh(ml_collections.ConfigDict(config["mesh"])),
    )
    save_hf(out, model.config, jax.device_get(params))
    source = config.get("data", {}).get("tokenizer", "")
    tokenizer = load_tokenizer(source) if source else None
    if isinstance(tokenizer, HFTokenizer):
        tokenizer.save(out)
        # The special ids transformers' generate stops and pads with.
        hf_config = json.loads((out / "config.json").read_text())
        hf_config.update(
            bos_token_id=tokenizer.bos_id,
            eos_token_id=tokenizer.eos_id,
            pad_token_id=tokenizer.pad_id,
        )
        (out / "config.json").write_text(json.dumps(hf_config, indent=2))
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(f"exported {WORKDIR.value} to {export(WORKDIR.value, OUT.value)}", flush=True)


if __name__ == "__main__":
    app.run(main)
