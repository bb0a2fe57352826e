"""The usage ledger: one row per agent run (the implementation agent, the planner, the review agent, the proof agent)
with its tokens and seconds, kept in the repository's store; what limits.budget is judged against.

A row is keyed by the run, the step, the role and the attempt, and written with INSERT OR IGNORE: a step resumed
after a crash records its agent run once however often the recording is repeated. "Today" is the UTC calendar day of
``now()``: the ``ORCH_NOW`` variable (ISO-8601, UTC) when set, else the real clock (docs/security.md).

The formatting helpers (``figure``, ``verdict_of``, ``lines``) are pure; only ``record``, ``rows`` and ``spent`` read
or write the store."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

_DDL = """CREATE TABLE IF NOT EXISTS usage_ledger (
    run_id TEXT NOT NULL, step_id INTEGER NOT NULL, role TEXT NOT NULL, attempt INTEGER NOT NULL,
    issue INTEGER NOT NULL, at TEXT NOT NULL, day TEXT NOT NULL, profile TEXT, kind TEXT,
    input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER, seconds REAL NOT NULL,
    PRIMARY KEY (run_id, step_id, role, attempt))"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS usage_ledger_day ON usage_ledger (day)",
    "CREATE INDEX IF NOT EXISTS usage_ledger_issue ON usage_ledger (issue)",
)
_COLUMNS = (
    "run_id, step_id, role, attempt, issue, at, day, profile, kind, input_tokens, output_tokens, total_tokens, seconds"
)


class _Store(Protocol):  # statemachine.store.Store, as far as the ledger uses it
    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any: ...

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...


def now() -> dt.datetime:
    """The current time in UTC: ``ORCH_NOW`` (ISO-8601; a time without a zone is read as UTC) when set, else the
    real clock. Only budget days read it."""
    raw = os.environ.get("ORCH_NOW", "").strip()
    if raw:
        try:
            at = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"ORCH_NOW={raw!r} is not an ISO-8601 time (e.g. 2026-01-31T12:00:00Z)") from None
        return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def today() -> str:
    """The current UTC day, YYYY-MM-DD."""
    return now().date().isoformat()


def _ensure(store: _Store) -> None:
    if getattr(store, "_ledger_ready", False):
        return
    store.execute(_DDL)
    for stmt in _INDEXES:
        store.execute(stmt)
    try:
        store._ledger_ready = True  # type: ignore[attr-defined]
    except AttributeError:  # a store that keeps no attributes: create (IF NOT EXISTS) each time
        pass


def _tokens(tokens: Mapping[str, Any] | None) -> tuple[int | None, int | None, int | None]:
    """(input, output, total) from an AgentResult's tokens; all None when the agent reported none."""
    if not tokens:
        return None, None, None

    def num(*keys: str) -> int | None:
        for k in keys:
            v = tokens.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return int(v)
        return None

    given, taken = num("input", "input_tokens"), num("output", "output_tokens")
    total = num("total", "total_tokens")
    if total is None and (given is not None or taken is not None):
        # Anthropic counts cache reads and writes apart from input (cache_read_input, cache_creation_input); OpenAI's
        # cached_input is part of input and is not added again
        cached = sum(int(v) for k, v in tokens.items() if k.startswith("cache_") and isinstance(v, int))
        total = (given or 0) + (taken or 0) + cached
    return given, taken, total


def record(
    store: _Store,
    *,
    run_id: str,
    step_id: int,
    role: str,
    attempt: int,
    issue: int,
    tokens: Mapping[str, Any] | None,
    seconds: float,
    profile: str | None = None,
    kind: str | None = None,
) -> bool:
    """Keep one agent run's usage (``role``: implementation, planner, review, proof-<phase>); True when the row is new,
    False when this run, step, role and attempt were recorded already (a resumed step)."""
    _ensure(store)
    at = now().replace(microsecond=0)
    given, taken, total = _tokens(tokens)
    cur = store.execute(
        f"INSERT OR IGNORE INTO usage_ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            int(step_id),
            role,
            int(attempt),
            int(issue),
            at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            at.date().isoformat(),
            profile,
            kind,
            given,
            taken,
            total,
            round(float(seconds), 3),
        ),
    )
    return bool(getattr(cur, "rowcount", 0))


