"""InstanceFlow: known answers on a hand-made prediction table, and the figures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from pipeline.explain.parts.instanceflow import (
    OTHER,
    OUTCOMES,
    Flow,
    column_counts,
    flows,
    instance_table,
    most_unstable,
    select_epochs,
    visited_classes,
)
from pipeline.figures.common import save_figure
from pipeline.figures.instanceflow import (
    OUTCOME_COLOURS,
    plot_sankey,
    plot_trajectories,
    sankey_figure,
    sankey_html,
)

# 3 epochs × 5 instances; each instance's story, read down a column:
#   0: 0 0 0 (true 0)  steady, right       3: 0 1 2 (true 2)  two changes, right at the end
#   1: 1 2 2 (true 2)  one change, right    4: 1 1 1 (true 0)  steady, always wrong
#   2: 2 2 0 (true 2)  one change, ends wrong
PREDICTIONS = np.array(
    [
        [0, 1, 2, 0, 1],
        [0, 2, 2, 1, 1],
        [0, 2, 0, 2, 1],
    ]
)
LABELS = np.array([0, 2, 2, 2, 0])
NAMES = ("cat", "dog", "bird")


def test_instance_table_known_answers() -> None:
    table = instance_table(PREDICTIONS, LABELS)
    np.testing.assert_allclose(table["fraction_misclassified"], [0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(table["class_changes"], [0, 1, 1, 2, 0])
    np.testing.assert_array_equal(table["classes_visited"], [1, 2, 2, 3, 1])
    np.testing.assert_array_equal(table["final_correct"], [True, True, False, True, False])
    assert table["final_correct"].dtype == bool


def test_visited_classes_sorted_and_distinct() -> None:
    assert visited_classes(PREDICTIONS) == [[0], [1, 2], [0, 2], [0, 1, 2], [1]]


def test_instance_table_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError):
        instance_table(PREDICTIONS, LABELS[:4])
    with pytest.raises(ValueError):
        instance_table(PREDICTIONS[0], LABELS)


def test_flows_all_classes() -> None:
    assert flows(PREDICTIONS, np.array([0, 1, 2]), None) == [
        Flow(0, 0, 1, 0, 1),
        Flow(0, 0, 1, 1, 1),
        Flow(0, 1, 1, 1, 1),
        Flow(0, 1, 1, 2, 1),
        Flow(0, 2, 1, 2, 1),
        Flow(1, 0, 2, 0, 1),
        Flow(1, 1, 2, 1, 1),
        Flow(1, 1, 2, 2, 1),
        Flow(1, 2, 2, 0, 1),
        Flow(1, 2, 2, 2, 1),
    ]


def test_flows_merge_other_classes_and_skip_epochs() -> None:
    # first and last epoch only, class 0 kept: [0,o,o,0,o] -> [0,o,0,o,o]
    result = flows(PREDICTIONS, np.array([0, 2]), classes=[0])
    assert result == [
        Flow(0, 0, 1, 0, 1),
        Flow(0, 0, 1, OTHER, 1),
        Flow(0, OTHER, 1, 0, 1),
        Flow(0, OTHER, 1, OTHER, 2),
    ]
    assert column_counts(PREDICTIONS, np.array([0, 2]), classes=[0]) == [
        {0: 2, OTHER: 3},
        {0: 2, OTHER: 3},
    ]


CC, CW, WC, WW = OUTCOMES


def test_flows_split_by_outcome_against_the_labels() -> None:
    # read down the columns of PREDICTIONS against LABELS: instance 1 is corrected
    # (1 -> 2, true 2), instance 2 becomes wrong (2 -> 0, true 2), instance 4 never right
    assert flows(PREDICTIONS, np.array([0, 1, 2]), None, LABELS) == [
        Flow(0, 0, 1, 0, 1, CC),
        Flow(0, 0, 1, 1, 1, WW),
        Flow(0, 1, 1, 1, 1, WW),
        Flow(0, 1, 1, 2, 1, WC),
        Flow(0, 2, 1, 2, 1, CC),
        Flow(1, 0, 2, 0, 1, CC),
        Flow(1, 1, 2, 1, 1, WW),
        Flow(1, 1, 2, 2, 1, WC),
        Flow(1, 2, 2, 0, 1, CW),
        Flow(1, 2, 2, 2, 1, CC),
    ]
    # merged into "other", instances 1 and 4 share a node pair but not an outcome: two bands
    assert flows(PREDICTIONS, np.array([0, 2]), [0], LABELS) == [
        Flow(0, 0, 1, 0, 1, CC),
        Flow(0, 0, 1, OTHER, 1, WC),
        Flow(0, OTHER, 1, 0, 1, CW),
        Flow(0, OTHER, 1, OTHER, 1, WC),
        Flow(0, OTHER, 1, OTHER, 1, WW),
    ]
    with pytest.raises(ValueError, match="labels"):
        flows(PREDICTIONS, np.array([0, 2]), None, LABELS[:3])


def test_flow_counts_sum_to_instances_per_column() -> None:
    rng = np.random.default_rng(0)
    table = rng.integers(0, 6, size=(9, 40))
    rows = select_epochs(np.arange(1, 10), 4)
    result = flows(table, rows, classes=[1, 3])
    for column in range(len(rows) - 1):
        leaving = [f for f in result if f.from_column == column]
        assert sum(f.count for f in leaving) == 40
        assert all(f.to_column == column + 1 for f in leaving)
        assert {f.from_class for f in leaving} <= {1, 3, OTHER}
    # what arrives in a column is that column's node sizes
    counts = column_counts(table, rows, classes=[1, 3])
    arriving: dict[int, int] = {}
    for f in result:
        if f.to_column == 1:
            arriving[f.to_class] = arriving.get(f.to_class, 0) + f.count
    assert arriving == counts[1]
    assert list(counts[1]) == sorted(counts[1], key=lambda c: (c == OTHER, c))


def test_select_epochs() -> None:
    epochs = np.arange(1, 13)
    np.testing.assert_array_equal(select_epochs(epochs, 4), [0, 4, 7, 11])
    np.testing.assert_array_equal(select_epochs(epochs, 6), [0, 2, 4, 7, 9, 11])
    np.testing.assert_array_equal(select_epochs(epochs, 2), [0, 11])
    np.testing.assert_array_equal(select_epochs(np.arange(1, 4), 5), [0, 1, 2])
    for count in range(2, 13):
        rows = select_epochs(epochs, count)
        assert len(rows) == count
        assert rows[0] == 0
        assert rows[-1] == 11
        assert (np.diff(rows) > 0).all()
    with pytest.raises(ValueError):
        select_epochs(epochs, 1)


def test_most_unstable_order() -> None:
    table = instance_table(PREDICTIONS, LABELS)
    # changes 2 first; instances 1 and 2 tie on changes and on 1/3 wrong: lower index first
    np.testing.assert_array_equal(most_unstable(table, 5), [3, 1, 2, 4, 0])
    np.testing.assert_array_equal(most_unstable(table, 2), [3, 1])
    assert len(most_unstable(table, 10)) == 5


def test_sankey_figure_nodes_and_bands(tmp_path) -> None:
    rows = np.array([0, 1, 2])
    fig = plot_sankey(PREDICTIONS, LABELS, np.array([1, 2, 3]), rows, NAMES)
    ax = fig.axes[0]
    nodes = {p.get_gid(): p.get_height() for p in ax.patches if str(p.get_gid()).startswith("n")}
    bands = [p for p in ax.patches if str(p.get_gid()).startswith("flow")]
    assert nodes == {
        "node 0 0": 2,
        "node 0 1": 2,
        "node 0 2": 1,
        "node 1 0": 1,
        "node 1 1": 2,
        "node 1 2": 2,
        "node 2 0": 2,
        "node 2 1": 1,
        "node 2 2": 2,
    }
    assert len(bands) == 10
    # bands are coloured by outcome, not by class: the two bands leaving "bird" in
    # column 1 (bird -> bird right, bird -> cat wrong) differ, and match the legend
    colour = {p.get_gid(): to_hex(p.get_facecolor()) for p in bands}
    assert colour[f"flow 1 2 2 {CC}"] == OUTCOME_COLOURS[CC]
    assert colour[f"flow 1 2 0 {CW}"] == OUTCOME_COLOURS[CW]
    assert colour[f"flow 0 1 2 {WC}"] == OUTCOME_COLOURS[WC]
    assert colour[f"flow 0 1 1 {WW}"] == OUTCOME_COLOURS[WW]
    assert len(set(OUTCOME_COLOURS.values())) == 4
    legends = [t.get_text() for legend in (ax.get_legend(), *ax.artists) for t in legend.texts]
    assert set(OUTCOMES) <= set(legends)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    assert ax.get_xlabel() == "epoch"
    assert "cat (2)" in [t.get_text() for t in ax.texts]
    path = save_figure(fig, tmp_path / "sankey.png")
    assert path.stat().st_size > 2000


def test_sankey_figure_with_other(tmp_path) -> None:
    fig = plot_sankey(
        PREDICTIONS, LABELS, np.array([1, 2, 3]), np.array([0, 2]), NAMES, classes=[0]
    )
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.texts}
    assert {"cat (2)", "other (3)"} <= labels
    grey = [p for p in ax.patches if p.get_gid() == f"node 0 {OTHER}"]
    assert len(grey) == 1
    assert grey[0].get_facecolor()[0] == pytest.approx(grey[0].get_facecolor()[1])
    assert save_figure(fig, tmp_path / "other.png").stat().st_size > 2000


def test_sankey_html_is_self_contained() -> None:
    html = sankey_html(PREDICTIONS, LABELS, np.array([1, 2, 3]), np.array([0, 1, 2]), NAMES)
    assert html.lstrip().lower().startswith("<html") or "<!doctype html" in html.lower()
    assert "Sankey" in html
    assert "plotly" in html
    assert len(html) > 1_000_000  # plotly.js inlined: opens offline
    for name in NAMES:
        assert f"epoch 1: {name}" in html
    # a rerun writes the same bytes (plotly's default div id is a random UUID)
    assert html == sankey_html(PREDICTIONS, LABELS, np.array([1, 2, 3]), np.array([0, 1, 2]), NAMES)
    merged = sankey_html(
        PREDICTIONS, LABELS, np.array([1, 2, 3]), np.array([0, 2]), NAMES, classes=[0]
    )
    assert "epoch 3: other" in merged
    assert "epoch 3: cat" in merged
    assert "epoch 3: dog" not in merged


def test_sankey_page_bands_by_outcome_and_integer_hover() -> None:
    figure = sankey_figure(PREDICTIONS, LABELS, np.array([1, 2, 3]), np.array([0, 1, 2]), NAMES)
    sankey = figure.to_plotly_json()["data"][0]
    link, node = sankey["link"], sankey["node"]
    labels = node["label"]
    bands = {
        (labels[s], labels[t]): (c, o)
        for s, t, c, o in zip(
            link["source"], link["target"], link["color"], link["customdata"], strict=True
        )
    }
    right, wrong = (
        bands[("epoch 2: bird", "epoch 3: bird")],
        bands[("epoch 2: bird", "epoch 3: cat")],
    )
    assert (right[1], wrong[1]) == (CC, CW)
    assert right[0] != wrong[0]  # the old page gave both the colour of "bird"
    assert bands[("epoch 1: dog", "epoch 2: bird")][1] == WC
    assert len({colour for colour, _ in bands.values()}) == 4
    # counts print as integers ("1 instances", never "1.0")
    assert "%{value:d}" in link["hovertemplate"]
    assert "%{value:d}" in node["hovertemplate"]
    assert all(isinstance(v, int) for v in link["value"])
    caption = figure.layout.annotations[0].text
    for name in OUTCOMES:
        assert name in caption


def test_trajectories_figure(tmp_path) -> None:
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(3), size=(3, 5)).astype(np.float16)
    table = instance_table(PREDICTIONS, LABELS)
    rows = most_unstable(table, 3)
    fig = plot_trajectories(
        probabilities,
        PREDICTIONS,
        LABELS,
        np.array([1, 2, 3]),
        rows,
        NAMES,
        np.array([10, 11, 12, 13, 14]),
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    first = visible[0]  # instance 3: 0 -> 1 -> 2, true bird, ends bird
    assert first.get_title().startswith("test #13: true bird")
    assert "2 class changes" in first.get_title()
    assert [t.get_text() for t in first.texts] == ["cat", "dog", "bird"]
    np.testing.assert_allclose(first.lines[0].get_ydata(), probabilities[:, 3, 2].astype(float))
    second = visible[2]  # instance 2: ends on cat, true bird: two probability lines
    assert "test #12" in second.get_title()
    assert len(second.lines) == 2
    np.testing.assert_allclose(second.lines[1].get_ydata(), probabilities[:, 2, 0].astype(float))
    assert save_figure(fig, tmp_path / "trajectories.png").stat().st_size > 2000
