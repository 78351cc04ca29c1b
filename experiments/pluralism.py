"""Pluralistic preferences: a reward model of pooled labels under-serves a minority whose gold
reward differs; what do a group-conditioned model, a latent-class mixture and MaxMin recover?

    python -m experiments.pluralism --config configs/pluralism.py --workdir runs/pluralism

Per seed (in <workdir>/seed<k>; the evaluation cached in eval.npz):
  1. pairs of the review task's generator responses, each labelled by one of `population.
     num_annotators` annotators, Bradley-Terry on the gold reward of its group (configs/
     pluralism.py: a majority and a minority that weigh the task's principles differently)
  2. one vmapped run of three reward models: `pooled` on every label, `group<g>` on group g's
     labels only (the group known)
  3. a latent-class Bradley-Terry mixture of two reward models, the groups unknown: annotators
     split by their agreement with the pooled model, then `em.rounds` rounds of EM (each class's
     model trained on the pairs weighted by its annotators' responsibilities; the
     responsibilities from each annotator's labels)
  4. every model's accuracy against each group's gold on held-out pairs, and its scores of a
     pool of generator samples to held-out prompts
The analysis (alignax/analysis/pluralism.py): best-of-n gold of each group and of the worst group
for the pooled model, each group's own, MaxMin over the group models and over the mixture's
classes; the criteria of configs/pluralism.py; figures/pluralism.{png,pdf}.

Chakraborty et al. (2024, MaxMin-RLHF) show that a single reward model of pooled preferences
serves a minority poorly, and that an EM-fitted mixture with a MaxMin objective serves every
group.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels
from alignax.analysis.best_of_n import powers_of_two
from alignax.analysis.pluralism import (
    aggregate,
    annotate,
    annotator_groups,
    e_step,
    figure,
    initial_split,
    pair_log_likelihood,
    seed_table,
)
from alignax.analysis.policy_eval import EVAL_SEED_OFFSET, score_pairs
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, interval_verdict
from alignax.cli import run_experiment
from alignax.feedback.principles import Constitution
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.proxies import reward_model_config, section_reward_sweep
from alignax.study import Study, wall_time_text
from alignax.sweeps import make_member_scorer
from alignax.tasks import get_task
from alignax.workdir import cached_arrays

# How the report names the reward models ({0}, {1}: the groups' names).
MODEL_NAMES = {
    "group0": "{0}'s model",
    "group1": "{1}'s model",
    "class0": "class 0",
    "class1": "class 1",
}


def constitutions(config) -> list[Constitution]:
    p = config.population
    return [Constitution.of(p.principles, weights) for weights in p.weights]


def plan(config, seed: int, seed_dir: Path) -> list:
    """No stages: every model is trained inside the seed's evaluation. Checks the population."""
    p = config.population
    if len(p.names) != 2 or len(p.shares) != 2 or len(p.weights) != 2:
        raise ValueError(
            f"population.names={tuple(p.names)}, shares={tuple(p.shares)}, weights: the study "
            "compares two groups (a majority and a minority), one share and weights each"
        )
    if any(len(w) != len(p.principles) for w in p.weights):
        raise ValueError(
            f"population.weights={tuple(map(tuple, p.weights))}: one weight per principle of "
            f"population.principles={tuple(p.principles)}"
        )
    if config.em.rounds < 1:
        raise ValueError(f"em.rounds={config.em.rounds}: the mixture needs at least one round")
    annotator_groups(p.num_annotators, p.shares)  # refuses an empty group
    constitutions(config)  # refuses an unknown principle
    return []


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    key = {
        k: config[k].to_dict() for k in ("population", "rm", "pairs", "em", "pool", "task", "model")
    } | {"seed": seed}
    return cached_arrays(seed_dir / "eval.npz", key, lambda: measure_seed(config, seed))


def group_raw(task, pairs: dict, groups: list[Constitution]) -> np.ndarray:
    """[G, N, K]: each group's (unstandardised) reward of every response of `pairs`."""
    n, k, length = pairs["tokens"].shape
    flat = {key: pairs[key].reshape(n * k, length) for key in ("tokens", "loss_mask")}
    return np.stack(
        [c.reward_np(task, flat["tokens"], flat["loss_mask"]).reshape(n, k) for c in groups]
    )


