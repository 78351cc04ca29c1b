"""What the AI-feedback studies (experiments/rlaif.py, dpa.py, critique_revision.py) share: a
judge built from its `judge` config section, pairs of a policy's samples with their gold
reward, the simulated human's and the judge's labels of them, the SFT policy the pairs come
from, a DPO run on labelled pairs, and a policy's scores on every objective.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np

from alignax import labels
from alignax.analysis.policy_eval import sequence_kl
from alignax.data.layouts import LM_KEYS
from alignax.feedback import judges
from alignax.feedback.judges import (
    Debiased,
    JudgeEnsemble,
    PositionBiased,
    RewardModelJudge,
    SelfJudge,
    encode_pairs,
    hard_labels,
)
from alignax.feedback.principles import (
    Constitution,
    ConstitutionJudge,
    principle,
    principle_judge,
    principle_tokens,
    vector_reward_np,
)
from alignax.stages import load_stage_model, stage_config
from alignax.study import PlannedStage, with_inputs_from
from alignax.workflows import preference, sft

DEBIAS = ("none", *judges.DEBIAS_AVERAGES)


def build_judge(j, task, mesh, policy_dir: Path):
    """(judge, uncertainty or None) from the `judge` config section: the base judge, with the
    injected position bias and the debiasing applied to it (to each member of an ensemble)."""
    if j.debias not in DEBIAS:
        raise ValueError(f"judge.debias={j.debias!r}; allowed: {DEBIAS}")
    if len(j.principles) != len(j.weights):
        raise ValueError(
            f"judge.principles has {len(j.principles)} entries and judge.weights "
            f"{len(j.weights)}; they must pair up"
        )

    def wrap(judge):
        if j.position_bias:
            judge = PositionBiased(judge, j.position_bias)
        return judge if j.debias == "none" else Debiased(judge, j.debias)

    if j.kind == "constitution":
        constitution = Constitution.of(j.principles, j.weights)
        return wrap(ConstitutionJudge(task, constitution, j.temperature)), None
    if j.kind == "principle_ensemble":
        members = tuple(wrap(principle_judge(task, n, j.temperature)) for n in j.principles)
        ensemble = JudgeEnsemble(members, tuple(j.weights))
        return ensemble, ensemble.disagreement
    if j.kind == "self":
        model, params = load_stage_model(policy_dir, heads=("lm",), mesh=mesh)
        cue = sum((principle_tokens(task, principle(n)) for n in j.principles), ())
        judge = SelfJudge(
            model, params, cue, temperature=j.temperature, contrastive=j.self_contrastive
        )
        return wrap(judge), None
    if j.kind == "reward_model":
        if not j.reward_model_from:
            raise ValueError("judge.kind='reward_model' needs judge.reward_model_from (a workdir)")
        judge = RewardModelJudge.from_stage(
            j.reward_model_from, mesh=mesh, temperature=j.temperature
        )
        return wrap(judge), None
    raise ValueError(
        f"judge.kind={j.kind!r}; allowed: constitution, principle_ensemble, self, reward_model"
    )


def describe_judge(j) -> str:
    weighted = ", ".join(f"{w:g} x {n}" for n, w in zip(j.principles, j.weights))
    text = f"{j.kind} ({weighted}; temperature {j.temperature:g})"
    if j.position_bias:
        text += f", injected position bias {j.position_bias:+g} (logit)"
    if j.debias != "none":
        text += f", debiased by {j.debias} averaging of both orders"
    if j.sample_labels:
        text += ", labels drawn from its probability"
    return text


def sample_pairs(
    config, task, policy, policy_params, n: int, seed: int, split: str, rival=None
) -> dict:
    """n unlabelled pairs (a, b) of the policy's samples to prompts of `split`, with gold.
    `rival` = (model, params): response b from that policy instead (delta learning)."""
    rng = np.random.default_rng([seed, 7, split == "eval"])
    prompts = task.sample_prompts(n, rng, split=split)
    key = jax.random.fold_in(jax.random.key(seed), split == "eval")

    def responses(model, params, prompts, key):
        return labels.policy_responses(
            model,
            params,
            task,
            prompts,
            key,
            max_new_tokens=config.labels.max_new_tokens,
            temperature=config.labels.temperature,
            # One sampler shape for both splits (runlocal: also the evaluations' shape).
            chunk_size=min(1024, 2 * config.pairs.num_eval_pairs),
        )

    if rival is None:
        both = responses(policy, policy_params, [p for p in prompts for _ in range(2)], key)
        a, b = both[0::2], both[1::2]
    else:
        a = responses(policy, policy_params, prompts, key)
        b = responses(*rival, prompts, jax.random.fold_in(key, 1))
    pairs = encode_pairs(task, prompts, a, b)
    flat = lambda k: pairs[k].reshape(2 * n, -1)
    pairs["gold_reward"] = task.gold_reward_np(flat("tokens"), flat("loss_mask")).reshape(n, 2)
    return pairs


def chosen_first(pairs: dict, a_chosen) -> dict:
    """DPO's layout: the chosen response at index 0."""
    order = np.where(np.asarray(a_chosen)[:, None], [0, 1], [1, 0])
    return {k: np.take_along_axis(pairs[k], order[:, :, None], axis=1) for k in LM_KEYS}


