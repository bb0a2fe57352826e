"""What the agent jail costs at start-up: a check (`/bin/sh -c true`), a command agent (with its workspace lock and its
own git directory) and a networked agent (egress proxy and relay), each jailed and unjailed (`sandbox: none`).
Usage: python bench/jail.py [--runs N]"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from statemachine.adapters.agent_git import make_private_gitdir
from statemachine.adapters.jail import Jail, Settings, Spec, probe, workspace_lock


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@b",
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if not probe().ok:
        raise SystemExit(f"bubblewrap cannot run here: {probe().reason}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        repo.mkdir()
        sh(repo, "init", "-q", "-b", "main")
        for i in range(200):
            (repo / f"f{i}.txt").write_text(f"{i}\n")
        sh(repo, "add", "-A")
        sh(repo, "commit", "-qm", "init")
        base = sh(repo, "rev-parse", "HEAD")
        ws = repo / ".orch" / "worktrees" / "ws"
        sh(repo, "worktree", "add", "-q", "--detach", str(ws), base)
        evidence = root / "evidence"
        evidence.mkdir()
        log = root / "log"

        def check(jail: Jail) -> None:
            jail.run(["/bin/sh", "-c", "true"], Spec(workdir=ws), {}, log, 30)

        def agent(jail: Jail) -> None:
            spec = Spec(workdir=ws, writable=(evidence,), lock=workspace_lock(repo / ".orch", ws))
            if jail.enabled:
                shutil.rmtree(evidence / "git", ignore_errors=True)
                spec.gitdir = make_private_gitdir(ws, evidence / "git", base, "orch/1", repo / ".git" / "objects")
            jail.run(["/bin/sh", "-c", "true"], spec, {}, log, 30)

        def networked(jail: Jail) -> None:
            jail.run(
                ["/bin/sh", "-c", "true"], Spec(workdir=ws, hosts=("api.openai.com",), loopback=(8080,)), {}, log, 30
            )

        rows = []
        for label, fn in (
            ("check", check),
            ("command agent (lock, own git dir)", agent),
            ("networked agent (proxy, relay)", networked),
        ):
            cost = {}
            for mode in ("none", "bubblewrap"):
                jail = Jail(Settings(mode=mode), repo)
                fn(jail)  # warm the file cache
                samples = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    fn(jail)
                    samples.append(time.perf_counter() - start)
                cost[mode] = statistics.median(samples)
            rows.append((label, cost["none"], cost["bubblewrap"]))
    print(f"jail start-up, median of {args.runs} runs (milliseconds); {probe().version}")
    print(f"{'run':36} {'unjailed':>9} {'jailed':>9} {'jail cost':>10} {'ratio':>6}")
    for label, bare, jailed in rows:
        print(f"{label:36} {bare * 1000:9.1f} {jailed * 1000:9.1f} {(jailed - bare) * 1000:10.1f} {jailed / bare:6.2f}")


if __name__ == "__main__":
    main()
