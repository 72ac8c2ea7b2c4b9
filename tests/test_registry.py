"""The one registry of explanations: every class is found from its module alone, carries
its metadata and params, takes no catch-all arguments, is computed and drawn through
the same convention, and loads no torch until it computes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from known_models import SIZE, RegionModel, region_images

from pipeline.explain.attribute_selection import attribute_selection
from pipeline.explain.base import (
    AttributionMethod,
    InsidePart,
    MethodParams,
    Shown,
)
from pipeline.explain.registry import attribution_methods, inside_parts, module_file
from pipeline.selection import Selection

REPO = Path(__file__).resolve().parents[1]
METHODS = attribution_methods()
PARTS = inside_parts()


def test_the_registry_lists_every_method_module_and_nothing_else() -> None:
    modules = sorted(p.stem for p in (REPO / "pipeline/explain/methods").glob("[!_]*.py"))
    assert list(METHODS) == modules
    for name in METHODS:
        assert (REPO / module_file(name)).is_file()


@pytest.mark.parametrize("name", list(METHODS) + list(PARTS))
def test_each_class_carries_its_metadata_and_a_strict_params_model(name) -> None:
    cls = METHODS.get(name) or PARTS[name]
    assert cls.name == name and cls.title
    assert issubclass(cls.Params, MethodParams)
    assert cls.Params.model_config["extra"] == "forbid"
    cls.Params()  # every field has a default, written once in the class
    for score in cls.scores:
        assert score.direction in ("higher", "lower")
    if issubclass(cls, AttributionMethod):
        assert isinstance(cls.signed, bool)
        if cls.needs_background:
            assert "background" in cls.Params.model_fields
        if cls.needs_spatial_layer:
            assert "layer" in cls.Params.model_fields
    else:
        assert issubclass(cls, InsidePart)


@pytest.mark.parametrize("name", list(METHODS))
def test_no_catch_all_arguments(name) -> None:
    """A renamed key must fail, not vanish into **kwargs."""
    for fn in (METHODS[name].attribute, METHODS[name].__init__, METHODS[name].draw):
        kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, fn


def test_validating_params_loads_no_torch() -> None:
    """Figure stages validate params.yaml and read the registry without torch (seconds
    per stage on this CPU): every method and part module imports it lazily."""
    code = (
        "import sys; from pipeline.params import load_params; load_params(); "
        "from pipeline.explain.registry import attribution_methods, inside_parts; "
        "attribution_methods(); inside_parts(); "
        "heavy = [m for m in ('torch', 'captum', 'shap', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def _cheap(cls: type[AttributionMethod]) -> MethodParams:
    """Defaults, with RegionModel's spatial layer and smaller sample counts."""
    overrides: dict[str, object] = {}
    fields = cls.Params.model_fields
    if "layer" in fields:
        overrides["layer"] = "relu"
    for key, value in (("samples", 40), ("masks", 200), ("steps", 8)):
        if key in fields:
            overrides[key] = value
    return cls.Params(**overrides)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_computed_stored_and_drawn_the_same_way(tmp_path, name) -> None:
    """One convention for all: attribute -> stored arrays -> figures from them alone."""
    from pipeline.explain.stored import StoredAttributions

    cls = METHODS[name]
    images, _ = region_images(4, seed=5)
    background = region_images(10, seed=9, distractor=False)[0] * 0.3
    method = cls(seed=0, background=background if cls.needs_background else None)
    predicted, labels = np.ones(4, int), np.array([1, 0, 1, 1])
    stored, per_image = attribute_selection(
        method, RegionModel(), images, predicted, labels, _cheap(cls)
    )
    assert stored.predicted.shape[0] == 4 and stored.predicted.shape[-2:] == (SIZE, SIZE)
    assert stored.true.shape[0] == 1 and stored.true_rows.tolist() == [1]
    assert np.isfinite(stored.predicted).all()
    assert set(per_image) == {s.key for s in cls.scores}
    stored.save(tmp_path / "a.npz")
    loaded = StoredAttributions.load(tmp_path / "a.npz")
    selection = Selection(
        indices=np.arange(4),
        labels=labels,
        predicted=predicted,
        probabilities=np.tile([0.2, 0.8], (4, 1)),
        misclassified=predicted != labels,
        pairs=np.zeros((0, 3), int),
        class_names=("zero", "one"),
    )
    uint8 = (images.numpy() * 255).astype(np.uint8)
    figures = cls().draw(loaded, Shown(uint8, selection), _cheap(cls))
    assert set(figures) == {f"{name}_correct", f"{name}_misclassified"}
    import matplotlib.pyplot as plt

    for fig in figures.values():
        assert fig.get_axes()
        plt.close(fig)


def test_gradients_are_on_for_gradient_methods_inside_inference_mode() -> None:
    """The explain stage may run under no_grad; gradient methods switch it back on."""
    images, _ = region_images(2)
    with torch.no_grad():
        maps = METHODS["saliency"]().attribute(
            RegionModel(), images, torch.ones(2, dtype=torch.long), METHODS["saliency"].Params()
        )
    assert np.abs(maps.maps).max() > 0


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_on_the_real_classifier(name, shape) -> None:
    """Shapes, dtype and finiteness on the classifier the pipeline trains, and no hooks
    left behind on it."""
    from pipeline.explain.attribute_selection import background_sample
    from pipeline.models.archs import build_classifier

    torch.manual_seed(0)
    model = build_classifier("small_cnn", shape, 10).eval()
    images = torch.rand(4, *shape)
    targets = torch.tensor([0, 3, 5, 9])
    cls = METHODS[name]
    quick = {"samples": 10, "masks": 200, "steps": 4}
    p = cls.Params(**{k: v for k, v in quick.items() if k in cls.Params.model_fields})
    background = None
    if cls.needs_background:
        background = background_sample((np.random.rand(8, *shape) * 255).astype(np.uint8), 8, 0)
    maps = cls(seed=0, background=background).attribute(model, images, targets, p).maps
    assert maps.shape[0] == 4 and maps.shape[1] in (1, shape[0]) and maps.shape[2:] == shape[1:]
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    if not cls.is_signed(p):
        assert maps.min() >= 0
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
