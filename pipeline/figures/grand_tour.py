"""Grand Tour figures: an animated GIF, an interactive offline HTML page, and a static
grid of frames for reports.

All three take the same inputs: `frames_xy`, a list of N×2 projections of the same N
instances (see pipeline.explain.parts.grand_tour), `labels`, the class index of each instance,
`class_names`, and one title per frame. Axes are fixed over the whole tour so that what
moves is the data, and each class keeps one colour (tab10) everywhere.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

AXIS_LABELS = ("tour axis 1", "tour axis 2")


def _check_inputs(
    frames_xy: Sequence[np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    titles: Sequence[str],
) -> tuple[list[np.ndarray], np.ndarray]:
    """Arrays ready to draw, or a ValueError that says which input is wrong."""
    if len(frames_xy) == 0:
        raise ValueError("a tour needs at least one frame")
    if len(class_names) == 0:
        raise ValueError("class_names is empty")
    if len(titles) != len(frames_xy):
        raise ValueError(f"got {len(titles)} titles for {len(frames_xy)} frames")
    classes = np.asarray(labels)
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {classes.dtype}")
    if classes.min() < 0 or classes.max() >= len(class_names):
        raise ValueError(f"labels must lie in [0, {len(class_names)}) to index class_names")
    frames = [np.asarray(points, dtype=np.float64) for points in frames_xy]
    for k, points in enumerate(frames):
        if points.shape != (classes.size, 2):
            raise ValueError(
                f"frame {k} has shape {points.shape}, expected ({classes.size}, 2) to match labels"
            )
        if not np.isfinite(points).all():
            raise ValueError(f"frame {k} contains NaN or infinite values")
    return frames, classes.astype(np.int64)


def _limits(frames: Sequence[np.ndarray]) -> tuple[float, float]:
    """One symmetric-padded range covering every frame, for both axes."""
    low = min(float(points.min()) for points in frames)
    high = max(float(points.max()) for points in frames)
    pad = 0.05 * (high - low) if high > low else 1.0
    return low - pad, high + pad


EVERY_CLASS_UP_TO = 20
"""Legends and traces list every class up to this many; beyond, only the classes of the
points drawn: ImageNet's 1,000 names would fill a page, and a thousand empty traces per
frame made a 16-point tour page 28 MB."""
OTHER_COLOUR = "#808080"  # a class no point has (never drawn)


def shown_classes(classes: np.ndarray, count: int) -> list[int]:
    """The class indices legends and traces list: all `count`, or beyond EVERY_CLASS_UP_TO
    those among `classes` (the points' classes), in order."""
    if count <= EVERY_CLASS_UP_TO:
        return list(range(count))
    return sorted(int(k) for k in np.unique(classes))


def class_colours(count: int, shown: Sequence[int] | None = None) -> list[str]:
    """Hex colour per class index: tab10 up to ten classes shown, tab20 beyond (cycled if
    needed), given in the order of `shown` (default: every class)."""
    shown = range(count) if shown is None else shown
    cmap = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    colours = [OTHER_COLOUR] * count
    for rank, k in enumerate(shown):
        colours[k] = to_hex(cmap(rank % cmap.N))
    return colours


def _class_handles(
    colours: Sequence[str], class_names: Sequence[str], shown: Sequence[int]
) -> list[Line2D]:
    """Legend entries, one marker per class shown, for plots that draw all points at once."""
    return [
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=6,
            color=colours[k],
            label=str(class_names[k]),
        )
        for k in shown
    ]


