"""Grand Tour: known answers for the rotations and projections, and the three figures
(GIF frame count, offline HTML, PNG grid)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from pipeline.explain.parts.grand_tour import GrandTour, givens, normalise, project
from pipeline.figures.common import save_figure
from pipeline.figures.grand_tour import (
    MISCLASSIFIED_SYMBOL,
    figure_page,
    plot_tour_frames,
    stored_tours,
    tour_figure,
    tour_gif,
)

CLASS_NAMES = ("airplane", "automobile", "bird")


def assert_orthonormal(matrix: np.ndarray) -> None:
    identity = np.eye(matrix.shape[0])
    assert np.abs(matrix @ matrix.T - identity).max() < 1e-10
    assert np.abs(matrix.T @ matrix - identity).max() < 1e-10


# --- givens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dim", "i", "j", "theta"), [(2, 0, 1, 0.3), (5, 1, 3, -2.0), (4, 3, 0, 1.1)]
)
def test_givens_is_a_rotation_turning_e_i_toward_e_j(
    dim: int, i: int, j: int, theta: float
) -> None:
    rotation = givens(dim, i, j, theta)
    assert_orthonormal(rotation)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-12)
    e_i, e_j = np.eye(dim)[i], np.eye(dim)[j]
    assert np.allclose(rotation @ e_i, math.cos(theta) * e_i + math.sin(theta) * e_j)
    assert np.allclose(rotation @ e_j, -math.sin(theta) * e_i + math.cos(theta) * e_j)
    others = [k for k in range(dim) if k not in (i, j)]
    for k in others:  # every other axis is left alone
        assert np.array_equal(rotation[:, k], np.eye(dim)[k])


def test_givens_quarter_turn_maps_e0_onto_e1() -> None:
    assert np.allclose(givens(3, 0, 1, math.pi / 2) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])


@pytest.mark.parametrize(("dim", "i", "j"), [(1, 0, 0), (3, 1, 1), (3, 0, 3), (3, -1, 2)])
def test_givens_rejects_bad_planes(dim: int, i: int, j: int) -> None:
    with pytest.raises(ValueError):
        givens(dim, i, j, 0.1)


# --- GrandTour rotations ----------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 10, 128])
def test_every_rotation_is_orthonormal_and_starts_at_identity(dim: int) -> None:
    tour = GrandTour(dim, seed=0)
    assert len(tour.planes) == dim * (dim - 1) // 2
    assert np.array_equal(tour.rotation(0.0), np.eye(dim))
    for t in (0.013, 0.35, 2.0, 17.5):
        rotation = tour.rotation(t)
        assert rotation.shape == (dim, dim)
        assert_orthonormal(rotation)
        assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-8)
        assert not np.allclose(rotation, np.eye(dim))  # it actually moves


def test_rotation_is_the_ordered_product_of_givens_rotations() -> None:
    tour = GrandTour(4, seed=5, speed=0.7)
    t = 1.3
    expected = np.eye(4)
    for (i, j), velocity in zip(tour.planes, tour.velocities, strict=True):
        expected = expected @ givens(4, i, j, velocity * t)
    assert tour.planes == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert np.allclose(tour.rotation(t), expected, atol=1e-12)
    assert np.all(np.abs(tour.velocities) <= 0.7)


def test_dim_two_is_a_plain_rotation_of_the_plane() -> None:
    tour = GrandTour(2, seed=1)
    angle = tour.velocities[0] * 0.8
    assert np.allclose(tour.rotation(0.8), givens(2, 0, 1, angle))


def test_rotations_are_continuous_in_t() -> None:
    tour = GrandTour(10, seed=2)
    # each of the 45 factors moves by at most |w| h in spectral norm, and they are all
    # orthogonal, so ||R(t + h) - R(t)||_2 <= h * sum |w|
    bound_per_unit = float(np.abs(tour.velocities).sum())
    for t in (0.0, 0.5, 3.0):
        for h in (1e-3, 1e-5):
            change = np.linalg.norm(tour.rotation(t + h) - tour.rotation(t), ord=2)
            assert change <= h * bound_per_unit + 1e-12
            assert change > 0
    # while a unit of t turns it visibly
    assert np.linalg.norm(tour.rotation(1.0) - tour.rotation(0.0), ord=2) > 0.1


def test_seed_reproducibility() -> None:
    first, again, other = GrandTour(10, seed=7), GrandTour(10, seed=7), GrandTour(10, seed=8)
    assert np.array_equal(first.velocities, again.velocities)
    assert np.array_equal(first.rotation(0.9), again.rotation(0.9))
    assert not np.allclose(first.rotation(0.9), other.rotation(0.9))


def test_frames_are_rotations_at_multiples_of_step() -> None:
    tour = GrandTour(6, seed=3)
    frames = tour.frames(4, step=0.25)
    assert len(frames) == 4
    for k, rotation in enumerate(frames):
        assert np.array_equal(rotation, tour.rotation(k * 0.25))
    assert np.array_equal(frames[0], np.eye(6))


@pytest.mark.parametrize("dim", [0, 1, -3])
def test_tour_rejects_fewer_than_two_dimensions(dim: int) -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        GrandTour(dim, seed=0)


def test_tour_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="speed"):
        GrandTour(3, seed=0, speed=0.0)
    with pytest.raises(ValueError, match="n_frames"):
        GrandTour(3, seed=0).frames(0, step=0.1)


# --- projection ---------------------------------------------------------------------------


def test_projection_of_planar_data_at_t0_is_its_first_two_coordinates_centred() -> None:
    rng = np.random.default_rng(0)
    activations = np.zeros((30, 10))
    activations[:, :2] = rng.normal(size=(30, 2)) * [3.0, 0.5] + [4.0, -2.0]
    rotation = GrandTour(10, seed=0).rotation(0.0)
    points = project(activations, rotation)
    assert points.shape == (30, 2)
    expected = activations[:, :2] - activations[:, :2].mean(axis=0)
    assert np.allclose(points, expected, atol=1e-12)
    assert np.allclose(points.mean(axis=0), 0.0, atol=1e-12)


def test_projection_with_a_known_rotation() -> None:
    # a quarter turn in plane (0, 2) sends e_0 to e_2 and e_2 to -e_0: the first
    # projected coordinate is then minus the (centred) third activation
    activations = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0]])
    points = project(activations, givens(3, 0, 2, math.pi / 2))
    centred = activations - activations.mean(axis=0)
    assert np.allclose(points, np.column_stack([-centred[:, 2], centred[:, 1]]), atol=1e-12)


def test_projection_is_a_contraction() -> None:
    rng = np.random.default_rng(4)
    activations = rng.normal(size=(60, 12))
    original = np.linalg.norm(activations[:, None] - activations[None], axis=-1)
    tour = GrandTour(12, seed=4)
    for rotation in tour.frames(5, step=0.4):
        points = project(activations, rotation)
        projected = np.linalg.norm(points[:, None] - points[None], axis=-1)
        assert np.all(projected <= original + 1e-12)
        assert projected.max() > 0.1 * original.max()  # not a collapse to a point


def test_project_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        project(np.zeros((0, 3)), np.eye(3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        project(np.zeros((5, 1)), np.eye(1))
    with pytest.raises(ValueError, match="rotation must be"):
        project(np.zeros((5, 3)), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        project(np.array([[0.0, np.nan], [1.0, 1.0]]), np.eye(2))


def test_normalise_shares_one_scale_across_frames() -> None:
    first = np.array([[1.0, -2.0], [0.5, 0.5]])
    second = np.array([[4.0, 0.0], [-1.0, 3.0]])
    scaled = normalise([first, second])
    assert np.allclose(scaled[0], first / 4.0)
    assert np.allclose(scaled[1], second / 4.0)
    assert max(np.abs(points).max() for points in scaled) == pytest.approx(1.0)
    assert np.array_equal(normalise([np.zeros((3, 2))])[0], np.zeros((3, 2)))
    with pytest.raises(ValueError):
        normalise([])


# --- figures ---------------------------------------------------------------------------


def tour_frames(n_points: int = 50, n_frames: int = 4) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n_points) % len(CLASS_NAMES)
    centres = np.eye(10)[: len(CLASS_NAMES)] * 4.0
    activations = centres[labels] + rng.normal(scale=0.5, size=(n_points, 10))
    tour = GrandTour(10, seed=0)
    frames = normalise([project(activations, r) for r in tour.frames(n_frames, step=0.3)])
    return frames, labels


def test_gif_has_one_frame_per_projection() -> None:
    frames, labels = tour_frames()
    titles = [f"Grand Tour of the softmax layer, t = {0.3 * k:.2f}" for k in range(len(frames))]
    gif = tour_gif(frames, labels, CLASS_NAMES, titles, fps=5)
    assert len(gif) > 1000
    with Image.open(io.BytesIO(gif)) as image:
        assert image.format == "GIF"
        assert image.n_frames == len(frames)


def test_gif_rejects_mismatched_inputs() -> None:
    frames, labels = tour_frames()
    with pytest.raises(ValueError, match="titles"):
        tour_gif(frames, labels, CLASS_NAMES, ["only one"])
    with pytest.raises(ValueError, match="labels"):
        tour_gif(frames, labels + 5, CLASS_NAMES, ["a"] * 4)
    with pytest.raises(ValueError, match="at least one frame"):
        tour_gif([], labels, CLASS_NAMES, [])


def test_html_is_self_contained_and_names_the_classes() -> None:
    frames, labels = tour_frames()
    epochs = [str(k + 1) for k in range(len(frames))]
    html = figure_page(
        tour_figure(frames, labels, CLASS_NAMES, epochs, "Grand Tour of the softmax layer", "epoch")
    )
    assert html.lstrip().lower().startswith("<html") or "<!doctype html" in html[:200].lower()
    assert "plotly" in html
    assert len(html) > 1_000_000  # plotly.js is embedded, so it works offline
    assert '<script src="https://cdn' not in html
    for name in CLASS_NAMES:
        assert name in html
    assert "Grand Tour of the softmax layer" in html
    assert "epoch 3" in html
    assert "instance %{customdata[0]}" in html
    # still until Play is pressed; an animation interrupted by Pause is not a page error
    assert "Plotly.animate(" not in html
    assert "unhandledrejection" in html
    again = figure_page(
        tour_figure(frames, labels, CLASS_NAMES, epochs, "Grand Tour of the softmax layer", "epoch")
    )
    assert again == html  # the same bytes on a rerun (plotly's default div id is random)


def test_the_stored_tour_gives_both_interactive_figures_per_layer() -> None:
    """What the part's pages and the report both draw from explanations/grand_tour."""
    frames, labels = tour_frames()
    stacked = np.stack(frames)
    tour = {
        "labels": labels,
        "class_names": np.array(CLASS_NAMES),
        "layers": np.array(["features.block2"]),
        "features.block2/rotation": stacked,
        "features.block2/times": np.linspace(0, 1, len(frames)),
        "features.block2/epochs": stacked,
        "epochs": np.arange(1, len(frames) + 1),
        "predictions": labels,
        "epoch_predictions": np.stack([labels] * len(frames)),
    }
    tours = stored_tours(tour)
    assert list(tours) == ["features_block2"]
    assert list(tours["features_block2"]) == ["rotation", "epochs"]
    epochs = tours["features_block2"]["epochs"]
    last = epochs["frames"][-1]["layout"]["title"]["text"]
    assert last.endswith(f"epoch {len(frames)}") and last.startswith("features.block2 across")
    assert tours["features_block2"]["rotation"]["frames"][0]["layout"]["title"]["text"].endswith(
        "t = 0.00"
    )


