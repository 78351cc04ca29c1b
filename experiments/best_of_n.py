"""Best-of-n sampling, the simplest optimiser of a reward model, against its KL to the policy.

    python -m experiments.best_of_n --config configs/best_of_n.py:runlocal --workdir runs/bon \
        --config.init_from=runs/sft --config.rewards.reward_model_from=runs/rm

For every held-out prompt (the built-in task's, or a data file's with its verifier as the gold
reward: `data.path`, `data.verifier`) a pool of N samples from the policy is scored by the
reward model (proxy) and the gold reward; both are standardised on the pool (the policy's own
samples), so n = 1 scores 0 on both. For each n <= N the unbiased estimator
(alignax.analysis.best_of_n) gives proxy and gold of best-of-n with bootstrap standard errors
over prompts, against KL_bon = log n - (n-1)/n (an upper bound) and its plug-in estimate on the
pool; the oracle curve selects by gold itself. On the Study runner (alignax/study.py): writes
results.md (command and commit first), results.json (the curves), figures/best_of_n.{png,pdf}
and summary.json.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_curve, powers_of_two
from alignax.analysis.overoptimization import standardize
from alignax.analysis.policy_eval import sample_pool, score_in_chunks
from alignax.analysis.report import table
from alignax.cli import run_experiment
from alignax.experiment import check_model_fits_task, initial_params
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.study import Study
from alignax.tasks import require, stage_task


def plot_curves(curves: dict[str, list[dict]], path, title: str) -> None:
    """Proxy and gold of best-of-n (and the oracle) against sqrt(KL_bon), with SE bars."""
    fig, ax = plots.subplots(figsize=(4.5, 3.4))
    styles = {"proxy": ("o-", "proxy (reward model)"), "gold": ("s-", "gold")}
    for name, rows in curves.items():
        x = np.sqrt([r["kl_bound"] for r in rows])
        for key, (marker, label) in styles.items():
            if name == "oracle" and key == "proxy":
                continue
            ax.errorbar(
                x,
                [r[key] for r in rows],
                yerr=[1.96 * r[f"{key}_se"] for r in rows],
                fmt=marker,
                markersize=3,
                capsize=2,
                label=f"{label}, {name}" if name != "oracle" else "gold, oracle (selected by gold)",
            )
    ax.set(
        xlabel="sqrt(KL_bon) (nats^1/2; KL_bon = log n - (n-1)/n)",
        ylabel="reward (std. on the policy's samples)",
        title=title,
    )
    ax.legend()
    plots.save(fig, path)


def prepare(config, workdir: Path) -> None:
    task = stage_task(config)
    check_model_fits_task(config.model, task)
    require(
        task,
        "gold_reward",
        by="best_of_n (the gold reward of the responses it selects)",
        hint="Declare a verifier of the data file (data.verifier)",
    )
    if not (config.init_from and config.rewards.reward_model_from):
        raise ValueError(
            "best_of_n needs config.init_from (policy) and "
            "config.rewards.reward_model_from (reward model workdirs)"
        )


def measure(config, workdir: Path, plan: None) -> tuple[dict, dict]:
    """The pool of the policy's samples to held-out prompts, scored by the reward model and the
    gold reward (both standardised on the pool); best-of-n by each, and by gold (the oracle)."""
    task, mesh = stage_task(config), make_mesh(config.mesh)
    b = config.best_of_n
    policy = build_model(config.model, heads=("lm",))
    rng = jax.random.key(config.seed)
    policy_params = initial_params(policy, config, mesh, rng)
    reward_model, reward_params = load_stage_model(
        config.rewards.reward_model_from, heads=("reward",), mesh=mesh
    )
    prompts = task.prompt_dataset(b.num_prompts, seed=config.seed, split="eval")
    pool = sample_pool(
        policy,
        policy_params,
        task,
        prompts,
        rng,
        pool_size=b.pool_size,
        max_new_tokens=b.max_new_tokens,
    )
    score = jax.jit(lambda params, t, m: reward_model.apply(params, t, m)["rewards"])
    proxy = score_in_chunks(
        lambda t, m: score(reward_params, t, m), pool["tokens"], pool["input_mask"], 2048
    ).reshape(pool["gold"].shape)
    proxy, gold = standardize(proxy), standardize(pool["gold"])
    ns = powers_of_two(b.pool_size)
    curve = dict(response_ids=pool["response_ids"], num_bootstrap=b.num_bootstrap, seed=config.seed)
    curves = {
        "reward model": best_of_n_curve(proxy, gold, ns, **curve),
        "oracle": best_of_n_curve(gold, gold, ns, **curve),
    }
    # A data file may hold fewer held-out prompts than best_of_n.num_prompts.
    return {"curves": curves, "num_prompts": len(prompts["prompt_tokens"])}, {}


def analyse(config, measured: dict, workdir: Path) -> dict:
    curves = measured["curves"]
    plot_curves(curves, workdir / "figures" / "best_of_n", "Best-of-n on held-out prompts")
    return {"task": stage_task(config).name, **measured}


def report(config, results: dict, timings: dict, prov: dict) -> str:
    b, curves = config.best_of_n, results["curves"]
    lines = [
        f"### Best-of-n on the {results['task']} task",
        "",
        written_by(prov) + ".",
        "",
        f"{results['num_prompts']} held-out prompts x {b.pool_size} "
        "samples of the policy "
        f"(`{config.init_from}`), each scored by the reward model (`"
        f"{config.rewards.reward_model_from}`) and the gold reward, both standardised on the "
        "pool; ± 95% intervals (1.96 SE, the SE from a bootstrap over prompts).",
        "",
    ]
    header = ("n", "KL_bon bound", "KL pool est.", "proxy", "gold", "oracle gold")
    rows = [
        (
            r["n"],
            f"{r['kl_bound']:.2f}",
            f"{r['kl_pool']:.2f}",
            f"{r['proxy']:.2f} ± {1.96 * r['proxy_se']:.2f}",
            f"{r['gold']:.2f} ± {1.96 * r['gold_se']:.2f}",
            f"{o['gold']:.2f}",
        )
        for r, o in zip(curves["reward model"], curves["oracle"])
    ]
    lines += table(header, rows)
    return "\n".join(lines) + "\n"


def summarize(results: dict) -> dict:
    return {
        f"n{r['n']}/{k}": r[k]
        for r in results["curves"]["reward model"]
        for k in ("kl_bound", "kl_pool", "proxy", "proxy_se", "gold", "gold_se")
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
