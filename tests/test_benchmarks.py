"""The benchmark harness: interleaved timing order, the FLOPs count MFU divides by, the table."""

from alignax.models import ModelConfig
from benchmarks import common, mfu


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
    assert mfu.train_step_flops(config, batch, length) == expected


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

    _, records = memory.memory_table(preset="tiny")
    by = {(r["step"], r["setup"]): r for r in records}
    for step in ("sft", "dpo"):
        full, lora = by[(step, "full fine-tuning")], by[(step, "LoRA r8, q v")]
        assert lora["trained_params"] < full["trained_params"] / 5
        assert lora["arguments_mib"] < full["arguments_mib"]
        assert lora["peak_mib"] < full["peak_mib"]
