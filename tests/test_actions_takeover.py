"""Issue 14: a workflow run cancelled half-way, its runner lost, and the issue picked up by the next scheduled run.

The workflow `orch setup --actions` writes runs for real (tests/actionskit.py; see tests/test_actions_workflow.py for
what is substituted and why), against the GitHub emulator, with the real Codex CLI talking to a scripted model. The
repository's committed policy sets `tracker.claim_lease_seconds: 3` (small, for the test).

1. Job 1 (`issues: labeled`, runner folder 1) claims the issue and starts the agent, whose first model request is
   never answered (`Hang`): orch is inside the agent step, renewing its claim's lease.
2. A scheduled job on another fresh runner, while job 1 lives and renews, takes nothing over (no claim-expired).
3. Job 1 is cancelled as GitHub cancels (SIGTERM to the kit: SIGINT, SIGTERM, SIGKILL to the step, then only
   always() steps), then its runner vanishes: every process left of job 1 is SIGKILLed (`orch daemon` starts each
   `orch run` in a session of its own, which a group kill does not reach). The issue keeps agent:running and one claim.
4. Once the lease has expired, a scheduled job on a fresh runner (fresh clone, venv, no .orch/state) takes the issue
   over: takeover report, new claim, the agent run again from the base branch, one draft pull request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conftest import git
from model_server import Hang, Message, ModelServer, Shell, Step

from statemachine import claims
from tests import actionskit
from tests.actionskit import run_job
from tests.github_emulator import GitHubEmulator
from tests.workflowkit import (
    JOB_TOKEN,
    MODEL_KEY,
    OWNER,
    REPO,
    api,
    clean_env,
    edit_and_report,
    files_under,
    job_for,
    labeled_event,
    needs_runner,
    setup_repository,
)

ROOT = Path(__file__).resolve().parents[1]
LEASE = 3
SECRETS = {"GITHUB_TOKEN": JOB_TOKEN, "OPENAI_API_KEY": MODEL_KEY}
SCHEDULE = {"schedule": "*/30 * * * *"}
BOT = "github-actions[bot]"


def wait_for(what: str, ok: Callable[[], object], timeout: float, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"waiting for {what}: the job ended first (exit {proc.returncode})")
        if time.monotonic() > deadline:
            raise AssertionError(f"waiting for {what}: gave up after {timeout} s")
        time.sleep(0.1)


def journal(runner: Path) -> list[dict[str, Any]]:
    path = runner / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def processes_of(folder: Path) -> set[int]:
    """Every process of this machine that belongs to a runner folder: its cwd, executable, command line or environment
    lies under the folder, or its parent is one of them (a jailed process sees other paths, its parent does not)."""
    root = str(folder.resolve())
    me = {os.getpid(), os.getppid()}
    found: set[int] = set()
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                parents[pid] = int(f.read().rsplit(b")", 1)[1].split()[1])
            paths = [os.readlink(f"/proc/{pid}/cwd"), os.readlink(f"/proc/{pid}/exe")]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                paths += f.read().decode(errors="replace").split("\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                paths += [v.split("=", 1)[-1] for v in f.read().decode(errors="replace").split("\0")]
        except (OSError, ValueError, IndexError):
            continue  # gone, or not ours to read
        if any(under(p, root) for p in paths if p.startswith("/")):
            found.add(pid)
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found and pid not in me} - found
        found |= more
        grew = bool(more)
    return found


def vanish(folder: Path) -> list[str]:
    """The runner's machine disappears: SIGKILL every process of it, until none is left."""
    killed: list[str] = []
    for _ in range(50):
        pids = processes_of(folder)
        if not pids:
            return killed
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    what = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{pid}: {what}")
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"processes of {folder} survive SIGKILL: {sorted(processes_of(folder))}")


