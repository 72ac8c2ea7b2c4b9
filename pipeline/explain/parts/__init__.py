"""Inside-the-model parts: one module per part, named after it, holding one `InsidePart`
subclass (see `pipeline.explain.base`). The registry finds them."""
