"""`make repro`: `dvc repro` with a stage counter and an end message that says where the
results are.

    python -m pipeline.repro [dvc repro args...]      # e.g. -s summary, explain@lime

DVC's output passes through unchanged; before each "Running stage 'x':" line comes one
line `stage k/N: x`. N is known before anything runs: a forced dry run (same args) gives
the plan in DVC's order, `dvc status` the stages out of date now, `dvc dag` the edges; a
planned stage also runs when a stage it depends on runs, since its inputs will then be
new. That is an upper bound: a stage whose outputs come out the same (the `params`
check always; a seeded retraining) leaves the stages after it up to date, so once it has
run and dvc.lock shows the same output hashes, or DVC skips a counted stage, N shrinks.
Without a terminal, DVC's stdout comes through a pipe; in a terminal, through a
pseudo-terminal, so the stages still see a terminal and draw their progress bars as
under a bare `dvc repro`.

Ctrl+C and SIGTERM go to dvc's process group, so the running stage gets them too and
stops cleanly (stages/runner.py); DVC on its own ignores SIGINT while a stage runs and
does not pass SIGTERM on. The exit code is dvc's (128 + signal when a signal ended it).

Not a DVC stage: it runs DVC, and is not in dvc.yaml.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from pipeline.tracking import ui_link

REPORT = Path("reports/index.html")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
PREFIX = "Running stage '"
RUNNING = re.compile(r"^Running stage '(?P<name>[^']+)':")
SKIPPED = re.compile(r"^Stage '(?P<name>[^']+)' didn't change, skipping")
# restored from DVC's run cache: outputs checked out, nothing run
RESTORED = re.compile(r"^Stage '(?P<name>[^']+)' is cached - skipping run")
# stages whose output is the same whatever they read: `params` validates params.yaml and
# writes a constant file (dvc.yaml), so its reruns rerun nothing after it
CONSTANT_OUTPUT = ("params",)
EDGE = re.compile(r'^"(?P<up>[^"]+)" -> "(?P<down>[^"]+)";')
# dvc repro options that ask questions, print help or run nothing: plain `dvc repro`
PLAIN_DVC = {"-i", "--interactive", "-h", "--help", "--dry"}


def plain(line: bytes) -> str:
    """A line of output without colour codes and carriage returns, for matching."""
    return ANSI.sub(b"", line).replace(b"\r", b"").decode("utf-8", "replace").strip()


def dry_plan(dry_output: str) -> list[tuple[str, bool]]:
    """DVC's plan from its dry run, in order: (stage, out of date now)."""
    plan: list[tuple[str, bool]] = []
    for line in dry_output.splitlines():
        if m := RUNNING.match(line.strip()):
            plan.append((m["name"], True))
        elif m := SKIPPED.match(line.strip()):
            plan.append((m["name"], False))
    return plan


def dag_edges(dot: str) -> list[tuple[str, str]]:
    """(upstream, downstream) stage pairs of `dvc dag --dot`."""
    return [(m["up"], m["down"]) for line in dot.splitlines() if (m := EDGE.match(line.strip()))]


@dataclass(frozen=True)
class Locked:
    """One stage as dvc.lock records it: its outputs' hashes and its deps' paths."""

    outs: dict[str, str]
    deps: tuple[str, ...]


def read_lock(lock_file: Path) -> dict[str, Locked]:
    """Every stage dvc.lock records; empty when there is none yet."""
    import yaml

    try:
        stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError):
        return {}
    return {
        name: Locked(
            {o.get("path", ""): str(o.get("md5", "")) for o in entry.get("outs", [])},
            tuple(d.get("path", "") for d in entry.get("deps", [])),
        )
        for name, entry in stages.items()
    }


def _overlap(a: str, b: str) -> bool:
    """One path is the other or inside it (a folder output read file by file)."""
    return a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/")