def rows(store: _Store, run_id: str | None = None, issue: int | None = None) -> list[dict[str, Any]]:
    """The ledger rows of one run (or of every run of ``issue``), oldest first."""
    _ensure(store)
    where, args = ("run_id=?", (run_id,)) if run_id is not None else ("issue=?", (issue,))
    names = [c.strip() for c in _COLUMNS.split(",")]
    found = store.query(f"SELECT {_COLUMNS} FROM usage_ledger WHERE {where} ORDER BY at, step_id, role", args)
    return [dict(zip(names, tuple(r), strict=True)) for r in found]


@dataclass(frozen=True)
class Usage:
    """Sums over ledger rows: agent runs, tokens (only runs that reported some), seconds."""

    runs: int = 0
    tokens: int = 0
    seconds: float = 0.0
    unreported: int = 0  # runs whose agent reported no tokens (a command agent)

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "tokens": self.tokens,
            "minutes": round(self.minutes, 2),
            "seconds": round(self.seconds, 3),
            "runs_without_tokens": self.unreported,
        }


def total(found: list[dict[str, Any]]) -> Usage:
    return Usage(
        runs=len(found),
        tokens=sum(int(r["total_tokens"] or 0) for r in found),
        seconds=sum(float(r["seconds"] or 0.0) for r in found),
        unreported=sum(1 for r in found if r["total_tokens"] is None),
    )


def _sum(store: _Store, where: str, args: tuple[Any, ...]) -> Usage:
    _ensure(store)
    r = store.query(
        "SELECT COUNT(*), COALESCE(SUM(total_tokens), 0), COALESCE(SUM(seconds), 0), "
        f"COALESCE(SUM(CASE WHEN total_tokens IS NULL THEN 1 ELSE 0 END), 0) FROM usage_ledger WHERE {where}",
        args,
    )[0]
    return Usage(int(r[0]), int(r[1]), float(r[2]), int(r[3]))


def spent(store: _Store, issue: int | None = None, day: str | None = None) -> dict[str, Usage]:
    """What was spent: ``{"issue": ..., "day": ...}``, the sums over every run of ``issue`` and over the UTC ``day``
    (YYYY-MM-DD); each only when asked for, and today's when neither is."""
    out: dict[str, Usage] = {}
    if issue is not None:
        out["issue"] = _sum(store, "issue=?", (int(issue),))
    if day is not None or issue is None:
        out["day"] = _sum(store, "day=?", (day or today(),))
    return out


# judging and showing (pure) ----------------------------------------------------------------------------------------

# (the budget key's suffix, the Usage field, the unit as shown)
MEASURES: tuple[tuple[str, str, str], ...] = (
    ("tokens", "tokens", "tokens"),
    ("agent_minutes", "minutes", "agent minutes"),
    ("agent_runs", "runs", "agent runs"),
)


def figure(value: float, unit: str) -> str:
    """A figure as people read it: 1.2M, 35k, 3, 12.5."""
    if unit == "tokens":
        for size, suffix in ((1_000_000, "M"), (1_000, "k")):
            if value >= size:
                return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
        return str(int(value))
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


def usage_of(data: Mapping[str, Any] | Usage) -> Usage:
    if isinstance(data, Usage):
        return data
    return Usage(
        int(data.get("runs", 0)),
        int(data.get("tokens", 0)),
        float(data["seconds"]) if "seconds" in data else float(data.get("minutes", 0.0)) * 60.0,
        int(data.get("runs_without_tokens", 0)),
    )


def exhausted(budget: Mapping[str, Any], usage: Mapping[str, Any | Usage]) -> list[str]:
    """Every limit of ``budget`` (limits.budget as a dict) that ``usage`` ({"issue": Usage-json, "day": Usage-json})
    has reached, each as "budget for today spent: 2 of 2 agent runs"; empty when every limit leaves room."""
    out: list[str] = []
    for scope, suffix, what in (
        ("day", "per_day", "budget for today spent"),
        ("issue", "per_issue", "this issue's budget spent"),
    ):
        if scope not in usage:
            continue
        used = usage_of(usage[scope])
        for key, attr, unit in MEASURES:
            cap = budget.get(f"{key}_{suffix}")
            if cap is None:
                continue
            have = float(getattr(used, attr))
            if have >= float(cap):
                out.append(f"{what}: {figure(have, unit)} of {figure(float(cap), unit)} {unit}")
    return out


