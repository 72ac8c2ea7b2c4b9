"""The live explorer (`make app`): pick or upload an image, pick attribution methods and
a target class, and see the maps the trained classifier gives, computed on request by
the library's own explainers (`pipeline.explain.registry`) with the pipeline's params.

`logic` holds what the app does as plain functions (tested without a browser); `page`
is the Streamlit page; `python -m pipeline.explorer` loads everything, then serves the
page on 127.0.0.1 only."""
