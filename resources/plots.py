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
    values: Sequence[float], counts: Sequence[int], *, title: str, xlabel: str
) -> bytes:
    """A count-per-value scatter on log-log axes (zero values are shown at x=0.5)."""
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    xs = [v if v > 0 else 0.5 for v in values]
    ax.scatter(xs, counts, s=10)
    ax.set_xscale("log")
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


def bars(series: dict[str, Sequence[float]], groups: Sequence[str], *, title: str) -> bytes:
    """Grouped bars: one group per entry of ``groups``, one bar per series within it."""
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=100)
    width = 0.8 / max(len(series), 1)
    for i, (name, ys) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], ys, width, label=name)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], list(groups), fontsize=8)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _png(fig)