def measure_seed(config, seed: int) -> dict[str, np.ndarray]:
    """Every reward model's accuracy against each group ([G]) and scores of the pool, the
    pool's gold of each group, the mixture's responsibilities and the annotators' groups."""
    p, r = config.population, config.rm
    task = get_task(config.task_name, config.task)
    groups = constitutions(config)
    rng = np.random.default_rng([seed, 31])
    train = labels.shuffled_generator_pairs(task, config.pairs.num_pairs, seed=seed, split="train")
    annotator = rng.integers(p.num_annotators, size=config.pairs.num_pairs)
    group_of = annotator_groups(p.num_annotators, p.shares)
    scale = p.annotator_temperature * task.base_raw_std
    target = annotate(group_raw(task, train, groups), annotator, group_of, scale, rng)
    test = labels.shuffled_generator_pairs(
        task, config.pairs.num_eval_pairs, seed=EVAL_SEED_OFFSET + seed, split="eval"
    )
    test_raw = group_raw(task, test, groups)
    pool = labels.generator_pool(
        task, config.pool.num_prompts, config.pool.pool_size, seed=EVAL_SEED_OFFSET + seed
    )
    model = build_model(reward_model_config(config.model, r.width), heads=("reward",))
    sweep = section_reward_sweep(model, r, train, weighted=True)
    score = make_member_scorer(model)

    def fit(weights: list[np.ndarray], stream: int):
        """One vmapped run of a model per weight vector, each from its own initialisation."""
        m = len(weights)
        keys = [jax.random.fold_in(jax.random.key(seed), 100 * stream + i) for i in range(m)]
        trained, _ = sweep(
            jax.vmap(model.init)(jnp.stack(keys)),
            jnp.asarray(np.stack([target] * m)),
            jnp.zeros(m, int),
            jnp.full(m, config.pairs.num_pairs),
            jnp.zeros(m),
            jnp.stack([jax.random.fold_in(k, 1) for k in keys]),
            jnp.asarray(np.stack(weights), jnp.float32),
        )
        return trained

    by_group = [(group_of[annotator] == g).astype(np.float32) for g in range(len(groups))]
    known = fit([np.ones(config.pairs.num_pairs, np.float32), *by_group], stream=0)
    pooled = score_pairs(score, jax.tree.map(lambda x: x[:1], known), train)[0]  # [N, 2]
    pooled_right = (pooled[:, 0] > pooled[:, 1]) == (target > 0.5)
    agreement = np.bincount(annotator, pooled_right, p.num_annotators) / np.maximum(
        np.bincount(annotator, minlength=p.num_annotators), 1
    )
    responsibilities = initial_split(agreement)
    for round_ in range(config.em.rounds):
        mixture = fit([responsibilities[annotator, k] for k in range(2)], stream=round_ + 1)
        scored = score_pairs(score, mixture, train)
        loglik = pair_log_likelihood(scored[..., 0] - scored[..., 1], target)
        responsibilities = e_step(
            loglik, annotator, p.num_annotators, responsibilities.mean(axis=0)
        )
        right = group_of == responsibilities.argmax(axis=1)
        print(
            f"[pluralism] seed {seed}, EM round {round_ + 1}: class sizes "
            f"{np.round(responsibilities.sum(axis=0), 1).tolist()}, annotators in the class "
            f"of their group (up to the classes' order) {max(right.mean(), 1 - right.mean()):.2f}",
            flush=True,
        )
    models = {"pooled": 0, **{f"group{g}": 1 + g for g in range(len(groups))}}
    out = {
        "responsibilities": responsibilities,
        "groups": group_of,
        "pool_gold": group_raw(task, pool, groups),
    }
    for params, names in ((known, models), (mixture, {"class0": 0, "class1": 1})):
        tested = score_pairs(score, params, test)
        pooled_scores = score_pairs(score, params, pool)
        for name, m in names.items():
            said = tested[m, :, 0] > tested[m, :, 1]
            out[f"{name}.accuracy"] = np.array(
                [np.mean(said == (raw[:, 0] > raw[:, 1])) for raw in test_raw]
            )
            out[f"{name}.pool"] = pooled_scores[m]
    return out


def analyse(config, seeds: dict, workdir: Path) -> dict:
    names = list(config.population.names)
    ns = powers_of_two(config.pool.pool_size)
    tables = {str(seed): seed_table(m, names, ns) for seed, m in seeds.items()}
    combined = aggregate(tables, names, ns)
    figure(combined, names, ns, len(tables), workdir / "figures")
    d = combined["differences"]
    minority = names[-1]
    answers = {
        "control": {
            name: interval_verdict(d["control"][name], "serves its group better", "worse")
            for name in names
        },
        "pooled_under_serves_minority": interval_verdict(
            d["minority_pooled_minus_own"],
            f"pooled serves the {minority} better",
            f"pooled under-serves the {minority}",
        ),
        "maxmin_groups": interval_verdict(
            d["worst_maxmin_groups_minus_pooled"], "raises the worst group", "lowers it"
        ),
        "maxmin_classes": interval_verdict(
            d["worst_maxmin_classes_minus_pooled"], "raises the worst group", "lowers it"
        ),
    }
    return {"ns": ns, "names": names, "seeds": tables, "combined": combined, "answers": answers}


