"""Grad-CAM and saliency of one 224×224 image on resnet50, with the library's classes,
timed side by side under the CPU settings that change their speed.

Each setting runs in a fresh process (the pinned numerics are read when torch loads):
one warm-up call per method, then `--repeat` timed calls; the table gives the minimum
and the median per method. Settings:

- `main`: the stages' numerics (pipeline/numerics.py: 2 OpenMP threads), main thread;
- `threads1`: the same with torch.set_num_threads(1);
- `worker`: the calls made from a second Python thread (as Streamlit runs a script);
- `denormal`: torch.set_flush_denormal(True), main thread, 2 threads;
- `passive`: OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep at a barrier, not spin).

    python benchmarks/resnet50_speed.py [--repeat 7] [--settings main threads1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("main", "threads1", "worker", "denormal", "passive")
METHODS = ("gradcam", "saliency")


def _time_calls(repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each method (after one warm-up call), in this thread."""
    import torch

    from pipeline.explain.registry import method_class
    from pipeline.models.archs import build_classifier

    torch.manual_seed(0)
    model = build_classifier("resnet50", (3, 224, 224), 1000).eval()
    image, target = torch.rand(1, 3, 224, 224), torch.tensor([207])
    times: dict[str, list[float]] = {}
    for name in METHODS:
        cls = method_class(name)
        method, p = cls(), cls.Params()
        method.attribute(model, image, target, p)  # warm-up
        times[name] = []
        for _ in range(repeat):
            started = time.perf_counter()
            method.attribute(model, image, target, p)
            times[name].append(time.perf_counter() - started)
    return times


def _child(setting: str, repeat: int) -> None:
    """One setting, in this (fresh) process; prints the times as JSON."""
    sys.path.insert(0, str(ROOT))
    if setting == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    from pipeline.numerics import pin_numerics

    pin_numerics()
    import torch

    if setting == "threads1":
        torch.set_num_threads(1)
    if setting == "denormal":
        torch.set_flush_denormal(True)
    if setting == "worker":
        result: dict[str, dict[str, list[float]]] = {}
        worker = threading.Thread(target=lambda: result.update(t=_time_calls(repeat)))
        worker.start()
        worker.join()
        times = result["t"]
    else:
        times = _time_calls(repeat)
    print(json.dumps({"threads": torch.get_num_threads(), "times": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.repeat)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'setting':<10} {'method':<9} {'min s':>7} {'median s':>9}")
    for setting in args.settings:
        out = subprocess.run(
            [sys.executable, __file__, "--child", setting, "--repeat", str(args.repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
        times = json.loads(out.stdout.strip().splitlines()[-1])["times"]
        for name in METHODS:
            t = times[name]
            print(f"{setting:<10} {name:<9} {min(t):7.3f} {statistics.median(t):9.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
