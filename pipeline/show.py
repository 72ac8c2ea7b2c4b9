"""`make show`: the runs side by side in a table that fits a terminal.

`dvc exp show` prints one column per metric and param (over a thousand here), so even a
wide terminal shows only "…". This reads its `--json` output on stdin and prints the
headline numbers only, one row per number and one column per run (the workspace, each
baseline commit, each experiment), wrapping the runs into blocks so that no line is
wider than `--width`. Pure formatting: no DVC import, so it is tested on a recorded
sample.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

CLASSIFIER = "metrics/classifier.json"
EVALUATE = "metrics/evaluate.json"
PARAMS = "params.yaml"
CELL = 11  # "0.214/0.965"
LABEL = 40  # param keys are long; six runs still fit in 120 columns
GAP = "  "
MISSING = "—"

Run = tuple[str, dict[str, Any]]


def _name(entry: dict[str, Any]) -> str:
    """The experiment or branch name; else the short commit; "workspace" stays whole."""
    rev = entry["rev"]
    return entry.get("name") or (rev[:7] if len(rev) == 40 else rev)


def runs(exp_show: list[dict[str, Any]]) -> list[Run]:
    """(name, data) of every row `dvc exp show` has: baselines and their experiments."""
    out: list[Run] = []
    for base in exp_show:
        out.append((_name(base), base.get("data") or {}))
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                out.append((_name(rev), rev.get("data") or {}))
    return out


def _metric(data: dict[str, Any], path: str) -> dict[str, Any]:
    """One metrics file's values; empty when the run has none (failed, queued, missing)."""
    return ((data.get("metrics") or {}).get(path) or {}).get("data") or {}


def _flat(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested params as dotted keys, the way `dvc exp run -S` names them."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), tree


def params(data: dict[str, Any]) -> dict[str, Any]:
    """The run's params.yaml values by dotted key."""
    return dict(_flat(((data.get("params") or {}).get(PARAMS) or {}).get("data") or {}))


def _num(value: Any) -> str:
    """Three decimals: the AUC intervals are wider than that."""
    return MISSING if value is None else f"{value:.3f}"


def _count(methods: dict[str, dict[str, Any]], key: str) -> str:
    """How many methods hold a boolean verdict, of those that have one."""
    verdicts = [m[key] for m in methods.values() if key in m]
    return f"{sum(map(bool, verdicts))}/{len(verdicts)}" if verdicts else MISSING


def _method_cell(method: str) -> Callable[[dict[str, Any]], str]:
    """deletion/insertion AUC of one method (deletion: lower is better)."""

    def cell(data: dict[str, Any]) -> str:
        m = (_metric(data, EVALUATE).get("methods") or {}).get(method) or {}
        if "deletion_auc" not in m and "insertion_auc" not in m:
            return MISSING
        return f"{_num(m.get('deletion_auc'))}/{_num(m.get('insertion_auc'))}"

    return cell


def _verdict_cell(key: str) -> Callable[[dict[str, Any]], str]:
    def cell(data: dict[str, Any]) -> str:
        return _count(_metric(data, EVALUATE).get("methods") or {}, key)

    return cell


def _accuracy(data: dict[str, Any]) -> str:
    return _num((_metric(data, CLASSIFIER).get("test") or {}).get("accuracy"))


def headline_rows(table: list[Run]) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    """(label, cell function) of each headline number, methods in the order DVC gives."""
    methods: list[str] = []
    for _, data in table:
        for method in _metric(data, EVALUATE).get("methods") or {}:
            if method not in methods:
                methods.append(method)
    return [
        ("test accuracy", _accuracy),
        ("beats random: deletion", _verdict_cell("beats_random_deletion")),
        ("beats random: insertion", _verdict_cell("beats_random_insertion")),
        ("sanity check passed", _verdict_cell("sanity_passed")),
        ("sanity passed, foreground", _verdict_cell("sanity_passed_foreground")),
        *((f"del/ins {m}", _method_cell(m)) for m in methods),
    ]


def differing_params(table: list[Run]) -> list[tuple[str, list[str]]]:
    """(key, value per run) of the params that differ between the runs that have params
    (a failed or queued run may have none)."""
    values = [params(data) for _, data in table]
    keys = list(dict.fromkeys(k for v in values for k in v))
    rows = []
    for key in keys:
        cells = [json.dumps(v[key]) if key in v else MISSING for v in values]
        if len({c for c, v in zip(cells, values, strict=True) if v}) > 1:  # runs with params
            rows.append((key, cells))
    return rows


def _fit(text: str, width: int) -> str:
    """Cut to `width` characters, marking the cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(exp_show: list[dict[str, Any]], width: int = 120) -> str:
    """The headline table; every line at most `width` characters."""
    table = runs(exp_show)
    if not table:
        return "no runs\n"
    rows = [(f"param {k}", cells) for k, cells in differing_params(table)]
    rows += [(label, [cell(data) for _, data in table]) for label, cell in headline_rows(table)]
    label_w = min(LABEL, max(len(label) for label, _ in rows))
    per_block = max(1, (width - label_w) // (len(GAP) + CELL))
    lines: list[str] = []
    for start in range(0, len(table), per_block):
        block = slice(start, start + per_block)
        names = [_fit(name, CELL).rjust(CELL) for name, _ in table[block]]
        lines.append(" " * label_w + GAP + GAP.join(names))
        for label, cells in rows:
            values = [_fit(c, CELL).rjust(CELL) for c in cells[block]]
            lines.append(_fit(label, label_w).ljust(label_w) + GAP + GAP.join(values))
        lines.append("")
    lines.append("del/ins AUC: deletion (lower is better) / insertion (higher is better)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Read `dvc exp show --json` on stdin, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=120, help="widest line, in characters")
    args = parser.parse_args(argv)
    sys.stdout.write(format_table(json.load(sys.stdin), args.width))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
