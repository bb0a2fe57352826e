"""The request budgets the GitHub benchmarks hold orch to: one table, read by bench/github_requests.py and
bench/idle_poll.py (each exits non-zero, with a `BUDGET EXCEEDED` line, when a count passes its budget) and quoted in
docs/performance.md. A budget is today's count (issue 16 asks for less: see ``goal``); whoever lowers a count lowers
its budget here, and in the docs, in the same change."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    limit: float  # the most a run may count
    with_review: float  # added when any issue rests in review (idle polls: the pull requests' own list)
    what: str
    goal: str  # issue 16's target, for the printout


BUDGETS: dict[str, Budget] = {
    # counted on 2026-11-29 (issue 16's request work: 17, 3, 2 + 2 per review, 2 + 2 per review before it); idle
    # polls with issues resting in review: 2 until 2026-11-30, 1 since (the activity feed, statemachine/polling.py)
    "delivery": Budget(8, 0, "requests of one happy-path delivery (`orch run`, claim to draft PR)", "<= 8"),
    "once_delivery": Budget(9, 0, "requests of one `orch daemon --once` delivering a newly labelled issue", "<= 10"),
    "rerun": Budget(3, 0, "requests of a second `orch run` on the delivered issue (in review)", "-"),
    "idle_tick": Budget(1, 0, "requests per idle tick of a long-running daemon", "1 whatever rests in review"),
    "idle_once": Budget(1, 0, "requests per idle `orch daemon --once` run", "1 (a 304)"),
}


def limit(name: str, review: int = 0) -> float:
    budget = BUDGETS[name]
    return budget.limit + (budget.with_review if review else 0)


def check(name: str, count: float, review: int = 0) -> bool:
    """Print the count against its budget; False (and a `BUDGET EXCEEDED` line) when it passes it."""
    budget = BUDGETS[name]
    most = limit(name, review)
    if count > most:
        print(f"BUDGET EXCEEDED: {budget.what}: {count:g} > {most:g} (bench/budgets.py {name!r}; goal {budget.goal})")
        return False
    print(f"  within budget: {budget.what}: {count:g} <= {most:g} (goal {budget.goal})")
    return True


def enforce(results: list[bool]) -> None:
    """Exit 1 when any check failed: a benchmark over budget fails loudly."""
    failed = results.count(False)
    if failed:
        raise SystemExit(f"{failed} count(s) over budget; see the BUDGET EXCEEDED line(s) above")
