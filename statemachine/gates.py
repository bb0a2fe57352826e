"""Delivery gates: pure guards over what the runner observed about a candidate (scans, checks, TDD, review)."""

from __future__ import annotations

from statemachine.globs import first_match
from statemachine.limits import KiB, human
from statemachine.model import Snapshot, Verdict

DEFAULT_TEST_GLOBS = (
    "test_*.py",
    "*_test.py",
    "tests/**",
    "test/**",
    "**/__tests__/**",
    "*.test.*",
    "*.spec.*",
    "spec/**",
)


def _listed(snap: Snapshot, key: str, what: str, ok_reason: str, ignore: list[str] | None = None) -> Verdict:
    inspection = snap.run.inspection
    if inspection is None:
        return Verdict.failed("the candidate was not inspected")
    hits = [h for h in getattr(inspection, key) if h.get("kind") not in set(ignore or ())]
    if hits:
        lines = [h.get("reason") or f"{h['kind']} at {h['where']}" for h in hits]
        return Verdict.failed(f"{len(hits)} {what}: {lines[0]}", *lines)
    return Verdict.passed(ok_reason)


def no_secrets(snap: Snapshot, ignore: list[str] | None = None) -> Verdict:
    """No credentials in the diff, the report, the agent's output or its artifacts: by pattern, and any secret value the
    runner holds (kind secret-value, which ``ignore`` cannot skip) in the changed files' bytes, verbatim or encoded."""
    return _listed(
        snap, "secrets", "possible secret(s)", "no secret found in the diff, report, agent log or artifacts", ignore
    )


def no_destructive_actions(snap: Snapshot, allow: list[str] | None = None) -> Verdict:
    """No destructive or production command (drop database, rm -rf outside, deploy, publish, push) in the log or diff."""
    allowed = list(allow or []) + list(snap.settings.get("gates", {}).get("allow_actions", []))
    return _listed(
        snap,
        "destructive",
        "destructive or production action(s)",
        "no destructive or production command found",
        allowed,
    )


def agent_left_git_alone(snap: Snapshot) -> Verdict:
    """The agent did not commit, move HEAD, rewrite history, push, or touch .git."""
    inspection = snap.run.inspection
    if inspection is None:
        return Verdict.failed("the candidate was not inspected")
    tampering = inspection.git_tampering
    if tampering:
        return Verdict.failed(f"the agent touched git: {tampering[0]}", *tampering)
    return Verdict.passed("no commit, ref change or .git edit by the agent")


def no_escaping_symlinks(snap: Snapshot) -> Verdict:
    """No changed path is a symlink pointing outside the worktree."""
    return _listed(snap, "symlinks", "symlink(s) leaving the worktree", "no changed path leads outside the worktree")


def report_written_last(snap: Snapshot) -> Verdict:
    """No file changed after the agent wrote its completion report."""
    inspection = snap.run.inspection
    if inspection is None:
        return Verdict.failed("the candidate was not inspected")
    late = inspection.edited_after_report
    if late:
        return Verdict.failed(f"{len(late)} file(s) changed after the report was written: {', '.join(late[:5])}", *late)
    return Verdict.passed("the report was written after the last edit")


def within_byte_limits(snap: Snapshot) -> Verdict:
    """No added or changed binary file is larger than gates.max_binary_file_bytes, and the added or changed files together
    hold at most gates.max_changed_bytes; the sizes are the runner's own, measured in the captured tree."""
    if snap.run.changes is None:
        return Verdict.failed("the change set was not captured")
    measured = snap.run.changed_bytes
    if measured is None:
        return Verdict.failed("the sizes of the changed files were not measured")
    gates = snap.settings.get("gates", {})
    max_binary, max_total = gates.get("max_binary_file_bytes"), gates.get("max_changed_bytes")
    problems = []
    if max_binary is not None:
        big = [f for f in measured.binaries if int(f["size"]) > max_binary]
        problems += [
            f"{f['path']} is a {_sized(int(f['size']))} binary file{_exact(int(f['size']))}; "
            f"gates.max_binary_file_bytes is {human(max_binary)}"
            for f in big
        ]
        if big and len(big) == len(measured.binaries) < measured.binary_count:
            problems.append(
                f"{measured.binary_count - len(big)} smaller binary file(s): see changes.json in the attempt's evidence"
            )
    total, count = measured.total, measured.count
    if max_total is not None and total > max_total:
        largest = ", ".join(f"{f['path']} ({human(int(f['size']))})" for f in measured.largest[:3])
        problems.append(
            f"the change adds or changes {human(total)}{_exact(total)} in {count} file(s); "
            f"gates.max_changed_bytes is {human(max_total)} (largest: {largest})"
        )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Verdict.failed(problems[0] + more, *problems)
    limits = [
        f"{key} ({human(value)})"
        for key, value in (("gates.max_binary_file_bytes", max_binary), ("gates.max_changed_bytes", max_total))
        if value is not None
    ]
    within = ("within " + " and ".join(limits)) if limits else "no byte limit is set"
    return Verdict.passed(f"{count} added or changed file(s), {human(total)} in all; {within}")


def _sized(n: int) -> str:
    """A size as an adjective: ``100-byte``, ``60 MiB``."""
    return f"{n:,}-byte" if n < KiB else human(n)


