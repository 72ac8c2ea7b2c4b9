"""Which code each DVC stage runs, against the code deps dvc.yaml lists for it.

A code file a stage runs but does not list means `dvc repro` skips the stage after that
file changes (stale results); a listed file it never runs means needless reruns. Both
drift silently as modules move, so `tests/test_dvc_deps.py` checks every stage of the
expanded pipeline with the pure `check_stages` here.

What a stage runs is found statically, with `ast`, never by importing:

- its command must be `python -m stages.<module> [args]`;
- the import closure of `stages/<module>.py` over the project's own packages
  (`PACKAGES`): every `import` / `from ... import` anywhere in a file (inside functions
  too, as those run when called), except under `if TYPE_CHECKING:`, which never runs;
- dynamic imports, by convention: `--method <m>` runs `pipeline/explain/methods/<m>.py`,
  `--part <p>` runs `pipeline/explain/parts/<p>.py` (the registry imports them with
  importlib), and a module-level `RUNS_MODULES = ("folder or file.py", ...)` in the
  stage file or in a module added this way adds every module under those paths, each
  with its own closure; `{a.b}` in an entry is the value of key `a.b` in params.yaml
  (`across_epochs` runs the method its params name), and `{item}` is the item of the
  stage's name `<entry>@<item>`: a foreach member's command is constant (no params value
  ever reaches a shell) and the stage finds its item in DVC_STAGE, so
  `RUNS_MODULES = ("pipeline/explain/methods/{item}.py",)` makes `explain@lime` run
  `pipeline/explain/methods/lime.py`.

Two rules follow the pipeline's structure:

- Drawing runs only in figure stages. An explanation class owns its drawing (`draw`),
  and the figure code it imports there runs only when a figure stage calls it; so
  imports inside a function named `draw` count only for stages whose module name ends
  in `figures`. Without this rule every compute stage would depend on figure code and
  restyling a figure would rerun computations.
- A folder dep must not cover modules the stage (or its entry) does not run: an edit to
  any of them would rerun the stage for nothing; list the files instead.
- A foreach/matrix entry lists one set of deps for all its members (`${item}` aside):
  a dep is missing when a member runs a module none of its deps cover, and extra only
  when no member of the entry runs anything in it (IG's blur baseline needs
  `pipeline/explain/perturb.py`; the entry's other members list it too).

Imports done with importlib are invisible to this analysis on purpose. In particular
`pipeline/params.py` validates params.yaml by loading every method and part through the
registry; that is not a code dependency of every stage: a method's params values are DVC
params (tracked per stage through `params:`), and a test keeps the classes' defaults
equal to params.yaml. For the same reason params.py's import of the registry itself
(`VALIDATION_ONLY`) is not followed: the registry and the explanation base classes shape
the validation of the `explain:` and `inside:` groups, not what a training stage
computes; the stages that run explanations import the registry themselves.

`__init__.py` files are followed for their imports, but one whose body is only a
docstring and dunder assignments (`__version__`, `__all__`) is not counted as a module
the stage depends on: editing such a file changes no result, and counting it would put
`pipeline/__init__.py` and `stages/__init__.py` into every stage. An `__init__.py` with
real code (a constant, `matplotlib.use(...)`) counts like any module.
"""

from __future__ import annotations

import ast
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

PACKAGES = ("pipeline", "stages")  # the project's own import roots
CODE_DIRS = PACKAGES  # a dep under one of these (or any .py file) is a code dep
STAGE_PACKAGE = "stages"
METHODS_DIR = "pipeline/explain/methods"  # --method <m> runs METHODS_DIR/<m>.py
PARTS_DIR = "pipeline/explain/parts"  # --part <p> runs PARTS_DIR/<p>.py
DYNAMIC_FLAGS = {"--method": METHODS_DIR, "--part": PARTS_DIR}
RUNS_MODULES = "RUNS_MODULES"
# (importer, imported) edges used only to validate params.yaml (see the docstring)
VALIDATION_ONLY = {("pipeline/params.py", "pipeline/explain/registry.py")}

Stage = tuple[str, str, Sequence[str]]  # (name, cmd, deps as written in dvc.yaml)


@dataclass
class StageProblems:
    """What is wrong with one stage's code deps; empty lists when nothing is."""

    stage: str
    missing: list[str] = field(default_factory=list)  # run, but covered by no dep
    extra: list[str] = field(default_factory=list)  # listed code deps covering nothing run
    # folder deps that also cover modules no member runs: an edit there reruns the stage
    wide: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # what could not be analysed
    chains: dict[str, list[str]] = field(default_factory=dict)  # missing -> how it is run

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.errors or self.wide)


