"""Small plots for asset metadata, embedded as Markdown images."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def loglog_distribution(
    values: Sequence[float],
    counts: Sequence[int],
    *,
    title: str,
    xlabel: str,
    cap: float | None = None,
    cap_label: str = "",
) -> bytes:
    """A count-per-value scatter on log-log axes. Zero values cannot sit on a log axis: their
    count goes into the legend; ``cap`` (a configured limit) is marked by a dashed line."""
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    pairs = [(v, c) for v, c in zip(values, counts, strict=True) if v > 0]
    zero = sum(c for v, c in zip(values, counts, strict=True) if v <= 0)
    ax.scatter([v for v, _ in pairs], [c for _, c in pairs], s=10, label=f"{xlabel} ≥ 1")
    if zero:
        ax.scatter([], [], s=0, label=f"{xlabel} 0: {zero:,} (not on the log axis)")
    if cap:
        ax.axvline(cap, color="grey", linestyle="--", label=cap_label or f"cap {cap:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def log_histogram(values: Sequence[int], *, title: str, xlabel: str) -> bytes:
    """How many values fall in each power-of-two bin (1, 2-3, 4-7...): readable where a
    few huge values and many small ones meet, as component sizes do."""
    top = max(values, default=1)
    edges = [2**i for i in range(max(1, int(top).bit_length()) + 1)]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.hist(values, bins=edges)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def curves(
    xs: Sequence[float], series: dict[str, Sequence[float]], *, title: str, xlabel: str
) -> bytes:
    """Lines over a shared x axis (training curves), one per series, on one plot."""
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for name, ys in series.items():
        ax.plot(xs, ys, marker=".", label=name)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def bars(
    series: dict[str, Sequence[float]],
    groups: Sequence[str],
    *,
    title: str,
    highlight: str | None = None,
) -> bytes:
    """Grouped bars: one group per entry of ``groups``, one bar per series within it, each
    series its own colour (20 distinct ones); ``highlight`` is drawn outlined in black."""
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    width = 0.8 / max(len(series), 1)
    palette = plt.get_cmap("tab20")
    for i, (name, ys) in enumerate(series.items()):
        mine = name == highlight
        ax.bar(
            [g + i * width for g in range(len(groups))],
            ys,
            width,
            label=f"{name} (served)" if mine else name,
            color=palette(i % 20),
            edgecolor="black" if mine else "none",
            linewidth=1.5 if mine else 0,
        )
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], list(groups), fontsize=8)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _png(fig)
