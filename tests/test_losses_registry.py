"""The loss registry: declared needs, the printed table, import order without a cycle, and
finite losses and gradients of every registered loss at margins of +-1e4 (float32 and float64)."""

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax.losses import PreferenceLogps, kto, registry, spec


def test_declared_needs():
    """Reference-free losses declare no reference; length readers declare their lengths."""
    assert set(registry.REFERENCE_FREE_LOSSES) == {
        "dpo_reference_free",
        "simpo",
        "cpo",
        "orpo",
        "alphapo",
        "sft",
    }
    assert registry.get_spec("simpo").lengths == "both"
    assert registry.get_spec("rpo").lengths == "chosen"
    assert registry.get_spec("dpo").lengths == "none"
    assert registry.get_spec("ld_dpo").inputs == ("public",)
    assert registry.get_spec("bco_pair").aux == "reward_shift"
    assert registry.get_spec("kto").kind == "unpaired"


def test_trainer_inputs_are_not_hyperparameters():
    """Lengths and BCO's running shift are supplied by the trainer: a config may not set them,
    and default_hyperparameters does not list them."""
    assert "reward_shift" not in registry.default_hyperparameters("bco_pair", beta=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        registry.validate_hyperparameters("bco_pair", beta=0.1, reward_shift=0.0)
    assert registry.default_hyperparameters("cpo", beta=0.1) == {
        "beta": 0.1,
        "alpha": 1.0,
        "label_smoothing": 0.0,
        "form": "sigmoid",
        "gamma": 0.5,
        "nll_reduction": "sequence",
    }
    with pytest.raises(ValueError, match="nll_reduction must be one of"):
        registry.validate_hyperparameters("rpo", beta=0.1, nll_reduction="mean")


def test_registering_a_taken_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        spec.register("dpo", paper="x")(lambda: None)


def test_command_prints_the_table_and_loss_modules_import_alone():
    """`python -m alignax.losses` prints one row per registered loss; importing a loss module
    first (before the registry) works: no import cycle."""
    code = (
        "import alignax.losses.dpo_extensions, alignax.losses.kto; import runpy; "
        "runpy.run_module('alignax.losses', run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0] == ("| name | kind | paper | needs reference | needs lengths | other inputs |")
    assert len(lines) == 2 + len(spec.SPECS)
    assert "| simpo | pairwise | Meng et al. 2024, SimPO | no | both | - |" in lines


def _extreme_pairwise(dtype):
    big = 1e4
    pc = jnp.array([-big, -1e-3, -big / 2], dtype)
    pr = jnp.array([-1e-3, -big, -big / 2], dtype)
    zeros = jnp.zeros(3, dtype)
    n = jnp.array([1.0, 3.0, 7.0], dtype)
    return PreferenceLogps(
        pc,
        pr,
        zeros,
        jnp.array([0.0, big, -big], dtype),
        n,
        n[::-1],
        policy_chosen_public=pc / 2,
        policy_rejected_public=pr / 2,
        ref_chosen_public=zeros,
        ref_rejected_public=zeros,
        chosen_wpo_logps=-n,
        rejected_wpo_logps=-n,
    )


_EXTRA = {
    "f_dpo": [{"divergence": d} for d in ("reverse_kl", "forward_kl", "js", "alpha")],
    "cpo": [{"form": f} for f in ("sigmoid", "hinge", "ipo", "simpo")],
    "alphapo": [{"reward_alpha": a} for a in (0.25, -0.5)],
}


def _all_values_and_grads(logps, unpaired):
    """{(name, option): (loss sum, grads)} for every registered loss (eagerly: compiling each
    would cost more than running it)."""
    out = {}
    for name in registry.PREFERENCE_LOSSES:
        fn = registry.get_preference_loss(name)
        for extra in _EXTRA.get(name, [{}]):
            hp = {} if name == "sft" else {"beta": 1.0, **extra}
            loss = lambda lp, fn=fn, hp=hp: fn(lp, **hp)[0].sum()
            out[(name, str(extra))] = jax.value_and_grad(loss)(logps)
    for name in registry.UNPAIRED_LOSSES:
        fn = registry.get_unpaired_loss(name)
        loss = lambda lp, fn=fn: fn(lp, beta=1.0)[0].sum()
        out[(name, "")] = jax.value_and_grad(loss)(unpaired)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_loss_is_finite_at_margins_of_1e4(dtype):
    """Loss and gradients of every registered loss (each form / divergence) are finite when
    log-ratio margins are +-1e4, in float32 and float64."""
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.dtype(dtype)
        u = jnp.array([1e4, -1e4, 1e4, -1e4], dt)
        unpaired = kto.UnpairedLogps(
            u,
            jnp.zeros(4, dt),
            jnp.array([1.0, 1.0, 0.0, 0.0], dt),
            u,
            jnp.zeros(4, dt),
            jnp.ones(4, dt),
        )
        results = _all_values_and_grads(_extreme_pairwise(dt), unpaired)
        assert len(results) > len(spec.SPECS)
        for key, (value, grads) in results.items():
            assert value.dtype == dt and np.isfinite(value), key
            for g in jax.tree.leaves(grads):
                assert np.all(np.isfinite(g)), key


def test_the_readme_loss_table_is_the_registry_table():
    """The README's table of offline losses is what `python -m alignax.losses` prints: a loss
    registered, renamed or re-described without re-pasting it fails here."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert registry.table().strip() in readme
