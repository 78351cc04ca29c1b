"""Ahead-of-time compiles for TPU slices (benchmarks/aot.py): the HLO collective count on a hand
module, the model-FLOP count by hand, abstract states laid out as real ones, and, with libtpu,
the tiny preset's steps compiled for a v5e slice and the multi-host batch checks."""

import importlib.util
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alignax import sharding
from alignax.models import ModelConfig, build_model
from alignax.models.presets import model_config
from alignax.state import TrainState
from benchmarks import aot
from benchmarks.programs import Placement, offline_programs
from benchmarks.roofline import forward_flops, train_step_flops

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed (requirements-test.txt pins it)",
)

HLO = """HloModule jit_step, entry_computation_layout={()->f32[2]}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %sum = f32[] add(%a, %b)
}

%cond (p: (s32[], bf16[4,8])) -> pred[] {
  %p = (s32[], bf16[4,8]{1,0}) parameter(0)
  %limit = s32[]{:T(128)} constant(3)
  %i = s32[] get-tuple-element(%p), index=0
  ROOT %lt = pred[] compare(%i, %limit), direction=LT
}

%body (q: (s32[], bf16[4,8])) -> (s32[], bf16[4,8]) {
  %q = (s32[], bf16[4,8]{1,0}) parameter(0)
  %x = bf16[2,8]{1,0} get-tuple-element(%q), index=1
  %gathered = bf16[4,8]{1,0:T(8,128)(2,1)} all-gather(%x), dimensions={0}
  %pair = (f32[3]{0}, f32[5]{0}) all-reduce(%x, %x), to_apply=%add
  ROOT %t = (s32[], bf16[4,8]) tuple(%i, %gathered)
}

%all-reduce-scatter.1 (input: f32[8]) -> f32[2] {
  %input = f32[8]{0} parameter(0)
  %reduced = f32[8]{0} all-reduce(%input), to_apply=%add
  ROOT %slice = f32[2]{0} slice(%reduced), slice={[0:2]}
}

ENTRY %main (arg: f32[8]) -> f32[2] {
  %arg = f32[8]{0} parameter(0)
  %loop = (s32[], bf16[4,8]{1,0}) while(%init), condition=%cond, body=%body
  %scattered = f32[2]{0} fusion(%arg), kind=kCustom, calls=%all-reduce-scatter.1
  ROOT %out = f32[2]{0} all-reduce(%scattered), to_apply=%add
}
"""


def test_collectives_count_each_loop_trip_and_the_result_bytes():
    found = aot.collectives(HLO)
    # Three trips of the body: an all-gather of bf16[4,8] (64 bytes) and a two-array all-reduce
    # of 8 floats (32 bytes) each trip.
    assert found["all-gather"] == {"count": 3, "bytes": 3 * 64}
    # The loop's all-reduces, plus the entry's own of f32[2] (8 bytes).
    assert found["all-reduce"] == {"count": 3 + 1, "bytes": 3 * 32 + 8}
    # The all-reduce inside XLA's all-reduce-scatter fusion is a reduce-scatter.
    assert found["reduce-scatter"] == {"count": 1, "bytes": 32}
    assert found["all-to-all"]["count"] == found["collective-permute"]["count"] == 0
    assert found["unknown_loops"] == 0


def test_a_loop_without_a_counter_condition_counts_once_and_is_flagged():
    found = aot.collectives(HLO.replace("direction=LT", "direction=NE"))
    assert found["all-gather"]["count"] == 1
    assert found["unknown_loops"] == 1


def test_model_flops_by_hand():
    config = ModelConfig.from_config(model_config("tiny"))
    # tiny: d 64, 2 layers, 4 heads of 16 (no GQA), SwiGLU 256, vocab 64 tied (the LM head is a
    # matmul, so no parameter is excluded).
    d, layers, mlp, vocab = 64, 2, 256, 64
    per_layer = 4 * d * d + 3 * d * mlp + 2 * d  # q k v out, gate up down, two norm scales
    matmul_params = vocab * d + layers * per_layer + d
    assert config.num_params() == matmul_params
    rows, length = 3, 10
    by_hand = 2 * matmul_params * rows * length + 4 * layers * rows * length**2 * d
    assert forward_flops(config, rows, length) == by_hand
    assert train_step_flops(config, rows, length) == 3 * by_hand
    shapes = aot.Shapes(batch=rows, length=length, prompt_len=4, new_tokens=6, group=2)
    assert aot.step_flops("DPO", config, shapes) == 4 * forward_flops(config, 2 * rows, length)
    # PPO: sampling, policy, reference and reward forwards, then two trained epochs of three.
    assert aot.step_flops("PPO iteration", config, shapes) == (4 + 2 * 3) * by_hand
    assert aot.step_flops("GRPO iteration", config, shapes) == 7 * forward_flops(
        config, rows * 2, length
    )


