"""The report's figures (matplotlib, Agg): each returns PNG bytes, one consistent colour per model family.

Plotting is kept apart from the choice of what to plot (sections) and from how a figure is embedded
(HTML inlines it as base64, Markdown writes it beside the report).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Text is drawn as written: a class or model named `$\alpha$_test` is a label, not mathtext to parse
# (an unbalanced `$` would break the figure, a balanced one would change the name).
matplotlib.rcParams["text.parse_math"] = False
matplotlib.rcParams["text.usetex"] = False
import numpy as np  # noqa: E402

from bench.measure.catalogue import VAL_LOSS, VAL_MACRO_F1  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import ColorType

_PALETTE = tuple(matplotlib.color_sequences["tab10"])  # the colours of the "tab10" colormap
FAMILY_ORDER = ("efficientnet", "resnet", "wide_resnet", "vgg", "mobilenet", "vit", "visformer", "small_cnn")
_EXTRA: dict[str, ColorType] = {}


def family_colour(family: str) -> str:
    """The family's colour: fixed for the known families, then assigned in order of first use."""
    if family in FAMILY_ORDER:
        rgb = _PALETTE[FAMILY_ORDER.index(family)]
    else:
        rgb = _EXTRA.setdefault(family, _PALETTE[(len(FAMILY_ORDER) + len(_EXTRA)) % len(_PALETTE)])
    return matplotlib.colors.to_hex(rgb)


@dataclass
class Point:
    """One point of a scatter: a label, its family and its coordinates."""

    label: str
    family: str
    x: float
    y: float
    y_err: float | None = None


def _png(fig, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def frontier(points: Sequence[Point], higher_x_better: bool) -> list[Point]:
    """The Pareto frontier: points that no other point beats on both x (cost or speed) and y (quality)."""
    order = sorted(points, key=lambda p: (-p.x, -p.y) if higher_x_better else (p.x, -p.y))
    out: list[Point] = []
    best = -math.inf
    for p in order:
        if p.y > best:
            out.append(p)
            best = p.y
    return out


def _efficientnet_index(label: str) -> int | None:
    name = label.split(" ")[0].split("@")[0]
    if name.startswith("efficientnet_b") and name[-1].isdigit():
        return int(name[len("efficientnet_b") :])
    return None


def _legend_by_family(ax, families: Sequence[str]) -> None:
    handles = [plt.Line2D([], [], marker="o", ls="", color=family_colour(f), label=f) for f in families]
    ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)


