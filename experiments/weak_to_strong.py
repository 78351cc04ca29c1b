"""Weak-to-strong generalisation of reward models: can a wide reward model trained only on a
narrow one's labels beat its supervisor, and by how much of the gap to its own ceiling?

    python -m experiments.weak_to_strong --config configs/weak_to_strong.py \
        --workdir runs/weak_to_strong

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. pretrain_d<w>  for each width w of `w2s.widths` (when "pretrained" is in `w2s.inits`): the
                    policy's architecture at width w pretrained on the review task's text
  2. eval           per initialisation (the pretrained backbone of step 1, or none) and width,
                    one vmapped run of every reward model of that width (alignax/analysis/
                    weak_to_strong.py: the weak supervisor and the ceiling on gold labels, the
                    students on the weak models' labels, naive and with the confidence loss),
                    narrow widths first; each model's accuracy on held-out pairs and its scores
                    of a pool of generator samples to held-out prompts. Cached in
                    <workdir>/seed<k>/eval.npz.
The analysis: accuracies, PGR with Fieller intervals, best-of-n gold by each reward model, the
criteria of configs/weak_to_strong.py, figures/weak_to_strong.{png,pdf}.

Burns et al. (2023, "Weak-to-strong generalization") find that strong pretrained students
trained on a weak supervisor's labels recover part of the gap to a strong model trained on
ground truth (PGR often 0.2-0.8 on NLP tasks, lower for reward modelling), more with an
auxiliary confidence loss and more as the strong model grows.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels
from alignax.analysis.best_of_n import powers_of_two
from alignax.analysis.policy_eval import EVAL_SEED_OFFSET, score_pairs
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, interval_verdict
from alignax.analysis.weak_to_strong import (
    STUDENTS,
    aggregate,
    figure,
    pgr_text,
    roles,
    seed_table,
)
from alignax.checkpoint import restore_params
from alignax.cli import run_experiment
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.proxies import reward_model_config, section_reward_sweep
from alignax.study import PlannedStage, Study, seed_stage_config, wall_time_text
from alignax.sweeps import make_member_scorer
from alignax.tasks import get_task
from alignax.workdir import cached_arrays, stage_fingerprint
from alignax.workflows import sft

INITS = ("pretrained", "scratch")


def pretrain_stages(config) -> list[str]:
    widths = config.w2s.widths
    return [f"pretrain_d{w}" for w in widths] if "pretrained" in config.w2s.inits else []


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    s = config.w2s
    unknown = [init for init in s.inits if init not in INITS]
    if unknown or not s.inits:
        raise ValueError(f"w2s.inits={tuple(s.inits)}: each must be one of {INITS}")
    if len(s.widths) < 2 or list(s.widths) != sorted(set(s.widths)):
        raise ValueError(f"w2s.widths={tuple(s.widths)}: at least two, ascending, distinct")
    if config.pool.pool_size < 2:
        raise ValueError(f"pool.pool_size={config.pool.pool_size}: best-of-n needs 2 or more")
    stages = []
    for w, name in zip(s.widths, pretrain_stages(config)):
        stage = seed_stage_config(config, "pretrain", seed, {})
        with stage.unlocked():
            stage.model = reward_model_config(config.model, w)
        stages.append(PlannedStage(name, sft.KIND, stage, group="pretrain"))
    return stages


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """`measure_seed`, from the cache when it was made with the same settings from the same
    pretrained backbones (their fingerprints)."""
    key = {
        "w2s": config.w2s.to_dict(),
        "pairs": config.pairs.to_dict(),
        "pool": config.pool.to_dict(),
        "task": config.task.to_dict(),
        "model": config.model.to_dict(),
        "seed": seed,
        "stages": {name: stage_fingerprint(seed_dir / name) for name in pretrain_stages(config)},
    }
    return cached_arrays(seed_dir / "eval.npz", key, lambda: measure_seed(config, seed, seed_dir))


def labelled_pairs(task, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
    """`labels.shuffled_generator_pairs` with `target` [n]: the gold label (1 when the first
    has the higher gold reward, 0 when the second, 1/2 on a tie)."""
    out = labels.shuffled_generator_pairs(task, n, seed=seed, split=split)
    gold = out["gold_reward"]
    out["target"] = (0.5 * (np.sign(gold[:, 0] - gold[:, 1]) + 1)).astype(np.float32)
    return out


def measure_seed(config, seed: int, seed_dir: Path) -> dict[str, np.ndarray]:
    """Every reward model's held-out accuracy against gold (`<init>.d<w>.<role>.accuracy`) and
    its scores of the pool (`.pool` [P, S]), and the pool's gold (`pool_gold` [P, S])."""
    s, p = config.w2s, config.pool
    task = get_task(config.task_name, config.task)
    n = config.pairs
    train = labelled_pairs(task, 2 * n.num_pairs, seed=seed, split="train")
    test = labelled_pairs(task, n.num_eval_pairs, seed=EVAL_SEED_OFFSET + seed, split="eval")
    pool = labels.generator_pool(task, p.num_prompts, p.pool_size, seed=EVAL_SEED_OFFSET + seed)
    out = {"pool_gold": pool["gold_reward"].astype(np.float64)}
    for init in s.inits:
        weak_labels = {}
        for w in s.widths:
            model = build_model(reward_model_config(config.model, w), heads=("reward",))
            names = roles(s.widths, w)
            params = member_params(model, seed, seed_dir, init, w, len(names))
            trained = train_members(model, config, train, weak_labels, names, params, seed, w)
            score = make_member_scorer(model)
            tested = score_pairs(score, trained, test)  # [M, N, 2]
            right = test["target"] != 0.5
            accuracy = ((tested[..., 0] > tested[..., 1]) == (test["target"] > 0.5))[:, right]
            pooled = score_pairs(score, trained, pool)  # [M, P, S]
            for m, role in enumerate(names):
                out[f"{init}.d{w}.{role}.accuracy"] = np.asarray(accuracy[m].mean())
                out[f"{init}.d{w}.{role}.pool"] = pooled[m]
            if "weak" in names:
                scored = score_pairs(score, jax.tree.map(lambda x: x[:1], trained), train)[0]
                weak_labels[w] = 1 / (1 + np.exp(scored[:, 1] - scored[:, 0]))
            print(
                f"[w2s] seed {seed}, {init} d={w}: "
                + ", ".join(f"{r} {out[f'{init}.d{w}.{r}.accuracy']:.3f}" for r in names),
                flush=True,
            )
    return out


