"""Length hacking: a reward model of length-biased labels buys length with gold in best-of-n, and
DPO on them answers longer; how much do a length penalty, a length covariate and length-normalised
losses recover?

    python -m experiments.length_bias --config configs/length_bias.py --workdir runs/length_bias

Per seed (in <workdir>/seed<k>; the reward models' evaluation cached in eval.npz, the
policies' in policies.npz):
  1. pairs of the review task's generator responses to training prompts, labelled by an
     unbiased annotator (gold) and by annotators with each length bias of `bias.strengths`
     (configs/length_bias.py), all from the same uniform draws
  2. one vmapped run of every reward model: on gold labels; per strength on the biased labels,
     and on them beside a learnt length covariate (`sweeps.make_soft_label_reward_sweep`)
  3. every model's held-out accuracy against gold and against each annotator, its length
     slope on the training responses, and its scores of a pool of generator samples to
     held-out prompts
  4. stages pretrain -> sft -> DPO on the SFT policy's samples labelled by the unbiased
     annotator and by one with `policies.length_bias` (alignax.tasks.Annotator), and every
     loss of `policies.losses` on the biased labels; a reward model on the biased runs' pairs
     and labels, and PPO against it, plain and with its length slope removed; every run's
     policies along its trajectory answer one fresh draw of held-out prompts
The analysis (alignax/analysis/length_bias.py): per strength, best-of-n gold, length, gold beyond
length, the share of the gain that length explains, and raw, length-controlled and gold win
rates for every selector; every policy's gold, length, KL and length-controlled gold; the
criteria of configs/length_bias.py; figures/length_bias{,_policies}.{png,pdf}.

Singhal et al. (2023, "A long way to go") find much of RLHF's reward gain is length; Park et
al. (2024) disentangle length from quality in DPO; length-controlled AlpacaEval (Dubois et al.
2024) regresses a judge's length preference out of its win rates.
"""

from __future__ import annotations

from pathlib import Path

from alignax.analysis.best_of_n import powers_of_two
from alignax.analysis.length_bias import (
    aggregate,
    best_of_n_answers,
    best_of_n_report,
    check_best_of_n_sections,
    figure,
    measure_reward_models,
    reward_models,
    seed_table,
)
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text
from alignax.analysis.trajectories import (
    POLICY_COLUMNS,
    budget_cell,
    measured_policies,
    policy_figure,
    policy_results,
    policy_table,
)
from alignax.cli import run_experiment
from alignax.provenance import written_by
from alignax.study import (
    RLHF_STAGES,
    PlannedStage,
    Study,
    check_kl_budgets,
    check_same_labels,
    check_trajectory,
    rlhf_stage_config,
    wall_time_text,
)
from alignax.workdir import cached_arrays


def plan(config, seed: int, seed_dir: Path) -> list:
    """The policy half's stages: pretrain, SFT and every run of `policy_runs` (the reward
    models are trained inside the seed's evaluation). Checks the settings first."""
    check_best_of_n_sections(config)
    if config.policies.length_bias <= 0:
        raise ValueError(
            f"policies.length_bias={config.policies.length_bias}: gold units per token, positive"
        )
    p = config.policies
    if "dpo" not in p.losses:
        raise ValueError(
            f"policies.losses={tuple(p.losses)}: must hold 'dpo', the loss the others are "
            "compared with (and the control's)"
        )
    if set(p.betas) != set(p.losses) or not all(len(b) and min(b) > 0 for b in p.betas.values()):
        raise ValueError(
            f"policies.betas={p.betas.to_dict()}: positive betas for exactly the losses of "
            f"policies.losses={tuple(p.losses)}"
        )
    check_kl_budgets(p.kl_budgets, "policies.kl_budgets")
    check_trajectory(p.checkpoints, "policies.checkpoints", config.stages.dpo.train, "stages.dpo")
    ppo_train = config.stages.ppo.train
    check_trajectory(p.ppo_checkpoints, "policies.ppo_checkpoints", ppo_train, "stages.ppo")
    check_same_pairs(config)
    stages = [
        PlannedStage(name, RLHF_STAGES[name].KIND, rlhf_stage_config(config, name, seed, seed_dir))
        for name in ("pretrain", "sft")
    ]
    for name, (_, loss, length_bias) in policy_runs(config).items():
        stage = rlhf_stage_config(config, "dpo", seed, seed_dir)
        with stage.unlocked():
            stage.loss = loss
            stage.labels.length_bias = length_bias
        stages.append(PlannedStage(name, RLHF_STAGES["dpo"].KIND, stage, group="policies"))
    reward_model = rlhf_stage_config(config, "reward_model", seed, seed_dir)
    with reward_model.unlocked():
        reward_model.labels.length_bias = p.length_bias
    stages.append(PlannedStage("reward_model", RLHF_STAGES["reward_model"].KIND, reward_model))
    for name, length_debias in PPO_RUNS.items():
        stage = rlhf_stage_config(config, "ppo", seed, seed_dir)
        with stage.unlocked():
            stage.rewards.length_debias = length_debias
        stages.append(PlannedStage(name, RLHF_STAGES["ppo"].KIND, stage, group="ppo"))
    return stages