def test_html_play_pause_are_the_documented_robust_form() -> None:
    frames, labels = tour_frames()
    figure = tour_figure(frames, labels, CLASS_NAMES, ["1", "2", "3", "4"], "T", "epoch")
    play, pause = figure["layout"]["updatemenus"][0]["buttons"]
    assert play["method"] == pause["method"] == "animate"
    assert play["args"][0] is None  # all frames
    assert play["args"][1]["fromcurrent"] is True
    assert play["args"][1]["mode"] == "immediate"  # a second Play restarts, no queued promise
    assert play["args"][1]["frame"]["redraw"] is True  # the per-frame title is layout
    assert pause["args"][0] == [None]
    assert pause["args"][1]["mode"] == "immediate"
    assert pause["args"][1]["frame"]["duration"] == 0


def test_html_slider_labels_match_the_title_numbering() -> None:
    frames, labels = tour_frames()
    epochs = ["1", "2", "3", "4"]  # 1-based, as the part passes them
    figure = tour_figure(frames, labels, CLASS_NAMES, epochs, "dense", step_name="epoch")
    slider = figure["layout"]["sliders"][0]
    prefix = slider["currentvalue"]["prefix"]
    for step, frame in zip(slider["steps"], figure["frames"], strict=True):
        assert step["args"][0] == [frame["name"]]  # the step shows that frame
        shown = prefix + step["label"]  # what the slider reads, e.g. "epoch 1"
        assert frame["layout"]["title"]["text"].endswith("<br>" + shown)
    assert [step["label"] for step in slider["steps"]] == epochs
    assert figure["layout"]["title"]["text"] == "dense<br>epoch 1"


