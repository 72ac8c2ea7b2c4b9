"""Explainable-AI experiment pipeline: a pure library that the DVC stages in `stages/` call."""

__version__ = "0.1.0"
