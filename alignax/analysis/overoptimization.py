"""The analysis of reward-model over-optimisation (Gao et al. 2022): gold and proxy reward
against the distance from the initial policy, for best-of-n over a pool of samples (per proxy,
averaged over the proxy's seeds, with SEs over prompts and seeds) and for RL runs; where gold
peaks and how far it falls after.

Rewards are standardised on the pool (the initial policy's samples), so n = 1 and the initial
policy sit at 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_curve, best_of_n_per_prompt, powers_of_two
from alignax.analysis.fits import fit_form
from alignax.analysis.stats import mean_interval, spearman
from alignax.metrics import logged_curve


def proxy_name(size: int, pairs: int, flip: float) -> str:
    """A proxy of the sweep by its d_model, training pairs and label flip rate."""
    return f"d{size}_n{pairs}_f{flip:g}"


def standardize(x: np.ndarray) -> np.ndarray:
    """`x` less its mean, in units of its standard deviation; all zeros when it has no spread
    (a verifier that no response satisfies): every choice among the values is as good."""
    spread = x.std()
    return (x - x.mean()) / (spread if spread > 0 else 1.0)


def seed_average(
    curves: list[list[dict]],
    *,
    same: tuple[str, ...] = ("n", "kl_bound"),
    means: tuple[str, ...] = ("kl_pool",),
    with_se: tuple[str, ...] = ("proxy", "gold"),
) -> list[dict]:
    """Mean over seeds of each point of curves evaluated at the same points (`same` keys are
    taken from the first seed, `means` averaged); for each `with_se` key, SE^2 = mean of the
    per-seed SE^2 (over prompts) + the between-seed variance of the mean. Every averaged key
    keeps the seeds' values as `<key>_seeds`."""
    if len({len(curve) for curve in curves}) != 1:
        raise ValueError(f"seed curves differ in length: {[len(c) for c in curves]}")
    out = []
    for points in zip(*curves):
        row = {k: points[0][k] for k in same}
        for key in means:
            if key in points[0]:
                row[f"{key}_seeds"] = [p[key] for p in points]
                row[key] = float(np.mean(row[f"{key}_seeds"]))
        for key in with_se:
            values = np.array([p[key] for p in points])
            prompt_var = np.mean([p[f"{key}_se"] ** 2 for p in points])
            seed_var = values.var(ddof=1) / len(values) if len(values) > 1 else 0.0
            row[key] = float(values.mean())
            row[f"{key}_se"] = float(np.sqrt(prompt_var + seed_var))
            row[f"{key}_seeds"] = values.tolist()
        out.append(row)
    return out


def best_of_n_curves(
    pool: dict, scores: dict, *, num_bootstrap: int, seed: int
) -> tuple[dict, list[dict]]:
    """({proxy name: its best-of-n curve, averaged over its seeds}, the oracle's curve) for
    n = 1, 2, 4, ... up to the pool size, from the pool (`gold`, `response_ids`) and each
    proxy's scores of it ({(name, seed): [prompts, pool]}). The last point of each curve also
    holds the cross-fitted drop from its peak (`cross_fitted_drop`), and each reward model's
    own turn-over (SE over prompts only, as Gao et al. look at one reward model)."""
    gold = standardize(pool["gold"])
    ns = powers_of_two(gold.shape[1])
    kwargs = dict(num_bootstrap=num_bootstrap, seed=seed)
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
        by_n = np.stack([gold_by_n(proxy, gold, ns) for proxy in proxies[name]])
        drop, se, peaks = cross_fitted_drop(by_n, ns, **kwargs)
        curve[-1].update(drop_from_peak=drop, drop_from_peak_se=se, peak_n_by_half=peaks)
        models = []
        for i, own in enumerate(per_seed[name]):
            own_drop, own_se, own_peaks = cross_fitted_drop(by_n[i : i + 1], ns, **kwargs)
            own_peak = int(np.argmax([r["gold"] for r in own]))
            models.append(
                {
                    "peak_n_by_half": own_peaks,
                    "drop": own_drop,
                    "drop_se": own_se,
                    "turned_over": own_drop >= 3 * own_se
                    and own[-1]["proxy"] > own[own_peak]["proxy"],
                }
            )
        curve[-1]["per_model"] = models
    oracle = best_of_n_curve(gold, gold, ns, response_ids=pool["response_ids"], **kwargs)
    return curves, oracle


def gold_by_n(proxy, gold, ns) -> np.ndarray:
    """[ns, prompts]: each prompt's expected gold of best-of-n by `proxy`, for every n in `ns`."""
    return np.stack([best_of_n_per_prompt(proxy, gold, n)[1] for n in ns])