def scatter(
    points: Sequence[Point],
    *,
    x_label: str,
    y_label: str,
    title: str,
    higher_x_better: bool | None,
    log_x: bool = True,
    log_y: bool = False,
    annotate: bool = True,
) -> bytes:
    """A scatter coloured by family; the Pareto frontier as a step line when `higher_x_better` is given;
    EfficientNet B0..B7 joined in order as one scaling curve."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    families = sorted(
        {p.family for p in points},
        key=lambda f: (f not in FAMILY_ORDER, FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 0, f),
    )
    for fam in families:
        pts = [p for p in points if p.family == fam]
        ax.errorbar(
            [p.x for p in pts],
            [p.y for p in pts],
            yerr=[p.y_err or 0 for p in pts],
            fmt="o",
            ms=5,
            color=family_colour(fam),
            ecolor=family_colour(fam),
            elinewidth=0.8,
            capsize=2,
            alpha=0.9,
        )
    effnet = sorted(((i, p) for p in points if (i := _efficientnet_index(p.label)) is not None), key=lambda t: t[0])
    by_index: dict[int, Point] = {}
    for i, p in effnet:
        by_index.setdefault(i, p)
    if len(by_index) >= 2:
        chain = [by_index[i] for i in sorted(by_index)]
        ax.plot(
            [p.x for p in chain],
            [p.y for p in chain],
            "--",
            color=family_colour("efficientnet"),
            lw=1,
            label="EfficientNet B0→B7",
        )
    if higher_x_better is not None and len(points) >= 2:
        front = frontier(points, higher_x_better)
        front = sorted(front, key=lambda p: p.x)
        ax.step(
            [p.x for p in front],
            [p.y for p in front],
            where="post" if not higher_x_better else "pre",
            color="0.35",
            lw=1,
            alpha=0.8,
        )
    if annotate and len(points) <= 40:
        for p in points:
            ax.annotate(p.label, (p.x, p.y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if log_x and all(p.x > 0 for p in points):
        ax.set_xscale("log")
    if log_y and all(p.y > 0 for p in points):
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    _legend_by_family(ax, families)
    return _png(fig)


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[str],
    values: dict[tuple[str, str], tuple[float, float | None]],
    *,
    y_label: str,
    title: str,
) -> bytes:
    """Bars per group (e.g. model) and series (e.g. strategy), with error bars (half-widths)."""
    fig, ax = plt.subplots(figsize=(max(4.5, min(12, 1.2 + len(groups) * max(1, len(series)) * 0.35)), 3.4))
    width = 0.8 / max(1, len(series))
    cmap = plt.get_cmap("Set2")
    for j, s in enumerate(series):
        xs, ys, errs = [], [], []
        for i, g in enumerate(groups):
            if (g, s) in values:
                v, e = values[(g, s)]
                xs.append(i + (j - (len(series) - 1) / 2) * width)
                ys.append(v)
                errs.append(e or 0)
        ax.bar(
            xs, ys, width=width * 0.95, yerr=errs, capsize=2, label=s, color=cmap(j % 8), error_kw={"elinewidth": 0.8}
        )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def _small_multiples(n: int, *, max_cols: int, panel_size: tuple[float, float]):
    """A figure of `n` panels in rows of at most `max_cols`; the unused places of the last row blanked."""
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def curves_grid(panels: Sequence[tuple[str, list[dict]]]) -> bytes:
    """Small multiples: per cell, train/val loss (left axis) and val macro-F1 (right axis) per epoch."""
    fig, axes = _small_multiples(len(panels), max_cols=4, panel_size=(3.0, 2.2))
    for ax, (title, curve) in zip(axes.flat, panels):
        epochs = [row["epoch"] for row in curve]
        ax.plot(epochs, [row.get("train_loss") for row in curve], color="tab:blue", lw=1, label="train loss")
        ax.plot(epochs, [row.get(VAL_LOSS.key) for row in curve], color="tab:orange", lw=1, label="val loss")
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=6)
        twin = ax.twinx()
        twin.plot(epochs, [row.get(VAL_MACRO_F1.key) for row in curve], color="tab:green", lw=1.2, label="val macro-F1")
        twin.set_ylim(0, 1)
        twin.tick_params(labelsize=6, colors="tab:green")
    handles = [
        plt.Line2D([], [], color=c, label=l)
        for c, l in (("tab:blue", "train loss"), ("tab:orange", "val loss"), ("tab:green", "val macro-F1 (right axis)"))
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    # fixed margins instead of tight_layout/bbox "tight": each of those draws the whole grid once more
    rows = axes.shape[0]
    fig.subplots_adjust(left=0.06, right=0.95, bottom=0.06 + 0.3 / rows, top=1 - 0.25 / rows, wspace=0.45, hspace=0.55)
    return _png(fig, tight=False)


def per_class_vs_frequency(counts: Sequence[int], f1: Sequence[float], classes: Sequence[str], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.scatter(counts, f1, s=14, color="tab:purple", alpha=0.8)
    if len(counts) >= 2 and np.ptp(np.log(np.maximum(counts, 1))) > 0:
        slope, intercept = np.polyfit(np.log(np.maximum(counts, 1)), f1, 1)
        xs = np.linspace(min(counts), max(counts), 50)
        ax.plot(xs, slope * np.log(xs) + intercept, color="0.4", lw=1, ls="--", label="least-squares fit on log(count)")
        ax.legend(fontsize=7, frameon=False)
    order = np.argsort(f1)
    for i in list(order[:3]) + list(order[-3:]):
        ax.annotate(str(classes[i]), (counts[i], f1[i]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    if min(counts) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("per-class F1 (validation)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    return _png(fig)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> bytes:
    """Row-normalised confusion matrix (each true class sums to 1)."""
    m = np.asarray(matrix, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(classes)
    size = min(9.0, max(3.5, 0.16 * k + 2))
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    step = max(1, k // 25)
    ticks = list(range(0, k, step))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([classes[i] for i in ticks], rotation=90, fontsize=5)
    ax.set_yticklabels([classes[i] for i in ticks], fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _png(fig)


@dataclass
class Line:
    """One line of a sweep plot: a label and its points (x, y, y half-width)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    errs: Sequence[float | None]


def sweep_lines(
    panels: Sequence[tuple[str, Sequence[Line]]], *, x_label: str, y_label: str, log_x: bool = False
) -> bytes:
    """Small multiples, one panel per model: a metric against a numeric axis, one line per other config,
    error bars where the points have them."""
    fig, axes = _small_multiples(len(panels), max_cols=3, panel_size=(4.2, 3.0))
    cmap = plt.get_cmap("tab10")
    for ax, (title, lines) in zip(axes.flat, panels):
        for j, line in enumerate(lines):
            ax.errorbar(
                line.xs,
                line.ys,
                yerr=[e or 0 for e in line.errs],
                marker="o",
                ms=4,
                lw=1.2,
                capsize=2,
                color=cmap(j % 10),
                label=line.label,
            )
        if log_x and all(x > 0 for line in lines for x in line.xs):
            ax.set_xscale("log")
        xs = sorted({x for line in lines for x in line.xs})
        if len(xs) <= 8 and not log_x:
            ax.set_xticks(xs)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(x_label, fontsize=7)
        ax.set_ylabel(y_label, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(True, alpha=0.3)
        if len(lines) > 1 or lines[0].label:
            ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return _png(fig)
