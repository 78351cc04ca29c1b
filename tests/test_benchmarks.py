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
