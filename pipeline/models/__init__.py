"""Models: classifier architectures and their Lightning modules."""

from pipeline.models.archs import build_classifier, layer_names, resolve_layer

__all__ = ["build_classifier", "layer_names", "resolve_layer"]