def report(config, results: dict, timings: dict, prov: dict) -> str:
    p, r, ns, names = config.population, config.rm, results["ns"], results["names"]
    c, a = results["combined"], results["answers"]
    d = c["differences"]
    weights = "; ".join(
        f"{name} ({share:.0%} of annotators): "
        + ", ".join(f"{w:g} x {pr}" for pr, w in zip(p.principles, ws, strict=True))
        for name, share, ws in zip(names, p.shares, p.weights, strict=True)
    )
    lines = [
        "### Pluralistic preferences: pooled, group-conditioned and mixture reward models",
        "",
        f"{written_by(prov)}; {len(results['seeds'])} seeds on {config.workers} process(es); "
        f"{wall_time_text(timings)}.",
        "",
        f"Two groups of annotators with their own gold rewards, weights of the task's principles: "
        f"{weights}. {p.num_annotators} annotators; each of {config.pairs.num_pairs} pairs of "
        "generator responses to training prompts is labelled by one annotator drawn at random, "
        f"Bradley-Terry on its group's reward at temperature {p.annotator_temperature} (in "
        f"units of the gold reward's spread). Reward models of width {r.width}, {r.steps} steps "
        f"of {r.batch_size} pairs each: pooled (every label), one per group (its labels; the "
        "group known), and a two-class mixture fitted by EM over annotators (the groups "
        f"unknown; {config.em.rounds} rounds from a split by agreement with the pooled model). "
        f"Best-of-n on {config.pool.pool_size} generator samples to each of "
        f"{config.pool.num_prompts} held-out prompts; each group's gold standardised over the "
        "pool; the worst group's is the lower of the two groups' mean gold. MaxMin picks the "
        "sample whose lower standardised score (of the two group models, or the two classes) is "
        "highest; on the groups' gold rewards themselves it is the rule's own ceiling (an "
        "oracle). Mean over seeds ± 95% t-interval; differences paired by seed.",
        "",
        f"Best-of-{ns[-1]} gold (n = 1 is 0 for every group):",
        "",
    ]
    rows = [
        [selector, *(interval_text(curves[who][-1], digits=2) for who in (*names, "worst group"))]
        for selector, curves in c["curves"].items()
    ]
    lines += table(["selector", *names, "worst group"], rows)
    lines += [
        "",
        "Held-out accuracy of each reward model against each group's gold labels: "
        + "; ".join(
            f"{MODEL_NAMES.get(model, model).format(*names)}: "
            + ", ".join(
                f"{name} {interval_text(acc, digits=2)}"
                for name, acc in zip(names, accs, strict=True)
            )
            for model, accs in c["accuracy"].items()
        )
        + f". The mixture puts {interval_text(c['assignment'], digits=2)} of the annotators in "
        "their group's class.",
        "",
        "Criteria stated before the run (configs/pluralism.py), at the largest n:",
        "",
    ]
    criteria = [
        (
            f"control: the {name}'s own model against the {names[1 - g]}'s, {name}'s gold",
            interval_text(d["control"][name], digits=2, signed=True),
            a["control"][name],
        )
        for g, name in enumerate(names)
    ]
    criteria += [
        (
            f"(1) pooled against the {names[-1]}'s own model, {names[-1]}'s gold",
            interval_text(d["minority_pooled_minus_own"], digits=2, signed=True),
            f"**{a['pooled_under_serves_minority']}**",
        ),
        (
            "(2) MaxMin over the group models against pooled, worst group's gold",
            interval_text(d["worst_maxmin_groups_minus_pooled"], digits=2, signed=True),
            f"**{a['maxmin_groups']}**",
        ),
        (
            "(3) MaxMin over the mixture's classes against pooled, worst group's gold",
            interval_text(d["worst_maxmin_classes_minus_pooled"], digits=2, signed=True),
            f"**{a['maxmin_classes']}**",
        ),
    ]
    lines += table(("criterion", "difference", "answer"), criteria)
    lines += [
        "",
        "Where the setting differs from MaxMin-RLHF's: groups defined by known weights on a "
        "synthetic task's principles, tiny reward models from scratch, best-of-n as the policy "
        "(no PPO), MaxMin per sample on standardised scores rather than a policy's expected "
        "reward.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Chakraborty et al. (2024), MaxMin-RLHF"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    d, a = results["combined"]["differences"], results["answers"]
    minority, n = results["names"][-1], results["ns"][-1]
    worst = {k: c["worst group"] for k, c in results["combined"]["curves"].items()}
    falling = [k for k, curve in worst.items() if curve[-1][0] < curve[0][0]]
    return [
        f"pooled minus the {minority}'s own model, {minority}'s gold at best-of-"
        f"{results['ns'][-1]}: {interval_text(d['minority_pooled_minus_own'], 2, True)} "
        f"(**{a['pooled_under_serves_minority']}**)",
        "MaxMin over group models minus pooled, worst group: "
        f"{interval_text(d['worst_maxmin_groups_minus_pooled'], 2, True)} "
        f"(**{a['maxmin_groups']}**); over the EM mixture's classes: "
        f"{interval_text(d['worst_maxmin_classes_minus_pooled'], 2, True)} "
        f"(**{a['maxmin_classes']}**)",
        f"the worst group's gold falls from n = 1 to {n} under {len(falling)} of {len(worst)} "
        f"selectors (MaxMin over group models: "
        f"{interval_text(worst['MaxMin, group models'][-1], 2, True)}; observed, not a "
        "criterion)",
    ]


def summarize(results: dict) -> dict:
    return {f"answer/{k}": v for k, v in results["answers"].items() if isinstance(v, str)}


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
