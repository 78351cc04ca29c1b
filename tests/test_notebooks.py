"""Notebooks run through a Jupyter kernel on the workdir of a `:runlocal` run of their
experiment, and are stored executed on the published data."""

import importlib
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from experiments.publish import NOTEBOOKS as PUBLISHED
from tests.helpers import notebook_outputs, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="session")
def overoptimization_run(tmp_path_factory):
    """The over-optimisation experiment end to end at toy sizes: every stage runs and writes
    its results, criteria and figures."""
    from configs import overoptimization as config_module
    from experiments import overoptimization

    workdir = tmp_path_factory.mktemp("overopt")
    summary = overoptimization.run(config_module.get_config("runlocal"), workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["criteria"]) == {"B1", "B2", "B3", "B4", "B5"}
    for curve in results["best_of_n"].values():
        # Standardised on the pool: best-of-1 is the pool mean, 0; KL estimates under the bound.
        assert abs(curve[0]["gold"]) < 1e-9 and abs(curve[0]["proxy"]) < 1e-9
        assert all(r["kl_pool"] <= r["kl_bound"] + 1e-9 for r in curve)
    # The oracle selects by gold, so no proxy's selection beats it at any n.
    oracle = [r["gold"] for r in results["oracle"]]
    for curve in results["best_of_n"].values():
        assert all(r["gold"] <= o + 1e-9 for r, o in zip(curve, oracle))
    # Measured from step 0, then at eval_steps (1) and every eval_every (2) steps of 4.
    assert results["rl"] and all(
        [p["step"] for p in points] == [0, 1, 2, 4] and points[0]["kl"] == 0
        for points in results["rl"].values()
    )
    for name in ("best_of_n_noise0", "best_of_n_noise25", "coefficients", "rl"):
        assert (workdir / "figures" / f"{name}.png").exists()
        assert (workdir / "figures" / f"{name}.pdf").exists()
    assert "Written by" in (workdir / "results.md").read_text()
    assert summary["seconds/total"] > 0
    return workdir


@pytest.fixture(scope="session")
def rlvr_run(tmp_path_factory):
    """RLVR end to end at toy sizes: SFT -> GRPO -> pass@k of both policies on held-out
    three-step problems for one seed, at three temperatures, with the guesser, the solvable
    sets, the per-k table, the computed answers and the figures."""
    from alignax.analysis.pass_at_k import pass_at_k
    from alignax.tasks import get_task
    from configs import rlvr as config_module
    from experiments import rlvr

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("rlvr")
    summary = rlvr.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    ks, n = results["ks"], results["num_samples"]
    assert ks == list(config.eval.ks) and n >= 2 * max(ks)
    assert len(results["problems"]) == len(set(results["problems"])) == config.eval.num_problems
    # GRPO's KL to SFT is measured on the held-out problems, with its SE over them.
    kls = results["grpo_held_out_kl"]
    assert set(kls) == {str(s) for s in config.seeds}
    assert all(np.isfinite(k["mean"]) and k["se"] > 0 for k in kls.values())
    assert "KL to SFT on the held-out problems" in (workdir / "results.md").read_text()
    task = get_task(config.task_name, config.task)
    for problem in results["problems"]:  # held out: every problem is an eval one
        operands = [int(x) for x in re.findall(r"\d+", problem)]
        ops = re.findall(r"[-+*]", problem)
        assert len(ops) == config.task.num_steps == 3
        assert task.problem_split(operands, ops) == "eval"
    # The guesser's pass@k rises with k and is a probability.
    guess = [results["guessing"][f"pass@{k}"] for k in ks]
    assert all(0 <= a <= b <= 1 for a, b in zip(guess, guess[1:]))
    assert set(results["seeds"]) == {str(s) for s in config.seeds}
    for seed, table in results["seeds"].items():
        for policy in ("sft", "grpo"):
            # The table is the estimator applied to the stored per-problem counts.
            counts = results["per_problem_correct"][seed][policy]
            assert len(counts) == config.eval.num_problems
            curve = [table[policy][f"pass@{k}"] for k in ks]
            expected = [float(pass_at_k(np.array(counts), n, k).mean()) for k in ks]
            np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-12)
            # pass@k never falls with k, and never exceeds the share solved by some sample.
            assert all(b >= a - 1e-12 for a, b in zip(curve, curve[1:]))
            assert curve[-1] <= table[policy]["coverage"] + 1e-12
        # The solvable sets partition the problems.
        sets = table["solvable"]
        assert abs(sum(sets.values()) - 1) < 1e-12
        assert abs(sets["both"] + sets["sft only"] - table["sft"]["coverage"]) < 1e-12
        for t in config.eval.sweep_temperatures:
            assert 0 <= table["grpo"][f"T{t}/pass@1"] <= table["grpo"][f"T{t}/pass@16"] <= 1
    for k in ks:
        # The change is paired within seeds: its mean is the difference of the means.
        change = results["combined"]["change"][f"pass@{k}"][0]
        before, after = (results["combined"][p][f"pass@{k}"][0] for p in ("sft", "grpo"))
        assert abs(change - (after - before)) < 1e-12
    assert results["answer"]["verdict"] in ("sharpening", "broadening", "neither")
    text = (workdir / "results.md").read_text()
    verdict = results["answer"]["verdict"]
    assert "Written by" in text and f"**Answer at temperature 1: {verdict}.**" in text
    assert set(results["answers"]) == {"1.0", *map(str, config.eval.sweep_temperatures)}
    for name in ("pass_at_k", "pass_at_k_change", "temperatures"):
        assert (workdir / "figures" / f"{name}.png").exists()
        assert (workdir / "figures" / f"{name}.pdf").exists()
    assert summary["seconds/total"] > 0
    return workdir