@dataclass
class Counter:
    """Numbers the stages as DVC starts them. The total: the stages out of date now and
    those that read an output of a stage that runs; an output counts as new until its
    stage has run and dvc.lock shows the same hash (or DVC skips a counted stage), so the
    total only shrinks. Without a plan (planning failed) stages are numbered only."""

    plan: list[tuple[str, bool]] | None
    edges: list[tuple[str, str]] = field(default_factory=list)
    lock_file: Path = Path("dvc.lock")
    refine: bool = True  # False: a stage after one that runs runs too (--force-downstream)
    started: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)
    restored: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.before = read_lock(self.lock_file)
        self.same: set[str] = set()  # output paths a rerun left as they were
        for name in CONSTANT_OUTPUT:
            self.same |= set(self.before[name].outs) if name in self.before else set()
        self.written: str | None = None  # the stage whose dvc.lock entry is being written
        self.current: str | None = None  # the stage DVC works on
        self.upstream: dict[str, set[str]] = {}
        for up, down in self.edges:
            self.upstream.setdefault(down, set()).add(up)

    def _new_inputs(self, name: str, runs: list[str]) -> bool:
        """Whether a stage that runs before `name` changes something `name` reads."""
        for up in self.upstream.get(name, set()) & set(runs):
            if not self.refine or up not in self.before or name not in self.before:
                return True  # nothing recorded to compare: count it
            new = [out for out in self.before[up].outs if out not in self.same]
            if any(_overlap(out, dep) for out in new for dep in self.before[name].deps):
                return True
        return False

    def planned(self) -> list[str]:
        """The stages this repro runs, as far as is known now, in DVC's order."""
        runs: list[str] = []
        for name, out_of_date in self.plan or []:
            if name in self.started or (
                name not in self.skipped and (out_of_date or self._new_inputs(name, runs))
            ):
                runs.append(name)
        return runs

    def total(self) -> int | None:
        """Stages that run: planned or started, less those DVC restored from its cache
        (their outputs are new to the stages after them, but nothing ran)."""
        if self.plan is None:
            return None
        return len((set(self.planned()) - self.restored) | set(self.started))

    def _check_written(self) -> None:
        """The stage DVC has just recorded: which of its outputs came out the same?"""
        if self.written is not None:
            now = read_lock(self.lock_file).get(self.written)
            was = self.before.get(self.written)
            if now is not None and was is not None:
                self.same |= {out for out, md5 in now.outs.items() if was.outs.get(out) == md5}
            self.written = None

    def line(self, output: bytes) -> bytes:
        """What to print before this line of DVC's output: the counter, or nothing."""
        text = plain(output)
        self._check_written()
        if text.startswith("Updating lock file") and self.current:
            self.written = self.current  # DVC says so before it writes: check later
            return b""
        if m := SKIPPED.match(text):
            self.skipped.add(m["name"])
            return b""
        if m := RESTORED.match(text):
            self.restored.add(m["name"])
            self.current = m["name"]
            return b""
        m = RUNNING.match(text)
        if m is None:
            return b""
        self.current = m["name"]
        self.started.append(m["name"])
        total = self.total()
        count = str(len(self.started)) + ("" if total is None else f"/{total}")
        return f"stage {count}: {m['name']}\n".encode()


def make_counter(args: Sequence[str]) -> Counter:
    """The counter for `dvc repro args`: the plan in order from a forced dry run (a plain
    one stops at the first stage whose inputs do not exist yet), which of its stages are
    out of date now from `dvc status`, the edges from `dvc dag`. Without a plan when one
    of them fails (the real run then says why)."""

    def dvc(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["dvc", *command], capture_output=True, text=True, check=False)

    order, status, dag = (
        dvc("repro", "--dry", "--force", *args),
        dvc("status", "--json"),
        dvc("dag", "--dot"),
    )
    if order.returncode or status.returncode or dag.returncode:
        return Counter(None)
    try:
        stale = set(json.loads(status.stdout or "{}"))
    except ValueError:
        return Counter(None)
    forced = bool({"-f", "--force"} & set(args))
    plan = [(name, forced or name in stale) for name, _ in dry_plan(order.stdout)]
    if "--force-downstream" in args:  # then every stage after a stale one runs anyway
        return Counter(plan, dag_edges(dag.stdout), refine=False)
    return Counter(plan, dag_edges(dag.stdout))


