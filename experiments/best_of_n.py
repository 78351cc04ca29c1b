"""Best-of-n sampling, the simplest optimiser of a reward model, against KL_bon.

    python -m experiments.best_of_n --config configs/best_of_n.py:runlocal --workdir runs/bon \
        --config.init_from=runs/sft --config.reward_model_from=runs/rm

For every prompt a pool of N samples from the policy is scored by the reward model (proxy) and
the gold reward; for each n <= N the unbiased estimator (alignax.analysis.best_of_n) gives the
proxy and gold reward of best-of-n, plotted against KL_bon = log n - (n-1)/n. The Gao et al.
(2022) picture: proxy keeps rising with n, gold rises less and can turn down.
"""

from __future__ import annotations

import json

import jax
import numpy as np

from alignax.analysis.best_of_n import best_of_n_estimate
from alignax.cli import run_experiment
from alignax.models import build_model
from alignax.sampling import sample
from alignax.tasks import get_task
from alignax.training import check_model_fits_task, initial_params, setup, write_summary


def run(config, workdir):
    workdir, mesh = setup(config, workdir)
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    b = config.best_of_n
    if not (config.init_from and config.reward_model_from):
        raise ValueError(
            "best_of_n needs config.init_from (policy) and "
            "config.reward_model_from (reward model workdirs)"
        )
    policy = build_model(config.model, heads=("lm",))
    reward_model = build_model(config.model, heads=("reward",))
    rng = jax.random.key(config.seed)
    policy_params = initial_params(policy, config, mesh, rng)
    reward_params = initial_params(reward_model, config, mesh, rng, source=config.reward_model_from)
    prompts = task.prompt_dataset(b.num_prompts, seed=config.seed)
    pool = {k: np.repeat(v, b.pool_size, axis=0) for k, v in prompts.items()}
    out = sample(
        policy,
        policy_params,
        pool["prompt_tokens"],
        pool["prompt_mask"],
        rng,
        max_new_tokens=b.max_new_tokens,
        eos_id=task.eos_id,
    )
    proxy = np.asarray(
        jax.jit(lambda t, m: reward_model.apply(reward_params, t, m)["rewards"])(
            out.tokens, out.input_mask
        )
    ).reshape(b.num_prompts, b.pool_size)
    gold = np.asarray(task.gold_reward(out.tokens, out.loss_mask)).reshape(proxy.shape)
    # Proxy in units of its own spread on the policy's samples, like the gold reward.
    proxy = (proxy - proxy.mean()) / proxy.std()
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n <= b.pool_size]
    rows = [{"n": n, **best_of_n_estimate(proxy, gold, n)} for n in ns]
    (workdir / "best_of_n.json").write_text(json.dumps(rows, indent=2))
    print("|   n | KL_bon | proxy | gold |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:3d} | {r['kl']:.3f} | {r['proxy']:.3f} | {r['gold']:.3f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    x = np.sqrt([r["kl"] for r in rows])
    ax.plot(x, [r["proxy"] for r in rows], "o-", label="proxy (reward model)")
    ax.plot(x, [r["gold"] for r in rows], "o-", label="gold")
    ax.set(xlabel="sqrt(KL_bon)", ylabel="reward (z-scored)", title="best-of-n")
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "best_of_n.png", dpi=120)
    plt.close(fig)
    summary = {f"n{r['n']}/{k}": r[k] for r in rows for k in ("kl", "proxy", "gold")}
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