def member_params(model, seed: int, seed_dir: Path, init: str, w: int, count: int):
    """`count` members' initial params (each its own reward head and, from scratch, its own
    backbone), the backbone of <seed_dir>/pretrain_d<w> when `init` is "pretrained"."""
    keys = [jax.random.fold_in(jax.random.key(seed), 1000 * w + m) for m in range(count)]
    params = jax.vmap(model.init)(jnp.stack(keys))
    if init == "pretrained":
        one = jax.tree.map(lambda x: x[0], params)
        backbone = restore_params(seed_dir / f"pretrain_d{w}" / "checkpoints", one)
        params = {
            **params,
            **jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *x.shape)), backbone),
        }
    return params


def train_members(model, config, train, weak_labels, names, params, seed: int, w: int):
    """The members `names` of width `w` as one vmapped run: the weak model on half A's gold
    labels, the ceiling on half B's, each student on half B labelled by its weak model."""
    s = config.w2s
    sweep = section_reward_sweep(model, s, train, confidence_warmup=s.confidence_warmup)
    targets, starts, confidence = [], [], []
    for role in names:
        kind, _, weak = role.partition("_d")
        targets.append(weak_labels[int(weak)] if weak else train["target"])
        starts.append(0 if role == "weak" else config.pairs.num_pairs)
        confidence.append(s.confidence if kind == "confidence" else 0.0)
    rngs = jnp.stack(
        [
            jax.random.fold_in(jax.random.key(seed), 7_000_000 + 1000 * w + m)
            for m in range(len(names))
        ]
    )
    trained, _ = sweep(
        params,
        jnp.asarray(np.stack(targets), jnp.float32),
        jnp.asarray(starts),
        jnp.full(len(names), config.pairs.num_pairs),
        jnp.asarray(confidence, jnp.float32),
        rngs,
    )
    return trained


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per initialisation: every reward model's accuracy and best-of-n gold across seeds, the
    PGR of every gap, the answers to the criteria; the figure."""
    s = config.w2s
    ns = powers_of_two(config.pool.pool_size)
    combined = {}
    for init in s.inits:
        tables = {str(seed): seed_table(m, init, s.widths, ns) for seed, m in seeds.items()}
        combined[init] = aggregate(tables, s.widths, ns)
    figure(combined, s.widths, ns, len(seeds), workdir / "figures")
    return {
        "ns": ns,
        "num_seeds": len(seeds),
        "widest": f"d{min(s.widths)}->d{max(s.widths)}",
        "combined": combined,
        "answers": answers(combined),
    }


def answers(combined: dict) -> dict:
    """The criteria of configs/weak_to_strong.py for every initialisation and gap."""
    out = {}
    for init, c in combined.items():
        for name, gap in c["gaps"].items():
            out[f"{init}/{name}"] = {
                "control": interval_verdict(gap["ceiling_minus_weak"], "resolved", "reversed"),
                "naive": interval_verdict(
                    gap["naive"]["minus_weak"], "beats its supervisor", "worse"
                ),
                "confidence": interval_verdict(gap["confidence_minus_naive"], "helps", "hurts"),
                "best_of_n": interval_verdict(
                    gap["best_of_n_naive_minus_weak"][-1], "higher", "lower"
                ),
            }
    return out


def report(config, results: dict, timings: dict, prov: dict) -> str:
    s, n, p, ns = config.w2s, config.pairs, config.pool, results["ns"]
    inits = {
        "pretrained": f"backbones pretrained on the task's text for "
        f"{config.stages.pretrain.train.steps} steps",
        "scratch": "from scratch",
    }
    lines = [
        "### Weak-to-strong generalisation of reward models",
        "",
        f"{written_by(prov)}; {results['num_seeds']} seeds on {config.workers} process(es); "
        f"{wall_time_text(timings)}.",
        "",
        "The review task's generator samples pairs of responses; gold labels prefer the higher "
        f"gold reward. Per seed: {2 * n.num_pairs} training pairs in two halves of "
        f"{n.num_pairs}, {n.num_eval_pairs} held-out pairs to held-out prompts. Reward models at "
        f"widths {', '.join(map(str, s.widths))} (the policy's two layers; "
        f"{', or '.join(inits[init] for init in s.inits)}), "
        f"each {s.steps} steps of {s.batch_size} pairs: a weak supervisor on half A's gold "
        "labels, a ceiling on half B's, and students of every wider width on half B labelled by "
        "a weak model's probabilities, naive or with Burns et al.'s auxiliary confidence loss "
        f"(alpha {s.confidence}, warmed up over the first {s.confidence_warmup:.0%} of the "
        "steps). PGR = (student - weak) / (ceiling - weak) from held-out accuracies, 95% "
        "Fieller interval over seeds; other intervals 95% t over seeds of paired differences. "
        f"Best-of-n: {p.pool_size} generator samples to each of {p.num_prompts} held-out prompts, "
        "gold of the pick by each reward model (unbiased estimator).",
        "",
    ]
    students = [(v, k) for v in s.widths[:-1] for k in STUDENTS]
    header = ["width", "weak (gold, half A)", "ceiling (gold, half B)"]
    header += [f"{STUDENTS[k]} students of d={v}" for v, k in students]
    gap_header = ["weak -> strong", "ceiling - weak (control)", "naive - weak (1)", "PGR naive"]
    gap_header += ["confidence - naive (2)", "PGR confidence", "best-of-n gold, naive - weak (3)"]
    for init, c in results["combined"].items():
        models = c["models"]

        def cell(name: str, models=models) -> str:
            return interval_text(models[name]["accuracy"]) if name in models else "-"

        rows = [
            [
                w,
                cell(f"d{w}/weak"),
                cell(f"d{w}/ceiling"),
                *(cell(f"d{w}/{k}_d{v}") for v, k in students),
            ]
            for w in s.widths
        ]
        gap_rows = []
        for name, gap in c["gaps"].items():
            a = results["answers"][f"{init}/{name}"]
            gap_rows.append(
                [
                    name.replace("->", " -> "),
                    f"{interval_text(gap['ceiling_minus_weak'], signed=True)} ({a['control']})",
                    f"{interval_text(gap['naive']['minus_weak'], signed=True)} (**{a['naive']}**)",
                    pgr_text(gap["naive"]["pgr"]),
                    f"{interval_text(gap['confidence_minus_naive'], signed=True)} "
                    f"(**{a['confidence']}**)",
                    pgr_text(gap["confidence"]["pgr"]),
                    f"{interval_text(gap['best_of_n_naive_minus_weak'][-1], signed=True)} "
                    f"(**{a['best_of_n']}**)",
                ]
            )
        lines += [
            f"**{init}** reward models, held-out accuracy against gold:",
            "",
            *table(header, rows),
            "",
            f"**{init}**, each gap: the control (ceiling above weak), the students' gain over "
            "the weak supervisor and PGR, the confidence loss against naive, and best-of-"
            f"{ns[-1]} gold by the naive student against by its supervisor; criteria of "
            "configs/weak_to_strong.py answered from the intervals:",
            "",
            *table(gap_header, gap_rows),
            "",
        ]
    lines += [
        "Where the setting differs from Burns et al.'s: tiny two-layer reward models whose sizes "
        "differ by width alone, pretrained (when they are) on a synthetic generator's text for "
        "seconds rather than on the web; a pairwise reward-model task with noise-free gold "
        "labels; students see the weak model's probabilities on the other half of the same "
        "distribution; best-of-n on the generator's samples, no PPO.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Burns et al. (2023)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    widest = results["widest"]
    out = []
    for init, c in results["combined"].items():
        gap = c["gaps"][widest]
        out.append(
            f"{init}, {widest.replace('->', ' -> ')}: naive PGR {pgr_text(gap['naive']['pgr'])}, "
            f"confidence loss {interval_text(gap['confidence_minus_naive'], signed=True)} "
            f"accuracy (**{results['answers'][f'{init}/{widest}']['confidence']}**)"
        )
    return out


def summarize(results: dict) -> dict:
    out = {}
    for init, c in results["combined"].items():
        for name, gap in c["gaps"].items():
            for kind in STUDENTS:
                out[f"pgr/{init}/{name}/{kind}"] = gap[kind]["pgr"][0]
    return out


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