def comments(gh: GitHubEmulator, n: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments")
    return found


def markers(gh: GitHubEmulator, n: int) -> list[str]:
    """The claims and run reports on the issue, in order: `claim run=RUN`, `run=RUN kind=report-KIND[ by=RUN]`."""
    out = []
    for c in comments(gh, n):
        out += [f"claim run={run}" for run in claims.CLAIM_RE.findall(c["body"])]
        out += [
            f"run={run} kind=report-{re.sub(r'-[0-9]+$', '', kind)}" + (f" by={by}" if by else "")
            for run, kind, by in claims.REPORT_RE.findall(c["body"])
        ]
    return out


def labels(gh: GitHubEmulator, n: int) -> set[str]:
    return {lab["name"] for lab in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/labels")}


def daemon_events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def lease_stamp(gh: GitHubEmulator, n: int) -> str:
    [claim] = [c for c in comments(gh, n) if "<!-- orch:claim run=" in c["body"]]
    m = claims.LEASE_RE.search(claim["body"])
    assert m, claim["body"]
    return m.group(1)


def no_model_key_in(artifacts: Path) -> list[Path]:
    uploaded = files_under(artifacts)
    for p in uploaded:
        assert MODEL_KEY.encode() not in p.read_bytes(), p
        assert JOB_TOKEN.encode() not in p.read_bytes(), p
    return uploaded


class Gate:
    """Holds one step of an in-process job (actionskit's before_step) until the test opens it; fails the job when the
    test failed first or nothing opened it in time, so that no job is left waiting."""

    def __init__(self, step: str, timeout: float = 240) -> None:
        self.step, self.timeout = step, timeout
        self.event, self.failed = threading.Event(), False
        self.held_at: float | None = None

    def __call__(self, result: actionskit.StepResult) -> None:
        if result.name != self.step:
            return
        self.held_at = time.monotonic()
        if not self.event.wait(self.timeout) or self.failed:
            raise RuntimeError(f"the step {self.step!r} was never let start")

    def open(self) -> None:
        self.event.set()

    def fail(self) -> None:
        self.failed = True
        self.event.set()


DAEMON_STEP = "Run eligible issues once"


@needs_runner
def test_a_cancelled_job_whose_runner_vanished_is_taken_over_by_the_next_scheduled_job(
    tmp_path: Path, orch_wheel: Path
) -> None:
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - t0, 1)

    # The model: job 1's agent asks once and never hears back; job 2's agent edits, reports and says it is done.
    script: list[Step] = [Hang(), Shell(edit_and_report), Message("Done: add() converts its arguments.")]
    early_gate, late_gate = Gate(DAEMON_STEP), Gate(DAEMON_STEP)
    with GitHubEmulator(tmp_path / "github") as gh, ModelServer(script) as model, ThreadPoolExecutor(2) as pool:
        seed = setup_repository(tmp_path, gh, model)
        policy = seed / ".orch" / "policy.yaml"
        policy.write_text(policy.read_text().replace("tracker:\n", f"tracker:\n  claim_lease_seconds: {LEASE}\n", 1))
        git(seed, "commit", "-qam", "orch: a short claim lease")
        git(seed, "push", "-q", str(gh.bare_path(OWNER, REPO)), "main")
        n = gh.create_issue(
            OWNER, REPO, "Make add explicit", body="Convert the arguments of add() to int.", user="alice"
        )
        gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
        mark("repository ready")

        # job 1: the labeled event, on runner 1, as a process the test can cancel
        job1 = job_for(
            tmp_path,
            gh,
            orch_wheel,
            "issues",
            labeled_event(gh, n, "agent:auto"),
            name="runner-1",
            secrets=SECRETS,
            run_id=1,
        )
        runner1 = Path(job1.runner)
        runner1.mkdir(parents=True)
        spec = tmp_path / "job-1.json"
        actionskit.job_to_json(job1, spec)
        # the scheduled jobs are in process (a thread each); their daemon step waits at a gate the test opens
        early = job_for(tmp_path, gh, orch_wheel, "schedule", SCHEDULE, name="runner-early", secrets=SECRETS, run_id=2)
        job2 = job_for(tmp_path, gh, orch_wheel, "schedule", SCHEDULE, name="runner-2", secrets=SECRETS, run_id=3)
        kit = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "actionskit.py"), str(spec)],
            env=clean_env(),
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        early_job = pool.submit(run_job, early, before_step=early_gate)
        late_job: Future[actionskit.JobResult] | None = None
        try:
            # orch is inside the agent step: the agent's first request reached the model (and will never be answered)
            wait_for("job 1's agent to ask the model", lambda: len(model.responses) >= 1, 180, kit)
            mark("job 1 in the agent")
            assert [e["name"] for e in journal(runner1) if e["event"] == "step-started"][-1] == DAEMON_STEP
            assert labels(gh, n) == {"agent:auto", "agent:running"}
            [old_claim] = markers(gh, n)
            old_run = old_claim.removeprefix("claim run=")
            first_stamp = lease_stamp(gh, n)

            # a scheduled job on another runner while job 1 lives: job 1 renews its lease, nothing is taken over
            wait_for("the early scheduled job to reach its daemon step", lambda: early_gate.held_at is not None, 180)
            early_gate.open()
            early_result = early_job.result(timeout=180)
            mark("early scheduled job done")
            early_daemon = early_result.step(DAEMON_STEP)
            assert early_result.status == "success" and early_daemon.exit_code == 0, early_daemon.output[-3000:]
            events = daemon_events(early_daemon.output)
            assert [e["event"] for e in events][0] == "started" and events[-1] == {
                **events[-1],
                "event": "stopped",
                "runs_started": 0,
            }, events
            assert not [e for e in events if e["event"] in ("claim-expired", "run-started", "poll-failed")], events
            assert kit.poll() is None, "job 1 still runs"
            assert markers(gh, n) == [old_claim] and len(model.responses) == 1
            # job 1 keeps renewing (every quarter lease, stamps of whole seconds): the stamp moves within a lease,
            # however quickly the scheduled job was done
            wait_for("job 1 to renew its lease", lambda: lease_stamp(gh, n) > first_stamp, 2 * LEASE, kit)

            # cancel job 1 as GitHub does; the next scheduled job starts meanwhile on a new machine (its daemon step
            # waits until runner 1 is gone and the lease has expired)
            assert not Path(job2.runner).exists()
            kit.send_signal(signal.SIGTERM)
            late_job = pool.submit(run_job, job2, before_step=late_gate)
            out, err = kit.communicate(timeout=60)
            mark("job 1 cancelled")
        except BaseException:
            early_gate.fail()
            late_gate.fail()
            raise
        finally:
            if kit.poll() is None:
                os.kill(kit.pid, signal.SIGKILL)
                kit.communicate(timeout=30)
            killed = vanish(runner1)  # runner 1's machine is lost
        try:
            print(f"job 1: killed what was left of it: {killed}")
            assert kit.returncode == 1, (out, err)
            result1 = json.loads((runner1 / "result.json").read_text())
            outcomes1 = {s["name"]: s["outcome"] for s in result1["steps"]}
            assert result1["status"] == "cancelled" and outcomes1[DAEMON_STEP] == "cancelled", outcomes1
            assert outcomes1["Keep the evidence"] == "success", outcomes1
            assert processes_of(runner1) == set()
            # what job 1 left on GitHub: the issue still running under its one claim, no pull request, no report
            assert labels(gh, n) == {"agent:auto", "agent:running"}
            assert markers(gh, n) == [old_claim]
            assert api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all") == []

            # job 2's daemon step starts once the lease has expired (stamps have whole seconds: one more for that)
            stamp = lease_stamp(gh, n)
            renewed = claims.parse_time(stamp)
            assert renewed is not None
            time.sleep(max(0.0, renewed + 1 + LEASE + 0.5 - time.time()))
            assert lease_stamp(gh, n) == stamp, "nobody renews the lease of the lost run"
            mark("lease expired")
            late_gate.open()
        except BaseException:
            late_gate.fail()
            raise
        assert late_job is not None
        result2 = late_job.result(timeout=240)
        mark("job 2 done")
        daemon = result2.step(DAEMON_STEP)
        report = "\n".join(
            f"--- {s.name}: {s.outcome} ({s.exit_code}, {s.seconds:.1f} s)\n{s.output[-3000:]}" for s in result2.steps
        )
        assert result2.status == "success" and daemon.exit_code == 0, report
        events = daemon_events(daemon.output)
        expired = [e for e in events if e["event"] == "claim-expired"]
        assert [(e["issue"], e["run_id"]) for e in expired] == [(n, old_run)], events
        finished = [e for e in events if e["event"] == "run-finished"]
        assert [(e["issue"], e["outcome"]) for e in finished] == [(n, "review")], report

        # the end state: taken over, delivered once
        assert labels(gh, n) == {"agent:auto", "agent:review"}
        kinds = markers(gh, n)
        assert len(kinds) == 4, [c["body"] for c in comments(gh, n)]
        new_run = kinds[2].removeprefix("claim run=")
        assert new_run != old_run
        assert kinds == [
            f"claim run={old_run}",
            f"run={old_run} kind=report-abandoned by={new_run}",
            f"claim run={new_run}",
            f"run={new_run} kind=report-review",
        ], kinds
        assert {c["user"]["login"] for c in comments(gh, n)} == {BOT}
        pulls = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")
        assert len(pulls) == 1, pulls
        pr = pulls[0]
        assert pr["draft"] is True and pr["user"]["login"] == BOT and new_run in pr["body"]
        assert pr["head"]["ref"].startswith(f"orch/{n}-") and f"Closes #{n}" in pr["body"]
        assert (
            git(gh.bare_path(OWNER, REPO), "show", f"{pr['head']['sha']}:app.py")
            == "def add(a, b):\n    return int(a) + int(b)\n"
        )
        # the model heard job 1's agent once, job 2's agent twice, and nothing else; the key went to the model only
        assert model.errors == [] and len(model.responses) == 3
        assert {r.headers.get("authorization") for r in model.responses} == {f"Bearer {MODEL_KEY}"}
        assert "Make add explicit" in model.responses[1].prompt
        for entry in gh.log:
            assert MODEL_KEY.encode() not in entry.request_body, (entry.method, entry.path)
        assert gh.violations == []
        # the model key is in no artifact either job uploaded; job 1's evidence holds its agent's log
        uploaded1 = no_model_key_in(runner1 / "artifacts")
        uploaded2 = no_model_key_in(result2.artifacts)
        no_model_key_in(early_result.artifacts)
        assert any(p.name == "agent.log" for p in uploaded1), uploaded1
        assert any(p.name == "report.json" for p in uploaded2), uploaded2
    mark("total")
    print("timings (s since the test started):", timings)