@pytest.fixture(scope="session")
def instructgpt_run(tmp_path_factory):
    """The InstructGPT experiment end to end at toy sizes (the sweep width only; the size axis's
    wiring is tested in test_instructgpt.py): the planned PPO runs, the evaluation table, the
    criteria, the collapse samples and the figures."""
    from configs import instructgpt as config_module
    from experiments import instructgpt

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("instructgpt")
    summary = instructgpt.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["criteria"]) == {"A1", "A2", "A3", "A4", "PTX"}
    planned = {f"d{r['width']}/{r['name']}" for r in instructgpt.ppo_plan(config)}
    planned |= {f"d{w}/{p}" for w in config.widths for p in ("base", "sft")}
    assert set(results["combined"]) == planned
    sweep_sft = f"d{config.sweep_width}/sft"
    for table in results["seeds"].values():
        # The reference SFT policy against itself: the same samples, all ties, no KL, no tax.
        assert table[sweep_sft]["win_rate_vs_sft"] == 0.5 and table[sweep_sft]["kl_to_sft"] == 0
        for key, row in table.items():
            assert 0 <= row["win_rate_vs_sft"] <= 1
            sft_nll = table[f"{key.split('/')[0]}/sft"]["pretraining_nll"]
            assert abs(row["alignment_tax"] - (row["pretraining_nll"] - sft_nll)) < 1e-9
    for runs in results["curves"].values():
        for curve in runs:  # every held-out curve starts at the SFT policy
            assert curve["eval"][0]["step"] == 0 and curve["eval"][0]["kl"] == 0
            assert curve["train"][-1]["step"] == config.stages.ppo.train.steps
    a4 = results["criteria"]["A4"]  # chosen on the evaluation, judged on fresh prompts
    assert 0 <= a4["fresh_win_rate"] <= 1
    assert a4["pass"] == (a4["fresh_win_rate"] >= config.criteria.min_win_rate)
    ptx = results["criteria"]["PTX"]
    for gamma, row in ptx["by_gamma"].items():
        assert abs(row["tax_cut"] - (1 - ptx["tax"][gamma] / ptx["tax"]["0.0"])) < 1e-9
    assert [results["samples"][k]["step"] for k in ("start", "end")] == [
        0,
        config.stages.ppo.train.steps,
    ]
    for name in ("kl_curves", "ptx", "sizes"):
        assert (workdir / "figures" / f"{name}.png").exists()
        assert (workdir / "figures" / f"{name}.pdf").exists()
    text = (workdir / "results.md").read_text()
    assert "Written by" in text and "A3 adaptive KL" in text
    assert summary["seconds/total"] > 0
    return workdir


