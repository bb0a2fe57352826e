"""Which eligible issues the daemon starts: ownership from the issue body, overlap between globs, priority order."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from statemachine.model import INITIAL_STATE, REST_STATES, STATES, Issue

if TYPE_CHECKING:
    from statemachine.policy import Policy

_HEADING = re.compile(r"^\s*(?:#{1,6}\s*)?ownership\s*:?\s*(.*)$", re.I)
_ITEM = re.compile(r"^\s*(?:[-*+]\s+)?`?([^`\s]+)`?\s*$")
_WILD = re.compile(r"[*?\[]")


@lru_cache(maxsize=4096)  # the daemon asks of every waiting issue's body at every pass
def ownership(body: str) -> tuple[str, ...]:
    """Paths or globs listed in an `Ownership:` section (inline after the colon, or as list items below it)."""
    lines = (body or "").splitlines()
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if not m:
            continue
        found = [p.strip("`") for p in re.split(r"[,\s]+", m.group(1)) if p.strip("`")]
        for follow in lines[i + 1 :]:
            if not follow.strip():
                if found:
                    break
                continue
            if follow.lstrip().startswith("#"):
                break
            item = _ITEM.match(follow)
            if not item:
                break
            found.append(item.group(1))
        return tuple(dict.fromkeys(p.removeprefix("./") or p for p in found))
    return ()


def _prefix(glob: str) -> str:
    """The literal folder prefix of a glob, up to its first wildcard."""
    m = _WILD.search(glob)
    literal = glob if m is None else glob[: m.start()]
    return literal


def overlaps(a: str, b: str) -> bool:
    """Conservative: two globs may name a common path when one's literal prefix starts the other's."""
    from statemachine.globs import matches

    if "/" not in a.rstrip("/") and _WILD.search(a) or "/" not in b.rstrip("/") and _WILD.search(b):
        # basename patterns such as *.py can match anywhere
        return True
    if not _WILD.search(a) and not _WILD.search(b):
        a2, b2 = a.rstrip("/"), b.rstrip("/")
        return a2 == b2 or a2.startswith(b2 + "/") or b2.startswith(a2 + "/")
    if not _WILD.search(a):
        return matches(a, b) or _prefix(b).startswith(a.rstrip("/") + "/")
    if not _WILD.search(b):
        return matches(b, a) or _prefix(a).startswith(b.rstrip("/") + "/")
    pa, pb = _prefix(a), _prefix(b)
    return pa.startswith(pb) or pb.startswith(pa)


def compatible(a: tuple[str, ...], b: tuple[str, ...], unscoped_parallel: bool = False) -> bool:
    """Two issues may run at once when both declare ownership and no pair of globs overlaps."""
    if not a or not b:
        return unscoped_parallel
    return not any(overlaps(x, y) for x in a for y in b)


@dataclass(frozen=True)
class Candidate:
    issue: Issue
    owns: tuple[str, ...]
    priority: int


def priority(issue: Issue, priority_labels: list[str]) -> int:
    for rank, label in enumerate(priority_labels):
        if label in issue.labels:
            return rank
    return len(priority_labels)


def order(issues: Iterable[Issue], priority_labels: list[str]) -> list[Candidate]:
    """Highest priority first (by the policy's priority labels), then oldest (creation time, then number)."""
    cands = [Candidate(i, ownership(i.body), priority(i, priority_labels)) for i in issues]
    return sorted(cands, key=lambda c: (c.priority, c.issue.created_at or "", c.issue.number))


def spread(candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Rotate each priority class by a random offset, so that daemons sharing a repository start on different issues;
    the classes keep their order, and within a class the age order is kept from the offset on."""
    out: list[Candidate] = []
    i = 0
    while i < len(candidates):
        j = i
        while j < len(candidates) and candidates[j].priority == candidates[i].priority:
            j += 1
        group = candidates[i:j]
        k = rng.randrange(len(group))
        out += group[k:] + group[:k]
        i = j
    return out


def select(
    candidates: list[Candidate], running: list[tuple[str, ...]], slots: int, unscoped_parallel: bool = False
) -> list[Candidate]:
    """Pick up to ``slots`` candidates, in order, each compatible with everything running or already picked."""
    picked: list[Candidate] = []
    owned = list(running)
    for cand in candidates:
        if len(picked) >= slots:
            break
        if all(compatible(cand.owns, other, unscoped_parallel) for other in owned):
            picked.append(cand)
            owned.append(cand.owns)
    return picked


def active_states(policy: Policy) -> frozenset[str]:
    """The states a run is under way in: every state the policy's lifecycle uses but the initial one and the rest
    states. An issue this clone holds in one of them was interrupted, and is resumed first."""
    used = {s for t in policy.transitions for s in (*t.sources, t.dest)}
    return frozenset(s for s in STATES if s in used and s != INITIAL_STATE and s not in REST_STATES)


def busy_labels(policy: Policy) -> frozenset[str]:
    """The labels that keep an issue from being claimed: those the transitions leaving the initial state refuse
    (`lacks_labels`). An issue carrying one is not started fresh (a takeover is judged on its own)."""
    return frozenset(
        policy.label(role)
        for t in policy.outgoing(INITIAL_STATE)
        for g in t.guards
        if g.name == "lacks_labels" and not g.negate
        for role in g.params.get("labels", ())
    )