def test_abstract_state_is_laid_out_as_the_created_one():
    model = build_model(model_config("tiny"))
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 4, "tensor": 2}))
    tx = optax.adamw(1e-3)
    params = sharding.init_params(model, jax.random.key(0), mesh)
    aux = {"kl": jnp.float32(0.1)}
    made = TrainState.create(params, tx, mesh, ref_params=params, aux=aux)
    shapes = sharding.abstract_params(model, mesh)
    planned = TrainState.abstract(shapes, tx, mesh, ref_params=shapes, aux=aux)

    def layout(x):
        return x.shape, x.dtype, x.sharding.spec

    assert jax.tree.structure(made) == jax.tree.structure(planned)
    assert jax.tree.leaves(jax.tree.map(layout, made)) == jax.tree.leaves(
        jax.tree.map(layout, planned)
    )
    assert any("fsdp" in leaf.sharding.spec for leaf in jax.tree.leaves(planned.opt_state))


TINY = aot.Shapes(batch=8, length=64, prompt_len=16, new_tokens=16)


@needs_libtpu
def test_tiny_dpo_step_and_ppo_iteration_compile_for_a_v5e_slice():
    records = aot.compile_steps(
        "tiny",
        "v5e:2x2",
        shapes=TINY,
        steps=("DPO", "PPO iteration"),
        mesh={"data": 1, "fsdp": -1, "tensor": 1},
        progress=lambda line: None,
    )
    assert [r["step"] for r in records] == ["DPO", "PPO iteration"]
    for record in records:
        assert record["chips"] == 4 and record["chip"] == "TPU v5 lite"
        assert record["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
        assert 0 < record["peak_bytes"] < 2**30 and record["fits"]
        # FSDP gathers every layer's weights before use and reduces their gradients.
        assert record["collectives"]["all-gather"]["count"] > 0
        assert record["collectives"]["unknown_loops"] == 0
    text = aot.tables(records, TINY)
    assert "v5e:2x2 (4 chips, 1 host)" in text and "1 x 4 x 1" in text
    assert "parameters float32 with float32 compute" in text


@needs_libtpu
def test_activations_stay_split_over_the_batch_on_a_slice():
    """`small`'s SFT step over 16 v5e chips as fsdp 16: 26 MiB per chip with the model's
    activations kept on the batch axes (`sharding.batch_split`), 979 MiB when XLA lays them out
    after the sharded weights."""
    where = aot.slice_setup("small", "v5e:4x4", {"data": 1, "fsdp": -1, "tensor": 1})
    place = Placement(where.mesh, abstract=True)
    fn, state, batch = offline_programs(where.config, place, 16, 256, kto=False)["SFT"]
    compiled = fn.lower(state, batch, place.rng()).compile()
    assert aot.peak_bytes(compiled.memory_analysis()) < 64 * 2**20


@needs_libtpu
def test_a_mesh_that_leaves_chips_idle_is_refused():
    with pytest.raises(ValueError, match=r"uses 2 of the 4 chips of v5e:2x2"):
        aot.compile_steps("tiny", "v5e:2x2", shapes=TINY, mesh={"data": 1, "fsdp": 2, "tensor": 1})


@needs_libtpu
def test_multi_host_batches_are_checked_at_compile_time():
    devices = aot.slice_devices("v5e:4x4")  # 16 chips on 4 hosts of 4
    assert len({d.process_index for d in devices}) == 4
    mesh = sharding.make_mesh(
        ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1}), devices
    )
    batch = {"tokens": np.zeros((32, 8), np.int32)}
    placed = sharding.abstract_batch(batch, mesh)
    assert placed["tokens"].sharding.spec[0] == ("data", "fsdp")
    with pytest.raises(
        ValueError, match=r"batch\['tokens'\] has leading dimension 24.*data\*fsdp = 16"
    ):
        sharding.abstract_batch({"tokens": np.zeros((24, 8), np.int32)}, mesh)
    # Data rows 0 and 1 each take two chips of host 0 and two of host 1; rows 2 and 3 are host 2's
    # and host 3's: hosts 0 and 1 would place 16 rows, hosts 2 and 3 eight.
    by_host = sorted(devices, key=lambda d: d.process_index)
    order = [by_host[i] for i in (0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)]
    uneven = jax.sharding.Mesh(np.asarray(order).reshape(4, 1, 4), sharding.MESH_AXES)
    with pytest.raises(ValueError, match=r"splits unevenly over the processes of mesh"):
        sharding.abstract_batch(batch, uneven)


def test_an_unknown_topology_names_the_flag():
    with pytest.raises(ValueError, match=r"--topology 'v9z:1x1'"):
        aot.slice_devices("v9z:1x1")


class CrashingJob(aot.Job):
    def run(self) -> dict:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)  # as XLA's TPU compiler does on a stack overflow


def test_a_compiler_crash_costs_one_compile_not_the_table():
    record = aot.compile_isolated(CrashingJob("tiny", "v5e:2x2", "DPO", TINY), attempts=2)
    assert record["crashed"] and not record["fits"] and record["peak_bytes"] is None
    record.update(
        preset="tiny",
        step="DPO",
        topology="v5e:2x2",
        chips=4,
        hosts=1,
        mesh={"data": 1, "fsdp": 4, "tensor": 1},
        remat="off",
        dtypes=("float32", "float32"),
        hbm_bytes=16 * aot.GIB,
        model_flops=1e9,
        estimated_ms=0.1,
        accumulated=None,
    )
    assert re.search(r"\|\s*compiler crashed\s*\|", aot.tables([record], TINY))