def remaining(budget: Mapping[str, Any], used: Usage, suffix: str) -> dict[str, float | None]:
    """What is left of each ``*_<suffix>`` limit (None: no limit)."""
    out: dict[str, float | None] = {}
    for key, attr, _unit in MEASURES:
        cap = budget.get(f"{key}_{suffix}")
        out[key] = None if cap is None else max(0.0, float(cap) - float(getattr(used, attr)))
        if out[key] is not None and key != "agent_minutes":
            out[key] = int(out[key] or 0)
    return out


def cost(tokens: int, budget: Mapping[str, Any]) -> str | None:
    """``tokens`` in money when limits.budget sets a price, e.g. "0.42 USD"; None otherwise."""
    price = budget.get("price_per_million_tokens")
    if price is None:
        return None
    return f"{tokens * float(price) / 1_000_000:.2f} {budget.get('currency') or 'USD'}"


def describe(used: Usage, budget: Mapping[str, Any], suffix: str | None = None) -> str:
    """One line: "2 agent runs, 35k tokens, 3.5 agent minutes, 0.04 USD", with "of <cap>" where a ``suffix`` limit
    is set."""
    parts = []
    for key, attr, unit in MEASURES[::-1]:
        have = float(getattr(used, attr))
        text = f"{figure(round(have, 1) if unit != 'tokens' else have, unit)}"
        cap = budget.get(f"{key}_{suffix}") if suffix else None
        if cap is not None:
            text += f" of {figure(float(cap), unit)}"
        parts.append(f"{text} {unit[:-1] if text == '1' else unit}")
    if used.unreported and used.unreported == used.runs:
        parts[2] = "tokens not reported"
    money = cost(used.tokens, budget)
    if money:
        parts.append(money)
    return ", ".join(parts)


def limited(budget: Mapping[str, Any]) -> bool:
    """limits.budget sets at least one limit."""
    return any(v is not None for k, v in budget.items() if k.endswith(("_per_day", "_per_issue")))


def today_summary(store: _Store, budget: Mapping[str, Any]) -> dict[str, Any]:
    """Today's usage and what is left of each daily limit, as `orch status`, the daemon and the live view show it:
    {"date", "today", "remaining", "cost", "line"}."""
    day = today()
    used = spent(store, day=day)["day"]
    left = remaining(budget, used, "per_day")
    return {
        "date": day,
        "today": used.as_json(),
        "remaining": {f"{k}_per_day": v for k, v in left.items()},
        "cost": cost(used.tokens, budget),
        "line": f"budget today ({day} UTC): {describe(used, budget, 'per_day')}",
    }


def day_reason(store: _Store, budget: Mapping[str, Any]) -> str | None:
    """Why no new run may start today (the first daily limit reached), or None."""
    if not any(budget.get(f"{key}_per_day") is not None for key, _a, _u in MEASURES):
        return None
    spent_today = exhausted(budget, {"day": spent(store, day=today())["day"]})
    return spent_today[0] if spent_today else None


def seconds_to_next_day() -> float:
    """Seconds until the next UTC day begins (by ``now()``)."""
    at = now()
    nxt = dt.datetime.combine(at.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(1.0, (nxt - at).total_seconds())


def row_line(r: Mapping[str, Any]) -> str:
    """One ledger row as `orch show` lists it."""
    tokens = "tokens not reported" if r["total_tokens"] is None else f"{figure(r['total_tokens'], 'tokens')} tokens"
    who = r["kind"] or "?"
    if r["profile"] and r["profile"] != "default":
        who += f", profile {r['profile']}"
    return f"{r['at']}  {r['role']} attempt {r['attempt']} ({who}): {tokens}, {float(r['seconds']):.1f} s"


def run_usage(store: _Store, run_id: str | None, issue: int, budget: Mapping[str, Any]) -> dict[str, Any]:
    """A run's ledger rows and totals, and the issue's totals over all its runs, for `orch show` (``lines``: as text)."""
    found = rows(store, run_id=run_id) if run_id else []
    mine, whole = total(found), spent(store, issue)["issue"]
    lines = [f"  usage of run {run_id}: {describe(mine, budget)}"] if run_id else []
    lines += [f"    {row_line(r)}" for r in found]
    if whole.runs != mine.runs:
        lines.append(f"  usage of issue #{issue}, all runs: {describe(whole, budget, 'per_issue')}")
    return {
        "run_id": run_id,
        "rows": found,
        "total": mine.as_json(),
        "cost": cost(mine.tokens, budget),
        "issue_total": whole.as_json(),
        "lines": lines,
    }