def tour_gif(
    frames_xy: Sequence[np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    titles: Sequence[str],
    fps: int = 10,
    dpi: int = 80,
) -> bytes:
    """The tour as an animated GIF file's bytes (one GIF frame per projection).

    Axes, ticks and legend are the same in every frame: they are drawn once, and each
    frame only restores that background and draws the points and the title on it (text
    layout dominated the time when every frame was drawn whole). All frames share one
    palette, taken from the first, so no frame needs a palette search of its own.
    Pillow merges consecutive identical images, so frames that differ in nothing (same
    points, same title) count once in the file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    frames, classes = _check_inputs(frames_xy, labels, class_names, titles)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    shown = shown_classes(classes, len(class_names))
    colours = class_colours(len(class_names), shown)
    low, high = _limits(frames)

    fig = Figure(figsize=(7.2, 5.6), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # one collection for all classes, coloured per point: one draw per frame, not one
    # per class
    points = ax.scatter(
        frames[0][:, 0], frames[0][:, 1], s=10, alpha=0.75, c=[colours[k] for k in classes]
    )
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel(AXIS_LABELS[0])
    ax.set_ylabel(AXIS_LABELS[1])
    ax.legend(
        handles=_class_handles(colours, class_names, shown),
        title="class",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
    )
    heading = ax.set_title(max(titles, key=len))  # room for the longest title
    fig.tight_layout()
    canvas.draw()
    # a full draw places the title; one without it would move it out of the figure
    title_position = heading.get_position()
    for artist in (points, heading):
        artist.set_visible(False)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    for artist in (points, heading):
        artist.set_visible(True)
    heading.set_position(title_position)

    images = []
    for xy, title in zip(frames, titles, strict=True):
        canvas.restore_region(background)
        points.set_offsets(xy)
        ax.draw_artist(points)
        heading.set_text(title)
        ax.draw_artist(heading)
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    palette = images[0].quantize(colors=255)
    indexed = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    buffer = io.BytesIO()
    indexed[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=indexed[1:],
        duration=round(1000 / fps),
        loop=0,
    )
    return buffer.getvalue()


MISCLASSIFIED_SYMBOL = "x"  # plotly marker of a point whose predicted class is not its label
PLAY_ARGS = [
    None,  # all frames, from the current one: the documented Play form
    {
        # redraw: each frame's title (epoch / t) is layout, which only a redraw shows
        "frame": {"duration": 150, "redraw": True},
        "transition": {"duration": 0},
        "fromcurrent": True,
        # immediate: a second Play restarts from the current frame instead of queueing
        "mode": "immediate",
    },
]
PAUSE_ARGS = [
    [None],  # a list holding None stops the animation: the documented Pause form
    {"frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}, "mode": "immediate"},
]


def _frame_predictions(
    predictions: np.ndarray | None, n_frames: int, n_points: int, class_count: int
) -> np.ndarray | None:
    """F×N predicted classes (one row repeated when the same N serve every frame)."""
    if predictions is None:
        return None
    predicted = np.asarray(predictions)
    if predicted.shape == (n_points,):
        predicted = np.broadcast_to(predicted, (n_frames, n_points))
    if predicted.shape != (n_frames, n_points):
        raise ValueError(
            f"predictions must have shape ({n_points},) or ({n_frames}, {n_points}), "
            f"got {predicted.shape}"
        )
    if not np.issubdtype(predicted.dtype, np.integer):
        raise ValueError(f"predictions must be integer class indices, got {predicted.dtype}")
    if predicted.min() < 0 or predicted.max() >= class_count:
        raise ValueError(f"predictions must lie in [0, {class_count}) to index class_names")
    return predicted.astype(np.int64)


# plotly.js rejects the promise of an animation that another one interrupts (Pause, or
# Play again, while playing) with no reason at all, on purpose (plotly/plotly.js#2438);
# the buttons never handle it, so the console showed "Uncaught (in promise) undefined".
# Only reason-less rejections are quieted: a real error carries an Error.
QUIET_INTERRUPTED_ANIMATIONS = (
    'window.addEventListener("unhandledrejection",'
    " e => { if (e.reason === undefined) e.preventDefault(); });"
)


def figure_page(figure: dict) -> str:
    """A plotly figure as a self-contained page (plotly.js embedded, works offline),
    still until the reader presses Play, with interrupted animations kept quiet. The div
    has a fixed id (plotly's default is a random UUID), so a rerun writes the same bytes."""
    import plotly.io as pio

    return pio.to_html(
        figure,
        include_plotlyjs=True,
        full_html=True,
        div_id="grand-tour",
        validate=False,
        auto_play=False,
        post_script=QUIET_INTERRUPTED_ANIMATIONS,
    )


def stored_tours(tour: Mapping[str, np.ndarray]) -> dict[str, dict[str, dict]]:
    """The interactive tours of the grand_tour part's stored `tour.npz`, per layer (dots
    in module paths become `_`): `rotation`, the rotating tour under the final model,
    and `epochs`, one fixed projection across the training epochs. The part's pages and
    the report both show these."""
    labels, names = tour["labels"], [str(n) for n in tour["class_names"]]
    tours: dict[str, dict[str, dict]] = {}
    for layer in (str(name) for name in tour["layers"]):
        tours[layer.replace(".", "_")] = {
            "rotation": tour_figure(
                list(tour[f"{layer}/rotation"]),
                labels,
                names,
                [f"{t:.2f}" for t in tour[f"{layer}/times"]],
                f"Grand Tour of {layer} (final model)",
                step_name="t =",
                predictions=tour["predictions"],
            ),
            "epochs": tour_figure(
                list(tour[f"{layer}/epochs"]),
                labels,
                names,
                [str(int(e)) for e in tour["epochs"]],
                f"{layer} across the training epochs (fixed projection)",
                step_name="epoch",
                predictions=tour["epoch_predictions"],
            ),
        }
    return tours


def tour_figure(
    frames_xy: Sequence[np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    steps: Sequence[str],
    title: str,
    step_name: str = "frame",
    predictions: np.ndarray | None = None,
) -> dict:
    """The plotly figure dict of an animated tour: Play/Pause buttons and a slider over the
    frames. Frame k's title and slider label both read "`step_name` `steps[k]`" (e.g.
    "epoch 3"), so the two never disagree. Points are coloured by their true class;
    with `predictions` (N, or F×N when the model changes per frame) the misclassified
    ones are drawn as crosses. Hovering a point shows its instance index and classes."""
    frames, classes = _check_inputs(frames_xy, labels, class_names, steps)
    predicted = _frame_predictions(predictions, len(frames), classes.size, len(class_names))
    shown = shown_classes(classes, len(class_names))
    colours = class_colours(len(class_names), shown)
    members = {k: np.flatnonzero(classes == k) for k in shown}
    low, high = _limits(frames)

    def scatter(points: np.ndarray, index: np.ndarray, k: int, wrong: bool, guess) -> dict:
        name = str(class_names[k])
        guessed = [str(class_names[g]) for g in guess[index]] if guess is not None else []
        return {
            "type": "scatter",
            "x": points[index, 0].round(4).tolist(),
            "y": points[index, 1].round(4).tolist(),
            "mode": "markers",
            "name": name,
            "legendgroup": name,
            "showlegend": not wrong,
            "marker": {
                "color": colours[k],
                "size": 8 if wrong else 5,
                "opacity": 0.9 if wrong else 0.8,
                "symbol": MISCLASSIFIED_SYMBOL if wrong else "circle",
            },
            "customdata": [[int(i), g] for i, g in zip(index, guessed, strict=True)]
            if guessed
            else [[int(i)] for i in index],
            "hovertemplate": f"instance %{{customdata[0]}}<br>class {name}"
            + ("<br>predicted %{customdata[1]}" if guessed else "")
            + "<extra></extra>",
        }

    # plain dicts, not plotly.graph_objects: validating every trace of every frame took
    # most of the time, and these are built from known-good arrays. Every frame has the
    # same traces: per class the right points, then (with predictions) the wrong ones,
    # and one legend-only entry that explains the cross.
    def traces(points: np.ndarray, guess: np.ndarray | None) -> list[dict]:
        if guess is None:
            return [scatter(points, index, k, False, None) for k, index in members.items()]
        wrong = guess != classes
        shown = [
            scatter(points, index[wrong[index] == miss], k, miss, guess)
            for miss in (False, True)
            for k, index in members.items()
        ]
        key = {
            "type": "scatter",
            "x": [None],
            "y": [None],
            "mode": "markers",
            "name": f"misclassified ({int(wrong.sum())} of {wrong.size})",
            "marker": {"color": "black", "size": 8, "symbol": MISCLASSIFIED_SYMBOL},
            "hoverinfo": "skip",
        }
        return [*shown, key]

    names = [str(k) for k in range(len(frames))]
    headings = [f"{title}<br>{step_name} {step}" for step in steps]
    guesses = [None] * len(frames) if predicted is None else list(predicted)
    figure: dict = {
        "data": traces(frames[0], guesses[0]),
        "frames": [
            {
                "data": traces(points, guess),
                "name": name,
                "layout": {"title": {"text": heading}},
            }
            for points, guess, name, heading in zip(frames, guesses, names, headings, strict=True)
        ],
    }
    legend = "class (colour = true class"
    legend += ", × = misclassified)" if predicted is not None else ")"
    figure["layout"] = dict(
        title={"text": headings[0]},
        xaxis={"range": [low, high], "title": {"text": AXIS_LABELS[0]}},
        yaxis={
            "range": [low, high],
            "title": {"text": AXIS_LABELS[1]},
            "scaleanchor": "x",
            "scaleratio": 1,
        },
        legend={"title": {"text": legend}},
        width=860,
        height=820,
        margin={"b": 170},
        # buttons end (xanchor right) where the slider starts (xanchor left), both under
        # the x-axis title: the slider's "epoch 3" label sits above the slider, clear of them
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.1,
                "xanchor": "right",
                "y": -0.1,
                "yanchor": "top",
                "pad": {"t": 45, "r": 10},
                "showactive": False,
                "buttons": [
                    {"label": "Play", "method": "animate", "args": PLAY_ARGS},
                    {"label": "Pause", "method": "animate", "args": PAUSE_ARGS},
                ],
            }
        ],
        sliders=[
            {
                "active": 0,
                "x": 0.1,
                "xanchor": "left",
                "len": 0.9,
                "y": -0.1,
                "yanchor": "top",
                "pad": {"t": 30, "b": 10},
                "currentvalue": {"prefix": f"{step_name} ", "xanchor": "left"},
                "steps": [
                    {"label": str(step), "method": "animate", "args": [[name], PAUSE_ARGS[1]]}
                    for step, name in zip(steps, names, strict=True)
                ],
            }
        ],
    )
    return figure


def plot_tour_frames(
    frames_xy: Sequence[np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    titles: Sequence[str],
    columns: int = 4,
    title: str = "Grand Tour: rotating linear projections of the activations",
) -> Figure:
    """A static grid of the given frames on shared axes, with one legend, for reports."""
    frames, classes = _check_inputs(frames_xy, labels, class_names, titles)
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    shown = shown_classes(classes, len(class_names))
    colours = class_colours(len(class_names), shown)
    low, high = _limits(frames)
    cols = min(columns, len(frames))
    rows = math.ceil(len(frames) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.0 * cols + 1.8, 3.0 * rows + 0.8), squeeze=False
    )
    for ax in axes.flat[len(frames) :]:
        ax.set_visible(False)
    point_colours = [colours[k] for k in classes]
    for k, (ax, points, label) in enumerate(zip(axes.flat, frames, titles, strict=False)):
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.75, c=point_colours)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel(AXIS_LABELS[1])
        if k >= len(frames) - cols:
            ax.set_xlabel(AXIS_LABELS[0])
    fig.legend(
        handles=_class_handles(colours, class_names, shown),
        title="class",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )
    fig.suptitle(title)
    fig.tight_layout()
    return fig