@pytest.fixture(scope="session")
def dpo_frontier_run(tmp_path_factory):
    """The DPO-frontier experiment end to end at toy sizes: every planned run is evaluated along
    training (KL to SFT included for reference-free losses), the frontiers, their comparisons,
    the over-optimisation re-evaluation and the figures are written."""
    from configs import dpo_frontier as config_module
    from experiments import dpo_frontier

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("dpo_frontier")
    summary = dpo_frontier.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    runs = dpo_frontier.runs_of(config)
    assert set(results["frontiers"]) == set(dpo_frontier.method_runs(runs))
    long_run = f"dpo_beta{config.overoptimization.beta:g}"
    for seed in results["seeds"].values():
        for run in runs:
            points = seed["trajectories"][run.name]
            assert len(points) >= 2 and all(np.isfinite(p["kl"]) for p in points)
        # The long run enters the frontier up to the offline runs' length only.
        assert seed["trajectories"][long_run][-1]["step"] == config.offline.train.steps
        over = seed["overoptimization"]
        assert over["final"]["step"] == config.overoptimization.steps
        assert all(p["gold"] <= over["peak"]["gold"] for p in over["points"])
        if over["peak"]["step"] == over["final"]["step"]:  # one checkpoint evaluated twice
            assert over["reevaluated"]["drop"] == 0
    for fronts in (results["frontiers"], results["in_run_frontiers"]):
        for front in fronts.values():
            for values in front["per_seed"]:  # more KL budget never lowers the best gold
                assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    for seed in results["seeds"].values():  # every method's vertices measured again, fresh
        for key in ("vertices", "equal_budget_vertices"):
            for method, vertices in seed[key].items():
                assert vertices and all(np.isfinite(v["fresh_gold"]) for v in vertices), method
    equal = results["equal_budget"]["frontiers"]
    assert set(equal) == set(results["frontiers"])
    assert all(len(f["runs"]) == 1 for f in equal.values())
    assert results["comparisons"]["DPO vs PPO (RM)"]["verdict"] in (
        "first",
        "second",
        "cross",
        "none",
    )
    for name in ("frontier", "dpo_betas", "overoptimization"):
        assert (workdir / "figures" / f"{name}.png").exists()
        assert (workdir / "figures" / f"{name}.pdf").exists()
    text = (workdir / "results.md").read_text()
    assert "Written by" in text and "Rule, stated before the run:" in text
    assert summary["seconds/total"] > 0
    return workdir


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """What the README's main command writes (experiments.pipeline), at a handful of steps."""
    from configs import pipeline as config_module
    from experiments import pipeline

    workdir = tmp_path_factory.mktemp("pipeline")
    pipeline.run(config_module.get_config("smoke"), workdir)
    results = json.loads((workdir / "results.json").read_text())
    for seed, paths in results["paths"].items():
        table = results["seeds"][seed]
        for name, path in paths.items():
            # From SFT at KL 0 to the final checkpoint, which is the table's policy.
            assert path[0] == {"step": 0, "kl": 0.0, "gold": table["sft"]["gold_reward"]}
            assert path[-1]["kl"] == table[name]["kl_to_sft"]
            assert path[-1]["gold"] == table[name]["gold_reward"]
        matched = results["matched_kl"]["seeds"][seed]
        assert matched["kl"] == min(path[-1]["kl"] for path in paths.values())
    assert all(row["base_nll"] > 0 for row in results["seeds"][seed].values())
    text = (workdir / "results.md").read_text()
    assert "At matched KL" in text and "NLL under base" in text
    return workdir


