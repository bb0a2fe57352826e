"""Start-up cost of `orch --help` and `orch lint` as whole processes. Usage: python bench/startup.py [--runs N]

`orch lint` runs twice: as a user runs it again (the policy cache of statemachine/policy_cache.py serves the checked
policy while no file it came from changed; the first, unmeasured run fills it), and with the cache off
(ORCH_POLICY_CACHE=off: the YAML parse and the schema checks every time). See the import cost of each with
`python -X importtime -m statemachine lint`."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
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
        # as an installed orch runs: from compiled bytecode (the warm-up run writes what is missing)
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "ORCH_POLICY_CACHE")}
        cache = {**base, "XDG_CACHE_HOME": str(cwd / "cache")}
        no_cache = {**base, "ORCH_POLICY_CACHE": "off"}
        for label, argv, env in (
            ("python -c pass (floor)", [sys.executable, "-c", "pass"], base),
            ("orch --help", orch + ["--help"], base),
            ("orch lint (bundled policy)", orch + ["lint"], cache),
            ("orch lint, policy cache off", orch + ["lint"], no_cache),
        ):
            timed(argv, cwd, env)  # warm the file cache (and the policy cache)
            samples = [timed(argv, cwd, env) for _ in range(args.runs)]
            rows.append((label, statistics.median(samples), min(samples), max(samples)))
    print(f"start-up, {args.runs} runs each (seconds)")
    print(f"{'command':32} {'median':>8} {'min':>8} {'max':>8}")
    for label, med, lo, hi in rows:
        print(f"{label:32} {med:8.3f} {lo:8.3f} {hi:8.3f}")


if __name__ == "__main__":
    main()
