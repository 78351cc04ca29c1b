"""Reward-model over-optimisation: gold vs proxy reward as the policy moves away from its start
(Gao, Schulman & Hilton 2022, "Scaling laws for reward model overoptimization").

    python -m experiments.overoptimization --config configs/overoptimization.py \
        --workdir runs/overopt

Stages, each cached in the workdir so a rerun resumes:
  1. pretrain -> SFT (`policy_stages`): the initial policy (the sft stage).
  2. comparisons: pairs of SFT samples to training prompts, labelled by a Bradley-Terry annotator
     of the gold reward; the noisy condition flips a share of the same labels.
  3. proxies: Bradley-Terry reward models of several sizes and data sizes, clean and noisy,
     several seeds; all models of one size train as one vmapped compiled run.
  4. pool: `pool_size` SFT samples for each of `num_prompts` held-out prompts, scored by gold and
     every proxy; best-of-n for n = 1 .. pool size with the unbiased estimator, bootstrap SEs
     over prompts, and the oracle (gold-selected) curve. Rewards are standardised on the pool.
  5. RL: PPO at beta = 0 against several proxies, evaluated on held-out prompts every few
     iterations, plus one run with a KL penalty; `rl.seeds` runs of each (run s against the
     proxy of seed s), averaged at each evaluation step.
  6. analysis: the fits R_bon(d) = d (alpha - beta d) and R_rl(d) = d (alpha - beta log d) with
     d = sqrt(KL), the criteria B1-B5, figures (PNG + PDF) and results.md / results.json.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alignax import labels, optim
from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_curve, best_of_n_per_prompt
from alignax.analysis.fits import fit_form
from alignax.analysis.policy_eval import sample_pool, score_in_chunks
from alignax.analysis.stats import spearman
from alignax.cli import run_experiment
from alignax.experiment import setup, write_summary
from alignax.metrics import read_metrics
from alignax.models import build_model
from alignax.parallel import run_jobs
from alignax.provenance import provenance, written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model, save_stage, stage_config
from alignax.sweeps import make_member_scorer, make_reward_model_sweep
from alignax.tasks import get_task
from alignax.workdir import (
    accumulate_timings,
    cache_digest,
    cache_is_current,
    record_cache_key,
    stage_fingerprint,
)
from alignax.workflows import ppo, sft

# ---------------------------------------------------------------------------------------------
# Proxies: which reward models, and how they are trained.


def proxy_name(size: int, pairs: int, flip: float) -> str:
    return f"d{size}_n{pairs}_f{flip:g}"


def proxy_grid(p: ml_collections.ConfigDict) -> list[dict]:
    """The size sweep (at `size_sweep_pairs`) and the data sweep (at `data_sweep_size`), each
    for every noise level; configurations in both are listed once."""
    grid = {}
    for flip in p.noise:
        for size in p.sizes:
            grid[proxy_name(size, p.size_sweep_pairs, flip)] = (size, p.size_sweep_pairs, flip)
        for pairs in p.data_sizes:
            grid[proxy_name(p.data_sweep_size, pairs, flip)] = (p.data_sweep_size, pairs, flip)
    return [dict(name=k, size=s, pairs=n, flip=f) for k, (s, n, f) in grid.items()]


def reward_model_config(policy_model: ml_collections.ConfigDict, size: int):
    """The policy's architecture at width `size`: heads of width 8 (one head below 16; 16 above
    32), MLP 4 x size."""
    config = policy_model.copy_and_resolve_references()
    head_dim = 8 if size <= 32 else 16
    heads = max(1, size // head_dim)
    config.update(d_model=size, num_heads=heads, num_kv_heads=heads, mlp_dim=4 * size)
    return config


def num_comparisons(p: ml_collections.ConfigDict) -> int:
    return max(max(p.data_sizes), p.size_sweep_pairs)


def comparisons_key(config, sft_dir: Path) -> dict:
    """What the comparisons depend on: the labels, their number and noise levels, the task,
    the seed and the SFT policy (by its fingerprint)."""
    labels_config = {k: v for k, v in config.labels.to_dict().items() if k != "policy_from"}
    return {
        "labels": labels_config,
        "count": num_comparisons(config.proxies),
        "noise": config.proxies.noise,
        "seed": config.seed,
        "task": {"name": config.task_name, **config.task.to_dict()},
        "sft": stage_fingerprint(sft_dir),
    }


def build_comparisons(
    config, task, mesh, sft_dir: Path, workdir: Path, key: dict
) -> dict[str, np.ndarray]:
    """The largest data set of SFT-sample pairs, clean labels first, and `flipped` [N, F]: for
    each noise level, which labels the noisy annotator flips (the same pairs and clean draws).
    Cached in <workdir>/comparisons.npz, reused only when made from `key` (`comparisons_key`)."""
    path = workdir / "comparisons.npz"
    if cache_is_current(path, key):
        return dict(np.load(path))
    p = config.proxies
    count = num_comparisons(p)
    clean = labels.comparisons(
        _with(config.labels, flip_rate=0.0, policy_from=str(sft_dir)),
        task,
        mesh,
        count,
        seed=config.seed,
        split="train",
    )
    rng = np.random.default_rng([config.seed, 11])
    flipped = np.stack([rng.random(count) < flip for flip in p.noise], axis=1)
    data = {
        "tokens": clean["tokens"],
        "input_mask": clean["input_mask"],
        "gold_reward": clean["gold_reward"],
        "flipped": flipped,
    }
    np.savez(path, **data)
    record_cache_key(path, key)
    return data


def _with(section: ml_collections.ConfigDict, **values) -> ml_collections.ConfigDict:
    copy = section.copy_and_resolve_references()
    with copy.unlocked():
        copy.update(values)
    return copy


def proxy_optimizer(p: ml_collections.ConfigDict):
    return optim.make_optimizer(
        ml_collections.ConfigDict(
            {
                "optimizer": _with(
                    optim.default_optimizer_config(),
                    learning_rate=p.learning_rate,
                    weight_decay=p.weight_decay,
                    warmup_steps=20,
                ),
                "train": {"steps": p.steps},
            }
        )
    )


def train_proxy_size(config, size: int, members: list[dict], comparisons: dict) -> None:
    """Trains the proxies of one size as one vmapped compiled run and saves each as a stage
    in its `dir` (a job for `run_jobs`)."""
    p = config.proxies
    loss = ml_collections.ConfigDict(
        {"name": "bradley_terry", "center_coefficient": 0.01, "label_smoothing": 0.0}
    )
    model_config = reward_model_config(config.model, size)
    model = build_model(model_config, heads=("reward",))
    pairs = {k: jnp.asarray(comparisons[k]) for k in ("tokens", "input_mask")}
    train = make_reward_model_sweep(
        model, proxy_optimizer(p), loss, pairs, steps=p.steps, batch_size=p.batch_size
    )
    keys = jnp.stack(
        [jax.random.fold_in(jax.random.key(config.seed), 1000 * size + m["seed"]) for m in members]
    )
    params = jax.vmap(model.init)(keys)
    noise_index = {flip: i for i, flip in enumerate(p.noise)}
    swap = np.stack([comparisons["flipped"][:, noise_index[m["flip"]]] for m in members])
    start = time.perf_counter()
    trained, losses = train(
        params,
        jnp.asarray(swap),
        jnp.array([m["pairs"] for m in members]),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
    )
    losses = np.asarray(losses)
    print(
        f"[proxies] d={size}: {len(members)} reward models, {p.steps} steps each, "
        f"{time.perf_counter() - start:.0f} s; final loss "
        + ", ".join(f"{losses[i, -20:].mean():.3f}" for i in range(len(members))),
        flush=True,
    )
    for i, m in enumerate(members):
        shutil.rmtree(m["dir"], ignore_errors=True)  # absent, or made from another config
        save_stage(
            m["dir"],
            model_config,
            jax.tree.map(lambda x, i=i: x[i], trained),
            step=p.steps,
            extra={"proxy": m["key"]},
        )
        record_cache_key(m["dir"], m["key"])


def proxy_key(config, member: dict, comparisons: str) -> dict:
    """What a proxy depends on: its place in the grid and seed, its architecture, its training
    and the comparisons it reads (`comparisons`: their key's digest)."""
    p = config.proxies
    return {
        **{k: member[k] for k in ("name", "size", "pairs", "flip", "seed")},
        "model": reward_model_config(config.model, member["size"]).to_dict(),
        "training": {k: p[k] for k in ("steps", "batch_size", "learning_rate", "weight_decay")},
        "study_seed": config.seed,
        "comparisons": comparisons,
    }


def train_proxies(config, comparisons: dict, comparisons_digest: str, workdir: Path):
    """Trains every proxy (one vmapped run per size, sizes on `config.workers` processes) and
    saves each as a stage in <workdir>/proxies/<name>; returns {(name, seed): its directory}.
    A size whose proxies were all made from this config (`proxy_key`) is not trained again."""
    p = config.proxies
    grid = proxy_grid(p)
    dirs, jobs = {}, []
    for size in sorted({g["size"] for g in grid}):
        members = [
            dict(g, seed=s, dir=workdir / "proxies" / f"{g['name']}_s{s}")
            for g in grid
            if g["size"] == size
            for s in range(p.seeds)
        ]
        for m in members:
            m["key"] = proxy_key(config, m, comparisons_digest)
        dirs.update({(m["name"], m["seed"]): m["dir"] for m in members})
        if not all([cache_is_current(m["dir"], m["key"]) for m in members]):
            jobs.append((config, size, members, comparisons))
    # The costliest first, so that the last job to start is a short one.
    jobs.sort(key=lambda job: -(job[1] ** 2) * len(job[2]))
    run_jobs(train_proxy_size, jobs, workers=config.workers)
    return dirs


# ---------------------------------------------------------------------------------------------
# The pool and best-of-n.


def sample_prompts(config, sft_dir: Path, prompts: dict, first: int) -> dict[str, np.ndarray]:
    """The pool's samples for prompts `first`, `first` + 1, ... (a job for `run_jobs`), drawn
    with the keys their rows have in the whole pool: the pool does not depend on how the
    prompts are split between jobs when `pool_size` is a multiple of the sampling chunk."""
    task = get_task(config.task_name, config.task)
    policy, params = load_stage_model(sft_dir, heads=("lm",), mesh=make_mesh(config.mesh))
    return sample_pool(
        policy,
        params,
        task,
        prompts,
        jax.random.key(config.seed + 50),
        pool_size=config.pool.pool_size,
        max_new_tokens=config.pool.max_new_tokens,
        first_row=first * config.pool.pool_size,
    )


def pool_key(config, sft_dir: Path) -> dict:
    """What the pool depends on: its prompts and samples, the task, the seed, the SFT policy."""
    c = config.pool
    return {
        "pool": {k: c[k] for k in ("num_prompts", "pool_size", "max_new_tokens")},
        "seed": config.seed,
        "task": {"name": config.task_name, **config.task.to_dict()},
        "sft": stage_fingerprint(sft_dir),
    }


def build_pool(config, task, sft_dir: Path, workdir: Path, key: dict) -> dict[str, np.ndarray]:
    """`pool_size` SFT samples for each of `num_prompts` held-out prompts, with their gold
    reward, sampled on `config.workers` processes; cached in <workdir>/pool.npz, reused only
    when made from `key` (`pool_key`)."""
    path = workdir / "pool.npz"
    if cache_is_current(path, key):
        return dict(np.load(path))
    c = config.pool
    prompts = task.prompt_dataset(c.num_prompts, seed=config.seed + 50, split="eval")
    bounds = np.linspace(0, c.num_prompts, min(config.workers, c.num_prompts) + 1).astype(int)
    jobs = [
        (config, sft_dir, {k: v[a:b] for k, v in prompts.items()}, int(a))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    start = time.perf_counter()
    parts = run_jobs(sample_prompts, jobs, workers=config.workers)
    pool = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    print(
        f"[pool] {c.num_prompts} held-out prompts x {c.pool_size} samples in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    np.savez(path, **pool)
    record_cache_key(path, key)
    return pool


def score_members(member_dirs: list[Path], tokens: np.ndarray, mask: np.ndarray, mesh_config):
    """Scores of the pool rows by reward models of one architecture, [members, rows], as one
    vmapped compiled scorer (a job for `run_jobs`)."""
    mesh = make_mesh(mesh_config)
    loaded = [load_stage_model(d, heads=("reward",), mesh=mesh) for d in member_dirs]
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *[p for _, p in loaded])
    score = make_member_scorer(loaded[0][0])
    return score_in_chunks(
        lambda t, m: score(params, t, m), tokens, mask, chunk_size=min(2048, len(tokens))
    )


def score_pool(config, pool: dict, pool_digest: str, proxy_dirs: dict) -> dict[tuple, np.ndarray]:
    """Every proxy's scores of the pool [prompts, pool], cached per proxy (reused only for this
    pool, `pool_digest`, and this proxy); one job per proxy size on `config.workers` processes."""
    shape = pool["gold"].shape
    out = {}
    by_size: dict[int, list] = {}
    made_from = {
        directory: {"pool": pool_digest, "proxy": stage_fingerprint(directory)}
        for directory in proxy_dirs.values()
    }
    for key, directory in proxy_dirs.items():
        cached = directory / "pool_scores.npy"
        if cache_is_current(cached, made_from[directory]):
            out[key] = np.load(cached)
        else:
            size = json.loads((directory / "config.json").read_text())["model"]["d_model"]
            by_size.setdefault(size, []).append((key, directory))
    groups = sorted(by_size.items(), key=lambda item: -(item[0] ** 2) * len(item[1]))
    jobs = [
        ([d for _, d in members], pool["tokens"], pool["input_mask"], config.mesh)
        for _, members in groups
    ]
    for (_, members), scores in zip(groups, run_jobs(score_members, jobs, workers=config.workers)):
        for (key, directory), row in zip(members, scores):
            np.save(directory / "pool_scores.npy", row.reshape(shape))
            record_cache_key(directory / "pool_scores.npy", made_from[directory])
            out[key] = row.reshape(shape)
    return out


def standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def seed_average(
    curves: list[list[dict]],
    *,
    same: tuple[str, ...] = ("n", "kl_bound"),
    means: tuple[str, ...] = ("kl_pool",),
    with_se: tuple[str, ...] = ("proxy", "gold"),
) -> list[dict]:
    """Mean over seeds of each point of curves evaluated at the same points (`same` keys are
    taken from the first seed, `means` averaged); for each `with_se` key, SE^2 = mean of the
    per-seed SE^2 (over prompts) + the between-seed variance of the mean."""
    if len({len(curve) for curve in curves}) != 1:
        raise ValueError(f"seed curves differ in length: {[len(c) for c in curves]}")
    out = []
    for points in zip(*curves):
        row = {k: points[0][k] for k in same}
        for key in means:
            if key in points[0]:
                row[key] = float(np.mean([p[key] for p in points]))
        for key in with_se:
            values = np.array([p[key] for p in points])
            prompt_var = np.mean([p[f"{key}_se"] ** 2 for p in points])
            seed_var = values.var(ddof=1) / len(values) if len(values) > 1 else 0.0
            row[key] = float(values.mean())
            row[f"{key}_se"] = float(np.sqrt(prompt_var + seed_var))
            row[f"{key}_seeds"] = values.tolist()
        out.append(row)
    return out


def best_of_n_curves(config, pool: dict, scores: dict) -> tuple[dict, list[dict]]:
    gold = standardize(pool["gold"])
    ns = [2**k for k in range(int(np.log2(config.pool.pool_size)) + 1)]
    kwargs = dict(num_bootstrap=config.pool.num_bootstrap, seed=config.seed)
    per_seed: dict[str, list] = {}
    proxies: dict[str, list] = {}
    for (name, _), proxy in sorted(scores.items()):
        proxies.setdefault(name, []).append(standardize(proxy))
        curve = best_of_n_curve(
            proxies[name][-1], gold, ns, response_ids=pool["response_ids"], **kwargs
        )
        per_seed.setdefault(name, []).append(curve)
    curves = {name: seed_average(c) for name, c in per_seed.items()}
    for name, curve in curves.items():
        peak_n = curve[int(np.argmax([r["gold"] for r in curve]))]["n"]
        drop, se = peak_drop(proxies[name], gold, peak_n, ns[-1], **kwargs)
        curve[-1].update(drop_from_peak=drop, drop_from_peak_se=se)
        # Each reward model on its own (SE over prompts only), as Gao et al. look at one RM.
        models = []
        for proxy, own in zip(proxies[name], per_seed[name]):
            own_peak = int(np.argmax([r["gold"] for r in own]))
            own_drop, own_se = peak_drop([proxy], gold, own[own_peak]["n"], ns[-1], **kwargs)
            models.append(
                {
                    "peak_n": own[own_peak]["n"],
                    "drop": own_drop,
                    "drop_se": own_se,
                    "turned_over": 0 < own_peak < len(own) - 1
                    and own_drop >= 3 * own_se
                    and own[-1]["proxy"] > own[own_peak]["proxy"],
                }
            )
        curve[-1]["per_model"] = models
    oracle = best_of_n_curve(gold, gold, ns, response_ids=pool["response_ids"], **kwargs)
    return curves, oracle


def peak_drop(proxies, gold, peak_n: int, last_n: int, *, num_bootstrap: int, seed: int):
    """Gold at the peak n minus gold at the largest n, paired (same prompts, same reward models),
    averaged over seeds: (drop, SE) with SE^2 = prompt-bootstrap variance + between-seed
    variance of the mean. Pairing removes the prompt and seed effects the two points share."""
    diffs = np.stack(
        [
            best_of_n_per_prompt(proxy, gold, peak_n)[1]
            - best_of_n_per_prompt(proxy, gold, last_n)[1]
            for proxy in proxies
        ]
    )  # [seeds, prompts]
    per_prompt = diffs.mean(0)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(per_prompt), size=(num_bootstrap, len(per_prompt)))
    prompt_var = per_prompt[resamples].mean(1).var()
    seed_var = diffs.mean(1).var(ddof=1) / len(diffs) if len(diffs) > 1 else 0.0
    return float(per_prompt.mean()), float(np.sqrt(prompt_var + seed_var))


# ---------------------------------------------------------------------------------------------
# RL against the proxies.


def run_rl(config, sft_dir: Path, proxy_dirs: dict, workdir: Path) -> dict[str, list[Path]]:
    """PPO at beta = 0 against each of `rl.proxies` (and at `rl.penalty_kl_coef` against the
    first), `rl.seeds` runs each: run s starts from PPO seed `seed + s` and trains against the
    proxy of seed s, so the seeds vary the policy's sampling and the reward model alike. On
    `config.workers` processes."""
    penalised = config.rl.proxies[0]
    plan = [(name, 0.0) for name in config.rl.proxies]
    if config.rl.penalty_kl_coef > 0:
        plan.append((penalised, config.rl.penalty_kl_coef))
    runs, jobs = {}, []
    for name, kl_coef in plan:
        key = f"{name}, beta {kl_coef:g}"
        runs[key] = []
        for seed in range(config.rl.seeds):
            run_dir = workdir / "rl" / f"{name}_beta{kl_coef:g}" / f"seed{seed}"
            links = {"init_from": sft_dir, "rewards.reward_model_from": proxy_dirs[(name, seed)]}
            ppo_config = stage_config(config, config.rl.ppo, links)
            with ppo_config.unlocked():
                ppo_config.ppo.kl_coef = kl_coef
                ppo_config.seed = config.seed + seed
            print(
                f"=== PPO against {name}, beta {kl_coef:g}, seed {seed}: {run_dir} ===", flush=True
            )
            jobs.append((ppo_config, run_dir))
            runs[key].append(run_dir)
    run_jobs(ppo.run, jobs, workers=config.workers)
    return runs


def rl_curve(run_dir: Path, gold_mean: float, gold_std: float) -> list[dict]:
    """Held-out evaluations of a PPO run: sqrt(KL), gold (standardised like the pool) and proxy,
    with the initial policy at d = 0."""
    points = [{"step": 0, "kl": 0.0, "gold": 0.0, "gold_se": 0.0, "proxy": 0.0}]
    for m in read_metrics(run_dir):
        if "eval/gold" in m:
            points.append(
                {
                    "step": m["step"],
                    "kl": max(m["eval/kl"], 0.0),
                    "gold": (m["eval/gold"] - gold_mean) / gold_std,
                    "gold_se": m["eval/gold_se"] / gold_std,
                    "proxy": m["eval/proxy"],
                }
            )
    return points


def rl_average(curves: list[list[dict]]) -> list[dict]:
    """The seeds' RL curves averaged at each evaluation step: mean KL and proxy, gold with its
    SE over prompts and seeds (`seed_average`)."""
    return seed_average(curves, same=("step",), means=("kl", "proxy"), with_se=("gold",))


# ---------------------------------------------------------------------------------------------
# Criteria.


def hump(curve: list[dict]) -> dict:
    """Where gold peaks, and how far below the peak it ends in standard errors: of the paired
    drop where the curve has one (best-of-n), else of the final point (RL)."""
    gold = np.array([r["gold"] for r in curve])
    proxy = np.array([r["proxy"] for r in curve])
    peak = int(np.argmax(gold))
    last = curve[-1]
    se = last.get("drop_from_peak_se", last["gold_se"])
    return {
        "peak_index": peak,
        "peak_gold": float(gold[peak]),
        "interior_peak": 0 < peak < len(gold) - 1,
        "final_drop_in_se": float((gold[peak] - gold[-1]) / max(se, 1e-12)),
        "proxy_rises_past_peak": bool(proxy[-1] > proxy[peak]),
    }


def criteria(config, curves: dict, oracle: list[dict], rl: dict) -> dict:
    p = config.proxies
    out: dict = {"B1": {}, "B2": {}, "B3": {}, "B4": {}, "B5": {}}
    noisy = max(p.noise)
    size_names = [proxy_name(s, p.size_sweep_pairs, noisy) for s in p.sizes]
    humps = {name: hump(curves[name]) for name in curves}
    turned = [
        n
        for n in size_names
        if humps[n]["interior_peak"]
        and humps[n]["final_drop_in_se"] >= 3
        and humps[n]["proxy_rises_past_peak"]
    ]
    oracle_gold = np.array([r["gold"] for r in oracle])
    oracle_monotone = bool(np.all(np.diff(oracle_gold) >= -1e-9))
    oracle_above = all(
        np.all(oracle_gold[1:] >= np.array([r["gold"] for r in curves[n]])[1:]) for n in curves
    )
    models = [m for n in size_names for m in curves[n][-1].get("per_model", [])]
    out["B1"] = {
        "noisy_size_sweep_turned_over": turned,
        "count": f"{len(turned)} of {len(size_names)}",
        "single_models_turned_over": f"{sum(m['turned_over'] for m in models)} of {len(models)}",
        "oracle_monotone": oracle_monotone,
        "oracle_above_every_proxy": oracle_above,
        "pass": len(turned) >= 3 and oracle_monotone and oracle_above,
    }
    fits = {}
    for name, curve in curves.items():
        d = np.sqrt([r["kl_bound"] for r in curve])
        gold = np.array([r["gold"] for r in curve])
        fit = fit_form(d, gold, "bon")
        fits[name] = {
            "alpha": fit.alpha,
            "beta": fit.beta,
            "r2": fit.r2,
            "residual_at_largest_n": float(gold[-1] - fit.predict(d[-1:])[0]),
        }
        train = np.array([r["n"] for r in curve]) <= 256
        if train.sum() >= 3 and not train.all():
            early = fit_form(d[train], gold[train], "bon")
            predicted = float(early.predict(d[-1:])[0])
            out["B4"][name] = {
                "fit_on": "n <= 256",
                "predicted_gold_at_largest_n": predicted,
                "measured": float(gold[-1]),
                "error_in_se": float((predicted - gold[-1]) / max(curve[-1]["gold_se"], 1e-12)),
            }
    humped = [n for n in curves if humps[n]["interior_peak"]]
    out["B2"] = {
        "fits": fits,
        "humps_with_r2_ge_0.95": [n for n in humped if fits[n]["r2"] >= 0.95],
        "humps": humped,
        # Where the fit over-predicts the largest n, gold falls faster than the quadratic form.
        "steeper_than_quadratic": [
            n for n in humped if fits[n]["residual_at_largest_n"] < -curves[n][-1]["gold_se"]
        ],
        "pass": bool(humped) and all(fits[n]["r2"] >= 0.95 for n in humped),
    }
    b3 = {}
    for flip in p.noise:
        sizes = [humps[proxy_name(s, p.size_sweep_pairs, flip)]["peak_gold"] for s in p.sizes]
        data = [humps[proxy_name(p.data_sweep_size, n, flip)]["peak_gold"] for n in p.data_sizes]
        b3[f"flip {flip:g}"] = {
            "peak_gold_by_size": dict(zip(map(str, p.sizes), sizes)),
            "spearman_size": spearman(p.sizes, sizes),
            "peak_gold_by_data": dict(zip(map(str, p.data_sizes), data)),
            "spearman_data": spearman(p.data_sizes, data),
        }
    out["B3"] = {
        **b3,
        "pass": all(
            v["spearman_size"] >= 0.8 - 1e-9 and v["spearman_data"] >= 0.8 - 1e-9
            for v in b3.values()
        ),
    }
    b5 = {}
    for name, points in rl.items():
        d = np.sqrt([q["kl"] for q in points])
        gold = np.array([q["gold"] for q in points])
        b5[name] = {
            "hump": hump(points),
            "r2_rl_form": fit_form(d, gold, "rl").r2,
            "r2_bon_form": fit_form(d, gold, "bon").r2,
            "final_kl": float(points[-1]["kl"]),
            "final_gold": float(gold[-1]),
        }
    out["B5"] = b5
    penalised = [k for k in rl if not k.endswith("beta 0")]
    if penalised:
        key = penalised[0]
        base = rl[key.rsplit(", beta", 1)[0] + ", beta 0"]
        d0 = np.sqrt([q["kl"] for q in base])
        order = np.argsort(d0)
        end = rl[key][-1]
        on_curve = float(np.interp(np.sqrt(end["kl"]), d0[order], [base[i]["gold"] for i in order]))
        out["B5"]["kl_penalty"] = {
            "run": key,
            "final_sqrt_kl": float(np.sqrt(end["kl"])),
            "final_gold": end["gold"],
            "beta0_gold_at_same_kl": on_curve,
            "difference_in_se": float((end["gold"] - on_curve) / max(end["gold_se"], 1e-12)),
        }
    return out


# ---------------------------------------------------------------------------------------------
# Figures and the report.


def figures(config, curves: dict, oracle: list[dict], rl: dict, workdir: Path) -> None:
    p = config.proxies
    x = lambda rows, key="kl_bound": np.sqrt([r[key] for r in rows])
    for flip in p.noise:
        fig, axes = plots.subplots(1, 2, figsize=(9, 3.4), sharey=True)
        sweeps = [
            ("RM size (d_model)", [(s, proxy_name(s, p.size_sweep_pairs, flip)) for s in p.sizes]),
            (
                "RM data (pairs)",
                [(n, proxy_name(p.data_sweep_size, n, flip)) for n in p.data_sizes],
            ),
        ]
        for ax, (title, members) in zip(axes, sweeps):
            for i, (value, name) in enumerate(members):
                color = plots.series_color(i)
                rows = curves[name]
                ax.errorbar(
                    x(rows),
                    [r["gold"] for r in rows],
                    yerr=[1.96 * r["gold_se"] for r in rows],
                    fmt="o-",
                    color=color,
                    markersize=3,
                    capsize=2,
                    label=f"gold, {value}",
                )
                ax.plot(
                    x(rows),
                    [r["proxy"] for r in rows],
                    "--",
                    color=color,
                    alpha=0.6,
                    label=f"proxy, {value}",
                )
            ax.plot(x(oracle), [r["gold"] for r in oracle], "k:", label="gold, oracle")
            ax.set(xlabel="sqrt(KL_bon) (nats^1/2)", title=f"best-of-n, {title}")
        axes[0].set_ylabel("reward (std. on SFT samples)")
        for ax in axes:
            ax.legend(ncol=2, loc="upper left")
        fig.suptitle(f"Best-of-n over-optimisation, {flip:.0%} label noise", y=1.04)
        plots.save(fig, workdir / "figures" / f"best_of_n_noise{round(100 * flip)}")
    if rl:
        fig, ax = plots.subplots(figsize=(4.8, 3.4))
        for i, (name, points) in enumerate(rl.items()):
            color = plots.series_color(i)
            d = x(points, "kl")
            ax.errorbar(
                d,
                [q["gold"] for q in points],
                yerr=[1.96 * q["gold_se"] for q in points],
                fmt="o-",
                color=color,
                markersize=3,
                capsize=2,
                label=f"gold, {name}",
            )
            ax.plot(
                d,
                [q["proxy"] for q in points],
                "--",
                color=color,
                alpha=0.6,
                label=f"proxy, {name}",
            )
            fit = fit_form(d, np.array([q["gold"] for q in points]), "rl")
            grid = np.linspace(1e-3, d.max(), 100)
            ax.plot(grid, fit.predict(grid), ":", color=color, label=f"R_rl fit (R^2 {fit.r2:.2f})")
        ax.set(
            xlabel="sqrt(KL(pi || pi_SFT)) (nats^1/2)",
            ylabel="reward (std. on SFT samples)",
            title="PPO against proxies (held-out prompts)",
        )
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        plots.save(fig, workdir / "figures" / "rl")


def report(config, curves, oracle, rl, result, workdir: Path, timings: dict, prov: dict) -> str:
    p = config.proxies
    lines = [
        "### Reward-model over-optimisation (Gao et al. 2022)",
        "",
        written_by(prov)
        + f"; wall time {timings['seconds/total'] / 60:.1f} min (summed over the invocations "
        "that built the workdir: "
        + ", ".join(
            f"{k.split('/')[1].replace('_', '-')} {v / 60:.1f}"
            for k, v in timings.items()
            if k != "seconds/total"
        )
        + " min).",
        "",
        f"Pool: {config.pool.num_prompts} held-out prompts x {config.pool.pool_size} SFT samples; "
        f"proxies trained on pairs of SFT samples to training prompts ({p.seeds} seeds each). "
        "Gold and proxy are standardised on the pool (the SFT policy's samples), so n = 1 is 0. "
        "Intervals are 95% (1.96 SE; SE over prompts by bootstrap and over seeds).",
        "",
        "| proxy (d, pairs, flip) | peak n | peak gold | gold at n = max | peak - final (paired) "
        "| proxy at n = max | R_bon R^2 |",
        "|---|---|---|---|---|---|---|",
    ]
    fits = result["B2"]["fits"]
    for name, curve in curves.items():
        h = hump(curve)
        last = curve[-1]
        lines.append(
            f"| {name} | {curve[h['peak_index']]['n']} | {h['peak_gold']:.2f} | "
            f"{last['gold']:.2f} ± {1.96 * last['gold_se']:.2f} | "
            f"{last['drop_from_peak']:.2f} ± {1.96 * last['drop_from_peak_se']:.2f} | "
            f"{last['proxy']:.2f} | {fits[name]['r2']:.3f} |"
        )
    lines.append(
        f"| oracle (gold-selected) | {oracle[-1]['n']} | {max(r['gold'] for r in oracle):.2f} | "
        f"{oracle[-1]['gold']:.2f} | - | - | - |"
    )
    lines += [
        "",
        f"| RL run (mean of {config.rl.seeds} seeds) | final KL | final gold | peak gold (at KL) "
        "| R^2 R_rl | R^2 R_bon |",
        "|---|---|---|---|---|---|",
    ]
    for name, points in rl.items():
        b = result["B5"][name]
        peak = points[b["hump"]["peak_index"]]
        lines.append(
            f"| PPO vs {name} | {b['final_kl']:.1f} | {b['final_gold']:.2f} | "
            f"{peak['gold']:.2f} ({peak['kl']:.1f}) | {b['r2_rl_form']:.3f} | "
            f"{b['r2_bon_form']:.3f} |"
        )
    b1, b2, b3 = result["B1"], result["B2"], result["B3"]
    b4 = result["B4"]
    b4_text = "; ".join(f"{k}: {v['error_in_se']:+.1f} SE" for k, v in b4.items())
    b3_text = "; ".join(
        f"{k}: size {v['spearman_size']:.2f}, data {v['spearman_data']:.2f}"
        for k, v in b3.items()
        if k != "pass"
    )
    penalty = result["B5"].get("kl_penalty")
    lines += [
        "",
        "| criterion | outcome |",
        "|---|---|",
        f"| B1 noisy proxies of {len(p.sizes)} sizes peak inside and end >= 3 SE (paired) below "
        "the peak "
        f"while the proxy rises; oracle monotone and above | **{'pass' if b1['pass'] else 'fail'}**"
        f": {b1['count']} ({', '.join(b1['noisy_size_sweep_turned_over']) or 'none'}); oracle "
        f"monotone {b1['oracle_monotone']}, above every proxy {b1['oracle_above_every_proxy']}; "
        f"single reward models (prompt SE only): {b1['single_models_turned_over']} turn over |",
        f"| B2 R_bon fits every hump with R^2 >= 0.95 | **{'pass' if b2['pass'] else 'fail'}**: "
        f"{len(b2['humps_with_r2_ge_0.95'])} of {len(b2['humps'])} humps; gold falls faster "
        f"than quadratic for {', '.join(b2['steeper_than_quadratic']) or 'none'} |",
        f"| B3 peak gold rises with RM size and data (Spearman >= 0.8) | "
        f"**{'pass' if b3['pass'] else 'fail'}**: {b3_text} |",
        f"| B4 extrapolation from n <= 256 to n = {config.pool.pool_size} (predicted - measured) "
        f"| {b4_text or 'n/a'} |",
    ]
    if penalty:
        lines.append(
            f"| B5 KL penalty = early stopping? | {penalty['run']} ends at sqrt(KL) "
            f"{penalty['final_sqrt_kl']:.2f} with gold {penalty['final_gold']:.2f}; the beta = 0 "
            f"run had {penalty['beta0_gold_at_same_kl']:.2f} there "
            f"({penalty['difference_in_se']:+.1f} SE) |"
        )
    text = "\n".join(lines) + "\n"
    (workdir / "results.md").write_text(text)
    return text


def check_plan(config) -> None:
    """What would otherwise fail after the compute: the RL runs' proxies must be in the grid,
    with a proxy seed for every RL seed."""
    names = [g["name"] for g in proxy_grid(config.proxies)]
    unknown = [name for name in config.rl.proxies if name not in names]
    if unknown:
        raise ValueError(
            f"config rl.proxies names {unknown}, which the proxy grid does not train; "
            f"it trains {names}"
        )
    if config.rl.seeds > config.proxies.seeds:
        raise ValueError(
            f"config rl.seeds={config.rl.seeds} needs as many proxy seeds "
            f"(proxies.seeds={config.proxies.seeds})"
        )


def run(config, workdir):
    prov = provenance()  # of the code that runs, before anything can change it
    check_plan(config)
    workdir, mesh = setup(config, workdir)
    task = get_task(config.task_name, config.task)
    timings = {}
    start = time.perf_counter()
    previous = None
    for name in config.policy_stages:
        print(f"\n=== stage {name} ===", flush=True)
        links = {"init_from": workdir / previous} if previous else {}
        sft.run(stage_config(config, config.stages[name], links), workdir / name)
        previous = name
    timings["seconds/policy"] = time.perf_counter() - start
    sft_dir = workdir / config.policy_stages[-1]
    mark = time.perf_counter()
    comparisons_made_from = comparisons_key(config, sft_dir)
    comparisons = build_comparisons(config, task, mesh, sft_dir, workdir, comparisons_made_from)
    proxy_dirs = train_proxies(config, comparisons, cache_digest(comparisons_made_from), workdir)
    timings["seconds/proxies"] = time.perf_counter() - mark
    mark = time.perf_counter()
    pool_made_from = pool_key(config, sft_dir)
    pool = build_pool(config, task, sft_dir, workdir, pool_made_from)
    scores = score_pool(config, pool, cache_digest(pool_made_from), proxy_dirs)
    curves, oracle = best_of_n_curves(config, pool, scores)
    timings["seconds/best_of_n"] = time.perf_counter() - mark
    mark = time.perf_counter()
    rl_dirs = run_rl(config, sft_dir, proxy_dirs, workdir)
    gold_mean, gold_std = float(pool["gold"].mean()), float(pool["gold"].std())
    rl_seeds = {
        name: [rl_curve(d, gold_mean, gold_std) for d in dirs] for name, dirs in rl_dirs.items()
    }
    rl = {name: rl_average(curves) for name, curves in rl_seeds.items()}
    timings["seconds/rl"] = time.perf_counter() - mark
    timings["seconds/total"] = time.perf_counter() - start
    timings = accumulate_timings(workdir, timings)
    result = criteria(config, curves, oracle, rl)
    figures(config, curves, oracle, rl, workdir)
    (workdir / "results.json").write_text(
        json.dumps(
            {
                "best_of_n": curves,
                "oracle": oracle,
                "rl": rl,
                "rl_seeds": rl_seeds,
                "criteria": result,
                **timings,
            },
            indent=2,
            default=float,
        )
    )
    print(report(config, curves, oracle, rl, result, workdir, timings, prov))
    summary = {
        "B1_pass": result["B1"]["pass"],
        "B2_pass": result["B2"]["pass"],
        "B3_pass": result["B3"]["pass"],
        **{k: round(v, 1) for k, v in timings.items()},
    }
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
