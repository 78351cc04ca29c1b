"""Shared test helpers: a tiny model config, random padded batches, configs of short runs, a
simulated kill, the fake-device meshes, a toy RL task (its reward, prompts, policy and PPO /
GRPO iterations) and notebooks run through a Jupyter kernel."""

import atexit
import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import nbformat
import numpy as np
import optax
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from alignax import rl, sharding
from alignax.data.batching import BatchIterator
from alignax.models import build_model, default_model_config, transplant_backbone
from alignax.state import TrainState


def tiny_config(**overrides):
    config = default_model_config()
    config.update(
        dict(
            vocab_size=32,
            d_model=32,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            mlp_dim=64,
            max_len=32,
        )
    )
    config.update(overrides)
    return config


def tiny_model(heads=("lm",), **overrides):
    return build_model(tiny_config(**overrides), heads=heads)


def pad_rows(rows, length, side="right", pad_id=0):
    """Pads lists of token ids to `length` on `side`; returns (tokens, input_mask) int32."""
    tokens = np.full((len(rows), length), pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        start = 0 if side == "right" else length - len(row)
        tokens[i, start : start + len(row)] = row
        mask[i, start : start + len(row)] = 1
    return jnp.asarray(tokens), jnp.asarray(mask)


def preset_config(module, preset="runlocal", **overrides):
    """`module.get_config(preset)` with dotted-key overrides ("train.steps": 5)."""
    config = module.get_config(preset).copy_and_resolve_references()
    with config.unlocked():
        for key, value in overrides.items():
            section, _, leaf = key.rpartition(".")
            node = config
            for part in section.split(".") if section else ():
                node = node[part]
            node[leaf] = value
    return config


def short_run(**extra):
    """Overrides for a short end-to-end run: log often, evaluate and checkpoint only at the end
    (a checkpoint costs a sync and a write; a test of resuming sets `train.checkpoint_every`)."""
    return {"train.log_every": 5, "train.eval_every": 1000, "train.checkpoint_every": 1000, **extra}


def killed_then_resumed(monkeypatch, run, kill_at: int):
    """Calls `run()` with the data iterator dying at batch `kill_at` (a simulated kill: a
    KeyboardInterrupt, as SIGINT would raise), then calls it again and returns its result."""
    original = BatchIterator.__next__
    calls = {"n": 0}

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("simulated kill")
        return original(self)

    monkeypatch.setattr(BatchIterator, "__next__", dying_next)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(BatchIterator, "__next__", original)
    return run()


# ------------------------------------------------------------------------------ meshes
# The fake-device meshes the sharded tests compare with one device: (data, fsdp, tensor).
MESH_SHAPES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]


def mesh_of(shape, devices=None):
    config = ml_collections.ConfigDict(dict(zip(sharding.MESH_AXES, shape)))
    return sharding.make_mesh(config, devices)


# ------------------------------------------------------------------------------ a toy RL task
# A reward the policy can chase on the tiny model; the PPO and GRPO iterations of the RL tests.
TARGET_TOKEN = 7
EOS = 2


def toy_score(state, tokens, input_mask, loss_mask):
    """Fraction of response tokens equal to TARGET_TOKEN (a reward the policy can chase)."""
    del state, input_mask
    hits = (tokens == TARGET_TOKEN) * loss_mask
    return jnp.sum(hits, -1) / jnp.maximum(jnp.sum(loss_mask, -1), 1)


def toy_prompts(batch):
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(3, 32, size=rng.integers(1, 4))) for _ in range(batch)]
    tokens, mask = pad_rows(rows, 3, side="left")
    return {"prompt_tokens": np.asarray(tokens), "prompt_mask": np.asarray(mask)}


@functools.lru_cache
def toy_policy():
    model = tiny_model()
    return model, model.init(jax.random.key(0))


# Heads and widths that the tensor axis (2) divides.
SHARDABLE_MODEL = dict(d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=64)


