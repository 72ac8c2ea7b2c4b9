"""Models: classifier architectures (specs.py as data, archs.py as torch modules),
their Lightning modules and the generative networks."""