# ------------------------------------------------------------------------ imports


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


DRAW = "draw"  # the drawing method of explanation classes: runs in figure stages only


def _runtime_nodes(tree: ast.AST, drawing: bool = True) -> Iterable[ast.AST]:
    """Every node except the bodies of `if TYPE_CHECKING:` (their `else:` does run) and,
    unless `drawing`, the bodies of `draw` functions."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not drawing and isinstance(node, ast.FunctionDef) and node.name == DRAW:
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend([node.test, *node.orelse])
        else:
            stack.extend(ast.iter_child_nodes(node))


def module_file(root: Path, dotted: str) -> str | None:
    """`a.b.c` -> `a/b/c.py` or `a/b/c/__init__.py` (relative to root), None if neither."""
    base = PurePosixPath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return str(candidate)
    return None


def _module_name(path: str) -> str:
    parts = PurePosixPath(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(dotted: str) -> list[str]:
    """Importing `a.b.c` runs `a`, `a.b` and `a.b.c`."""
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(root: Path, path: str, drawing: bool = True) -> set[str]:
    """Files (relative to root) of the project modules that importing `path` runs
    directly, parent packages included (`draw` bodies only when `drawing`)."""
    tree = ast.parse((root / path).read_text(), filename=path)
    package = _module_name(path)
    if not path.endswith("__init__.py"):
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(tree, drawing):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y inside package a.b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            # `from a.b import c` runs a.b.c too when c is a module, not a name
            names.update(
                f"{source}.{alias.name}"
                for alias in node.names
                if alias.name != "*" and module_file(root, f"{source}.{alias.name}")
            )
    files = set()
    for name in names:
        if name.split(".")[0] not in PACKAGES:
            continue
        for dotted in _with_parents(name):
            found = module_file(root, dotted)
            if found is not None:
                files.add(found)
    return files


def import_graph(root: Path, start: Iterable[str], drawing: bool = True) -> dict[str, str | None]:
    """Every project module file that running the `start` files imports, transitively,
    mapped to the file that imports it first (breadth-first, so the chain back to a
    start file, which maps to None, is a shortest one)."""
    parents: dict[str, str | None] = dict.fromkeys(start)
    todo = list(parents)
    while todo:
        path = todo.pop(0)
        for imported in sorted(imported_modules(root, path, drawing)):
            if (path, imported) in VALIDATION_ONLY:
                continue
            if imported not in parents:
                parents[imported] = path
                todo.append(imported)
    return parents


def import_closure(root: Path, start: Iterable[str], drawing: bool = True) -> set[str]:
    """The files of `import_graph`: what running the start files runs."""
    return set(import_graph(root, start, drawing))


def import_chain(parents: Mapping[str, str | None], path: str) -> list[str]:
    """start file -> ... -> path, to show a developer why a module counts."""
    chain = [path]
    while (parent := parents.get(chain[-1])) is not None:
        chain.append(parent)
    return chain[::-1]


def is_trivial_init(root: Path, path: str) -> bool:
    """An `__init__.py` holding only a docstring and dunder assignments."""
    if PurePosixPath(path).name != "__init__.py":
        return False
    for node in ast.parse((root / path).read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and t.id.startswith("__") for t in targets):
                continue
        return False
    return True


# ------------------------------------------------------------------------- stages


def runs_modules_constant(root: Path, path: str) -> list[str]:
    """The string literals of a module-level `RUNS_MODULES = (...)`, read without
    importing the stage."""
    for node in ast.parse((root / path).read_text()).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == RUNS_MODULES for t in targets):
            value = ast.literal_eval(node.value)  # type: ignore[arg-type]
            return [value] if isinstance(value, str) else list(value)
    return []


ITEM = "item"  # `{item}` in a RUNS_MODULES entry: the item of the stage `<entry>@<item>`


def _with_params(root: Path, template: str, item: str | None = None) -> str:
    """`{a.b}` -> the value of key a.b in root's params.yaml (KeyError when absent);
    `{item}` -> `item` (ValueError when the stage has none)."""
    import re

    import yaml

    if "{" not in template:
        return template
    params = None

    def value(match: re.Match) -> str:
        nonlocal params
        if match.group(1) == ITEM:
            if item is None:
                raise ValueError("{item} names the item of a stage <entry>@<item>")
            return item
        if params is None:
            params = yaml.safe_load((root / "params.yaml").read_text())
        node = params
        for key in match.group(1).split("."):
            node = node[key]
        return str(node)

    return re.sub(r"\{([\w.]+)\}", value, template)


def _modules_under(root: Path, path: str) -> list[str]:
    full = root / path
    if full.is_file():
        return [path]
    return sorted(
        p.relative_to(root).as_posix()
        for p in full.rglob("*.py")
        if "__pycache__" not in p.relative_to(root).parts
    )


def stage_entry_points(
    root: Path, cmd: str, item: str | None = None
) -> tuple[list[str], list[str]]:
    """(files the command starts from, errors): the stage module, plus the modules its
    arguments or its RUNS_MODULES name (`item`: of the stage name `<entry>@<item>`)."""
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        return [], [f"cannot parse cmd {cmd!r}: {exc}"]
    if (
        len(argv) < 3
        or PurePosixPath(argv[0]).name not in ("python", "python3")
        or argv[1] != "-m"
        or not argv[2].startswith(f"{STAGE_PACKAGE}.")
    ):
        return [], [f"cmd is not `python -m {STAGE_PACKAGE}.<module> [args]`: {cmd!r}"]
    module, args = argv[2], argv[3:]
    stage_file = module_file(root, module)
    if stage_file is None:
        return [], [f"{module} has no file"]
    files, errors = [stage_file], []
    if stage_file.endswith("__init__.py"):  # `python -m pkg` runs pkg/__main__.py too
        stage_file = stage_file.replace("__init__.py", "__main__.py")
        if not (root / stage_file).is_file():
            return [], [f"{module} is a package without __main__.py"]
        files.append(stage_file)
    for i, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        if flag not in DYNAMIC_FLAGS:
            continue
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        dynamic = f"{DYNAMIC_FLAGS[flag]}/{value}.py"
        if (root / dynamic).is_file():
            files.append(dynamic)
        else:
            errors.append(f"`{flag} {value}` names {dynamic}, which does not exist")
    # a method or part runs what it declares when it computes, not when a figure stage
    # draws it: there only the stage file declares
    figure_stage = _module_name(stage_file).endswith("figures")
    declarers = files[:1] if figure_stage else list(files)
    read: set[str] = set()
    while declarers:
        declarer = declarers.pop(0)
        if declarer in read:
            continue
        read.add(declarer)
        for entry in runs_modules_constant(root, declarer):
            try:
                declared = _with_params(root, entry, item).rstrip("/")
            except KeyError as exc:
                errors.append(f"{RUNS_MODULES} entry {entry!r}: no key {exc} in params.yaml")
                continue
            except ValueError as exc:
                errors.append(f"{RUNS_MODULES} entry {entry!r}: {exc}, not of this stage")
                continue
            if not (root / declared).exists():
                errors.append(f"{RUNS_MODULES} in {declarer} names {declared}, which is absent")
                continue
            added = [f for f in _modules_under(root, declared) if f not in files]
            files.extend(added)
            if not figure_stage:
                declarers.extend(added)
    # running or importing a module runs the __init__.py of every package it is in
    inits = [
        init
        for f in files
        for dotted in _with_parents(_module_name(f))[:-1]
        if (init := module_file(root, dotted)) is not None
    ]
    return list(dict.fromkeys(files + inits)), errors


def _norm(dep: str) -> str:
    return PurePosixPath(dep.rstrip("/")).as_posix().removeprefix("./")


def covers(dep: str, path: str) -> bool:
    """A dep covers a file it equals or a folder it is inside."""
    dep = _norm(dep)
    return path == dep or path.startswith(dep + "/")


def is_code_dep(dep: str) -> bool:
    """A .py file, or anything under the code folders; data, models, params and the
    like are not checked."""
    dep = _norm(dep)
    return dep.endswith(".py") or dep.split("/")[0] in CODE_DIRS


def stage_item(name: str) -> str | None:
    """`<item>` of a foreach/matrix member's name `<entry>@<item>`, else None."""
    _, at, item = name.partition("@")
    return item if at else None


