"""Figures: one module per kind of figure. All use the Agg backend (no display needed)."""

import matplotlib

matplotlib.use("Agg")
