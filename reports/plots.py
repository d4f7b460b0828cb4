"""The report's figures as PNG files (matplotlib, Agg backend, no window).

Every function takes the numbers already computed (:mod:`reports.stats`) or one trace document
and writes one PNG; files carry no timestamp or software tag, so the same inputs give the same
bytes. May import matplotlib, numpy and pandas; never anything that runs a simulation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from sim.judge.invariants import INVARIANT_IDS  # noqa: E402

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
    "svg.hashsalt": "racetrack", "path.simplify": True,
})
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
HIGHLIGHT = "#d62728"


DPI = 110
#: Room around the figure for what sits outside its edges (legends below the axes, long labels),
#: so that one drawing holds everything and is then cropped to it.
_ROOM_INCHES = 2.0
_PAD_INCHES = 0.1  # savefig's default padding around the tight box


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG cropped to what it draws (as ``bbox_inches="tight"`` does), without
    metadata that would change between runs.

    ``bbox_inches="tight"`` draws a figure twice (once to measure, once to render); here it is
    drawn once on a canvas with room on every side, measured on that drawing and cropped. A
    figure with a layout engine (constrained) is laid out by a drawing anyway: it is saved the
    usual way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is not None:
        fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    else:
        _save_drawn_once(fig, path)
    plt.close(fig)
    return path


def _save_drawn_once(fig: Figure, path: Path) -> None:
    width, height = fig.get_size_inches()
    room = _ROOM_INCHES
    grown_w, grown_h = width + 2 * room, height + 2 * room
    for ax in fig.axes:  # each keeps its size and place in inches, moved in by the room
        x0, y0, w, h = ax.get_position().bounds
        ax.set_position(((x0 * width + room) / grown_w, (y0 * height + room) / grown_h, w * width / grown_w, h * height / grown_h))
    fig.set_size_inches(grown_w, grown_h)
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.get_tightbbox(canvas.get_renderer()).padded(_PAD_INCHES)
    pixels = np.asarray(canvas.buffer_rgba())
    rows, cols = pixels.shape[:2]
    left, right = max(0, int(box.x0 * DPI)), min(cols, int(np.ceil(box.x1 * DPI)))
    top, bottom = max(0, rows - int(np.ceil(box.y1 * DPI))), min(rows, rows - int(box.y0 * DPI))
    plt.imsave(path, pixels[top:bottom, left:right], format="png", dpi=DPI, metadata={"Software": None})


def violation_rates(table: pd.DataFrame, scenario: str, path: Path) -> Path:
    """Grouped bars: per strategy, the share of runs that violated each invariant, with 95%
    Wilson intervals as error bars."""
    several = table["backend"].nunique() > 1
    labels = [f"{r['strategy']}\n({r['backend']})" if several else str(r["strategy"]) for _, r in table.iterrows()]
    names = ["any", *INVARIANT_IDS]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels) + 2), 3.6))
    width = 0.8 / len(names)
    x = np.arange(len(labels))
    centres: list[np.ndarray] = []
    rates: list[np.ndarray] = []
    below: list[np.ndarray] = []
    above: list[np.ndarray] = []
    for i, name in enumerate(names):
        rate = table[f"{name}:rate"].to_numpy(dtype=float)
        lo, hi = table[f"{name}:lo"].to_numpy(dtype=float), table[f"{name}:hi"].to_numpy(dtype=float)
        colour = "#333333" if name == "any" else PALETTE[(i - 1) % len(PALETTE)]
        at = x + (i - (len(names) - 1) / 2) * width
        ax.bar(at, rate, width, color=colour, label="any invariant" if name == "any" else name)
        centres.append(at)
        rates.append(rate)
        below.append(rate - lo)
        above.append(hi - rate)
    # Every bar's interval in one call: one set of artists instead of one per invariant.
    ax.errorbar(np.concatenate(centres), np.concatenate(rates), yerr=[np.concatenate(below), np.concatenate(above)],
                fmt="none", elinewidth=0.7, capsize=1.5, ecolor="#555555")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of runs violating")
    ax.set_title(f"{scenario}: violation rate by strategy and invariant (95% Wilson CI)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    return save(fig, path)


def heatmaps(grid: pd.DataFrame, axes: list[str], scenario: str, path: Path) -> Path:
    """One panel per strategy: the share of violating runs at each grid point of two swept
    parameters (a third and further axes are pooled)."""
    x_axis, y_axis = axes[0], axes[1] if len(axes) > 1 else None
    keys = list(dict.fromkeys(zip(grid["strategy"], grid["backend"], strict=False)))
    xs = sorted(pd.unique(grid[x_axis]))
    ys = sorted(pd.unique(grid[y_axis])) if y_axis else [None]
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, panels = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.8, 3.1 * rows), squeeze=False, layout="constrained")
    image = None
    for n, (strategy, backend) in enumerate(keys):
        ax = panels[n // cols][n % cols]
        part = grid[(grid["strategy"] == strategy) & (grid["backend"] == backend)]
        cells = np.full((len(ys), len(xs)), np.nan)
        for yi, y in enumerate(ys):
            for xi, x in enumerate(xs):
                sel = part[part[x_axis] == x] if y_axis is None else part[(part[x_axis] == x) & (part[y_axis] == y)]
                if len(sel):
                    cells[yi, xi] = sel["violating_runs"].sum() / sel["runs"].sum()
        image = ax.imshow(cells, vmin=0, vmax=1, cmap="Reds", origin="lower", aspect="auto")
        for yi in range(len(ys)):
            for xi in range(len(xs)):
                if not np.isnan(cells[yi, xi]):
                    v = cells[yi, xi]
                    ax.text(xi, yi, f"{v:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 else "black")
        ax.set_xticks(range(len(xs)), [number(v) for v in xs])
        ax.set_yticks(range(len(ys)), [number(v) for v in ys] if y_axis else [""])
        ax.set_xlabel(x_axis)
        if y_axis and n % cols == 0:
            ax.set_ylabel(y_axis)
        ax.set_title(strategy if len({b for _, b in keys}) == 1 else f"{strategy} ({backend})")
    for n in range(len(keys), rows * cols):
        panels[n // cols][n % cols].axis("off")
    if image is not None:
        fig.colorbar(image, ax=panels, shrink=0.8, label="share of runs violating")
    fig.suptitle(f"{scenario}: violation probability over the grid")
    return save(fig, path)


def timestamp_errors(errors: dict[str, list[float]], scenario: str, path: Path) -> Path:
    """Per strategy, the distribution of recorded-minus-true timestamp error (box plots on a
    symmetric log axis: a few ms of clock skew and half a second of handler delay both show)."""
    names = list(errors)
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * len(names) + 1.4))
    data = [errors[n] if errors[n] else [np.nan] for n in names]
    # matplotlib 3.10 renamed vert=False to orientation="horizontal" (and deprecates the old name)
    direction = {"orientation": "horizontal"} if _version() >= (3, 10) else {"vert": False}
    ax.boxplot(data, **direction, showfliers=True, widths=0.6,
               flierprops={"marker": ".", "markersize": 3, "alpha": 0.4})
    ax.set_yticks(range(1, len(names) + 1), [f"{n} (n={len(errors[n])})" for n in names])
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    # Plain numbers, not the log axis' default 10^n: those are math text, parsed per label and
    # the biggest single cost of drawing this figure.
    ax.xaxis.set_major_formatter(FuncFormatter(_plain_tick))
    ax.axvline(0, color="#999999", linewidth=0.8)
    ax.set_xlabel("recorded minus true time, ms (symlog)")
    ax.set_title(f"{scenario}: timestamp error per strategy (started_at, completed_at, failed_at)")
    return save(fig, path)


def coverage(curves: dict[str, list[int]], scenario: str, path: Path) -> Path:
    """Per strategy, distinct conflict orders against runs: a curve that has flattened says new
    runs no longer show new interleavings of conflicting operations (saturation)."""
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    for i, (name, curve) in enumerate(curves.items()):
        ax.step(range(1, len(curve) + 1), curve, where="post", color=PALETTE[i % len(PALETTE)], label=name, linewidth=1.4)
    ax.set_xlabel("runs (in seed order)")
    ax.set_ylabel("distinct conflict orders")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(f"{scenario}: coverage of conflict orders")
    return save(fig, path)


# --- the swimlane of one counterexample ----------------------------------------------------------


def op_label(step: dict[str, Any]) -> str:
    """A short name for a step: ``UPDATE status=active``, ``SELECT FOR UPDATE``, ``clock``."""
    if step["kind"] == "clock":
        return "clock"
    if step["kind"] == "error":
        return "handler error"
    op = step["op"] or {}
    kind = str(op.get("type", "?")).upper()
    if kind == "SELECT" and op.get("for_update"):
        return "SELECT FOR UPDATE"
    pairs = op.get("set") or op.get("values") or []
    status = [v for k, v in pairs if k == "status" and isinstance(v, str)]
    return f"{kind} status={status[0]}" if status else kind


def focus(trace: dict[str, Any]) -> tuple[str, dict[int, list[str]]]:
    """The job a counterexample is about (its first violation's) and, per step index, the
    invariants that step violated. A violation judged at the end (no step) marks the last
    committed write to the job."""
    violations = trace["violations"]
    job = violations[0]["job"]
    marks: dict[int, list[str]] = {}
    last_write = max((s["index"] for s in trace["steps"] if s["job_id"] == job and s["committed"]), default=None)
    for v in violations:
        if v["job"] != job:
            continue
        index = v["step"] if v["step"] is not None else last_write
        if index is not None:
            marks.setdefault(index, []).append(v["invariant"] if v["step"] is not None else f"{v['invariant']} (final row)")
    return job, marks


def swimlane(trace: dict[str, Any], path: Path) -> Path:
    """One lane per actor of the violated job, plus the queue's true events: each operation a
    mark at the instant it executed (its round trip a thin line), lock waits as bars, the
    violating write highlighted in red."""
    job, marks = focus(trace)
    steps = [s for s in trace["steps"] if s["job_id"] == job]
    actors = list(dict.fromkeys(s["actor"] for s in sorted(steps, key=lambda s: (s["sent_us"], s["index"]))))
    lanes = ["queue (truth)", *actors]
    transitions = trace["truth"].get(job, {}).get("transitions", [])
    times = [t for t, _ in transitions] + [s["sent_us"] for s in steps] + [s["replied_us"] for s in steps]
    start, end = min(times) / 1000, max(times) / 1000
    fig, ax = plt.subplots(figsize=(10.0, 0.75 * len(lanes) + 1.6))
    span = max(end - start, 1.0)
    last_label: dict[int, tuple[float, int]] = {}

    def level(lane: int, x: float) -> int:
        """Labels closer than a few percent of the span stack up instead of overprinting."""
        previous = last_label.get(lane)
        n = previous[1] + 1 if previous and x - previous[0] < span * 0.07 and previous[1] < 3 else 0
        last_label[lane] = (x, n)
        return n

    moments: dict[int, list[str]] = {}
    for t, state in transitions:  # failed and delayed happen at one instant: one label
        moments.setdefault(t, []).append(state)
    for t, states in sorted(moments.items()):
        ax.plot([t / 1000], [0], marker="|", markersize=14, color="#333333")
        ax.annotate("→".join(states), (t / 1000, 0), xytext=(0, 7 + 8 * level(0, t / 1000)), textcoords="offset points",
                    ha="center", fontsize=7)
    for step in steps:
        if step["kind"] == "error":
            continue  # the handler ending on an exception: its rejected statement is already marked
        lane = lanes.index(step["actor"])
        sent, executed, replied = step["sent_us"] / 1000, step["executed_us"] / 1000, step["replied_us"] / 1000
        bad = step["index"] in marks
        label = op_label(step)
        control = label in ("BEGIN", "COMMIT", "ROLLBACK", "clock")
        if step["kind"] == "db":
            ax.plot([sent, replied], [lane, lane], color="#bbbbbb", linewidth=1, zorder=1)
            if step["waited_us"]:
                ax.barh(lane, step["waited_us"] / 1000, left=executed - step["waited_us"] / 1000, height=0.35,
                        color="#f2b134", alpha=0.8, zorder=2)
        marker = "X" if step["error"] else ("|" if label == "clock" else ("s" if control else "o"))
        colour = HIGHLIGHT if bad else ("#ff7f0e" if step["error"] else ("#999999" if control else PALETTE[0]))
        ax.plot([executed], [lane], marker=marker, markersize=11 if bad else (4 if control else 6), color=colour,
                zorder=3, markeredgecolor="black" if bad else colour)
        if control and not bad:
            continue  # BEGIN/COMMIT/clock reads are drawn, not labelled: the statements matter
        ax.annotate(label, (executed, lane), xytext=(0, 8 + 8 * level(lane, executed)), textcoords="offset points",
                    ha="center", fontsize=6.5, color=HIGHLIGHT if bad else "#222222", fontweight="bold" if bad else "normal")
        if bad:
            ax.annotate("violates " + ", ".join(marks[step["index"]]), (executed, lane), xytext=(0, -16),
                        textcoords="offset points", ha="center", fontsize=7, color=HIGHLIGHT, fontweight="bold")
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(len(lanes) - 0.4, -0.8)
    pad = max((end - start) * 0.04, 1.0)
    ax.set_xlim(start - pad, end + pad)
    ax.set_xlabel("true simulated time, ms")
    ax.set_title(f"{trace['strategy']}: counterexample on {job} ({trace['scenario']}, seed {trace['seed']})")
    ax.legend(handles=_legend(), loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=6, fontsize=7, frameon=False)
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    return save(fig, path)


def _legend() -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D([], [], color="#bbbbbb", label="round trip (sent → reply)"),
        Line2D([], [], marker="o", linestyle="", color=PALETTE[0], label="statement executes"),
        Line2D([], [], marker="s", linestyle="", markersize=4, color="#999999", label="BEGIN / COMMIT"),
        Line2D([], [], marker="|", linestyle="", color="#999999", label="clock read"),
        Patch(color="#f2b134", alpha=0.8, label="lock wait"),
        Line2D([], [], marker="X", linestyle="", color="#ff7f0e", label="rejected"),
        Line2D([], [], marker="o", linestyle="", color=HIGHLIGHT, markeredgecolor="black", label="violating step"),
    ]


def _version() -> tuple[int, int]:
    major, minor = matplotlib.__version__.split(".")[:2]
    digits = re.match(r"\d+", minor)  # "11rc1" -> 11
    return int(major), int(digits.group(0)) if digits else 0


def _plain_tick(value: float, pos: int | None) -> str:
    """A symlog tick as plain text: -1,000, 0, 10, 0.5 (the minus sign as matplotlib prints it)."""
    return f"{value:,.15g}".replace("-", "\N{MINUS SIGN}")


def number(value: Any) -> str:
    """A parameter value as a label: 10.0 -> 10, 0.25 -> 0.25."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
