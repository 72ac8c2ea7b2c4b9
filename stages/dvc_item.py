"""Which member of a foreach/matrix entry of dvc.yaml this process runs as.

No params value ever appears in a dvc.yaml command: DVC hands a command to the shell
before any stage can validate anything, so a layer named `conv; touch x` in a command
would run as code. Every member of an entry (`cladec@dense-0.5`, `explain@lime`) runs
the same constant command, and the stage finds which member it is from `DVC_STAGE`,
which DVC sets to the stage's name for every command it runs, matched against the
validated params. A name that matches nothing stops the stage with one line.

By hand (`python -m stages.refae --layer conv`) the argument names the member and wins
over `DVC_STAGE`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pipeline.errors import PipelineError

DVC_STAGE = "DVC_STAGE"  # set by DVC for every stage command (dvc/stage/run.py)

T = TypeVar("T")


def dvc_names(value: object) -> list[str]:
    """The names DVC gives a value in a foreach/matrix stage name (`str()`, booleans
    lower-case); an integer-valued float also as the integer, as YAML's `1` reads in
    DVC while the schema holds 1.0."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, float) and value.is_integer():
        return [str(value), str(int(value))]
    return [str(value)]


def dvc_item(entry: str) -> str | None:
    """`<item>` of the stage `<entry>@<item>` DVC runs this process as; None when DVC
    does not run it. DVC running another stage is an error: the member is unknown."""
    stage = os.environ.get(DVC_STAGE)
    if not stage:
        return None
    prefix, at, item = stage.partition("@")
    # DVC addresses a stage `<dvc.yaml relative to the cwd>:<name>` outside the root
    if not at or prefix.rpartition(":")[2] != entry:
        raise PipelineError(
            f"{DVC_STAGE} is {stage!r}, not a stage {entry}@<item>: name the item with "
            "the stage's argument"
        )
    return item


def dvc_member(entry: str, members: Mapping[str, T], source: str, argument: str) -> tuple[str, T]:
    """(name, value) of the member of `entry` that DVC runs, out of `members` (DVC
    name -> validated value, built from `source` in params.yaml); `argument` is what
    names it by hand."""
    item = dvc_item(entry)
    if item is None:
        raise PipelineError(
            f"no {argument} given: pass {argument} or run the stage through DVC "
            f"(`dvc repro {entry}@<item>`)"
        )
    if item not in members:
        defined = ", ".join(f"{entry}@{name}" for name in members) or "none"
        raise PipelineError(
            f"stage {f'{entry}@{item}'!r} is not one that {source} in params.yaml defines "
            f"({defined}); run `dvc repro` after editing params.yaml"
        )
    return item, members[item]