@pytest.fixture(scope="session")
def prm_run(tmp_path_factory):
    """The PRM study end to end at toy sizes: SFT -> three reward models on the same solutions
    -> best-of-n of each, majority voting and the oracle on held-out problems, one seed."""
    from alignax.analysis.verifiers import REWARD_MODELS
    from configs import prm as config_module
    from experiments import prm

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("prm")
    summary = prm.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    ns = results["ns"]
    assert ns == [1, 2, 4, 8, 16] and ns[-1] == config.eval.num_samples
    assert set(results["seeds"]) == {str(s) for s in config.seeds}
    for table in results["seeds"].values():
        for n in map(str, ns):
            # No reward model's pick is right, or sound, more often than the oracle's.
            assert all(table[name][n] <= table["oracle"][n] + 1e-12 for name in REWARD_MODELS)
            assert all(v[n] <= table["oracle"][n] + 1e-12 for v in table["sound"].values())
        # Majority voting counts only answers in the verifier's form: at n = N (every draw the
        # whole pool, exact) it cannot beat the oracle either.
        assert table["majority"][str(ns[-1])] <= table["oracle"][str(ns[-1])] + 1e-12
        # At n = 1 every pick is a random sample.
        assert len({round(table[name]["1"], 12) for name in ("oracle", "orm", "prm_checker")}) == 1
    # The three reward models learnt from the same solutions: the same share verified.
    verified = {
        json.loads((workdir / "seed0" / name / "summary.json").read_text())["verified"]
        for name in ("prm_checker", "prm_monte_carlo", "orm")
    }
    assert len(verified) == 1
    assert all(isinstance(v, str) for k, v in summary.items() if k.startswith("answer/"))
    for suffix in ("png", "pdf"):
        assert (workdir / "figures" / f"best_of_n.{suffix}").exists()
    assert "Criteria, stated before the run" in (workdir / "results.md").read_text()
    return workdir


@pytest.fixture(scope="session")
def rm_ensembles_run(tmp_path_factory):
    """The ensemble study end to end at toy sizes: SFT -> two outcome reward models with their
    own seeds -> best-of-n by a single member, the mean, WCO and UWO on held-out problems."""
    from configs import rm_ensembles as config_module
    from experiments import rm_ensembles

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("rm_ensembles")
    summary = rm_ensembles.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert results["ns"][-1] == config.eval.num_samples
    for table in results["seeds"].values():
        oracle = table["oracle"]["accuracy"]
        for name, row in table.items():
            assert all(row["accuracy"][n] <= oracle[n] + 1e-12 for n in oracle), name
    # The members differ: their own seeds, so their own solutions and initialisation.
    configs = [
        json.loads((workdir / "seed0" / f"member{m}" / "config.json").read_text())
        for m in range(config.ensemble.size)
    ]
    assert len({c["seed"] for c in configs}) == config.ensemble.size
    assert set(results["answers"]) == {"mean", "wco", "uwo"}
    assert all(isinstance(v, str) for k, v in summary.items() if k.startswith("answer/"))
    for suffix in ("png", "pdf"):
        assert (workdir / "figures" / f"best_of_n.{suffix}").exists()
    return workdir


@pytest.fixture(scope="module")
def rm_ensembles_ppo_run(tmp_path_factory):
    """The ensemble study's PPO half end to end at toy sizes: pretrain -> SFT -> one reward
    model and an ensemble -> PPO against each combination -> the policies along their runs."""
    from configs import rm_ensembles_ppo as config_module
    from experiments import rm_ensembles_ppo

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("rm_ensembles_ppo")
    summary = rm_ensembles_ppo.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["runs"]) == set(rm_ensembles_ppo.ppo_runs(config))
    seed_dir = workdir / "seed0"
    ensemble = json.loads((seed_dir / "reward_ensemble" / "config.json").read_text())
    assert ensemble["reward"]["ensemble_size"] == config.ensemble.size
    for stage, (reward, beta) in rm_ensembles_ppo.ppo_runs(config).items():
        ppo = json.loads((seed_dir / stage / "config.json").read_text())
        source, method = rm_ensembles_ppo.REWARDS[reward]
        assert ppo["rewards"]["reward_model_from"] == str(seed_dir / source)
        assert ppo["ppo"]["kl_coef"] == beta
        assert ppo["rewards"]["ensemble_method"] == (method or "mean")
        assert ppo["rewards"]["ensemble_size"] == (config.ensemble.size if method else 1)
    for seed in results["ends"].values():
        assert all(np.isfinite([v for run in seed.values() for v in run.values()]))
    assert all(isinstance(v, str) for k, v in summary.items() if k.startswith("answer/"))
    for beta in config.betas:
        for suffix in ("png", "pdf"):
            assert (workdir / "figures" / f"rm_ensembles_ppo_beta{beta:g}.{suffix}").exists()
    return workdir