def stage_code(
    root: Path, cmd: str, item: str | None = None
) -> tuple[dict[str, str | None], list[str]]:
    """(import graph of the module files the stage runs that count as code deps, errors);
    see `import_graph`."""
    start, errors = stage_entry_points(root, cmd, item)
    drawing = bool(start) and _module_name(start[0]).endswith("figures")
    try:
        graph = import_graph(root, start, drawing)
    except (OSError, SyntaxError) as exc:
        return {}, [*errors, f"cannot read the imports: {exc}"]
    return {f: p for f, p in graph.items() if not is_trivial_init(root, f)}, errors


def check_stage(
    root: Path,
    name: str,
    cmd: str,
    deps: Sequence[str],
    allowed_extra: Iterable[str] = (),
    entry_runs: Iterable[str] = (),
) -> StageProblems:
    """Missing and extra code deps of one stage; `entry_runs`: what the other members of
    its foreach/matrix entry run (a dep one of them needs is not extra here)."""
    graph, errors = stage_code(root, cmd, stage_item(name))
    problems = StageProblems(name, errors=errors)
    if not graph:
        return problems
    problems.missing = sorted(f for f in graph if not any(covers(d, f) for d in deps))
    # dropping trivial __init__.py files breaks no chain: they import nothing
    problems.chains = {m: import_chain(graph, m) for m in problems.missing}
    allowed = {_norm(a) for a in allowed_extra}
    run = set(graph) | set(entry_runs)
    problems.extra = sorted(
        _norm(d)
        for d in deps
        if is_code_dep(d) and _norm(d) not in allowed and not any(covers(d, f) for f in run)
    )
    for dep in deps:
        dep = _norm(dep)
        if not is_code_dep(dep) or dep in allowed or dep in problems.extra:
            continue
        if (root / dep).is_dir():
            unrun = [
                f
                for f in _modules_under(root, dep)
                if f not in run and not is_trivial_init(root, f)
            ]
            if unrun:
                problems.wide[dep] = unrun
    return problems


