"""The over-optimisation studies' machinery (Gao et al. 2022): a sweep of proxy reward models
trained on comparisons of the initial policy's samples, and a pool of that policy's samples to
held-out prompts that every proxy and the gold reward score.

A study that uses it has the config sections `labels` (the annotator of the gold reward; its
`flip_rate` is the noisy condition's), `proxies` (sizes, data sizes, noise levels, seeds and
training of the sweep) and `pool` (prompts, samples per prompt, response length, bootstrap
resamples); `workers` processes run its independent jobs. Everything it makes is cached in the
study's workdir and reused only for the config and upstream stages that made it:

    key = comparisons_key(config, sft_dir)
    comparisons = build_comparisons(config, task, mesh, sft_dir, workdir, key)  # .npz
    proxy_dirs = train_proxies(config, comparisons, cache_digest(key), workdir)  # proxies/
    pool = build_pool(config, task, sft_dir, workdir, pool_key(config, sft_dir))  # pool.npz
    scores = score_pool(config, pool, pool_digest, proxy_dirs)  # {(name, seed): scores}
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
from alignax.analysis.overoptimization import proxy_name
from alignax.analysis.policy_eval import sample_pool, score_in_chunks
from alignax.models import build_model
from alignax.parallel import run_jobs
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model, save_stage
from alignax.sweeps import (
    make_member_scorer,
    make_reward_model_sweep,
    make_soft_label_reward_sweep,
)
from alignax.tasks import get_task
from alignax.workdir import cache_is_current, cached_arrays, record_cache_key, stage_fingerprint

# ---------------------------------------------------------------------------------------------
# Proxies: which reward models, and how they are trained.


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
    return cached_arrays(
        workdir / "comparisons.npz", key, lambda: _comparisons(config, task, mesh, sft_dir)
    )


def _comparisons(config, task, mesh, sft_dir: Path) -> dict[str, np.ndarray]:
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
    return {
        "tokens": clean["tokens"],
        "input_mask": clean["input_mask"],
        "gold_reward": clean["gold_reward"],
        "flipped": flipped,
    }


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


def section_reward_sweep(model, section, pairs: dict, **options):
    """`sweeps.make_soft_label_reward_sweep` of `model` on `pairs` (`tokens`, `input_mask`
    [N, 2, L]) with a study's reward-model section's optimizer, steps, batch and centring
    (configs.common.scratch_reward_models_config, or weak-to-strong's `w2s`); `options` its
    `confidence_warmup` (default 0: no confidence term), `weighted`, `with_covariate`."""
    return make_soft_label_reward_sweep(
        model,
        proxy_optimizer(section),
        {k: jnp.asarray(pairs[k]) for k in ("tokens", "input_mask")},
        steps=section.steps,
        batch_size=section.batch_size,
        center_coefficient=section.center_coefficient,
        **{"confidence_warmup": 0.0, **options},
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
# The pool.


def sample_pool_part(config, sft_dir: Path, prompts: dict, first: int) -> dict[str, np.ndarray]:
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
    return cached_arrays(workdir / "pool.npz", key, lambda: _pool(config, task, sft_dir))


def _pool(config, task, sft_dir: Path) -> dict[str, np.ndarray]:
    c = config.pool
    prompts = task.prompt_dataset(c.num_prompts, seed=config.seed + 50, split="eval")
    bounds = np.linspace(0, c.num_prompts, min(config.workers, c.num_prompts) + 1).astype(int)
    jobs = [
        (config, sft_dir, {k: v[a:b] for k, v in prompts.items()}, int(a))
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    start = time.perf_counter()
    parts = run_jobs(sample_pool_part, jobs, workers=config.workers)
    print(
        f"[pool] {c.num_prompts} held-out prompts x {c.pool_size} samples in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


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