@pytest.fixture(scope="module")
def iterated_rlhf_run(tmp_path_factory):
    """Iterated RLHF end to end at toy sizes: pretrain -> SFT -> the fixed reward model and PPO
    against it, and the rounds, each reward model of fresh pairs of the current policy's
    samples continuing the last, each PPO round continuing the policy against it, referenced to
    the SFT policy -> the policies along both arms."""
    from configs import iterated_rlhf as config_module
    from experiments import iterated_rlhf

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("iterated_rlhf")
    summary = iterated_rlhf.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    seed_dir, sft = workdir / "seed0", str(workdir / "seed0" / "sft")
    for beta in config.betas:
        policy, reward = sft, None
        for rm_name, ppo_name in iterated_rlhf.rounds_of(beta, config.rounds):
            rm = json.loads((seed_dir / rm_name / "config.json").read_text())
            assert rm["labels"]["policy_from"] == policy
            assert rm["init_from"] == (reward or "")
            assert rm["pairs"]["num_pairs"] * config.rounds == (
                config.stages.reward_model.pairs.num_pairs
            )
            ppo = json.loads((seed_dir / ppo_name / "config.json").read_text())
            assert (ppo["init_from"], ppo["reference_from"]) == (policy, sft)
            assert ppo["rewards"]["reward_model_from"] == str(seed_dir / rm_name)
            assert ppo["ppo"]["kl_coef"] == beta
            policy, reward = str(seed_dir / ppo_name), str(seed_dir / rm_name)
        # The arms measured at the same iterations, the iterated one at each round's end.
        fixed, iterated = (
            results["points"][f"{arm}_beta{beta:g}"] for arm in ("fixed", "iterated")
        )
        assert [p.split("@")[1] for p in fixed] == [p.split("@")[1] for p in iterated]
        spent = results["labels_spent"][f"iterated_beta{beta:g}"]
        assert [n for _, n in spent][-1] == config.stages.reward_model.pairs.num_pairs
    for seed in results["ends"].values():
        assert all(np.isfinite([v for run in seed.values() for v in run.values()]))
    assert all(isinstance(v, str) for k, v in summary.items() if k.startswith("answer/"))
    for name in [f"iterated_rlhf_beta{b:g}" for b in config.betas] + ["iterated_rlhf_labels"]:
        for suffix in ("png", "pdf"):
            assert (workdir / "figures" / f"{name}.{suffix}").exists()
    return workdir


@pytest.fixture(scope="module")
def online_offline_run(tmp_path_factory):
    """The online-offline study end to end at toy sizes: pretrain -> SFT -> offline DPO, online
    DPO's rounds, a reward model and PPO at one label budget -> their policies on fresh prompts."""
    from configs import online_offline as config_module
    from experiments import online_offline

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("online_offline")
    summary = online_offline.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    (budget,) = config.budgets
    block = results["by_budget"][str(budget)]
    assert set(block["peak"]) == {f"{m}_b{budget}" for m in online_offline.METHODS}
    # Round 2 sampled its pairs from round 1's policy, and started from it.
    second = json.loads((workdir / "seed0" / f"online_b{budget}_r2" / "config.json").read_text())
    first = str(workdir / "seed0" / f"online_b{budget}_r1")
    assert second["init_from"] == second["labels"]["policy_from"] == first
    assert all(isinstance(v, str) for k, v in summary.items() if k.startswith("answer/"))
    for figure in (f"online_offline_b{budget}", "online_offline_labels"):
        for suffix in ("png", "pdf"):
            assert (workdir / "figures" / f"{figure}.{suffix}").exists()
    return workdir


