"""The over-optimisation experiment: the plan pairs RL run s with the proxy of seed s, the seeds'
curves average point by point with SEs over prompts and seeds, a plan that cannot finish is
refused before the compute, and cached artefacts are reused only for the config that made them."""

import json
from pathlib import Path

import numpy as np
import pytest

from alignax import proxies
from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_per_prompt, powers_of_two
from alignax.analysis.fits import fit_form
from alignax.analysis.overoptimization import (
    best_of_n_seed_coefficients,
    cross_fitted_drop,
    figures,
    gold_at_same_kl,
    gold_by_n,
    rl_average,
    rl_curve,
    rl_fit,
    rl_seed_fits,
)
from alignax.workdir import ConfigChangedError, record_cache_key
from configs import overoptimization as config_module
from experiments import overoptimization
from tests.helpers import preset_config


def test_rl_average_by_hand():
    a = [
        {"step": 0, "kl": 0.0, "gold": 0.0, "gold_se": 0.0, "proxy": 0.0},
        {"step": 10, "kl": 4.0, "gold": 1.0, "gold_se": 0.3, "proxy": 2.0},
    ]
    b = [
        {"step": 0, "kl": 0.0, "gold": 0.0, "gold_se": 0.0, "proxy": 0.0},
        {"step": 10, "kl": 6.0, "gold": 0.0, "gold_se": 0.4, "proxy": 3.0},
    ]
    start, end = rl_average([a, b])
    assert start["gold"] == 0 and start["gold_se"] == 0
    assert (end["step"], end["kl"], end["proxy"], end["gold"]) == (10, 5.0, 2.5, 0.5)
    # prompt variance: (0.09 + 0.16) / 2; between seeds: var([1, 0], ddof=1) / 2 = 0.25
    assert end["gold_se"] == pytest.approx(np.sqrt(0.125 + 0.25))
    assert end["gold_seeds"] == [1.0, 0.0] and end["kl_seeds"] == [4.0, 6.0]
    fit = rl_fit([start, {**end, "step": 5, "kl": 1.0, "gold": 0.8}, end])
    # KL 4 and 6: mean 5, SE 1, t(0.975, 1 dof) = 12.706
    assert fit["final_kl"] == 5.0 and fit["final_kl_half_width"] == pytest.approx(12.7062, 1e-4)
    assert fit["final_gold_se"] == end["gold_se"]
    with pytest.raises(ValueError, match="differ in length"):
        rl_average([a, b[:1]])


def _in_sample_drop(proxy, gold, ns):
    """The biased estimate: gold at the argmax n of the same prompts, minus gold at the last."""
    curve = [best_of_n_per_prompt(proxy, gold, n)[1].mean() for n in ns]
    return max(curve) - curve[-1]


def test_cross_fitted_drop_equals_the_in_sample_drop_when_the_halves_agree():
    # Rows 2k and 2k + 1 are the same prompt: each half picks the peak the whole data picks.
    rng = np.random.default_rng(0)
    gold = np.repeat(rng.normal(size=(4, 16)), 2, axis=0)
    # The proxy agrees with gold but for the worst response, which it ranks first: gold rises
    # with n, then falls as best-of-n comes to pick that response.
    proxy = gold.copy()
    worst = np.argmin(gold, axis=1)
    proxy[np.arange(8), worst] = gold.max() + 1.0
    ns = powers_of_two(16)
    drop, se, peaks = cross_fitted_drop(
        gold_by_n(proxy, gold, ns)[None], ns, num_bootstrap=200, seed=0
    )
    assert drop == pytest.approx(_in_sample_drop(proxy, gold, ns))
    assert peaks[0] == peaks[1] and 1 < peaks[0] < 16 and drop > 0 and se > 0
    with pytest.raises(ValueError, match=">= 2 prompts"):
        cross_fitted_drop(gold_by_n(proxy[:1], gold[:1], ns)[None], ns, num_bootstrap=10, seed=0)


def test_cross_fitted_drop_is_unbiased_where_gold_never_falls():
    # Proxy independent of gold: best-of-n's expected gold is flat in n, so the true drop is 0.
    # The argmax of the same data finds a drop anyway; choosing the peak on the other half
    # removes that bias.
    rng = np.random.default_rng(1)
    ns = powers_of_two(16)
    in_sample, crossed = [], []
    for _ in range(300):
        gold, proxy = rng.normal(size=(2, 16, 16))
        in_sample.append(_in_sample_drop(proxy, gold, ns))
        crossed.append(
            cross_fitted_drop(gold_by_n(proxy, gold, ns)[None], ns, num_bootstrap=2, seed=0)[0]
        )
    assert np.mean(in_sample) > 5 * np.std(in_sample) / np.sqrt(300)
    assert abs(np.mean(crossed)) < 3 * np.std(crossed) / np.sqrt(300)


