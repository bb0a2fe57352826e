"""The daemon: polls the tracker, starts eligible issues as `orch run` child processes (same lifecycle, no weaker
path), up to K at once with non-overlapping ownership, reconciles them each tick and shuts down resumably."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from statemachine import ledger, polling, scheduling
from statemachine.daemon_children import (
    RunProcess,
    live_row,
    read_result,
    start_run,
    stop_warm_server,
    terminate,
    wait_any,
)
from statemachine.errors import EXIT_BLOCKED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STUCK, BusyError, OrchError
from statemachine.planning import standalone_refusal
from statemachine.runtime import Runtime, run_argv


@dataclass
class Child:
    issue: int
    title: str
    owns: tuple[str, ...]
    proc: RunProcess
    started: float
    out_path: Path
    resumed: bool = False
    terminated: str | None = None


@dataclass
class Options:
    concurrency: int = 1
    interval: float = 30.0
    once: bool = False
    max_runs: int | None = None
    shutdown_deadline: float = 60.0
    policy: Path | None = None
    first: int | None = None  # served before the others when eligible (a workflow job's own issue)
    poll_cursor: Path | None = None  # a file carrying the poll's cursor between runners (polling.py, Poller.carry)
    live: bool = True  # keep the live rows (running, budget) current: a table or the HTTP state shows them


@dataclass
class DaemonState:
    """What the live view and the HTTP endpoint show; plain data."""

    started_at: float = field(default_factory=time.time)
    running: list[dict[str, Any]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    stopping: bool = False
    ticks: int = 0
    runs_started: int = 0
    last_poll: float | None = None
    last_error: str | None = None
    budget: dict[str, Any] | None = None  # today's usage and what the daily limits leave (ledger.today_summary)


class Daemon:
    def __init__(self, rt: Runtime, options: Options, emit: Callable[[dict[str, Any]], None]) -> None:
        self.rt = rt
        self.opt = options
        self.emit_sink = emit
        self.children: dict[int, Child] = {}
        self.retry_at: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.done_here: dict[int, str] = {}  # issue -> updated_at when it last rested here
        self.skipped: dict[int, str] = {}  # issue -> why it is not served (said once)
        self.state = DaemonState()
        self.contended = False
        self.rng = random.Random()
        self.signals: list[int] = []  # the stop signals received, in order
        self.stop_deadline: float | None = None
        cfg = rt.policy.config.daemon
        self.priority_labels = list(cfg.priority_labels)
        self.unscoped_parallel = cfg.unscoped_parallel
        self.retry_base = cfg.retry_base_seconds
        self.retry_cap = cfg.retry_cap_seconds
        self.spacing = cfg.start_spacing_seconds
        self.budget = rt.policy.config.budget.as_dict()
        if options.shutdown_deadline < 0:  # not given on the command line: the policy's (settings.DaemonSettings)
            self.opt.shutdown_deadline = cfg.shutdown_deadline_seconds
        self.state_dir = rt.repo / ".orch" / "state"
        self.log_path = self.state_dir / "events.jsonl"
        self.lock_fh: Any = None
        self.active_states = scheduling.active_states(rt.policy)
        self.busy_labels = scheduling.busy_labels(rt.policy)
        t = rt.policy.config.tracker
        labels = [rt.policy.label("auto"), rt.policy.label("plan_auto")]  # parents run as one `orch run` each
        key = "|".join([rt.tracker.kind, str(t.owner), str(t.repo), str(t.api_url), *labels])
        self.poller = polling.Poller(rt.tracker, rt.store, key, labels, carry=options.poll_cursor)
        self.pull_of: dict[str, int] = {}  # run -> its pull request (read once from its facts)
        self.settled, self.wake = False, 0.0  # the last pass started nothing; the first retry it waits for
        self.backlog = False  # the last pass left eligible issues waiting for a slot

    # events ------------------------------------------------------------------------------

    def emit(self, event: str, **data: Any) -> None:
        record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **data}
        try:
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
        except OSError as exc:
            self.state.last_error = f"cannot write {self.log_path}: {exc.strerror}"
        self.emit_sink(record)

    # lifecycle of the daemon ---------------------------------------------------------------

    def acquire(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock_fh = open(self.state_dir / "daemon.lock", "a+")
        try:
            fcntl.flock(self.lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.lock_fh.seek(0)
            holder = self.lock_fh.read().strip() or "another process"
            raise BusyError(
                f"another orch daemon already serves {self.rt.repo} ({holder})",
                "run one daemon per clone; for more parallelism raise --concurrency, or use another clone",
            ) from None
        self.lock_fh.seek(0)
        self.lock_fh.truncate()
        self.lock_fh.write(f"pid {os.getpid()}")
        self.lock_fh.flush()

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)
        if len(self.signals) == 1:
            self.state.stopping = True
            self.stop_deadline = time.monotonic() + self.opt.shutdown_deadline
            self.emit(
                "stopping", signal=signum, deadline_seconds=self.opt.shutdown_deadline, running=sorted(self.children)
            )
        else:
            self.stop_deadline = time.monotonic()
            self.emit("stopping-now", signal=signum, running=sorted(self.children))

    def run(self, on_tick: Callable[[DaemonState], None] | None = None) -> int:
        self.acquire()
        old = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.emit("started", repo=str(self.rt.repo), concurrency=self.opt.concurrency, once=self.opt.once)
        next_poll = 0.0
        polled_once = False
        try:
            while True:
                now = time.monotonic()
                if self.reap() and self.backlog:
                    next_poll = now  # a slot came free while eligible issues wait: fill it now, not at the next tick
                if self.state.stopping:
                    if not self.children:
                        break
                    if self.stop_deadline is not None and now >= self.stop_deadline:
                        self.terminate_all("shutdown deadline reached")
                elif now >= next_poll and not (self.opt.once and polled_once):
                    self.poll()
                    polled_once = True
                    next_poll = now + self.opt.interval
                    self.state.ticks += 1
                if not self.state.stopping and self.finished():
                    break
                if self.opt.live:
                    self.refresh()
                if on_tick:
                    on_tick(self.state)
                wait_any([c.proc for c in self.children.values()], 0.2)  # back at once when a run ends
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if not self.children:
                stop_warm_server()
            self.refresh()
            if on_tick:
                on_tick(self.state)
            self.emit("stopped", runs_started=self.state.runs_started)
        return EXIT_INTERRUPTED if self.signals[:1] == [signal.SIGINT] else EXIT_OK  # Ctrl-C: 130; SIGTERM: a stop

    def finished(self) -> bool:
        if self.children:
            return False
        if self.opt.max_runs is not None and self.state.runs_started >= self.opt.max_runs:
            return True
        return self.opt.once and self.state.ticks >= 1

    # one poll: reconcile, then start what is eligible -----------------------------------------

    def poll(self) -> None:
        names = self.rt.policy.label_names
        try:  # what changed since the last poll (statemachine/polling.py); issues resting in review: their pulls too
            result = self.poller.poll(
                lambda i: names["review"] in i.labels and self.rt.store.state_of(i.number)[0] == "review"
            )
            issues, recheck = list(result.issues), result.recheck
            self.state.last_poll = time.time()
            self.state.last_error = None
        except OrchError as exc:
            self.state.last_error = exc.message
            self.emit("poll-failed", error=exc.message)
            return
        finally:
            while self.poller.notes:
                self.emit("poll-cursor", note=self.poller.notes.pop(0))
            while self.poller.failures:
                self.emit("poll-failed", error=self.poller.failures.pop(0))
        self.reconcile({i.number for i in issues} if self.children else set())
        if self.state.stopping:
            return
        moved = False
        for child in self.children.values():  # a parent that has planned since it started owns what its children own
            owns = self._plan_ownership(child.issue) or child.owns
            moved, child.owns = moved or owns != child.owns, owns
        now = time.monotonic()
        if self._quiet(recheck, moved, now):  # nothing changed that could start an issue: no pass over the issues
            self.poller.done(())
            return
        self.settled = False
        slots = self.opt.concurrency - len(self.children)
        if self.opt.max_runs is not None:
            slots = min(slots, self.opt.max_runs - self.state.runs_started)
        busy, known, pending = self.busy_labels, self.rt.store.known_issues(), self.rt.store.pending_issues()
        resumable, fresh = [], []
        spent = ledger.day_reason(self.rt.store, self.budget)  # today's budget spent: start nothing new
        later: set[int] = set()  # review checks to make at the next poll (not made now, or feedback not served)
        for issue in issues:
            n = issue.number
            state, run_id = known.get(n, ("queued", None))
            review = state == "review" and names["review"] in issue.labels
            due = review and (recheck is None or n in recheck or self._pull_of(run_id) in recheck)
            if n in self.children or self.retry_at.get(n, 0) > now:
                later |= {n} if due else set()
                continue
            if review:
                if due:  # only when the issue or its pull request changed: a review moves the pull request
                    ready = self._feedback_ready(issue, run_id)
                    if ready is not False:
                        later.add(n)  # ready (served below, else checked again) or the check failed
                    if ready:
                        fresh.append(issue)
                continue
            ours = state in self.active_states or n in pending
            if not ours and self._takeover_ready(issue):
                fresh.append(issue)  # another runner's run stopped without ending its claim: `orch run` takes it over
                continue
            if self.done_here.get(n) == issue.updated_at:
                continue
            if ours:
                resumable.append(issue)  # ours, interrupted: resume it first
            elif names["child"] in issue.labels:
                self._skip(n, standalone_refusal(names["child"], issue.body))
            elif spent is not None and not busy.intersection(issue.labels):
                self._skip(n, spent)
            elif not busy.intersection(issue.labels):
                fresh.append(
                    issue
                )  # queued, or resting but a maintainer cleared the rest label: `orch run` requeues it
        fresh_order = scheduling.order(fresh, self.priority_labels)
        if self.contended:  # spread a fleet over the queue: same priority order, but each daemon starts elsewhere
            fresh_order = scheduling.spread(fresh_order, self.rng)
        ordered = [self._planned(c) for c in scheduling.order(resumable, self.priority_labels) + fresh_order]
        if self.opt.first is not None:  # the issue this job was started for goes first; the rest keep their order
            ordered.sort(key=lambda c: c.issue.number != self.opt.first)
        self.state.queue = [{"issue": c.issue.number, "title": c.issue.title, "owns": list(c.owns)} for c in ordered]
        running = [c.owns for c in self.children.values()]
        picked = scheduling.select(ordered, running, max(0, slots), self.unscoped_parallel)
        for i, cand in enumerate(picked):
            if i and self.spacing:  # runs started together compete for the CPU and claim in one burst
                time.sleep(self.spacing)
                if self.state.stopping:
                    break
            self.spawn(cand, resumed=cand.issue in resumable)
        self.backlog = len(picked) < len(ordered)
        later = {n for n in later if n not in self.children}
        self.poller.done(later)
        waits = [t for t in self.retry_at.values() if t > now]
        waits += [now + ledger.seconds_to_next_day()] if spent is not None else []  # a new day: a new budget
        self.settled, self.wake = not picked and not later, min(waits, default=float("inf"))

    def _quiet(self, recheck: frozenset[int] | None, moved: bool, now: float) -> bool:
        """The last pass over the issues started nothing and left nothing to check, and since then no issue or pull
        request changed, no child ended or changed its ownership and no retry came due: this pass would decide the
        same. A tracker shared by a fleet is always passed over (a claim's lease expires with time alone)."""
        return (
            self.settled
            and recheck is not None
            and not recheck
            and not moved
            and now < self.wake
            and not self.rt.tracker.capabilities.fleet
        )

    def _pull_of(self, run_id: str | None) -> int | None:
        """The pull request of a run resting in review (from its facts, read once per run)."""
        if run_id is None:
            return None
        if run_id not in self.pull_of:
            pr = self.rt.store.facts(run_id).get("pull_request") or {}
            if not pr.get("number"):
                return None  # not known yet: asked again next time
            self.pull_of[run_id] = int(pr["number"])
        return self.pull_of[run_id]

    def _plan_ownership(self, n: int) -> tuple[str, ...]:
        """A parent's ownership once it has a plan: every path its children may change (else nothing known)."""
        _state, run_id = self.rt.store.state_of(n)
        plan = self.rt.store.facts(run_id).get("plan") if run_id else None
        if not plan:
            return ()
        return tuple(dict.fromkeys(g for c in plan["children"] for g in c["ownership"]))

    def _planned(self, cand: scheduling.Candidate) -> scheduling.Candidate:
        owns = self._plan_ownership(cand.issue.number) if self.rt.policy.label("plan_auto") in cand.issue.labels else ()
        return replace(cand, owns=owns) if owns else cand

    def _feedback_ready(self, issue: Any, run_id: str | None) -> bool | None:
        """An issue resting in review whose pull request got feedback that sends it back to rework (None: not known)."""
        from statemachine.engine import evaluate
        from statemachine.snapshots import snapshot_of

        try:
            snap = snapshot_of(self.rt, issue, "review", run_id)
        except OrchError as exc:
            self.emit("poll-failed", issue=issue.number, error=exc.message)
            return None
        ready = next((e for e in evaluate(self.rt.policy, snap) if e.ok), None)
        return ready is not None and ready.transition.dest != "queued"

    def _takeover_ready(self, issue: Any) -> bool:
        """An issue another runner's run holds with a claim whose lease expired (one comment list per such issue; on
        GitHub a list that has not changed answers 304). Only then does `orch run` judge the whole `take_over`."""
        from statemachine import claims
        from statemachine.engine import labels_could_allow

        # the label guards of the policy's take_over (the bundled one: running, and none of manual, blocked, review
        # or child), judged on the listed issue before any read
        if not self.rt.tracker.capabilities.fleet or not labels_could_allow(self.rt.policy, "take_over", issue):
            return False
        try:
            held = claims.holding(
                self.rt.tracker.list_comments(issue.number),
                self.rt.tracker.identity(),
                self.rt.policy.config.tracker.claim_lease_seconds,
            )
        except OrchError as exc:
            self.emit("poll-failed", issue=issue.number, error=exc.message)
            return False
        if held.expired and self.skipped.get(issue.number) != f"expired:{held.run_id}":
            self.skipped[issue.number] = f"expired:{held.run_id}"
            self.emit(
                "claim-expired",
                issue=issue.number,
                run_id=held.run_id,
                renewed_at=held.renewed_at,
                lease_seconds=held.lease_seconds,
            )
        return held.expired

    def _skip(self, n: int, reason: str) -> None:
        if self.skipped.get(n) != reason:
            self.skipped[n] = reason
            self.emit("skipped", issue=n, reason=reason)

    def reconcile(self, open_auto: Container[int]) -> None:
        """Stop a child whose issue was closed or lost its authorizing label; its lifecycle then settles without publishing."""
        for n, child in list(self.children.items()):
            if n not in open_auto and child.terminated is None:
                child.terminated = "issue closed or unlabelled"
                self.emit("reconcile", issue=n, reason=child.terminated)
                terminate(child.proc)

    def spawn(self, cand: scheduling.Candidate, resumed: bool) -> None:
        n = cand.issue.number
        out_dir = self.state_dir / "daemon-runs"
        out_dir.mkdir(parents=True, exist_ok=True)
        out_path = out_dir / f"issue-{n}-{int(time.time() * 1000)}.json"
        argv = run_argv(self.rt.repo, n, self.opt.policy)
        warm = self.rt.policy.config.daemon.workers == "warm"
        proc = start_run(argv, self.rt.repo, out_path, out_path.with_suffix(".log"), warm)
        self.children[n] = Child(n, cand.issue.title, cand.owns, proc, time.monotonic(), out_path, resumed)
        self.state.runs_started += 1
        self.emit("run-started", issue=n, title=cand.issue.title, owns=list(cand.owns), resumed=resumed, pid=proc.pid)

    def reap(self) -> bool:
        """Take in every run that has ended; whether any had."""
        ended = False
        for n, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[n]
            ended = True
            self.settled = False  # a slot is free, and what the child did may make an issue eligible
            result = read_result(child.out_path)
            final = result.get("final_state")
            elapsed = round(time.monotonic() - child.started, 3)
            if child.terminated:
                self._cleanup_after_stop(n, child.terminated)
                outcome = "stopped"
            elif code in (EXIT_OK, EXIT_BLOCKED):
                outcome = final or ("review" if code == EXIT_OK else "blocked")
                self._rested(n)
                self.failures.pop(n, None)
            elif code == EXIT_STUCK:
                outcome = "skipped"
                self._rested(n)
                notes = " ".join(str(s.get("note") or "") for s in result.get("steps", []))
                if "claimed first" in notes:
                    self.contended = True  # other runners serve this repository too
            elif code in (130, 143, -signal.SIGTERM, -signal.SIGINT):
                outcome = "interrupted"
            else:
                outcome = "failed"
                fails = self.failures.get(n, 0) + 1
                self.failures[n] = fails
                wait = min(self.retry_cap, self.retry_base * 2 ** (fails - 1))
                self.retry_at[n] = time.monotonic() + wait
            entry = {
                "issue": n,
                "title": child.title,
                "outcome": outcome,
                "exit_code": code,
                "elapsed_seconds": elapsed,
                "error": result.get("error"),
                "pull_request": (result.get("pull_request") or {}).get("url"),
            }
            self.state.recent = ([entry] + self.state.recent)[:20]
            self.emit("run-finished", **entry)
        return ended

    def _cleanup_after_stop(self, n: int, reason: str) -> None:
        """After stopping a child for a closed/unlabelled issue: drop its pending step, clean labels, settle the lifecycle."""
        from statemachine.engine import Engine

        try:
            self.rt.store.abort_pending(n)
            self.rt.tracker.remove_labels(n, [self.rt.policy.label("running")])
            for _ in Engine(self.rt).iter_run(n):
                pass
        except OrchError as exc:
            self.emit("cleanup-failed", issue=n, error=exc.message)
        self._rested(n)

    def _rested(self, n: int) -> None:
        """Remember the issue as it is now; it becomes eligible again only once it changes (labels, state). A
        `--once` daemon, which polls no more, has nothing to remember it for."""
        if self.opt.once:
            return
        try:
            self.done_here[n] = self.rt.tracker.get_issue(n, comments=False).updated_at
        except OrchError:
            self.done_here[n] = ""

    def terminate_all(self, reason: str) -> None:
        for child in self.children.values():
            if child.proc.poll() is None:
                terminate(child.proc)
        self.emit("terminated", reason=reason, issues=sorted(self.children))
        self.stop_deadline = None

    # the live state ---------------------------------------------------------------------------

    def refresh(self) -> None:
        self.state.running = [
            live_row(self.rt.store, self.rt.repo, n, c.title, time.monotonic() - c.started, c.owns, c.terminated)
            for n, c in sorted(self.children.items())
        ]
        self.state.budget = ledger.today_summary(self.rt.store, self.budget)
