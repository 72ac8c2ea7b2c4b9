"""DVC stage `params`, the first of the pipeline: validate the whole params.yaml before
any other stage runs.

DVC removes a stage's outputs before it starts the stage's command, so a bad value that
the stage itself finds is found too late for them. Every other stage comes after this
one (the root stage `data` depends on its output), so `dvc repro` stops here, having
touched nothing, when a value is bad. Its output has the same bytes every time: stages
that depend on it still rerun only for the params they read."""

from __future__ import annotations

from pipeline.io import write_text
from pipeline.params import check_runtime, load_params
from stages.paths import PARAMS_VALID
from stages.runner import run_stage

# The schema of the `explain:` and `inside:` groups is the params classes of every
# method and part, which the registry imports by name: they are this stage's code
# (for the other stages validation is not a code dependency, see tests/dvc_deps.py).
RUNS_MODULES = (
    "pipeline/explain/registry.py",
    "pipeline/explain/methods",
    "pipeline/explain/parts",
)

VALID = "params.yaml passed validation (stages/params.py); these bytes never change\n"


def main() -> None:
    # the schema, then what only this machine can tell (accelerator, precision)
    check_runtime(load_params())
    write_text(PARAMS_VALID, VALID)


if __name__ == "__main__":
    run_stage("params", main)
