"""The benchmark harness: interleaved timing order, the FLOPs count MFU divides by, the table."""

from alignax.models import ModelConfig
from benchmarks import common, roofline


def test_cases_run_interleaved_after_their_warm_up():
    calls = []
    cases = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    timings = common.interleave(cases, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert all(len(t.seconds) == 3 and t.median >= 0 for t in timings.values())


def test_train_step_flops_count_matmul_weights_and_attention():
    config = ModelConfig.from_config(
        common.Shape(layers=1, d_model=4, heads=1, mlp_dim=8, vocab=10).model_config()
    )
    batch, length = 2, 3
    # Untied: q, k, v, out (4 x 4 x 4) + gate, up, down (3 x 4 x 8) + LM head (4 x 10); the
    # embedding table is only gathered from. Norm scales count as parameters too (2 + 1 x 4).
    matmul = 4 * 16 + 3 * 32 + 40 + 3 * 4
    expected = 6 * matmul * batch * length + 12 * 1 * batch * length**2 * 4
    assert roofline.train_step_flops(config, batch, length) == expected


def test_step_flops_count_the_work_each_step_needs():
    """A reward model has no LM head to count; a DPO step is a trained pass and a reference
    forward over both options; a GRPO iteration samples, runs the reference and trains."""
    config = ModelConfig.from_config(
        common.Shape(layers=1, d_model=4, heads=1, mlp_dim=8, vocab=10).model_config()
    )
    forward = roofline.forward_flops(config, 2, 3)
    # Without the LM head (4 x 10): 2 x 40 x tokens fewer.
    assert forward - roofline.forward_flops(config, 2, 3, lm_head=False) == 2 * 40 * 2 * 3
    assert roofline.dpo_step_flops(config, 1, 3) == 4 * forward
    assert roofline.grpo_iteration_flops(config, 2, 3) == 5 * forward
    assert roofline.sampling_flops(config, 2, 3) == forward


def test_peaks_are_each_frameworks_best_matmul_rate():
    n = roofline.PEAK_SIZES
    seconds = {
        ("JAX", n[0]): 0.002,
        ("JAX", n[1]): 0.010,
        ("JAX", n[2]): 0.040,
        ("torch", n[2]): 0.080,
    }
    timings = {
        roofline.PEAK_CASE.format(n=size, framework=f): common.Timing("", [t, t, t])
        for (f, size), t in seconds.items()
    }
    timings["a step"] = common.Timing("", [1.0])
    best = roofline.peaks(timings)
    assert best["JAX"] == max(roofline.matmul_flops(size) / seconds["JAX", size] for size in n)
    assert best["torch"] == roofline.matmul_flops(n[2]) / 0.080
    assert set(best) == {"JAX", "torch"}
    assert [roofline.is_peak_case(name) for name in timings][-2:] == [True, False]


def test_markdown_table_pads_columns():
    text = common.markdown_table(["a", "long header"], [["xyz", "1"]])
    assert text.splitlines() == [
        "| a   | long header |",
        "|-----|-------------|",
        "| xyz | 1           |",
    ]


def test_lora_trains_fewer_params_in_less_memory_than_full_fine_tuning():
    """The memory table on the tiny preset: LoRA trains a fraction of the params, and its DPO
    step holds no reference copy, so its peak is below full fine-tuning's."""
    from benchmarks import memory

    compared = ("full fine-tuning", "LoRA r8, q v")
    _, records = memory.memory_table(preset="tiny", setups=compared)
    assert {(r["step"], r["setup"]) for r in records} == {
        (step, setup) for step in ("sft", "dpo") for setup in compared
    }
    by = {(r["step"], r["setup"]): r for r in records}
    for step in ("sft", "dpo"):
        full, lora = by[(step, "full fine-tuning")], by[(step, "LoRA r8, q v")]
        assert lora["trained_params"] < full["trained_params"] / 5
        assert lora["arguments_mib"] < full["arguments_mib"]
        assert lora["peak_mib"] < full["peak_mib"]


def test_word_tokenizer_reads_back_every_id():
    """The peers' trainers get token ids as words; none is split by a special token inside it
    ("<1>" is the unknown token, "<107>" must not read as it)."""
    import numpy as np

    tokenizer = common.word_tokenizer(300, eos_id=300)
    ids = np.arange(300)
    assert tokenizer(common.as_words(ids))["input_ids"] == ids.tolist()
    assert tokenizer.eos_token_id == 300 and tokenizer.pad_token_id == 0


def test_grpo_iteration_runs_on_both_sides_with_the_same_prompts():
    """At a tiny shape: alignax's iteration returns a finite loss; TRL's generates full-length
    completions of the benchmark's own prompt ids."""
    import jax
    import numpy as np
    import pytest

    pytest.importorskip("trl", reason="the TRL peer: pip install -r benchmarks/requirements.txt")
    from alignax.models import build_model
    from benchmarks import grpo_iteration

    shape = common.Shape(
        layers=1, d_model=32, heads=2, mlp_dim=64, vocab=300, batch=8, prompt_len=6, response_len=5
    )
    params = jax.device_get(build_model(shape.model_config()).init(jax.random.key(0)))
    prompts = grpo_iteration.prompts(shape)
    assert prompts.shape == (2, 6)
    assert np.isfinite(float(grpo_iteration.alignax_iteration(shape, params, prompts)()))
    theirs, _ = grpo_iteration.trl_iteration(shape, params, prompts)
    assert np.isfinite(theirs())
    batch = theirs.trainer._buffered_inputs[0]
    assert sorted(map(tuple, batch["prompt_ids"].tolist())) == sorted(
        tuple(p) for p in prompts.tolist() for _ in range(grpo_iteration.GROUP)
    )
    assert batch["completion_ids"].shape == (8, 5)
    assert batch["completion_mask"].sum().item() == 8 * 5  # no completion ended early


def test_dpo_step_trains_trl_on_the_benchmarks_own_pairs():
    """At a tiny shape: TRL's dataset reads back the pairs' ids (prompt and completion are not
    merged at their boundary; TRL appends its end of sequence). Both sides' first loss is log 2,
    the sigmoid DPO loss of a policy equal to its reference whatever the data: this shows only
    that both steps run from the same start (TRL's timed step takes the collated ids)."""
    import math

    import jax
    import pytest

    pytest.importorskip("trl", reason="the TRL peer: pip install -r benchmarks/requirements.txt")
    from alignax.models import build_model
    from benchmarks import dpo_step

    shape = common.Shape(
        layers=1, d_model=32, heads=2, mlp_dim=64, vocab=300, batch=4, prompt_len=6, response_len=5
    )
    params = jax.device_get(build_model(shape.model_config()).init(jax.random.key(0)))
    pairs = dpo_step.token_pairs(shape)
    theirs, _ = dpo_step.trl_step(shape, params, pairs)
    dataset = theirs.trainer.train_dataset
    eos = [theirs.trainer.processing_class.eos_token_id]
    for i, row in enumerate(dataset):
        assert row["prompt_ids"] == pairs["prompt"][i].tolist()
        assert row["chosen_ids"] == pairs["chosen"][i].tolist() + eos
        assert row["rejected_ids"] == pairs["rejected"][i].tolist() + eos
    assert math.isclose(float(theirs()), math.log(2), rel_tol=1e-6)
    ours = dpo_step.alignax_step(shape, params, pairs)
    assert math.isclose(float(ours()), math.log(2), rel_tol=1e-6)


def test_speedup_spread_is_of_the_per_round_ratios():
    slow = common.Timing("slow", [2.0, 3.0, 4.0, 9.0, 6.0])
    fast = common.Timing("fast", [1.0, 1.0, 1.0, 1.0, 4.0])
    # Per-round ratios 2, 3, 4, 9, 1.5: sorted 1.5 2 3 4 9, quartiles (inclusive) 2 and 4.
    assert common.speedup_spread(slow, fast) == "quartiles 2.00-4.00, range 1.50-9.00"


def test_verdicts_count_how_often_each_target_held_over_runs():
    from benchmarks import verdicts

    def run(dpo_fraction, trl, sampling_64):
        return {
            "dpo": {
                "sides": {
                    "alignax": {"roofline_fraction": dpo_fraction},
                    "TRL": {"speedup": trl},
                }
            },
            "sampling": {"64": {"speedup": sampling_64}},
        }

    runs = [run(0.6, 1.6, 2.1), run(0.8, 1.4, 2.2), run(0.7, 1.0, 2.3), run(0.6, 1.1, 2.0)]
    lines = {line.split(" | ")[0].strip("| "): line for line in verdicts.table(runs).splitlines()}
    assert "60.0%, 80.0%, 70.0%, 60.0%" in lines["DPO step >= 75% of the roofline"]
    assert "PASS 1, FAIL 3" in lines["DPO step >= 75% of the roofline"]
    assert "does not reproduce" in lines["DPO step >= 1.5x TRL's"]  # 1 of 4 against 3: 75% < 80%
    assert "PASS 4 of 4" in lines["sampling >= 2x `generate`, 64 new tokens"]
    assert "DPO step >= 1.5x Tunix's" not in lines  # measured by no run
