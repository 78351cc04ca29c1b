"""Online (iterative) DPO: rounds of on-policy preference data. Round r samples pairs of
responses from the policy that round r - 1 ended with, has the simulated annotator label them,
and runs DPO from that policy, which is also the round's reference (the iterative DPO of Xu et
al. 2023 and Xiong et al. 2024; with one round it is offline DPO on SFT samples).

    python -m experiments.online_dpo --config configs/online_dpo.py --workdir runs/online_dpo \
        --config.init_from=runs/sft

Your data: the prompts of a file with its verifier as the annotator's gold reward
(`--config.dpo.data.path=math.jsonl --config.dpo.data.tokenizer=<checkpoint>
--config.dpo.data.verifier=...`; README, "Your model and your data").

On the Study runner (alignax/study.py): each round is a DPO stage in <workdir>/round<r> (the
dpo stage, resumable, skipped when finished). Every policy (the start and each round's) then
answers the same held-out prompts: gold reward, KL to the starting policy and to the round's
reference. results.md / results.json name the command and commit.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from alignax.analysis.policy_eval import evaluate_policy
from alignax.analysis.report import table
from alignax.cli import run_experiment
from alignax.experiment import check_model_fits_task
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model, stage_config
from alignax.study import PlannedStage, Study, run_planned
from alignax.tasks import require, stage_task
from alignax.workdir import check_config_unchanged
from alignax.workflows import preference


def round_config(config, round_index: int, start: Path):
    """The DPO stage of round `round_index` (1-based): from, referenced to and sampling from the
    policy in `start`, with its own seed (fresh prompts and samples every round)."""
    links = {"init_from": start, "labels.policy_from": start}
    stage = stage_config(config, config.dpo, links)
    with stage.unlocked():
        stage.seed = config.seed + round_index - 1
    return stage


def prepare(config, workdir: Path) -> list[PlannedStage]:
    """The rounds, round r from round r - 1's policy (round 1 from `init_from`)."""
    if not config.init_from:
        raise ValueError("online_dpo needs config.init_from: the workdir of the SFT policy")
    if config.rounds < 1:
        raise ValueError(f"rounds={config.rounds} must be at least 1")
    task = stage_task(round_config(config, 1, Path(config.init_from)))
    check_model_fits_task(config.model, task)
    require(task, "gold_reward", by="online DPO", hint="Declare a verifier (--config.dpo.data.*)")
    starts = [Path(config.init_from)] + [workdir / f"round{r}" for r in range(1, config.rounds)]
    rounds = [
        PlannedStage(f"round{r}", preference.KIND, round_config(config, r, start), group="dpo")
        for r, start in enumerate(starts, start=1)
    ]
    for stage in rounds:
        check_config_unchanged(stage.config, workdir / stage.name)
    return rounds


def measure(config, workdir: Path, rounds: list[PlannedStage]) -> tuple[list[dict], dict]:
    """Every round, then every policy (the start and each round's) on the same held-out prompts:
    gold reward, KL to the start and to the round's reference, length."""
    for stage in rounds:
        run_planned(stage, workdir, workdir, "online DPO")
    task = stage_task(round_config(config, 1, Path(config.init_from)))
    mesh = make_mesh(config.mesh)
    model = build_model(config.model, heads=("lm",))
    prompts = task.prompt_dataset(config.eval.num_prompts, seed=config.seed + 1, split="eval")
    policies = [Path(config.init_from)] + [workdir / stage.name for stage in rounds]
    params = [load_stage_model(p, heads=("lm",), mesh=mesh)[1] for p in policies]
    rng = jax.random.key(config.seed)

    def evaluate(policy, reference):
        return evaluate_policy(
            model,
            policy,
            task,
            prompts,
            rng,
            max_new_tokens=config.eval.max_new_tokens,
            ref_params=reference,
        )

    rows = []
    for r, policy in enumerate(params):
        to_start = evaluate(policy, params[0])
        gold = to_start["gold"]
        rows.append(
            {
                "round": r,
                "gold": float(np.mean(gold)),
                "gold_se": float(np.std(gold) / np.sqrt(len(gold))),
                "kl_to_start": float(np.mean(to_start["kl"])),
                "kl_to_reference": float(np.mean(evaluate(policy, params[max(r - 1, 0)])["kl"])),
                "length": float(np.mean(to_start["length"])),
            }
        )
    return rows, {}


def analyse(config, rows: list[dict], workdir: Path) -> dict:
    return {"rounds": rows}


def report(config, results: dict, timings: dict, prov: dict) -> str:
    lines = [
        "### Online (iterative) DPO",
        "",
        written_by(prov) + ". Round 0 is the starting "
        f"policy; each round's DPO starts from, and is referenced to, the previous round's policy "
        f"and trains on {config.dpo.pairs.num_pairs} fresh pairs of its samples. "
        f"Evaluated on {config.eval.num_prompts} held-out prompts (gold reward ± 1.96 SE).",
        "",
    ]
    header = ("round", "gold reward", "KL to start (nats)", "KL to its reference", "length")
    rows = [
        (
            row["round"],
            f"{row['gold']:.2f} ± {1.96 * row['gold_se']:.2f}",
            f"{row['kl_to_start']:.2f}",
            f"{row['kl_to_reference']:.2f}",
            f"{row['length']:.1f}",
        )
        for row in results["rounds"]
    ]
    lines += table(header, rows)
    return "\n".join(lines) + "\n"


def summarize(results: dict) -> dict:
    rows = results["rounds"]
    summary = {f"round{row['round']}/gold": row["gold"] for row in rows}
    summary.update({f"round{row['round']}/kl_to_start": row["kl_to_start"] for row in rows})
    return summary


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
