"""Small per-cell figures for the cell report, returned as PNG bytes (kept small: a page
holds hundreds of them).

Features are drawn on one shared axis: each feature is centred on the median of the two
classes' training cells and scaled by their interquartile range, so features in
different units sit on one scale; the cell's own value is written beside the name.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..recordings.sweeps import Sweep  # noqa: E402
from .cells import FeatureComparison  # noqa: E402
from .figures import CLASS_COLORS  # noqa: E402

DPI = 90
Z_LIMIT = 5.0  # robust z beyond which a value is drawn at the edge, as an arrow
MAX_STRIP_POINTS = 200  # training cells drawn per class and feature (a fixed subsample)
MAX_TRACE_POINTS = 1600  # samples drawn per sweep (min/max envelope; panels are ~220 px wide)
PAIR_COLORS = ("#D93137", "#4C72B0")  # fallback for classes without a subclass colour


def png_bytes(fig) -> bytes:
    """The figure as a 64-colour palette PNG (about a third of the RGBA size, same look)."""
    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    out = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(rgb))
    image.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return out.getvalue()


def format_value(value: float, unit: str) -> str:
    """A feature value for people: seconds below 1 in ms, no unit for ratios."""
    if unit == "s" and abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} {unit if unit != '1' else ''}".rstrip()


def robust_scale(values: list[np.ndarray]) -> tuple[float, float]:
    """Centre and scale of the pooled training values: median and IQR (std, 1 as fallbacks)."""
    pooled = np.concatenate([v for v in values if len(v)]) if any(len(v) for v in values) else []
    if len(pooled) == 0:
        return 0.0, 1.0
    q1, centre, q3 = np.percentile(pooled, [25, 50, 75])
    scale = q3 - q1
    if not scale > 0:
        scale = float(np.std(pooled)) or 1.0
    return float(centre), float(scale)


def _colour(cls: str, k: int) -> str:
    return CLASS_COLORS.get(cls, PAIR_COLORS[k % 2])


def features_png(comparisons: list[FeatureComparison], classes: tuple[str, str]) -> bytes:
    """Strips of the two classes' training cells per feature, the cell's value as ◆."""
    k = len(comparisons)
    height = 0.5 * k + 0.85
    # margins in inches instead of tight_layout (which costs more than the drawing): the
    # left one fits the longest feature name at 7 pt, the plot keeps its width
    left = 0.25 + 0.058 * max((len(c.name) for c in comparisons), default=10)
    width = left + 3.6
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.3 / height
    )
    rng = np.random.default_rng(0)
    labels = []
    for row, comp in enumerate(comparisons):
        y = k - 1 - row  # most separating feature on top
        centre, scale = robust_scale([comp.by_class[c] for c in classes])
        for j, cls in enumerate(classes):
            x = comp.by_class[cls]
            if len(x) > MAX_STRIP_POINTS:
                x = rng.choice(x, MAX_STRIP_POINTS, replace=False)
            z = np.clip((x - centre) / scale, -Z_LIMIT, Z_LIMIT)
            offset = 0.17 if j == 0 else -0.17
            jitter = rng.uniform(-0.09, 0.09, len(z))
            ax.scatter(z, y + offset + jitter, s=5, color=_colour(cls, j), alpha=0.45, lw=0)
        z_cell = (comp.value - centre) / scale
        inside = abs(z_cell) <= Z_LIMIT
        marker = "D" if inside else (">" if z_cell > 0 else "<")
        ax.plot(np.clip(z_cell, -Z_LIMIT, Z_LIMIT), y, marker, color="black", ms=6)
        labels.append(f"{comp.name}\n= {format_value(comp.value, comp.unit)}")
    ax.set_yticks(range(k), labels[::-1], fontsize=7)
    ax.set_ylim(-0.6, k - 0.4)
    ax.set_xlim(-Z_LIMIT - 0.3, Z_LIMIT + 0.3)
    ax.axvline(0, color="#bbb", lw=0.6, zorder=0)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("(value − median) / IQR of the two classes' training cells", fontsize=7)
    handles = [
        plt.Line2D([], [], ls="", marker="o", color=_colour(c, j), label=c)
        for j, c in enumerate(classes)
    ]
    handles.append(plt.Line2D([], [], ls="", marker="D", color="black", label="this cell"))
    ax.legend(
        handles=handles,
        fontsize=7,
        ncol=3,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )
    return png_bytes(fig)


def envelope(
    t: np.ndarray, v: np.ndarray, points: int = MAX_TRACE_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each of `points // 2` bins: spikes survive, the line stays light."""
    bins = points // 2
    if len(v) <= points:
        return t, v
    n = len(v) // bins * bins
    v_bins = v[:n].reshape(bins, -1)
    t_bins = t[:n].reshape(bins, -1)
    lo, hi = v_bins.argmin(axis=1), v_bins.argmax(axis=1)
    first = np.minimum(lo, hi)[:, None]
    second = np.maximum(lo, hi)[:, None]
    idx = np.hstack([first, second])
    rows = np.arange(bins)[:, None]
    return t_bins[rows, idx].ravel(), v_bins[rows, idx].ravel()


def sweeps_png(sweeps: dict[str, Sweep]) -> bytes:
    """Voltage of the rheobase and hero sweeps side by side (one panel if they coincide);
    the step is shaded."""
    panels: list[tuple[str, Sweep]] = []
    for name, sweep in sweeps.items():
        same = [i for i, (_, s) in enumerate(panels) if s.sweep_number == sweep.sweep_number]
        if same:
            panels[same[0]] = (f"{panels[same[0]][0]} = {name}", sweep)
        else:
            panels.append((name, sweep))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.7 * len(panels), 1.9), sharey=True, squeeze=False
    )
    fig.subplots_adjust(left=0.62 / (2.7 * len(panels)), right=0.98, bottom=0.24, top=0.88)
    for ax, (name, sweep) in zip(axes[0], panels, strict=True):
        if sweep.stim_start is not None and sweep.stim_end is not None:
            ax.axvspan(sweep.stim_start, sweep.stim_end, color="#e8e8e8", lw=0, zorder=0)
        ax.plot(*envelope(sweep.time, np.asarray(sweep.voltage, float)), color="black", lw=0.5)
        amplitude = "" if not np.isfinite(sweep.amplitude) else f", {sweep.amplitude:.0f} pA"
        ax.set_title(f"{name} (sweep {sweep.sweep_number}{amplitude})", fontsize=7)
        ax.set_xlabel("time (s)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("mV", fontsize=7)
    return png_bytes(fig)
