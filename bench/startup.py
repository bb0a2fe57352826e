"""Start-up cost of `orch --help` and `orch lint` as whole processes. Usage: python bench/startup.py [--runs N]"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        orch = [sys.executable, "-m", "statemachine"]
        rows = []
        for label, argv in (
            ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
            ("orch --help", orch + ["--help"]),
            ("orch lint (bundled policy)", orch + ["lint"]),
        ):
            timed(argv, cwd)  # warm the file cache
            samples = [timed(argv, cwd) for _ in range(args.runs)]
            rows.append((label, statistics.median(samples), min(samples), max(samples)))
    print(f"start-up, {args.runs} runs each (seconds)")
    print(f"{'command':32} {'median':>8} {'min':>8} {'max':>8}")
    for label, med, lo, hi in rows:
        print(f"{label:32} {med:8.3f} {lo:8.3f} {hi:8.3f}")


if __name__ == "__main__":
    main()