def test_html_buttons_and_slider_do_not_overlap() -> None:
    frames, labels = tour_frames()
    layout = tour_figure(frames, labels, CLASS_NAMES, ["a", "b", "c", "d"], "T")["layout"]
    menu, slider = layout["updatemenus"][0], layout["sliders"][0]
    # the buttons end where the slider (and its label above it) begins
    assert menu["xanchor"] == "right"
    assert slider["xanchor"] == "left"
    assert menu["x"] <= slider["x"]
    assert slider["x"] + slider["len"] <= 1.0


def test_html_marks_misclassified_points_per_frame() -> None:
    frames, labels = tour_frames(n_points=6, n_frames=2)  # labels 0 1 2 0 1 2
    predicted = np.array([[0, 1, 2, 0, 1, 2], [1, 1, 2, 0, 1, 0]])  # frame 2: 0 and 5 wrong
    figure = tour_figure(frames, labels, CLASS_NAMES, ["1", "2"], "T", "epoch", predicted)
    for frame, wrong in zip(figure["frames"], [set(), {0, 5}], strict=True):
        crosses = {
            row[0]
            for trace in frame["data"]
            if trace["marker"]["symbol"] == MISCLASSIFIED_SYMBOL
            for row in trace.get("customdata", [])
        }
        assert crosses == wrong
        circles = {
            row[0]
            for trace in frame["data"]
            if trace["marker"]["symbol"] == "circle"
            for row in trace["customdata"]
        }
        assert circles == set(range(6)) - wrong
        # the cross keeps the true class's colour, and the legend explains it
        for trace in frame["data"][: 2 * len(CLASS_NAMES)]:
            assert trace["legendgroup"] in CLASS_NAMES
        key = frame["data"][-1]
        assert key["name"] == f"misclassified ({len(wrong)} of 6)"
        assert key["marker"]["symbol"] == MISCLASSIFIED_SYMBOL
    assert "misclassified" in figure["layout"]["legend"]["title"]["text"]
    # one prediction per point serves every frame of the rotation
    same = tour_figure(frames, labels, CLASS_NAMES, ["1", "2"], "T", predictions=predicted[1])
    assert [len(f["data"][3]["x"]) for f in same["frames"]] == [1, 1]  # class 0: point 0
    with pytest.raises(ValueError, match="predictions"):
        tour_figure(frames, labels, CLASS_NAMES, ["1", "2"], "T", predictions=predicted[:, :3])


def test_png_grid_of_frames(tmp_path) -> None:
    frames, labels = tour_frames(n_frames=6)
    titles = [f"t = {0.3 * k:.2f}" for k in range(len(frames))]
    fig = plot_tour_frames(frames, labels, CLASS_NAMES, titles, columns=4)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6
    assert len(fig.axes) == 8  # 2 rows × 4 columns, the last two hidden
    assert [ax.get_title() for ax in visible] == titles
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(CLASS_NAMES)
    # all panels share the same fixed axis range
    assert len({ax.get_xlim() for ax in visible}) == 1
    path = save_figure(fig, tmp_path / "grid.png")
    assert path.stat().st_size > 2000
