"""Run every benchmark under bench/, each as its own process, in order, and print each one's figures.

Usage (from the repository root): python bench/all.py [--quick] [--only NAME ...]
  --quick   small sizes (fewer runs, issues, files) where a script takes them: a smoke run of every figure, not
            the figures of docs/performance.md
  --only    run only these scripts (by name, e.g. --only startup github_requests)
Exits 1 when any script failed (a request count over its budget in bench/budgets.py fails its script)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# in order: the quick ones first; each with the arguments of a quick run
ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("startup", ("--runs", "5")),
    ("github_requests", ()),
    ("idle_poll", ("--ticks", "4", "--issues", "10", "--review", "1")),
    ("idle_local", ("--quick",)),
    ("jail", ("--runs", "5")),
    ("status_scale", ("--issues", "300")),
    ("plan_overhead", ("--width", "2", "--depth", "2")),
    ("throughput", ("--issues", "16", "--seconds", "0.2", "--concurrency", "4")),
    ("overhead", ("--files", "2000", "--issues", "1")),
)
NOT_BENCHMARKS = {"all", "budgets"}


def scripts() -> list[tuple[str, tuple[str, ...]]]:
    """ORDER, then any other script under bench/ (with no quick arguments): none is left out."""
    known = {name for name, _args in ORDER}
    extra = sorted(
        p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_") and p.stem not in known | NOT_BENCHMARKS
    )
    return [*ORDER, *((name, ()) for name in extra)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes where a script takes them")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these scripts")
    args = parser.parse_args()
    chosen = [(n, a) for n, a in scripts() if args.only is None or n in args.only]
    unknown = set(args.only or ()) - {n for n, _a in scripts()}
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    summary = []
    for name, quick in chosen:
        argv = [sys.executable, str(BENCH / f"{name}.py"), *(quick if args.quick else ())]
        print(f"=== {name}: {' '.join(argv[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(argv, cwd=ROOT, env=env).returncode
        elapsed = time.perf_counter() - start
        print(f"=== {name}: exit {code}, {elapsed:.1f} s\n", flush=True)
        summary.append((name, code, elapsed))
    print("summary:")
    for name, code, elapsed in summary:
        print(f"  {name:16} {'ok' if code == 0 else f'FAILED (exit {code})':18} {elapsed:8.1f} s")
    if any(code for _n, code, _e in summary):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