class Relay:
    """Copies dvc's output to ours as it comes, putting the counter line before each
    "Running stage" line. A partial line is written at once (progress bars redraw with
    carriage returns, never ending a line) unless it may still become such a line."""

    def __init__(self, counter: Counter, out: BinaryIO) -> None:
        self.counter = counter
        self.out = out
        self.pending = b""  # the current line's bytes not written yet
        self.sent = b""  # and those already written

    def feed(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.out.write(self.counter.line(self.sent + line) + line + b"\n")
            self.sent = b""
        start = plain(self.sent + self.pending)
        if self.pending and not (PREFIX.startswith(start) or start.startswith(PREFIX)):
            self.out.write(self.pending)
            self.sent = (self.sent + self.pending)[-4096:]  # a bar redrawn for an hour
            self.pending = b""
        self.out.flush()

    def close(self) -> None:
        if self.pending or self.sent:
            self.out.write(self.counter.line(self.sent + self.pending) + self.pending)
            self.pending = self.sent = b""
        self.out.flush()


def _open_terminal() -> tuple[int, int]:
    """A pseudo-terminal as wide as ours, translating nothing: its bytes reach our
    terminal exactly as dvc wrote them."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # no "\n" -> "\r\n": our own terminal does that once
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    try:
        size = fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    except OSError:
        pass
    return master, slave


def run_dvc(args: Sequence[str], counter: Counter) -> int:
    """Run `dvc repro args`, relaying its stdout through `Relay`; dvc's exit code."""
    terminal = sys.stdout.isatty()
    master, slave = _open_terminal() if terminal else (-1, -1)
    process = subprocess.Popen(
        ["dvc", "repro", *args],
        stdout=slave if terminal else subprocess.PIPE,
        stdin=subprocess.DEVNULL,  # not the terminal's foreground group: it must not read
        process_group=0,  # its own group: a signal for it reaches the running stage too
    )
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has just ended
            os.killpg(process.pid, signum)

    for signum in previous:
        signal.signal(signum, forward)
    relay = Relay(counter, sys.stdout.buffer)
    try:
        if terminal:
            os.close(slave)
            _copy_fd(master, relay)
        else:
            assert process.stdout is not None
            while data := process.stdout.read1(65536):
                relay.feed(data)
        relay.close()
        code = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if terminal:
            os.close(master)
    return 128 - code if code < 0 else code


def _copy_fd(fd: int, relay: Relay) -> None:
    """Relay everything read from fd until every writer has closed it (EIO on Linux)."""
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        relay.feed(data)


def end_message(root: Path, counter: Counter, seconds: float) -> str:
    """Where the results are: the report when there is one, and the MLflow UI."""
    lines = [f"repro: {_stages(len(counter.started))} ran in {_duration(seconds)}"]
    report = root / REPORT
    if report.is_file():
        lines.append(f"report: {report.resolve()}")
    lines.append(f"MLflow: run `make ui`, then open {ui_link(root)}")
    return "\n".join(lines)


def _stages(count: int) -> str:
    return f"{count} stage{'s' * (count != 1)}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def main(argv: Sequence[str] | None = None) -> int:
    """Plan, run, say where the results are; returns dvc's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if PLAIN_DVC & set(args):  # it asks on the terminal, or runs nothing
        return subprocess.run(["dvc", "repro", *args], check=False).returncode
    start = time.monotonic()
    counter = make_counter(args)
    if counter.plan is not None:
        print(f"repro: {_stages(counter.total() or 0)} to run", flush=True)
    code = run_dvc(args, counter)
    if code == 0:
        print("\n" + end_message(Path.cwd(), counter, time.monotonic() - start), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