@pytest.fixture(scope="module")
def weak_to_strong_run(tmp_path_factory):
    """The weak-to-strong study end to end at toy sizes: backbones pretrained at two widths ->
    weak supervisor, ceiling and students of each initialisation -> accuracy, PGR, best-of-n."""
    from configs import weak_to_strong as config_module
    from experiments import weak_to_strong

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("weak_to_strong")
    summary = weak_to_strong.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["combined"]) == set(config.w2s.inits)
    for init, combined in results["combined"].items():
        assert set(combined["gaps"]) == {"d4->d8"}
        for model in combined["models"].values():
            assert 0.0 <= model["accuracy"][0] <= 1.0
        assert f"pgr/{init}/d4->d8/naive" in summary
    # The pretrained students start from their width's pretrain stage, one per width and seed.
    for w in config.w2s.widths:
        stage = json.loads((workdir / "seed0" / f"pretrain_d{w}" / "config.json").read_text())
        assert stage["model"]["d_model"] == w
    for suffix in ("png", "pdf"):
        assert (workdir / "figures" / f"weak_to_strong.{suffix}").exists()
    return workdir


@pytest.fixture(scope="module")
def pluralism_run(tmp_path_factory):
    """The pluralism study end to end at toy sizes: annotators of two groups -> pooled, group
    and EM mixture reward models -> best-of-n for each group and MaxMin."""
    from configs import pluralism as config_module
    from experiments import pluralism

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("pluralism")
    summary = pluralism.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    names = list(config.population.names)
    for table in results["seeds"].values():
        assert sorted(table["class_groups"]) == [0, 1] and 0.5 <= table["assignment"] <= 1.0
        for selector, curves in table["best_of_n"].items():
            worst = np.minimum(*(np.array(curves[name]) for name in names))
            np.testing.assert_allclose(curves["worst group"], worst, err_msg=selector)
            assert all(abs(curves[name][0]) < 1e-9 for name in names)  # n = 1: the pool's mean
    assert all(isinstance(v, str) for v in summary.values() if not isinstance(v, float))
    for suffix in ("png", "pdf"):
        assert (workdir / "figures" / f"pluralism.{suffix}").exists()
    return workdir


@pytest.fixture(scope="module")
def length_bias_run(tmp_path_factory):
    """The length-bias study end to end at toy sizes: gold, biased and covariate reward models
    in one vmapped run -> best-of-n gold, length and win rates for every selector."""
    from configs import length_bias as config_module
    from experiments import length_bias

    config = config_module.get_config("runlocal")
    workdir = tmp_path_factory.mktemp("length_bias")
    summary = length_bias.run(config, workdir)
    results = json.loads((workdir / "results.json").read_text())
    for table in results["seeds"].values():
        for block in table["best_of_n"].values():
            for selector, curves in block.items():
                # n = 1 is a random pool sample: gold 0 beyond its length, win rates a half
                # against the pool (up to the references drawn).
                assert abs(curves["gold beyond length"][0]) < 1e-9, selector
                assert all(0.0 <= v <= 1.0 for v in curves["controlled"]), selector
    # The policy half: the SFT policy and every DPO run at every measured step (an earlier
    # step is another policy), each biased-label run's labels made by the biased annotator.
    policies = results["policies"]["seeds"]["0"]
    assert set(policies) == {"sft", *length_bias.policy_points(config)}
    assert abs(policies["sft"]["kl_to_sft"]) < 1e-6
    early, final = (policies[f"simpo_biased_beta2@{s}"] for s in config.policies.checkpoints)
    assert early["kl_to_sft"] != final["kl_to_sft"]
    stage = json.loads((workdir / "seed0" / "simpo_biased_beta2" / "config.json").read_text())
    assert stage["labels"]["length_bias"] == config.policies.length_bias
    assert stage["loss"]["name"] == "simpo" and stage["loss"]["hyperparameters"]["beta"] == 2.0
    control = json.loads(
        (workdir / "seed0" / "dpo_gold_labels_beta0.1" / "config.json").read_text()
    )
    assert control["labels"]["length_bias"] == 0.0
    # PPO: the reward model learns the biased runs' labels; one PPO run removes its length slope.
    rm = json.loads((workdir / "seed0" / "reward_model" / "config.json").read_text())
    assert rm["labels"] == stage["labels"]
    for name, debias in length_bias.PPO_RUNS.items():
        ppo = json.loads((workdir / "seed0" / name / "config.json").read_text())
        assert ppo["rewards"]["length_debias"] == debias
        assert ppo["rewards"]["reward_model_from"] == str(workdir / "seed0" / "reward_model")
    assert all(isinstance(v, str) for v in summary.values() if not isinstance(v, float))
    for figure in ("length_bias", "length_bias_policies"):
        for suffix in ("png", "pdf"):
            assert (workdir / "figures" / f"{figure}.{suffix}").exists()
    return workdir