def test_best_of_n_coefficients_are_fitted_seed_by_seed():
    # Two seeds on the exact form d (alpha - beta d): alpha 1 and 2, beta 0.5 and 0.25.
    n = np.array([1, 2, 4, 8, 16])
    kl = np.log(n) - (n - 1) / n
    d = np.sqrt(kl)
    seeds = [(1.0, 0.5), (2.0, 0.25)]
    curve = [
        {"kl_bound": float(k), "gold_seeds": [float(x * (a - b * x)) for a, b in seeds]}
        for k, x in zip(kl, d)
    ]
    out = best_of_n_seed_coefficients(curve)
    # mean 1.5 and 0.375; 95% t half-width, 1 dof: 12.706 x SE (= half the seeds' distance)
    assert out["alpha"][0] == pytest.approx(1.5) and out["beta"][0] == pytest.approx(0.375)
    assert out["alpha"][1] == pytest.approx(12.7062 * 0.5, rel=1e-4)
    assert out["beta"][1] == pytest.approx(12.7062 * 0.125, rel=1e-4)


def test_rl_curve_starts_at_the_measured_step_0_and_refuses_a_run_without_it(tmp_path):
    lines = [
        {"step": 0, "eval/gold": 1.5, "eval/kl": 0.0, "eval/gold_se": 0.2, "eval/proxy": 0.1},
        {"step": 1, "loss": 0.3},
        {"step": 1, "eval/gold": 2.5, "eval/kl": -0.01, "eval/gold_se": 0.4, "eval/proxy": 0.5},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    start, first = rl_curve(tmp_path, gold_mean=1.0, gold_std=2.0)
    # the start is measured, not set to 0: (1.5 - 1) / 2; a negative KL estimate is clipped
    assert start == {"step": 0, "kl": 0.0, "gold": 0.25, "gold_se": 0.1, "proxy": 0.1}
    assert (first["kl"], first["gold"], first["gold_se"]) == (0.0, 0.75, 0.2)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[1:]))
    with pytest.raises(ValueError, match="no evaluation at step 0.*evaluate_at_start"):
        rl_curve(tmp_path, gold_mean=1.0, gold_std=2.0)


def test_rl_seed_fits_fit_each_seed_and_pair_the_forms():
    d = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    exact_rl = d * (1.0 - 0.5 * np.log(np.where(d > 0, d, 1.0)))  # alpha 1, beta 0.5
    exact_bon = d * (0.8 - 0.2 * d)
    curves = [
        [{"kl": float(x**2), "gold": float(g)} for x, g in zip(d, gold)]
        for gold in (exact_rl, exact_bon, exact_rl + 0.01 * np.sin(d))
    ]
    fits = rl_seed_fits(curves)
    by_seed = [
        (fit_form(d, [q["gold"] for q in c], "rl"), fit_form(d, [q["gold"] for q in c], "bon"))
        for c in curves
    ]
    assert by_seed[0][0].r2 == pytest.approx(1.0) and by_seed[1][1].r2 == pytest.approx(1.0)
    differences = [rl.r2 - bon.r2 for rl, bon in by_seed]
    assert fits["r2_rl_minus_bon"][0] == pytest.approx(np.mean(differences))
    # t(0.975, 2 dof) = 4.303 times the SE over the 3 seeds
    half = 4.3027 * np.std(differences, ddof=1) / np.sqrt(3)
    assert fits["r2_rl_minus_bon"][1] == pytest.approx(half, rel=1e-4)
    assert fits["alpha"][0] == pytest.approx(np.mean([rl.alpha for rl, _ in by_seed]))


def test_gold_at_same_kl_combines_both_runs_ses():
    """The penalised run ends at sqrt(KL) 2, halfway between the reference's points at 1 and 3:
    gold 0.5 and SE 0.4 there by interpolation; the difference 0.5 over sqrt(0.3^2 + 0.4^2)."""
    reference = [
        {"kl": 1.0, "gold": 0.0, "gold_se": 0.2},
        {"kl": 9.0, "gold": 1.0, "gold_se": 0.6},
    ]
    out = gold_at_same_kl([{"kl": 4.0, "gold": 1.0, "gold_se": 0.3}], reference)
    assert out["beta0_gold_at_same_kl"] == pytest.approx(0.5)
    assert out["beta0_gold_se_at_same_kl"] == pytest.approx(0.4)
    assert out["difference_in_se"] == pytest.approx(0.5 / 0.5)