def label_pairs(config, task, judge, uncertainty, pairs: dict, seed: int) -> dict:
    """The human's and the judge's labels of `pairs` (True = a chosen), the judge's
    probabilities and the routing priority."""
    gold = pairs["gold_reward"]
    human = labels.annotator_prefers_first(config.labels, pairs, np.random.default_rng([seed, 9]))
    probability = judge(pairs)
    out = {
        "human": human,
        "gold": gold[:, 0] >= gold[:, 1],
        "probability": probability,
        "judge": judge_labels(config.judge, probability, np.random.default_rng([seed, 11])),
    }
    if uncertainty is not None:
        out["uncertainty"] = uncertainty(pairs)
    return out


def judge_labels(judge: ml_collections.ConfigDict, probability, rng: np.random.Generator):
    """The judge's labels (True = a chosen) from its P(a > b): drawn from it with
    `judge.sample_labels`, else its argmax."""
    return hard_labels(probability, rng if judge.sample_labels else None)


def policy_dir(config, workdir: Path) -> Path:
    """The SFT policy a study's pairs come from: `labels.policy_from`, else its own SFT stage."""
    return Path(config.labels.policy_from) if config.labels.policy_from else workdir / "sft"


def sft_stages(config) -> list[PlannedStage]:
    """The study's SFT stage from scratch (`config.sft`), shared by its seeds; none when
    `labels.policy_from` names a policy."""
    if config.labels.policy_from:
        return []
    return [PlannedStage("sft", sft.KIND, stage_config(config, config.sft, {}))]


def dpo_stage(config, name: str, policy: Path, seed: int, pairs: Callable[[], dict], made_from):
    """DPO (`config.dpo`) of seed `seed` from `policy` on the pairs `pairs()` returns (the
    builder's `pairs` keyword), made from `made_from` (`alignax.study.with_inputs_from`): a
    stage of the study's seed."""
    stage = stage_config(config, config.dpo, {"init_from": policy})
    with stage.unlocked():
        stage.seed = seed
    stage = with_inputs_from(stage, made_from)
    return PlannedStage(name, preference.KIND, stage, group="dpo", inputs=pairs)


def policy_scores(config, task, model, params, principles, seed: int, reference=None) -> dict:
    """Mean score on each objective (and the gold reward) of the policy's responses to held-out
    prompts; the same prompts and sampling key for every policy of a seed. With `reference`
    (params of `model`), also the 'kl' to it, estimated on the same responses."""
    rng = np.random.default_rng([seed, 21])
    prompts = task.sample_prompts(config.eval.num_prompts, rng, split="eval")
    responses = labels.policy_responses(
        model,
        params,
        task,
        prompts,
        jax.random.fold_in(jax.random.key(seed), 21),
        max_new_tokens=config.labels.max_new_tokens,
        temperature=config.labels.temperature,
        chunk_size=min(1024, len(prompts)),
    )
    rows = task.encode(prompts, responses)
    vector = vector_reward_np(task, rows["tokens"], rows["loss_mask"], principles)
    gold = task.gold_reward_np(rows["tokens"], rows["loss_mask"])
    scores = {"objectives": vector.mean(0).tolist(), "gold_reward": float(np.mean(gold))}
    if reference is not None:
        kl = sequence_kl(model, params, reference, *(rows[k] for k in LM_KEYS))
        scores["kl"] = float(np.mean(kl))
    return scores