def check_same_pairs(config) -> None:
    """The reward model learns from the biased DPO runs' pairs: the same annotator (its length
    bias set from `policies.length_bias`), number and sampling (labels.comparisons draws the
    same ones for the same seed)."""
    check_same_labels(config, "the biased DPO runs'")
    rm, dpo = config.stages.reward_model, config.stages.dpo
    if rm.pairs.num_pairs != dpo.pairs.num_pairs:
        raise ValueError(
            f"stages.reward_model.pairs.num_pairs={rm.pairs.num_pairs} must equal "
            f"stages.dpo.pairs.num_pairs={dpo.pairs.num_pairs} (the same pairs)"
        )


CONTROL, BIASED_DPO = "dpo_gold_labels", "dpo_biased"
# PPO against the biased-label reward model: {stage (and method): rewards.length_debias}.
PPO_BIASED, PPO_DEBIASED = "ppo_biased_rm", "ppo_biased_rm_length_debiased"
PPO_RUNS = {PPO_BIASED: False, PPO_DEBIASED: True}


def policy_methods(config) -> dict[str, tuple[str, float]]:
    """{method: (its loss in `policies.losses`, the annotator's length bias)}: DPO on gold
    labels (the control), then every loss on the biased labels."""
    p = config.policies
    return {CONTROL: ("dpo", 0.0)} | {f"{name}_biased": (name, p.length_bias) for name in p.losses}


def policy_runs(config) -> dict[str, tuple]:
    """{stage: (method, loss section, length bias)}: every method at every beta of its loss."""
    p, runs = config.policies, {}
    for method, (name, length_bias) in policy_methods(config).items():
        for beta in p.betas[name]:
            loss = p.losses[name].copy_and_resolve_references()
            loss.hyperparameters.beta = beta
            runs[f"{method}_beta{beta:g}"] = (method, loss, length_bias)
    return runs


def policy_points(config) -> dict[str, tuple[str, int]]:
    """{point: (stage, step)}: every run of `policy_runs` at every step of
    `policies.checkpoints` and every PPO run at every step of `policies.ppo_checkpoints` (its
    trajectory; the last is its final policy), named '<stage>@<step>'."""
    p = config.policies
    trajectories = {stage: p.checkpoints for stage in policy_runs(config)}
    trajectories |= {stage: p.ppo_checkpoints for stage in PPO_RUNS}
    return {
        f"{stage}@{step}": (stage, step) for stage, steps in trajectories.items() for step in steps
    }


def points_of_methods(config) -> dict[str, list[str]]:
    """{method: its runs' points}: what a method's line at equal KL runs through."""
    method = {stage: run[0] for stage, run in policy_runs(config).items()} | {
        s: s for s in PPO_RUNS
    }
    out = {m: [] for m in [*policy_methods(config), *PPO_RUNS]}
    for point, (stage, _) in policy_points(config).items():
        out[method[stage]].append(point)
    return out


POLICY_NAMES = {
    CONTROL: "DPO on gold labels",
    BIASED_DPO: "DPO on biased labels",
    "dpo_length_normalized_biased": "length-normalised DPO on biased labels",
    "simpo_biased": "SimPO on biased labels",
    PPO_BIASED: "PPO against the biased-label reward model",
    PPO_DEBIASED: "PPO against it, its length slope removed",
}


def policy_criteria(config) -> dict[str, tuple[str, str, str]]:
    """Criteria (6)-(13), each a length and a gold criterion: {label: (method a, method b, the
    difference a - b as results.md names it)}."""
    relatives = [m for m in policy_methods(config) if m not in (CONTROL, BIASED_DPO)]
    return {
        "biased_minus_control": (BIASED_DPO, CONTROL, "DPO on biased minus on gold labels"),
        **{
            f"{m}_minus_dpo": (m, BIASED_DPO, f"{POLICY_NAMES.get(m, m)} minus DPO on them")
            for m in relatives
        },
        "ppo_minus_dpo": (
            PPO_BIASED, BIASED_DPO, "PPO against their reward model minus DPO on them"
        ),
        "ppo_length_debiased_minus_ppo": (
            PPO_DEBIASED, PPO_BIASED, "PPO, the length slope removed, minus plain PPO"
        ),
    }  # fmt: skip


