"""The report's interactive plots, rebuilt from the stored arrays with the same figure
functions the stand-alone pages use, as <div>s without plotly.js: the page inlines
plotly.js once for all of them (each stand-alone page carries its own 5 MB copy)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

PlotlyArrays = Mapping[str, np.ndarray]


def plotly_js() -> str:
    """plotly.js itself, for the page's <head> (offline: no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _div(figure: object, div_id: str) -> str:
    """The figure as a <div> and its script; still until the reader presses Play
    (plotly starts animated figures on load by default)."""
    import plotly.io as pio

    return pio.to_html(
        figure,
        include_plotlyjs=False,
        full_html=False,
        validate=False,
        div_id=div_id,
        auto_play=False,
    )


def grand_tour_divs(tour: PlotlyArrays) -> list[str]:
    """Per layer of explanations/grand_tour/tour.npz: the rotating tour under the final
    model, then the fixed projection across the training epochs (as the part's pages)."""
    from pipeline.figures.grand_tour import stored_tours

    return [
        _div(figure, f"tour-{slug}-{kind}")
        for slug, figures in stored_tours(tour).items()
        for kind, figure in figures.items()
    ]


def instanceflow_div(flow: PlotlyArrays) -> str:
    """The InstanceFlow Sankey of explanations/instanceflow/flow.npz."""
    from pipeline.figures.instanceflow import sankey_figure

    figure = sankey_figure(
        flow["predictions"],
        flow["labels"],
        flow["epochs"],
        flow["epoch_rows"],
        [str(n) for n in flow["class_names"]],
        flow["classes"].tolist() or None,
    )
    return _div(figure, "instanceflow-sankey")