def cross_fitted_drop(gold_by_n_SxNxP, ns, *, num_bootstrap: int, seed: int):
    """How far gold falls from its peak n to the largest of `ns`, with the peak chosen on other
    prompts than those the fall is measured on, so that it is not biased up as the argmax of
    the same data is (that drop is >= 0 by construction, even where gold never falls).

    `gold_by_n_SxNxP`: `gold_by_n` of each reward model (one per seed). The prompts split into
    two halves (even and odd rows); each half's peak is the n of highest gold, averaged over the
    reward models and that half's prompts; the drop gold(peak n) - gold(largest n) is measured,
    paired, on the other half's prompts. Returns (drop, SE, [the halves' peak n]) with
    SE^2 = prompt-bootstrap variance + between-seed variance of the mean."""
    gold_by_n = np.asarray(gold_by_n_SxNxP)
    if gold_by_n.shape[2] < 2:
        raise ValueError(f"a cross-fitted drop needs >= 2 prompts, got {gold_by_n.shape[2]}")
    rows = np.arange(gold_by_n.shape[2])
    halves = (rows % 2 == 0, rows % 2 == 1)
    peaks = [int(np.argmax(gold_by_n[:, :, half].mean((0, 2)))) for half in halves]
    diffs = np.empty((len(gold_by_n), len(rows)))  # [seeds, prompts]
    for peak, other in zip(peaks, reversed(halves)):
        diffs[:, other] = gold_by_n[:, peak, other] - gold_by_n[:, -1, other]
    per_prompt = diffs.mean(0)
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(per_prompt), size=(num_bootstrap, len(per_prompt)))
    prompt_var = per_prompt[resamples].mean(1).var()
    seed_var = diffs.mean(1).var(ddof=1) / len(diffs) if len(diffs) > 1 else 0.0
    drop = float(per_prompt.mean())
    return drop, float(np.sqrt(prompt_var + seed_var)), [int(ns[p]) for p in peaks]


def rl_curve(run_dir: Path, gold_mean: float, gold_std: float) -> list[dict]:
    """Held-out evaluations of a PPO run, from its measured start (step 0: the initial policy on
    the same prompts and sampling key as every later evaluation): KL (negative estimates
    clipped to 0), gold (standardised like the pool, by `gold_mean` and `gold_std`) and proxy."""
    fields = {
        "gold": "eval/gold",
        "kl": "eval/kl",
        "gold_se": "eval/gold_se",
        "proxy": "eval/proxy",
    }
    logged = logged_curve(run_dir, fields)
    if not logged or logged[0]["step"] != 0:
        raise ValueError(
            f"{run_dir} has no evaluation at step 0: the curve's start must be measured "
            "(run the PPO stage with evaluate_at_start)"
        )
    return [
        {
            "step": p["step"],
            "kl": max(p["kl"], 0.0),
            "gold": (p["gold"] - gold_mean) / gold_std,
            "gold_se": p["gold_se"] / gold_std,
            "proxy": p["proxy"],
        }
        for p in logged
    ]


def rl_average(curves: list[list[dict]]) -> list[dict]:
    """The seeds' RL curves averaged at each evaluation step: mean KL and proxy, gold with its SE
    over prompts and seeds, each with the seeds' values (`seed_average`)."""
    return seed_average(curves, same=("step",), means=("kl", "proxy"), with_se=("gold",))


def hump(curve: list[dict]) -> dict:
    """Where gold peaks, and how far below the peak it ends in standard errors: the
    cross-fitted drop where the curve has one (best-of-n, `cross_fitted_drop`), else the fall
    from the curve's own maximum over the final point's SE (RL)."""
    gold = np.array([r["gold"] for r in curve])
    proxy = np.array([r["proxy"] for r in curve])
    peak = int(np.argmax(gold))
    last = curve[-1]
    drop = last.get("drop_from_peak", gold[peak] - gold[-1])
    se = last.get("drop_from_peak_se", last["gold_se"])
    return {
        "peak_index": peak,
        "peak_gold": float(gold[peak]),
        "interior_peak": 0 < peak < len(gold) - 1,
        "final_drop_in_se": float(drop / max(se, 1e-12)),
        "proxy_rises_past_peak": bool(proxy[-1] > proxy[peak]),
    }


