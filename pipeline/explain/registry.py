"""The one registry of explanations: every `AttributionMethod` subclass in a module of
`pipeline.explain.methods` and every `InsidePart` subclass in `pipeline.explain.parts`.

A method's module is named after it (`methods/lime.py` holds `name = "lime"`), so DVC can
depend on exactly the file a stage runs. Modules are imported on first use; they load
no torch at import time, so params validation and figure stages stay light.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

from pipeline.errors import ParamsError
from pipeline.explain.base import AttributionMethod, Explanation, InsidePart

METHODS_PACKAGE = "pipeline.explain.methods"
PARTS_PACKAGE = "pipeline.explain.parts"


def _classes(package: str, base: type[Explanation]) -> dict[str, type[Explanation]]:
    found: dict[str, type[Explanation]] = {}
    pkg: ModuleType = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        own = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, base)
            and obj.__module__ == module.__name__
            and "name" in vars(obj)
        ]
        if len(own) != 1 or own[0].name != info.name:
            raise TypeError(
                f"{module.__name__} must define exactly one {base.__name__} subclass whose "
                f"name is {info.name!r} (found {[c.name for c in own]})"
            )
        found[info.name] = own[0]
    return found


@cache
def attribution_methods() -> dict[str, type[AttributionMethod]]:
    """name -> class, in the order of their module names."""
    return _classes(METHODS_PACKAGE, AttributionMethod)  # type: ignore[return-value]


@cache
def inside_parts() -> dict[str, type[InsidePart]]:
    """name -> class, in the order of their module names."""
    return _classes(PARTS_PACKAGE, InsidePart)  # type: ignore[return-value]


def method_class(name: str) -> type[AttributionMethod]:
    methods = attribution_methods()
    if name not in methods:
        raise ParamsError(f"unknown attribution method {name!r}; use one of {', '.join(methods)}")
    return methods[name]


def part_class(name: str) -> type[InsidePart]:
    parts = inside_parts()
    if name not in parts:
        raise ParamsError(f"unknown inside-the-model part {name!r}; use one of {', '.join(parts)}")
    return parts[name]


def module_file(name: str) -> str:
    """The source file of a method or part, relative to the repository root."""
    package = METHODS_PACKAGE if name in attribution_methods() else PARTS_PACKAGE
    return f"{package.replace('.', '/')}/{name}.py"