def _exact(n: int) -> str:
    return f" ({n:,} bytes)" if n >= KiB else ""


def _tests(snap: Snapshot) -> tuple[str, ...]:
    return tuple(snap.settings.get("gates", {}).get("test_globs") or DEFAULT_TEST_GLOBS)


def tests_not_deleted(snap: Snapshot) -> Verdict:
    """The change deletes no test file."""
    if snap.run.changes is None:
        return Verdict.failed("the change set was not captured")
    if snap.settings.get("gates", {}).get("allow_test_deletion"):
        return Verdict.passed("gates.allow_test_deletion is true")
    gone = [c.path for c in snap.run.changes if c.status == "D" and first_match(c.path, _tests(snap))]
    if gone:
        return Verdict.failed(f"the change deletes {len(gone)} test file(s): {', '.join(gone[:5])}", *gone)
    return Verdict.passed("no test file deleted")


def tests_changed_with_source(snap: Snapshot) -> Verdict:
    """When gates.require_test_changes is on, a change to source files also changes tests."""
    if not snap.settings.get("gates", {}).get("require_test_changes"):
        return Verdict.passed("not required (gates.require_test_changes is off)")
    if snap.run.changes is None:
        return Verdict.failed("the change set was not captured")
    globs = _tests(snap)
    tests = [c.path for c in snap.run.changes if c.status != "D" and first_match(c.path, globs)]
    source = [c.path for c in snap.run.changes if not first_match(c.path, globs)]
    if source and not tests:
        return Verdict.failed(f"source changed ({', '.join(source[:3])}) but no test did", *source)
    return Verdict.passed(f"{len(tests)} test file(s) changed with {len(source)} other file(s)")


def tdd_evidence(snap: Snapshot) -> Verdict:
    """When gates.tdd is set, the added or changed tests fail on the base commit and pass on the candidate."""
    if not snap.settings.get("gates", {}).get("tdd"):
        return Verdict.passed("not required (gates.tdd is not set)")
    tdd = snap.run.tdd
    if tdd is None:
        return Verdict.failed("the TDD evidence was not collected")
    if tdd.error:
        return Verdict.failed(f"no TDD evidence: {tdd.error}")
    base, cand = tdd.base_exit, tdd.candidate_exit
    evidence = [f"tests: {', '.join(tdd.tests)}", f"base log: {tdd.base_log}", f"candidate log: {tdd.candidate_log}"]
    if base == 0:
        return Verdict.failed("the new or changed tests already pass on the base commit: they prove nothing", *evidence)
    if cand != 0:
        return Verdict.failed(f"the new or changed tests fail on the candidate (exit {cand})", *evidence)
    return Verdict.passed(f"tests fail on base (exit {base}) and pass on the candidate", *evidence)


def review_approved(snap: Snapshot) -> Verdict:
    """When gates.review is on, a review run of the agent approved the candidate."""
    if not snap.settings.get("gates", {}).get("review"):
        return Verdict.passed("not required (gates.review is off)")
    review = snap.run.review
    if review is None:
        return Verdict.failed("the review has not run")
    if review.error:
        return Verdict.failed(f"the review failed: {review.error}")
    if review.verdict == "approved":
        return Verdict.passed("the reviewer approved")
    defects = [f"{d.get('severity', '?')}: {d.get('description', '')}" for d in review.defects]
    return Verdict.failed(f"the reviewer asks for work: {len(defects)} defect(s)", *defects)


def unreported_changes_only(snap: Snapshot) -> Verdict:
    """The report's changed_files leave out files that changed, and name none that did not: the agent can fix that
    (list them, or undo them) on another attempt, so it is a rework finding, not a block."""
    from statemachine.guards import report_matches_changes

    verdict = report_matches_changes(snap)
    if verdict.ok:
        return Verdict.failed("the report lists exactly the changed files: nothing to rework")
    if snap.run.report is None or snap.run.changes is None:
        return verdict
    if any(line.startswith("reported but not changed") for line in verdict.evidence):
        return Verdict.failed("the report names files that did not change", *verdict.evidence)
    return Verdict.passed(
        "the report leaves out changed files (another attempt can list or undo them)", *verdict.evidence
    )


def rework_warranted(snap: Snapshot) -> Verdict:
    """Something the agent can fix failed: checks, TDD evidence, missing test changes, or review defects; and no
    check failed to start (exit 127: a mistyped or missing program, which another attempt cannot fix)."""
    unstartable = [r.error for r in (snap.run.checks or {}).values() if r.error]
    if unstartable:
        return Verdict.failed(unstartable[0], *unstartable)
    reasons = []
    for name, fn in (
        ("checks", _checks_failed),
        ("tdd", tdd_evidence),
        ("tests", tests_changed_with_source),
        ("review", review_approved),
    ):
        v = fn(snap)
        if not v.ok:
            reasons.append(f"{name}: {v.reason}")
    if reasons:
        return Verdict.passed(reasons[0], *reasons)
    return Verdict.failed("nothing the agent could rework failed")


def _checks_failed(snap: Snapshot) -> Verdict:
    from statemachine.guards import checks_passed

    return checks_passed(snap)