def best_of_n_fit(curve: list[dict], fit_below_n: int = 256) -> dict:
    """Gao et al.'s best-of-n form R_bon(d) = d (alpha - beta d), d = sqrt(KL_bon), fitted to a
    best-of-n curve: its coefficients, R^2 and residual at the largest n; and, where the curve
    reaches past `fit_below_n` with >= 3 points below it, the form fitted on n <= `fit_below_n`
    extrapolated to the largest n ('extrapolation': predicted, measured, error in SE)."""
    d = np.sqrt([r["kl_bound"] for r in curve])
    gold = np.array([r["gold"] for r in curve])
    fit = fit_form(d, gold, "bon")
    out = {
        "alpha": fit.alpha,
        "beta": fit.beta,
        "r2": fit.r2,
        "residual_at_largest_n": float(gold[-1] - fit.predict(d[-1:])[0]),
    }
    train = np.array([r["n"] for r in curve]) <= fit_below_n
    if train.sum() >= 3 and not train.all():
        predicted = float(fit_form(d[train], gold[train], "bon").predict(d[-1:])[0])
        out["extrapolation"] = {
            "fit_on": f"n <= {fit_below_n}",
            "predicted_gold_at_largest_n": predicted,
            "measured": float(gold[-1]),
            "error_in_se": float((predicted - gold[-1]) / max(curve[-1]["gold_se"], 1e-12)),
        }
    return out


def best_of_n_seed_coefficients(curve: list[dict]) -> dict:
    """R_bon's alpha and beta fitted to each seed's best-of-n curve (a `seed_average`d curve
    keeps them in `gold_seeds`): {"alpha", "beta": (mean over seeds, 95% t half-width)}, how
    Gao et al.'s Figs. 3-4 set the coefficients against reward-model size and data."""
    d = np.sqrt([r["kl_bound"] for r in curve])
    fits = [fit_form(d, gold, "bon") for gold in np.array([r["gold_seeds"] for r in curve]).T]
    return {
        "alpha": mean_interval([f.alpha for f in fits]),
        "beta": mean_interval([f.beta for f in fits]),
    }


def rl_fit(points: list[dict]) -> dict:
    """An RL curve (`rl_average`'s) hump, the R^2 of Gao et al.'s RL form
    R_rl(d) = d (alpha - beta log d) and of the best-of-n form, and where it ends: final KL
    with the 95% t-interval over seeds (`final_kl_half_width`), final gold with its SE over
    prompts and seeds."""
    d = np.sqrt([q["kl"] for q in points])
    gold = np.array([q["gold"] for q in points])
    return {
        "hump": hump(points),
        "r2_rl_form": fit_form(d, gold, "rl").r2,
        "r2_bon_form": fit_form(d, gold, "bon").r2,
        "final_kl": float(points[-1]["kl"]),
        "final_kl_half_width": mean_interval(points[-1]["kl_seeds"])[1],
        "final_gold": float(gold[-1]),
        "final_gold_se": float(points[-1]["gold_se"]),
    }


def rl_seed_fits(curves: list[list[dict]]) -> dict:
    """Gao et al.'s RL form and the best-of-n form fitted to each seed's curve (`rl_curve`'s)
    on its own: {"r2_rl_form", "r2_bon_form", "r2_rl_minus_bon" (paired by seed), "alpha",
    "beta" (of the RL form): (mean over seeds, 95% t half-width)}. Which form fits better is a
    claim only where the paired difference's interval excludes 0."""
    fits = []
    for curve in curves:
        d = np.sqrt([q["kl"] for q in curve])
        gold = np.array([q["gold"] for q in curve])
        rl, bon = fit_form(d, gold, "rl"), fit_form(d, gold, "bon")
        fits.append((rl.r2, bon.r2, rl.r2 - bon.r2, rl.alpha, rl.beta))
    keys = ("r2_rl_form", "r2_bon_form", "r2_rl_minus_bon", "alpha", "beta")
    return {key: mean_interval(column) for key, column in zip(keys, zip(*fits))}


def gold_at_same_kl(run: list[dict], reference: list[dict]) -> dict:
    """Where `run` ends against the `reference` curve at the same sqrt(KL) (gold and its SE
    interpolated): is a KL penalty more than early stopping of the unpenalised run? The
    difference is in units of both SEs combined, sqrt(SE_run^2 + SE_reference^2)."""
    d = np.sqrt([q["kl"] for q in reference])
    order = np.argsort(d)
    end = run[-1]
    at = np.sqrt(end["kl"])
    on_curve = float(np.interp(at, d[order], [reference[i]["gold"] for i in order]))
    on_curve_se = float(np.interp(at, d[order], [reference[i]["gold_se"] for i in order]))
    se = float(np.hypot(end["gold_se"], on_curve_se))
    return {
        "final_sqrt_kl": float(at),
        "final_gold": end["gold"],
        "beta0_gold_at_same_kl": on_curve,
        "beta0_gold_se_at_same_kl": on_curve_se,
        "difference_in_se": float((end["gold"] - on_curve) / max(se, 1e-12)),
    }


