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

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels
from alignax.analysis.best_of_n import powers_of_two
from alignax.analysis.length_bias import aggregate, annotate, figure, seed_table, selector_table
from alignax.analysis.policy_eval import EVAL_SEED_OFFSET, score_pairs
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, interval_verdict, least_squares_slope
from alignax.analysis.trajectories import (
    POLICY_COLUMNS,
    budget_cell,
    measured_policies,
    policy_figure,
    policy_results,
    policy_table,
)
from alignax.cli import run_experiment
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.proxies import reward_model_config, section_reward_sweep
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
from alignax.sweeps import make_member_scorer
from alignax.tasks import get_task
from alignax.tasks.base import response_lengths
from alignax.workdir import cached_arrays

# The covariate's unit, in standard deviations of length: Adam moves the coefficient by about
# the learning rate a step, so it is fitted per tenth of a standard deviation to reach the
# annotators' 1-4 per standard deviation (strength / temperature) within the run.
COVARIATE_UNIT = 0.1


def models(strengths) -> dict[str, int]:
    """{model name: its member index}: the gold-label model, then per strength the biased-label
    model, then per strength the one fitted beside the length covariate."""
    out = {"gold labels": 0}
    for i, s in enumerate(strengths):
        out[f"biased labels, strength {s:g}"] = 1 + i
        out[f"length covariate, strength {s:g}"] = 1 + len(strengths) + i
    return out


def plan(config, seed: int, seed_dir: Path) -> list:
    """The policy half's stages: pretrain, SFT and every run of `policy_runs` (the reward
    models are trained inside the seed's evaluation). Checks the settings first."""
    strengths = tuple(config.bias.strengths)
    if not strengths or len(set(strengths)) < len(strengths) or min(strengths) <= 0:
        raise ValueError(
            f"bias.strengths={strengths}: distinct positive length biases (0 is the gold-label "
            "control, always trained)"
        )
    if config.bias.annotator_temperature <= 0:
        raise ValueError(
            f"bias.annotator_temperature={config.bias.annotator_temperature}: must be positive"
        )
    if not 1 <= config.pool.num_references <= config.pool.pool_size:
        raise ValueError(
            f"pool.num_references={config.pool.num_references}: between 1 and pool.pool_size="
            f"{config.pool.pool_size}"
        )
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


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The reward models' measurements (cached in eval.npz) and the policies' (policies.npz,
    for exactly these stages' checkpoints)."""
    key = {k: config[k].to_dict() for k in ("bias", "rm", "pairs", "pool", "task", "model")}
    reward_models = cached_arrays(
        seed_dir / "eval.npz", key | {"seed": seed}, lambda: measure_seed(config, seed)
    )
    policies = measured_policies(
        config, seed, seed_dir, policy_points(config), ppo_stages=PPO_RUNS,
        measure=config.policies, section="policies", also=("reward_model",),
    )  # fmt: skip
    return {**reward_models, **policies}


def measure_seed(config, seed: int) -> dict[str, np.ndarray]:
    """Every model's scores of the pool, its accuracy against gold and each annotator, its length
    slope and covariate coefficient; the pool's gold and lengths; the length statistics."""
    b, r, n = config.bias, config.rm, config.pairs.num_pairs
    strengths = list(b.strengths)
    task = get_task(config.task_name, config.task)
    train = labels.shuffled_generator_pairs(task, n, seed=seed, split="train")
    length = response_lengths(train).astype(np.float64)  # tokens, the EOS included
    mean, std = length.mean(), max(length.std(), 1e-6)
    z = (length - mean) / std
    uniform = np.random.default_rng([seed, 37]).random(n)
    gold = train["gold_reward"].astype(np.float64)
    biased = [annotate(gold + s * z, uniform, b.annotator_temperature) for s in strengths]
    targets = [annotate(gold, uniform, b.annotator_temperature), *biased, *biased]
    no_covariate = np.zeros(n, np.float32)
    gap = ((z[:, 0] - z[:, 1]) / COVARIATE_UNIT).astype(np.float32)
    covariates = [no_covariate] * (1 + len(strengths)) + [gap] * len(strengths)
    m = len(targets)

    model = build_model(reward_model_config(config.model, r.width), heads=("reward",))
    sweep = section_reward_sweep(model, r, train, with_covariate=True)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), i) for i in range(m)])
    (trained, coefficients), _ = sweep(
        (jax.vmap(model.init)(keys), jnp.zeros(m)),
        jnp.asarray(np.stack(targets)),
        jnp.zeros(m, int),
        jnp.full(m, n),
        jnp.zeros(m),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
        covariate=jnp.asarray(np.stack(covariates)),
    )
    fitted = np.asarray(coefficients)[1 + len(strengths) :] / COVARIATE_UNIT
    print(
        f"[length_bias] seed {seed}: {m} reward models trained; length coefficients "
        f"{np.round(fitted, 2).tolist()} per standard deviation (the annotators' "
        f"{[s / b.annotator_temperature for s in strengths]})",
        flush=True,
    )
    score = make_member_scorer(model)
    train_scores = score_pairs(score, trained, train)

    test = labels.shuffled_generator_pairs(
        task, config.pairs.num_eval_pairs, seed=EVAL_SEED_OFFSET + seed, split="eval"
    )
    test_gold = test["gold_reward"].astype(np.float64)
    test_z = (response_lengths(test) - mean) / std
    tested = score_pairs(score, trained, test)
    said = tested[..., 0] > tested[..., 1]  # [M, N]
    pool = labels.generator_pool(
        task, config.pool.num_prompts, config.pool.pool_size, seed=EVAL_SEED_OFFSET + seed
    )

    def prefers_first(utility):
        return utility[:, 0] > utility[:, 1]

    return {
        "scores": score_pairs(score, trained, pool),
        "pool_gold": pool["gold_reward"].astype(np.float64),
        "pool_length": response_lengths(pool).astype(np.float64),
        "length_mean": np.float64(mean),
        "length_std": np.float64(std),
        "slopes": np.array([least_squares_slope(train_scores[i], length) for i in range(m)]),
        "coefficients": np.asarray(coefficients) / COVARIATE_UNIT,  # per standard deviation
        "accuracy_gold": (said == prefers_first(test_gold)).mean(axis=1),
        # Against the annotator of each model's own strength (gold's for the gold-label model).
        "accuracy_labels": np.array(
            [
                np.mean(said[i] == prefers_first(test_gold + s * test_z))
                for i, s in enumerate([0.0, *strengths, *strengths])
            ]
        ),
    }


