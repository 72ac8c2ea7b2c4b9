"""dvc.yaml lists exactly the code each stage runs: a module a stage runs but does not
list leaves its outputs stale after an edit, a listed one it never runs reruns it for
nothing. The analysis lives in `dvc_deps` (static imports plus the dynamic-import
conventions described there)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from dvc_deps import check_stage, check_stages, format_problems, load_stages

ROOT = Path(__file__).resolve().parents[1]

# (stage-name glob, dep) -> why the dep is listed although the stage imports nothing in
# it. Keep it short: every entry is a dep the import analysis cannot see.
ALLOWED_EXTRA: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def stages() -> list[tuple[str, str, list[str]]]:
    return load_stages(ROOT)


def test_every_stage_lists_exactly_the_code_it_runs(stages):
    problems = check_stages(stages, ROOT, ALLOWED_EXTRA)
    if problems:
        pytest.fail(
            "code deps in dvc.yaml do not match what the stages run "
            "(the rules: tests/dvc_deps.py):\n" + format_problems(problems),
            pytrace=False,
        )


def test_check_reports_a_removed_and_an_added_dep(stages):
    """On the real dvc.yaml: dropping one code dep of one stage is reported as exactly
    that missing dep, and listing another stage's script as exactly that extra dep,
    whatever else is wrong with the stage right now."""
    name, cmd, deps = next(s for s in stages if s[0] == "data")
    removed, added = "stages/runner.py", "stages/evaluate.py"
    assert removed in deps and added not in deps
    before = check_stage(ROOT, name, cmd, deps)

    broken = check_stage(ROOT, name, cmd, [d for d in deps if d != removed])
    assert set(broken.missing) - set(before.missing) == {removed}
    assert broken.extra == before.extra
    assert f"missing dep (add): {removed}" in format_problems([broken])

    padded = check_stage(ROOT, name, cmd, [*deps, added])
    assert padded.missing == before.missing
    assert set(padded.extra) - set(before.extra) == {added}


def _write(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))


def test_rules_on_a_small_project(tmp_path):
    _write(
        tmp_path,
        {
            "pipeline/__init__.py": '"""docstring only: not counted."""\n__version__ = "1"\n',
            "pipeline/figures/__init__.py": "import matplotlib\n\nmatplotlib.use('Agg')\n",
            "pipeline/figures/plot.py": "",
            "pipeline/io.py": "",
            "pipeline/lazy.py": "",
            "pipeline/typing_only.py": "",
            "pipeline/explain/__init__.py": "",
            "pipeline/explain/registry.py": "import importlib\n",
            "pipeline/explain/methods/__init__.py": "",
            "pipeline/explain/methods/a.py": "from pipeline.explain import helper\n",
            "pipeline/explain/methods/b.py": "",
            "pipeline/explain/helper.py": "",
            "pipeline/params.py": "from pipeline.explain.registry import importlib\n",
            "stages/__init__.py": "",
            "stages/one.py": """
                from typing import TYPE_CHECKING

                from pipeline import io
                from pipeline.figures.plot import draw
                from pipeline.params import load

                if TYPE_CHECKING:
                    from pipeline import typing_only

                def main():
                    from pipeline.lazy import thing
            """,
            "stages/every.py": 'RUNS_MODULES = ("pipeline/explain/methods",)\n',
        },
    )
    one = check_stage(
        tmp_path,
        "one@a",
        "python -m stages.one --method a",
        [
            "data/in.npz",  # not code: ignored
            "stages/one.py",
            "pipeline/io.py",
            "pipeline/figures",
            "pipeline/params.py",
            "pipeline/explain/registry.py",
            "pipeline/explain/methods/a.py",
            "pipeline/typing_only.py",  # imported only for type checkers
            "pipeline/explain/methods/b.py",  # another method's module
        ],
    )
    assert one.errors == []
    # lazy.py (imported inside a function), helper.py (through the --method module)
    assert one.missing == ["pipeline/explain/helper.py", "pipeline/lazy.py"]
    # registry.py: params.py imports it only to validate (VALIDATION_ONLY), not followed
    assert one.extra == [
        "pipeline/explain/methods/b.py",
        "pipeline/explain/registry.py",
        "pipeline/typing_only.py",
    ]
    assert one.chains["pipeline/explain/helper.py"] == [
        "pipeline/explain/methods/a.py",
        "pipeline/explain/helper.py",
    ]
    allowed = check_stage(
        tmp_path,
        "one@a",
        "python -m stages.one --method a",
        ["stages/one.py", "pipeline", "pipeline/typing_only.py"],
        allowed_extra=["pipeline/typing_only.py"],
    )
    # the allow-list excuses an extra dep; the folder dep covers everything run, but also
    # modules that are not: an edit to those would rerun the stage, so it is too wide
    assert not allowed.missing and not allowed.extra
    assert allowed.wide == {
        "pipeline": [
            "pipeline/explain/methods/b.py",
            "pipeline/explain/registry.py",
            "pipeline/typing_only.py",
        ]
    }

    every = check_stage(
        tmp_path,
        "every",
        "python -m stages.every",
        ["stages/every.py", "pipeline/explain/methods", "pipeline/explain/helper.py"],
    )
    assert not every
    assert check_stage(tmp_path, "every", "python -m stages.every", ["stages"]).missing == [
        "pipeline/explain/helper.py",
        "pipeline/explain/methods/a.py",
        "pipeline/explain/methods/b.py",
    ]

    assert check_stage(tmp_path, "x", "python -m stages.one --part nope", []).errors == [
        "`--part nope` names pipeline/explain/parts/nope.py, which does not exist"
    ]
    assert check_stage(tmp_path, "x", "bash run.sh", []).errors


def test_drawing_code_counts_for_figure_stages_only_and_entries_share_deps(tmp_path):
    """A class's `draw` imports run in figure stages only; a dep one member of a foreach
    entry needs is not extra for the others, but each member must cover its own code."""
    _write(
        tmp_path,
        {
            "pipeline/figures/plot.py": "",
            "pipeline/blur.py": "",
            "pipeline/explain/methods/a.py": """
                class A:
                    def attribute(self):
                        from pipeline import blur

                    def draw(self):
                        from pipeline.figures import plot
            """,
            "pipeline/explain/methods/b.py": "",
            "stages/compute.py": "",
            "stages/draw_figures.py": "",
        },
    )
    compute = ["stages/compute.py", "pipeline/explain/methods/a.py", "pipeline/blur.py"]
    assert not check_stage(tmp_path, "c@a", "python -m stages.compute --method a", compute)
    figures = ["stages/draw_figures.py", "pipeline/explain/methods/a.py", "pipeline/blur.py"]
    drawn = check_stage(tmp_path, "f@a", "python -m stages.draw_figures --method a", figures)
    assert drawn.missing == ["pipeline/figures/plot.py"]
    entry = [
        ("c@a", "python -m stages.compute --method a", compute),
        (
            "c@b",
            "python -m stages.compute --method b",
            ["stages/compute.py", "pipeline/explain/methods/b.py", "pipeline/blur.py"],
        ),
    ]
    assert check_stages(entry, tmp_path) == []  # blur.py: a member of the entry runs it
    alone = [entry[1]]
    (problems,) = check_stages(alone, tmp_path)
    assert problems.extra == ["pipeline/blur.py"]


def test_item_of_the_stage_name_fills_runs_modules(tmp_path):
    """A foreach member's command is constant (no params value reaches a shell); the
    stage file names the module its item runs as `{item}`, the part of the stage name
    after `@`, and that module's own RUNS_MODULES count too."""
    _write(
        tmp_path,
        {
            "pipeline/explain/helper.py": "",
            "pipeline/extra.py": "",
            "pipeline/explain/methods/a.py": (
                "from pipeline.explain import helper\n\nRUNS_MODULES = ('pipeline/extra.py',)\n"
            ),
            "pipeline/explain/methods/b.py": "",
            "stages/each.py": 'RUNS_MODULES = ("pipeline/explain/methods/{item}.py",)\n',
        },
    )
    cmd = "python -m stages.each"
    a = ["stages/each.py", "pipeline/explain/methods/a.py", "pipeline/explain/helper.py"]
    b = ["stages/each.py", "pipeline/explain/methods/b.py"]
    assert check_stage(tmp_path, "each@a", cmd, a).missing == ["pipeline/extra.py"]
    assert not check_stage(tmp_path, "each@a", cmd, [*a, "pipeline/extra.py"])
    assert not check_stage(tmp_path, "each@b", cmd, b)
    # each member needs its own module; another member's is extra unless the entry runs it
    wrong = check_stage(tmp_path, "each@b", cmd, ["stages/each.py", "pipeline/extra.py"])
    assert wrong.missing == ["pipeline/explain/methods/b.py"]
    assert wrong.extra == ["pipeline/extra.py"]
    entry = [("each@a", cmd, [*a, "pipeline/extra.py"]), ("each@b", cmd, b)]
    assert check_stages(entry, tmp_path) == []
    assert check_stage(tmp_path, "each@nope", cmd, b).errors == [
        "RUNS_MODULES in stages/each.py names pipeline/explain/methods/nope.py, which is absent"
    ]
    (error,) = check_stage(tmp_path, "each", cmd, b).errors
    assert "{item}" in error and "not of this stage" in error