# The workdir each notebook reads (ALIGNAX_WORKDIR): the run of its experiment.
RUNS = {
    "walkthrough.ipynb": "pipeline_run",
    "overoptimization.ipynb": "overoptimization_run",
    "rlvr.ipynb": "rlvr_run",
    "prm.ipynb": "prm_run",
    "rm_ensembles.ipynb": "rm_ensembles_run",
    "rm_ensembles_ppo.ipynb": "rm_ensembles_ppo_run",
    "online_offline.ipynb": "online_offline_run",
    "iterated_rlhf.ipynb": "iterated_rlhf_run",
    "weak_to_strong.ipynb": "weak_to_strong_run",
    "pluralism.ipynb": "pluralism_run",
    "length_bias.ipynb": "length_bias_run",
    "instructgpt.ipynb": "instructgpt_run",
    "dpo_frontier.ipynb": "dpo_frontier_run",
}


# Notebooks whose study's smoke run the study's own tests make: they run the notebook on it.
BESIDE_THEIR_STUDY = {
    "rlaif.ipynb": "test_rlaif.py",
    "dpa.ipynb": "test_rlaif.py",
    "critique_revision.ipynb": "test_rlaif.py",
    "judge_drift.ipynb": "test_feedback.py",
}


def test_every_notebook_runs_through_a_kernel_on_a_run_made_by_the_tests():
    # Never what happens to be in runs/ or docs/results/.
    assert set(RUNS) | set(BESIDE_THEIR_STUDY) == {path.name for path in NOTEBOOKS}
    for name, module in BESIDE_THEIR_STUDY.items():
        assert f'run_notebook("{name}"' in (ROOT / "tests" / module).read_text(), module


def study_of(notebook: str) -> str:
    """The study whose published data the notebook reads (experiments.publish.NOTEBOOKS)."""
    return next(study for study, n in PUBLISHED.items() if n.file == notebook)


@pytest.mark.parametrize("name", RUNS)
def test_notebook_runs_through_a_kernel(name, request):
    """Every cell runs, in order, through a kernel, on the workdir of its experiment's run,
    draws its figures and shows that run's report; the study's verdicts at a glance read it."""
    workdir = request.getfixturevalue(RUNS[name])
    notebook = run_notebook(name, workdir)
    study = study_of(name)
    verdicts = importlib.import_module(f"experiments.{study}").glance(
        json.loads((workdir / "results.json").read_text())
    )
    assert verdicts and all(isinstance(v, str) and v for v in verdicts)
    if name == "walkthrough.ipynb":
        # The smoke run has one seed, so its intervals are undefined (and say so); the DPO cell
        # asserts that the learned policy is the closed form it prints next to it.
        shown = "".join(notebook_outputs(notebook, "text"))
        assert "### Pipeline: pretrain -> SFT" in shown and "total variation distance" in shown
        assert "± undefined" in shown and "± nan" not in shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_executed_on_the_published_data(path):
    """Opened without running anything, a notebook shows its figures, and they are those of the
    published run: its stored output holds the report that experiments.publish copied."""
    study = study_of(path.name)
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), f"{path.name} is stored unexecuted"
    assert notebook_outputs(notebook, "image/png"), f"{path.name} is stored without its figures"
    report = (ROOT / "docs" / "results" / study / "results.md").read_text()
    assert report.splitlines()[2] in "".join(notebook_outputs(notebook, "text")), (
        f"{path.name} was executed on other data than docs/results/{study}: "
        f"python -m experiments.publish {study} <its workdir>"
    )