# ---------------------------------------------------------------------------------------------
# Figures.


def figures(config, results: dict, workdir: Path) -> None:
    """The study's figures (PNG + PDF) in <workdir>/figures: best-of-n gold and proxy against
    sqrt(KL) per noise level, by reward-model size and by data; the R_bon coefficients
    (`coefficients_figure`); PPO's curves with their R_rl fits."""
    curves, oracle, rl = results["best_of_n"], results["oracle"], results["rl"]
    p = config.proxies
    x = lambda rows, key="kl_bound": np.sqrt([r[key] for r in rows])  # noqa: E731
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
                rows = curves[name]
                plots.gold_and_proxy(ax, x(rows), rows, color=plots.series_color(i), label=value)
            ax.plot(x(oracle), [r["gold"] for r in oracle], "k:", label="gold, oracle")
            ax.set(xlabel="sqrt(KL_bon) (nats^1/2)", title=f"best-of-n, {title}")
            ax.legend(ncol=2, loc="upper left")
        axes[0].set_ylabel("reward (std. on SFT samples)")
        fig.suptitle(f"Best-of-n over-optimisation, {flip:.0%} label noise", y=1.04)
        plots.save(fig, workdir / "figures" / f"best_of_n_noise{round(100 * flip)}")
    coefficients_figure(config, results["coefficients"], workdir)
    if not rl:
        return
    fig, ax = plots.subplots(figsize=(4.8, 3.4))
    for i, (name, points) in enumerate(rl.items()):
        color, d = plots.series_color(i), x(points, "kl")
        plots.gold_and_proxy(ax, d, points, color=color, label=name)
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


def coefficients_figure(config, coefficients: dict, workdir: Path) -> None:
    """R_bon's alpha and beta (fitted per seed, 95% intervals) against reward-model size and
    data size, per label-noise level: Gao et al.'s Figs. 3-4."""
    p = config.proxies
    fig, axes = plots.subplots(2, 2, figsize=(8, 5.4), sharex="col")
    sweeps = [
        ("RM size (d_model)", p.sizes, lambda v, f: proxy_name(v, p.size_sweep_pairs, f)),
        ("RM data (pairs)", p.data_sizes, lambda v, f: proxy_name(p.data_sweep_size, v, f)),
    ]
    for column, (title, values, name) in enumerate(sweeps):
        for row, key in enumerate(("alpha", "beta")):
            ax = axes[row][column]
            for i, flip in enumerate(p.noise):
                spread = 1 + 0.04 * (i - (len(p.noise) - 1) / 2)  # side by side on a log axis
                plots.intervals(
                    ax,
                    np.array(values) * spread,
                    [coefficients[name(v, flip)][key] for v in values],
                    color=plots.series_color(i),
                    fmt="-o",
                    markersize=3,
                    label=f"{flip:.0%} flipped",
                )
            ax.set_xscale("log", base=2)
            ax.set(xlabel=title if row else "", ylabel=f"R_bon {key}")
    axes[0][0].legend()
    fig.suptitle("Best-of-n coefficients, fitted per seed (95% intervals)", y=1.02)
    plots.save(fig, workdir / "figures" / "coefficients")


def criteria(p, curves: dict, oracle: list[dict], rl: dict, rl_seeds: dict) -> dict:
    """The study's criteria B1-B5 (stated in its report) from the best-of-n `curves` of each
    proxy, the `oracle`'s, and the RL curves (`rl`: seed-averaged; `rl_seeds`: per seed); `p` is
    the config's proxies section (sizes, data sizes, noise levels)."""
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
    fits = {name: best_of_n_fit(curve) for name, curve in curves.items()}
    out["B4"] = {n: fit.pop("extrapolation") for n, fit in fits.items() if "extrapolation" in fit}
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
    out["B5"] = {
        name: {**rl_fit(points), "per_seed": rl_seed_fits(rl_seeds[name])}
        for name, points in rl.items()
    }
    penalised = [k for k in rl if not k.endswith("beta 0")]
    if penalised:
        key = penalised[0]
        reference = rl[key.rsplit(", beta", 1)[0] + ", beta 0"]
        out["B5"]["kl_penalty"] = {"run": key, **gold_at_same_kl(rl[key], reference)}
    return out
