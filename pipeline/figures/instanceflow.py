"""InstanceFlow figures: a Sankey diagram of predicted classes over the training epochs
(static PNG and interactive HTML) and the probability trajectories of single instances.

Each class keeps one colour everywhere (tab10, or tab20 past ten classes; the merged
"other" node is grey), so a node and a trajectory marker of the same class match. Sankey
bands are coloured by outcome instead (OUTCOME_COLOURS: whether their instances are
right at the earlier and at the later epoch), so corrections and new mistakes stand out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path
from matplotlib.ticker import MaxNLocator

from pipeline.explain.parts.instanceflow import (
    OTHER,
    OUTCOMES,
    Flow,
    column_counts,
    flows,
    instance_table,
)
from pipeline.figures.common import message_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

OTHER_COLOUR = "#9e9e9e"
NODE_WIDTH = 0.12  # share of the distance between two columns
FLOW_ALPHA = 0.45
OUTCOME_COLOURS = dict(
    zip(OUTCOMES, ("#1a9850", "#d73027", "#4575b4", "#969696"), strict=True)
)  # correct → correct green, correct → wrong red, wrong → correct blue, wrong → wrong grey
BANDS_CAPTION = "bands coloured by outcome at the earlier → later epoch"


def class_colour(cls: int, class_count: int) -> tuple[float, float, float, float]:
    """The RGBA colour of a class, the same in every InstanceFlow figure."""
    if cls == OTHER:
        return to_rgba(OTHER_COLOUR)
    cmap = plt.get_cmap("tab10" if class_count <= 10 else "tab20")
    return cmap(cls % cmap.N)


def _class_label(cls: int, class_names: Sequence[str]) -> str:
    return "other" if cls == OTHER else str(class_names[cls])


def _layout(counts: list[dict[int, int]], gap: float) -> tuple[dict[tuple[int, int], float], float]:
    """Top of each node (column, class), stacked downwards with gaps; columns centred."""
    heights = [sum(c.values()) + gap * (len(c) - 1) for c in counts]
    tallest = max(heights)
    tops: dict[tuple[int, int], float] = {}
    for column, (column_counts_, height) in enumerate(zip(counts, heights, strict=True)):
        y = (tallest - height) / 2
        for cls, count in column_counts_.items():
            tops[(column, cls)] = y
            y += count + gap
    return tops, tallest


def _band(x0: float, a_top: float, x1: float, b_top: float, width: int) -> Path:
    """A filled band of constant thickness `width` from (x0, a_top) to (x1, b_top) whose
    edges are cubic Bézier curves with horizontal tangents at both ends."""
    xm = (x0 + x1) / 2
    a_bot, b_bot = a_top + width, b_top + width
    vertices = [
        (x0, a_top),
        (xm, a_top),
        (xm, b_top),
        (x1, b_top),
        (x1, b_bot),
        (xm, b_bot),
        (xm, a_bot),
        (x0, a_bot),
        (x0, a_top),
    ]
    codes = [Path.MOVETO, *[Path.CURVE4] * 3, Path.LINETO, *[Path.CURVE4] * 3, Path.CLOSEPOLY]
    return Path(vertices, codes)


def plot_sankey(
    predictions: np.ndarray,
    labels: np.ndarray,
    epochs: np.ndarray,
    epoch_rows: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int] | None = None,
) -> Figure:
    """Sankey of predicted classes: one column per selected epoch, a node per predicted
    class (height = instances), bands for instances moving between consecutive columns,
    one per outcome (right/wrong against `labels` before and after) in its colour.
    Nodes carry gid "node <column> <class>" and bands "flow <column> <from> <to> <outcome>"."""
    table = np.asarray(predictions)
    rows = np.asarray(epoch_rows)
    total = table.shape[1]
    counts = column_counts(table, rows, classes)
    links: list[Flow] = flows(table, rows, classes, labels)
    gap = max(0.03 * total, 0.5)
    tops, tallest = _layout(counts, gap)
    k = len(class_names)
    half = NODE_WIDTH / 2

    fig, ax = plt.subplots(figsize=(max(7.0, 1.7 * len(rows) + 3.0), 6.0))
    # bands first, so nodes and labels lie on top; slots fill each node top-down
    out_used: dict[tuple[int, int], float] = {}
    in_used: dict[tuple[int, int], float] = {}
    for link in links:
        source, target = (link.from_column, link.from_class), (link.to_column, link.to_class)
        a_top = tops[source] + out_used.get(source, 0.0)
        b_top = tops[target] + in_used.get(target, 0.0)
        out_used[source] = out_used.get(source, 0.0) + link.count
        in_used[target] = in_used.get(target, 0.0) + link.count
        patch = PathPatch(
            _band(link.from_column + half, a_top, link.to_column - half, b_top, link.count),
            facecolor=OUTCOME_COLOURS[str(link.outcome)],
            edgecolor="none",
            alpha=FLOW_ALPHA,
        )
        patch.set_gid(f"flow {link.from_column} {link.from_class} {link.to_class} {link.outcome}")
        ax.add_patch(patch)

    label_min = 0.015 * total  # smaller nodes would print labels on top of each other
    for column, column_counts_ in enumerate(counts):
        for cls, count in column_counts_.items():
            top = tops[(column, cls)]
            node = Rectangle(
                (column - half, top),
                NODE_WIDTH,
                count,
                facecolor=class_colour(cls, k),
                edgecolor="black",
                linewidth=0.5,
            )
            node.set_gid(f"node {column} {cls}")
            ax.add_patch(node)
            if count >= label_min:
                ax.text(
                    column + half + 0.03,
                    top + count / 2,
                    f"{_class_label(cls, class_names)} ({count})",
                    ha="left",
                    va="center",
                    fontsize=7,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
                )

    shown = sorted({c for column in counts for c in column}, key=lambda c: (c == OTHER, c))
    handles = [
        Rectangle((0, 0), 1, 1, facecolor=class_colour(c, k), edgecolor="black", linewidth=0.5)
        for c in shown
    ]
    nodes_legend = ax.legend(
        handles,
        [_class_label(c, class_names) for c in shown],
        title="node: predicted class",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        ncol=1 if len(shown) <= 14 else 2,
    )
    ax.add_artist(nodes_legend)
    ax.legend(
        [Rectangle((0, 0), 1, 1, facecolor=c, alpha=FLOW_ALPHA) for c in OUTCOME_COLOURS.values()],
        list(OUTCOME_COLOURS),
        title="band: instances",
        loc="lower left",
        bbox_to_anchor=(1.01, 0.0),
        fontsize=8,
    )
    selected = np.asarray(epochs)[rows]
    ax.set_xlim(-0.3, len(rows) - 1 + 0.55)
    ax.set_ylim(tallest + gap, -gap)  # first class at the top
    ax.set_xticks(np.arange(len(rows)), [str(int(e)) for e in selected])
    ax.set_yticks([])
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{total} test instances, stacked by predicted class")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"InstanceFlow: predicted class of {total} tracked test instances "
        f"over epochs {int(selected[0])}–{int(selected[-1])}\n"
        f"(nodes: predicted class; {BANDS_CAPTION}, see the band legend)"
    )
    fig.tight_layout()
    return fig


def _css(colour: tuple[float, float, float, float], alpha: float | None = None) -> str:
    r, g, b, a = colour
    return (
        f"rgba({round(r * 255)},{round(g * 255)},{round(b * 255)},{a if alpha is None else alpha})"
    )


def sankey_html(
    predictions: np.ndarray,
    labels: np.ndarray,
    epochs: np.ndarray,
    epoch_rows: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int] | None = None,
) -> str:
    """The Sankey of `sankey_figure` as a self-contained interactive HTML page (plotly.js
    inlined, so it opens offline), its div id fixed so a rerun writes the same bytes."""
    figure = sankey_figure(predictions, labels, epochs, epoch_rows, class_names, classes)
    return figure.to_html(include_plotlyjs=True, full_html=True, div_id="instanceflow-sankey")


def sankey_figure(
    predictions: np.ndarray,
    labels: np.ndarray,
    epochs: np.ndarray,
    epoch_rows: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int] | None = None,
) -> go.Figure:
    """The same Sankey as `plot_sankey` in plotly: nodes in class colours, bands in outcome
    colours with a caption saying which is which; hovering a node or band shows its
    whole instance count (and a band its outcome)."""
    import plotly.graph_objects as go

    table = np.asarray(predictions)
    rows = np.asarray(epoch_rows)
    selected = np.asarray(epochs)[rows]
    counts = column_counts(table, rows, classes)
    k = len(class_names)
    index: dict[tuple[int, int], int] = {}
    names, colours, xs = [], [], []
    for column, column_counts_ in enumerate(counts):
        for cls in column_counts_:
            index[(column, cls)] = len(names)
            names.append(f"epoch {int(selected[column])}: {_class_label(cls, class_names)}")
            colours.append(_css(class_colour(cls, k)))
            xs.append(column / max(len(rows) - 1, 1))
    links = flows(table, rows, classes, labels)
    band = {name: _css(to_rgba(colour), FLOW_ALPHA) for name, colour in OUTCOME_COLOURS.items()}
    figure = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": names,
                "color": colours,
                "pad": 12,
                "thickness": 14,
                "hovertemplate": "%{label}<br>%{value:d} instances<extra></extra>",
            },
            link={
                "source": [index[(f.from_column, f.from_class)] for f in links],
                "target": [index[(f.to_column, f.to_class)] for f in links],
                "value": [int(f.count) for f in links],
                "color": [band[str(f.outcome)] for f in links],
                "customdata": [str(f.outcome) for f in links],
                "hovertemplate": (
                    "%{source.label} → %{target.label}<br>%{value:d} instances, "
                    "%{customdata}<extra></extra>"
                ),
            },
        )
    )
    key = " &nbsp; ".join(
        f"<span style='color:{colour}'>■</span> {name}" for name, colour in OUTCOME_COLOURS.items()
    )
    figure.update_layout(
        title=(
            f"InstanceFlow: predicted class of {table.shape[1]} tracked test instances "
            f"over epochs {int(selected[0])}–{int(selected[-1])}"
        ),
        annotations=[
            {
                "text": f"Nodes: predicted class. Bands: {BANDS_CAPTION}: {key}",
                "x": 0.5,
                "y": -0.06,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "top",
                "showarrow": False,
            }
        ],
        margin={"b": 80},
        font={"size": 11},
        height=650,
    )
    return figure


def plot_trajectories(
    probabilities: np.ndarray,
    predictions: np.ndarray,
    labels: np.ndarray,
    epochs: np.ndarray,
    rows: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    test_indices: np.ndarray,
    per_row: int = 4,
) -> Figure:
    """One panel per instance row: probability of the true and of the finally predicted
    class per epoch, and the predicted class at each epoch (named where it changes), to
    show how an unstable instance wandered between classes."""
    chosen = [int(r) for r in np.asarray(rows).ravel()]
    title = "InstanceFlow: class probabilities of the least stable test instances"
    if not chosen:
        return message_figure("no instances to show", title)
    probs = np.asarray(probabilities, dtype=np.float64)
    table = np.asarray(predictions)
    truth = np.asarray(labels)
    x = np.asarray(epochs)
    changes = instance_table(table, truth)["class_changes"]
    k = len(class_names)
    columns = min(per_row, len(chosen))
    grid_rows = -(-len(chosen) // columns)
    fig, axes = plt.subplots(
        grid_rows,
        columns,
        figsize=(3.4 * columns + 0.6, 2.7 * grid_rows + 0.9),
        squeeze=False,
        sharey=True,
    )
    for ax in axes.flat[len(chosen) :]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, chosen, strict=False):
        true_cls, final_cls = int(truth[row]), int(table[-1, row])
        path = table[:, row].astype(np.int64)
        ax.plot(x, probs[:, row, true_cls], "-", color="black", lw=1.6, label="p(true class)")
        if final_cls != true_cls:
            ax.plot(
                x, probs[:, row, final_cls], "--", color="tab:red", lw=1.4, label="p(final class)"
            )
        predicted_p = probs[np.arange(len(x)), row, path]
        ax.scatter(
            x,
            predicted_p,
            c=[class_colour(int(c), k) for c in path],
            edgecolors="black",
            linewidths=0.5,
            s=28,
            zorder=3,
            label="predicted class",
        )
        for e in range(len(x)):
            if e == 0 or path[e] != path[e - 1]:
                ax.annotate(
                    str(class_names[path[e]]),
                    (x[e], predicted_p[e]),
                    xytext=(0, 6),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
        ax.set_ylim(-0.03, 1.15)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("probability")
        ax.set_title(
            f"test #{int(test_indices[row])}: true {class_names[true_cls]}, "
            f"final {class_names[final_cls]}\n{int(changes[row])} class changes",
            fontsize=8,
        )
    handles = [
        plt.Line2D([], [], color="black", lw=1.6, label="p(true class)"),
        plt.Line2D([], [], color="tab:red", ls="--", lw=1.4, label="p(final predicted class)"),
        plt.Line2D(
            [], [], marker="o", ls="", color="grey", mec="black", label="predicted class (named)"
        ),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