# Criteria (1)-(5), per strength at the largest n: (the difference, its answer's key, the
# criterion as results.md states it, the verdict above 0, below 0).
CRITERIA = (
    ("correlation", "correlation", "(1) length correlation, biased minus gold labels",
     "more correlated with length", "less"),
    ("biased_minus_gold_labels", "cost", "(2) gold, biased minus gold labels",
     "higher gold", "lower gold than gold labels"),
    ("regressed_minus_biased", "regressed", "(3) gold, length regressed out minus biased",
     "raises gold", "lowers it"),
    ("covariate_minus_biased", "covariate", "(4) gold, length covariate minus biased",
     "raises gold", "lowers it"),
    ("controlled_error_reduction", "controlled",
     "(5) win-rate error vs gold judge, raw minus length-controlled",
     "nearer the truth", "farther from it"),
)  # fmt: skip


def analyse(config, seeds: dict, workdir: Path) -> dict:
    strengths = list(config.bias.strengths)
    ns = powers_of_two(config.pool.pool_size)
    t, refs = config.bias.annotator_temperature, config.pool.num_references
    tables = {
        str(seed): seed_table(m, strengths, models(strengths), ns, t, refs, seed)
        for seed, m in seeds.items()
    }
    combined = aggregate(tables, ns)
    figures = workdir / "figures"
    figure(combined, ns, len(tables), figures)
    answers = {
        s: {answer: interval_verdict(d[key], *words) for key, answer, _, *words in CRITERIA}
        for s, d in combined["differences"].items()
    }
    methods = points_of_methods(config)
    policy_tables = {
        str(seed): policy_table(m, list(policy_points(config))) for seed, m in seeds.items()
    }
    pairs = {"biased_minus_control": (BIASED_DPO, CONTROL)}
    relatives = [m for m in policy_methods(config) if m not in (CONTROL, BIASED_DPO)]
    pairs |= {f"{m}_minus_dpo": (m, BIASED_DPO) for m in relatives}
    pairs |= {"ppo_minus_dpo": (PPO_BIASED, BIASED_DPO)}
    pairs |= {"ppo_length_debiased_minus_ppo": (PPO_DEBIASED, PPO_BIASED)}
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
    b, r, p, ns = config.bias, config.rm, config.pool, results["ns"]
    c, a = results["combined"], results["answers"]
    largest = ns[-1]
    lines = [
        "### Length hacking: length-biased labels in best-of-n, DPO and PPO, and their controls",
        "",
        f"{written_by(prov)}; {len(results['seeds'])} seeds on {config.workers} process(es); "
        f"{wall_time_text(timings)}.",
        "",
        f"Annotators prefer by gold + strength x (length z-score), Bradley-Terry at temperature "
        f"{b.annotator_temperature} (gold's units), strengths "
        f"{', '.join(f'{s:g}' for s in b.strengths)}; an unbiased annotator (gold labels) the "
        f"control; every annotator labels the same {config.pairs.num_pairs} pairs of generator "
        "responses to training prompts from the same uniform draws. Reward models of width "
        f"{r.width}, {r.steps} steps of {r.batch_size} pairs, one vmapped run: on gold labels; "
        "per strength on the biased labels, and on them beside a learnt length covariate (its "
        "reward alone used). 'Length regressed out' is the biased-label model less its "
        "least-squares slope on the training responses' lengths times the length. Best-of-n "
        f"on {p.pool_size} generator samples to each of {p.num_prompts} held-out prompts; gold "
        "in the task's standardised units; gold beyond its length is gold less the pool's mean "
        "gold at that length; the share of the gain that is length is the selector's pool slope "
        "on length times the pick's extra length over the pick's extra score. Win rates of the "
        f"pick against {p.num_references} pool samples of its prompt: the biased judge's mean "
        "preference (raw), that judge's preferences regressed on the length difference (logistic, "
        "read at equal length: length-controlled) and the unbiased judge's (gold, same "
        "temperature). Mean over seeds ± 95% t-interval; differences paired by seed.",
    ]
    for s, block in c["curves"].items():
        gold_labels = block["gold labels"]
        lines += [
            "",
            f"Length bias {s}: best-of-{largest} (best-of-1, the pool's mean: gold "
            f"{gold_labels['gold'][0][0]:.2f}, length {gold_labels['length'][0][0]:.1f}, win "
            "rates 0.5):",
            "",
            *selector_table(block),
        ]
    acc, coef = c["accuracy"], c["coefficients"]
    lines += [
        "",
        "Held-out accuracy against gold labels (and against the labels' own annotator): "
        + "; ".join(
            f"{name}: {interval_text(acc[name]['gold'], 2)} "
            f"({interval_text(acc[name]['labels'], 2)})"
            for name in acc
        )
        + ". The length covariate's coefficient, per standard deviation of length (the "
        f"annotator's own is strength / {b.annotator_temperature}): "
        + ", ".join(
            f"strength {s}: {interval_text(coef[f'length covariate, strength {s}'], 2)}"
            for s in c["curves"]
        )
        + ".",
        "",
        f"Criteria stated before the run (configs/length_bias.py), at n = {largest}:",
        "",
        *table(
            ("strength", "criterion", "difference", "answer"),
            (
                (s, label, interval_text(d[key], digits=3, signed=True), f"**{a[s][answer]}**")
                for s, d in c["differences"].items()
                for key, answer, label, *_ in CRITERIA
            ),
        ),
        "",
        "Observed, not criteria: each mitigation against the gold-label model, gold at n = "
        f"{largest}: "
        + "; ".join(
            f"strength {s}: regressed {interval_text(d['regressed_minus_gold_labels'], 2, True)}"
            f", covariate {interval_text(d['covariate_minus_gold_labels'], 2, True)}"
            for s, d in c["differences"].items()
        )
        + ".",
        "",
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
    criteria = {"biased_minus_control": ("DPO on biased minus on gold labels", "(6)", "(7)")}
    for m in policy_methods(config):
        if m not in (CONTROL, BIASED_DPO):
            criteria[f"{m}_minus_dpo"] = (
                f"{POLICY_NAMES.get(m, m)} minus DPO on them",
                "(8)",
                "(9)",
            )
    criteria["ppo_minus_dpo"] = ("PPO against their reward model minus DPO on them", "(10)", "(11)")
    criteria["ppo_length_debiased_minus_ppo"] = (
        "PPO, the length slope removed, minus plain PPO",
        "(12)",
        "(13)",
    )
    rows = []
    for label, (text, *numbers) in criteria.items():
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