def toy_ppo(mesh, score_fn=toy_score):
    policy = tiny_model(**SHARDABLE_MODEL)
    value_model = tiny_model(heads=("value",), **SHARDABLE_MODEL)
    params = sharding.init_params(policy, jax.random.key(0), mesh)
    value = transplant_backbone(params, sharding.init_params(value_model, jax.random.key(1), mesh))
    # The critic starts from the policy's backbone in buffers of its own (the step donates both).
    value = jax.tree.map(lambda x: jnp.array(x, copy=True), value)
    config = rl.PPOConfig(missing_eos_penalty=0.0, kl_control="fixed")
    controller = rl.kl_controller_from_config(config)
    # SGD: Adam's first step is ~lr * sign(grad), which would blow float32 rounding up.
    tx = optax.sgd(0.1)
    state = TrainState.create(
        {"policy": params, "value": value},
        tx,
        mesh,
        ref_params=params,
        aux={"kl": controller.init()},
    )
    step = rl.make_ppo_step(
        policy=policy,
        value_model=value_model,
        score_fn=score_fn,
        tx=tx,
        kl_controller=controller,
        config=config,
        rollout_config=rl.RolloutConfig(max_new_tokens=6),
        eos_id=EOS,
    )
    return state, step


def toy_grpo(mesh, score_fn=toy_score, **config_overrides):
    policy = tiny_model(**SHARDABLE_MODEL)
    params = sharding.init_params(policy, jax.random.key(0), mesh)
    tx = optax.sgd(0.1)
    state = TrainState.create(params, tx, mesh, ref_params=params)
    config = rl.GRPOConfig(num_minibatches=1, **config_overrides)
    step = rl.make_grpo_step(
        policy=policy,
        score_fn=score_fn,
        tx=tx,
        config=config,
        rollout_config=rl.RolloutConfig(max_new_tokens=6, group_size=2),
        eos_id=EOS,
    )
    return state, step


CHATML = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The movie was wonderful, truly wonderful.",
    "I did not like the ending at all; 10/10 would not watch again.",
    "Naïve café reviews — with unicode!",
] * 20


def save_chat_tokenizer(directory, *, pad=True):
    """A byte-level BPE tokenizer with a ChatML template, saved by transformers in `directory`
    as a checkpoint's (tokenizer.json, tokenizer_config.json); returns transformers' own."""
    import transformers
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS, trainer)
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>" if pad else None,
    )
    hf.chat_template = CHATML
    hf.save_pretrained(directory)
    return transformers.AutoTokenizer.from_pretrained(directory)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@functools.cache
def _kernel() -> KernelManager:
    """This process's Jupyter kernel, started once in notebooks/ (where Jupyter starts one) and
    shut down when the process exits: starting a kernel and importing jax in it cost about 7 of
    the 9 s a notebook took on a fresh kernel. Publishing executes each notebook on a fresh one
    (experiments.publish)."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(NOTEBOOKS), env=dict(os.environ))
    atexit.register(manager.shutdown_kernel, now=True)
    return manager


def run_notebook(name: str, workdir: Path) -> nbformat.NotebookNode:
    """notebooks/<name> run through this process's Jupyter kernel in notebooks/ on `workdir`
    (ALIGNAX_WORKDIR in the kernel's environment), after a cell that empties the kernel's
    namespace; the stored file is left as it is: every cell must run, and it must draw a figure
    and show the run's own report."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    manager = _kernel()
    if not manager.is_alive():  # an earlier notebook killed it
        manager.restart_kernel(now=True)
    fresh_namespace = nbformat.v4.new_code_cell(
        "%reset -f\n"
        "import os\n"
        f"os.environ['ALIGNAX_WORKDIR'] = {str(Path(workdir).absolute())!r}\n"
        f"os.chdir({str(NOTEBOOKS)!r})"
    )
    notebook.cells.insert(0, fresh_namespace)
    NotebookClient(notebook, km=manager, timeout=600).execute()
    notebook.cells.pop(0)
    assert notebook_outputs(notebook, "image/png"), f"{name} draws no figure"
    written_by = (Path(workdir) / "results.md").read_text().splitlines()[2]
    assert written_by in "".join(notebook_outputs(notebook, "text")), f"{name} read another run"
    return notebook


def notebook_outputs(notebook: nbformat.NotebookNode, kind: str) -> list:
    """Every output of the notebook's code cells: "text" (the streams) or a MIME type such as
    "image/png"."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "text" and output.output_type == "stream":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output.data[kind])
    return found