def check_stages(
    stages: Iterable[Stage], root: Path, allowed_extra: Mapping[tuple[str, str], str] | None = None
) -> list[StageProblems]:
    """The problems of every stage that has any. `allowed_extra` maps (stage-name glob,
    dep) to the reason that dep may be listed although the stage imports nothing in it."""
    stages = list(stages)
    entries: dict[str, set[str]] = {}
    for name, cmd, _ in stages:
        if "@" in name:
            runs = stage_code(root, cmd, stage_item(name))[0]
            entries.setdefault(name.partition("@")[0], set()).update(runs)
    found = []
    for name, cmd, deps in stages:
        allowed = [dep for (pattern, dep) in allowed_extra or {} if fnmatchcase(name, pattern)]
        entry = entries.get(name.partition("@")[0], set()) if "@" in name else set()
        problems = check_stage(root, name, cmd, deps, allowed, entry)
        if problems:
            found.append(problems)
    return found


def format_problems(problems: Sequence[StageProblems]) -> str:
    """One block per dvc.yaml entry, ready to act on: the expanded stages of one
    foreach/matrix entry that have the same problems are listed together."""
    groups: dict[tuple, list[StageProblems]] = {}
    for p in problems:
        key = (
            p.stage.partition("@")[0],
            tuple(p.errors),
            tuple(p.missing),
            tuple(p.extra),
            tuple(p.wide),
        )
        groups.setdefault(key, []).append(p)
    lines = []
    for members in groups.values():
        p = members[0]
        lines.append(", ".join(m.stage for m in members) + ":")
        lines += [f"  error: {e}" for e in p.errors]
        lines += [
            f"  missing dep (add): {m}    (runs via {' > '.join(p.chains.get(m, [m]))})"
            for m in p.missing
        ]
        lines += [f"  extra dep (remove): {e}" for e in p.extra]
        lines += [
            f"  folder dep too wide (list its files): {d} also covers {', '.join(unrun)}"
            for d, unrun in p.wide.items()
        ]
    return "\n".join(lines)


def load_stages(root: Path) -> list[tuple[str, str, list[str]]]:
    """Every stage of root's dvc.yaml after foreach/matrix expansion, as DVC itself
    expands it: (name, cmd, deps relative to root). Params files are left out."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = []
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            if not stage.cmd:  # a .dvc file's stage, not a pipeline stage
                continue
            deps = [
                PurePosixPath(*Path(os.path.relpath(dep.fs_path, repo.root_dir)).parts).as_posix()
                for dep in stage.deps
                if not isinstance(dep, ParamsDependency)
            ]
            cmd = stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
            dvcfile = os.path.relpath(stage.dvcfile.path, repo.root_dir)
            name = stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"
            stages.append((name, cmd, deps))
    return stages