def test_rl_plan_pairs_each_seed_with_its_own_proxy(tmp_path):
    config = config_module.get_config()
    runs = overoptimization.rl_stages(config, tmp_path)
    assert sum(len(stages) for stages in runs.values()) == len(runs) * config.rl.seeds == 20
    for key, stages in runs.items():
        name, beta = key.split(", beta ")
        for s, stage in enumerate(stages):
            assert stage.options == {"evaluate_at_start": True}
            proxy = tmp_path / "proxies" / f"{name}_s{s}"
            assert Path(stage.config.rewards.reward_model_from) == proxy
            assert Path(stage.config.init_from) == tmp_path / config.policy_stages[-1]
            assert stage.config.seed == config.seed + s
            assert stage.config.ppo.kl_coef == float(beta)


# ------------------------------------------------------------------------------ the plan
def test_a_plan_that_would_fail_after_the_compute_is_refused_first():
    config = preset_config(config_module, **{"rl.proxies": ("d16_n4096_f0.25",)})
    with pytest.raises(ValueError, match=r"rl\.proxies names \['d16_n4096_f0.25'\].*d4_n256"):
        overoptimization.check_plan(config)
    config = preset_config(config_module, **{"rl.seeds": 2})
    with pytest.raises(ValueError, match=r"rl\.seeds=2 needs as many proxy seeds"):
        overoptimization.check_plan(config)
    overoptimization.check_plan(config_module.get_config("runlocal"))


def test_figures_take_a_sweep_longer_than_the_palette(tmp_path):
    sizes = tuple(range(4, 48, 4))  # 11 reward-model sizes
    config = preset_config(config_module, **{"proxies.sizes": sizes})
    rows = [dict(kl_bound=k, gold=0.1 * k, gold_se=0.01, proxy=0.2 * k) for k in (0.0, 1.0)]
    names = {g["name"] for g in proxies.proxy_grid(config.proxies)}
    assert len(names) > len(plots.PALETTE)
    coefficients = {n: {"alpha": (1.0, 0.1), "beta": (0.5, float("nan"))} for n in names}
    results = {"best_of_n": {n: rows for n in names}, "oracle": rows, "rl": {}}
    figures(config, {**results, "coefficients": coefficients}, tmp_path)
    for name in ("best_of_n_noise0", "best_of_n_noise25", "coefficients"):
        assert (tmp_path / "figures" / f"{name}.png").exists()


# ------------------------------------------------------------------------------ caches
def _fake_sft(directory: Path) -> Path:
    """What a finished SFT stage leaves that the caches' keys read (its fingerprint)."""
    (directory / "checkpoints" / "20").mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"train": {"steps": 20}}))
    return directory


def test_cached_comparisons_are_reused_only_for_the_config_that_made_them(tmp_path, monkeypatch):
    """Extending the data sweep needs more pairs than the cache holds: the cached 256 were
    reused for "n512" proxies."""
    sft_dir = _fake_sft(tmp_path / "sft")
    config = config_module.get_config("runlocal")
    made = {"tokens": np.zeros((3, 2, 4), np.int32)}
    np.savez(tmp_path / "comparisons.npz", **made)
    key = proxies.comparisons_key(config, sft_dir)
    record_cache_key(tmp_path / "comparisons.npz", key)
    monkeypatch.setattr(proxies.labels, "comparisons", None)  # nothing is sampled
    cached = proxies.build_comparisons(config, None, None, sft_dir, tmp_path, key)
    assert cached["tokens"].shape == (3, 2, 4)
    extended = preset_config(config_module, **{"proxies.data_sizes": (128, 256, 512)})
    with pytest.raises(ConfigChangedError, match=r"comparisons\.npz.*count: 256 -> 512"):
        proxies.build_comparisons(
            extended,
            None,
            None,
            sft_dir,
            tmp_path,
            proxies.comparisons_key(extended, sft_dir),
        )


def test_standardize_on_hand_cases_and_without_spread():
    from alignax.analysis.overoptimization import standardize

    np.testing.assert_allclose(standardize(np.array([1.0, 2.0, 3.0])), [-(1.5**0.5), 0, 1.5**0.5])
    # A verifier that nothing satisfies: no spread, every choice as good (zeros, not NaN).
    np.testing.assert_array_equal(standardize(np.array([[2.0, 2.0], [2.0, 2.0]])), 0.0)
