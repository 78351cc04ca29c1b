"""Figure conventions shared by every experiment: a colour-blind-safe palette (Okabe & Ito),
labelled axes, every series in the legend, PNG for the README and PDF for papers."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np

if "ipykernel" not in sys.modules:  # a Jupyter kernel draws figures inline; the rest to files
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Load the backend now, not inside the first `subplots` style context: the inline backend turns
# interactive mode on as it loads, and leaving the context would turn it off again, so that no
# later figure of a notebook would be drawn.
plt.switch_backend(matplotlib.get_backend())

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)


def series_color(i: int) -> str:
    """The colour of the `i`-th series of a figure: the palette, cycled past its 8 colours (a
    sweep of any length plots)."""
    return PALETTE[i % len(PALETTE)]


STYLE = {
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.dpi": 150,
    "savefig.bbox": "tight",
}


def gold_and_proxy(ax, x, points: list[dict], *, color: str, label: str) -> None:
    """The over-optimisation figures' series: gold (a solid line with 1.96 SE error bars, from
    each point's `gold` and `gold_se`) and the proxy (dashed, fainter) against `x`."""
    gold, half = [p["gold"] for p in points], [1.96 * p["gold_se"] for p in points]
    ax.errorbar(
        x, gold, yerr=half, fmt="o-", color=color, markersize=3, capsize=2, label=f"gold, {label}"
    )
    ax.plot(x, [p["proxy"] for p in points], "--", color=color, alpha=0.6, label=f"proxy, {label}")


def intervals(ax, x, values, *, xerr=None, **kwargs) -> None:
    """Means with their 95% half-widths as error bars: `values` [(mean, half)] at `x` (an
    undefined half-width, one seed, draws no bar); `xerr` the same for x when x is also a mean."""
    halves = np.nan_to_num(np.array([h for _, h in values], np.float64))
    ax.errorbar(x, [m for m, _ in values], yerr=halves, xerr=xerr, **{"capsize": 2, **kwargs})


def against_n(ax, ns, series: dict[str, list], *, ylabel: str, title: str = "") -> None:
    """Best-of-n curves: each series ({label: [(mean, half)] at `ns`}) with its intervals, in
    the palette's order, on a log2 axis of n."""
    for i, (label, values) in enumerate(series.items()):
        intervals(ax, ns, values, fmt="o-", markersize=3, color=series_color(i), label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n (best-of-n)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def subplots(*args, **kwargs):
    """`plt.subplots` under the project's style."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, **kwargs)


def save(fig, path_without_suffix: str | Path) -> list[Path]:
    """Writes `<path>.png` and `<path>.pdf` and closes the figure; returns both paths."""
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    # Appended, not with_suffix: a name like "noise0.25" must keep its dot.
    paths = [base.parent / f"{base.name}.png", base.parent / f"{base.name}.pdf"]
    with plt.rc_context(STYLE):
        for path in paths:
            fig.savefig(path)
    plt.close(fig)
    return paths