# The criteria's numbers in configs/length_bias.py (every relative of DPO shares (8) and (9)).
CRITERIA_NUMBERS = {
    "biased_minus_control": ("(6)", "(7)"),
    "ppo_minus_dpo": ("(10)", "(11)"),
    "ppo_length_debiased_minus_ppo": ("(12)", "(13)"),
}


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The reward models' measurements (cached in eval.npz) and the policies' (policies.npz,
    for exactly these stages' checkpoints)."""
    key = {k: config[k].to_dict() for k in ("bias", "rm", "pairs", "pool", "task", "model")}
    reward_models = cached_arrays(
        seed_dir / "eval.npz", key | {"seed": seed}, lambda: measure_reward_models(config, seed)
    )
    policies = measured_policies(
        config, seed, seed_dir, policy_points(config), measure=config.policies,
        section="policies", also=("reward_model",),
    )  # fmt: skip
    return {**reward_models, **policies}


def analyse(config, seeds: dict, workdir: Path) -> dict:
    strengths = list(config.bias.strengths)
    ns = powers_of_two(config.pool.pool_size)
    t, refs = config.bias.annotator_temperature, config.pool.num_references
    tables = {
        str(seed): seed_table(m, strengths, reward_models(strengths), ns, t, refs, seed)
        for seed, m in seeds.items()
    }
    combined = aggregate(tables, ns)
    figures = workdir / "figures"
    figure(combined, ns, len(tables), figures)
    answers = best_of_n_answers(combined)
    methods = points_of_methods(config)
    policy_tables = {
        str(seed): policy_table(m, list(policy_points(config))) for seed, m in seeds.items()
    }
    pairs = {label: (a, b) for label, (a, b, _) in policy_criteria(config).items()}
    budgets = list(config.policies.kl_budgets)
    policies = policy_results(policy_tables, methods, budgets, pairs)
    title = f"Policies on gold and length-biased labels ({len(policy_tables)} seeds)"
    path = figures / "length_bias_policies"
    policy_figure(policies["runs"], methods, POLICY_NAMES, budgets, title, path)
    return {
        "ns": ns,
        "seeds": tables,
        "combined": combined,
        "answers": answers,
        "policies": policies,
        "policies_budgets": budgets,
    }


def report(config, results: dict, timings: dict, prov: dict) -> str:
    lines = [
        "### Length hacking: length-biased labels in best-of-n, DPO and PPO, and their controls",
        "",
        f"{written_by(prov)}; {len(results['seeds'])} seeds on {config.workers} process(es); "
        f"{wall_time_text(timings)}.",
        "",
        *best_of_n_report(config, results),
        *policy_report(config, results["policies"]),
        "",
        "Where the setting differs from the papers': a synthetic task whose annotators' length "
        "bias is known and linear, tiny reward models and tiny policies, one PPO setting "
        "against three betas per DPO-family loss, the length covariate a known feature rather "
        "than ODIN's learnt length head, and a win-rate regression with the length difference "
        "as its only covariate.",
    ]
    return "\n".join(lines) + "\n"


def policy_report(config, policies: dict) -> list[str]:
    """The policy half's runs, its methods at the KL budgets, and criteria (6)-(13)."""
    p, dpo = config.policies, config.stages.dpo
    rm, ppo = config.stages.reward_model, config.stages.ppo
    budgets, runs, points = list(p.kl_budgets), policy_runs(config), policy_points(config)
    lines = [
        "",
        "#### DPO and PPO on length-biased labels",
        "",
        f"Per seed: pretrain ({config.stages.pretrain.train.steps} steps) -> SFT "
        f"({config.stages.sft.train.steps} steps); {dpo.pairs.num_pairs} pairs of SFT samples to "
        f"training prompts labelled by an annotator adding {p.length_bias} gold per token "
        "(Bradley-Terry at temperature "
        f"{dpo.labels.annotator_temperature}) and, from the same samples and draws, by the "
        f"unbiased one; {dpo.train.steps} steps of batch {dpo.train.batch_size} for every run "
        f"({dpo.optimizer.warmup_steps} of learning-rate warm-up), at every beta of "
        + "; ".join(f"{name} {tuple(p.betas[name])}" for name in p.losses)
        + f" (SimPO's gamma {p.losses.simpo.hyperparameters.gamma:g})" * ("simpo" in p.losses)
        + ". Every run's policies at steps "
        + ", ".join(map(str, p.checkpoints))
        + f" (its trajectory) and the SFT policy answer {p.num_prompts} fresh held-out prompts "
        "with one sampling key; gold at the SFT policy's length adjusts a policy's mean gold by "
        "a slope of gold on length pooled within policies; entropy is the policy's mean "
        "per-token entropy on its answers, distinct-2 and self-BLEU the answers' diversity "
        "(alignax/analysis/diversity.py: the collapse monitor). "
        f"PPO: a reward model ({rm.train.steps} steps of {rm.train.batch_size}) on the biased "
        f"DPO runs' pairs and labels; PPO from the SFT policy against it, "
        f"{ppo.train.steps} iterations of {ppo.train.batch_size} prompts, KL coefficient "
        f"{ppo.ppo.kl_control} (target {ppo.ppo.kl_target:g} nats), plain and with the reward "
        "model's least-squares slope on response length, fitted on the SFT policy's samples, "
        "removed (`rewards.length_debias`), measured at steps "
        + ", ".join(map(str, p.ppo_checkpoints))
        + ". Each run at each step, mean over seeds:",
        "",
    ]
    rows = []
    for name, row in policies["runs"].items():
        stage, step = points.get(name, (None, 0))
        method, loss = runs[stage][:2] if stage in runs else (stage or "SFT", None)
        beta = f"{loss.hyperparameters.beta:g}" if loss else "-"
        cells = [interval_text(row[m], digits=2) for m in POLICY_COLUMNS]
        rows.append([POLICY_NAMES.get(method, method), beta, step, *cells])
    lines += table(("policy", "beta", "step", *POLICY_COLUMNS.values()), rows)
    kls = [f"KL {b:g}" for b in budgets]
    lines += [
        "",
        "Each method at equal KL, within a seed, off the line through its runs' points (every "
        "step above) and the SFT policy's, sorted by KL: the gold and length of a mixture of "
        "the two neighbouring policies, whose KL is at most the line's (KL is convex); below a "
        "method's nearest point that is a mixture with the SFT policy. In brackets the seeds "
        "whose points reach the budget:",
        "",
        *table(
            ("method", "measure", *kls),
            (
                (POLICY_NAMES.get(method, method), metric, *map(budget_cell, values[metric]))
                for method, values in policies["methods"].items()
                for metric in ("gold", "length")
            ),
        ),
    ]
    rows = []
    for label, (_, _, text) in policy_criteria(config).items():
        numbers = CRITERIA_NUMBERS.get(label, ("(8)", "(9)"))
        d, a = policies["differences"][label], policies["answers"][label]
        for metric, number in zip(("length", "gold"), numbers):
            cells = [f"{budget_cell(v)} **{answer}**" for v, answer in zip(d[metric], a[metric])]
            rows.append([f"{number} {metric}, {text}", *cells])
    lines += [
        "",
        "Criteria stated before the run (configs/length_bias.py), paired within seeds at each "
        "KL budget:",
        "",
        *table(("criterion", *kls), rows),
    ]
    return lines


PAPER = "Singhal et al. (2023); length-controlled AlpacaEval"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    c, a, n = results["combined"], results["answers"], results["ns"][-1]
    out = []
    for s, d in c["differences"].items():
        out.append(
            f"length bias {s}, best-of-{n} gold: biased minus gold labels "
            f"{interval_text(d['biased_minus_gold_labels'], 2, True)} (**{a[s]['cost']}**), "
            f"covariate minus biased {interval_text(d['covariate_minus_biased'], 2, True)} "
            f"(**{a[s]['covariate']}**)"
        )
    p, budget = results["policies"], results["policies_budgets"][-1]
    for label, text in (
        ("biased_minus_control", "DPO on biased minus gold labels"),
        (
            "ppo_length_debiased_minus_ppo",
            "PPO with the reward model's length slope removed minus plain PPO",
        ),
    ):
        d, a = p["differences"][label], p["answers"][label]
        out.append(
            f"{text} at KL {budget:g}: length {interval_text(d['length'][-1][:2], 1, True)} "
            f"(**{a['length'][-1]}**), gold {interval_text(d['gold'][-1][:2], 2, True)} "
            f"(**{a['gold'][-1]}**)"
        )
    return out


def summarize(results: dict) -> dict:
    out = {
        f"answer/{s}/{k}": v
        for s, criteria in results["answers"].items()
        for k, v in criteria.items()
    }
    for label, verdicts in results["policies"]["answers"].items():
        for metric, per_budget in verdicts.items():
            for budget, answer in zip(results["policies_budgets"], per_budget, strict=True):
                out[f"answer/policies/{label}/{metric}/kl{budget:g}"] = answer
    return out


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
