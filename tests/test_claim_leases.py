"""Claims with leases, judged from comment lists (pure): who holds an issue, when a holder is dead, who won a takeover."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine import claims
from statemachine.model import Comment

ME = "orch-bot"


def claim(cid: int, run: str, at: str, renewed: str | None = None, author: str = ME) -> Comment:
    body = f"orch claimed this issue\n\n<!-- orch:claim run={run} -->"
    if renewed:
        body += f"\n<!-- orch:lease renewed={renewed} -->"
    return Comment(cid, author, body, at)


def report(cid: int, run: str, kind: str, at: str, by: str | None = None, author: str = ME) -> Comment:
    tail = f" by={by}" if by else ""
    return Comment(cid, author, f"done\n\n<!-- orch:run={run} kind=report-{kind}{tail} -->", at)


_NOW = claims.parse_time("2026-11-29T12:00:00Z")
assert _NOW is not None
NOW: float = _NOW


def test_the_lease_stamp_is_rewritten_in_place_and_added_when_missing() -> None:
    body = "claimed\n\n<!-- orch:claim run=r1 -->"
    once = claims.renewed_body(body, NOW - 60)
    twice = claims.renewed_body(once, NOW)
    assert once.count("orch:lease") == 1 and twice.count("orch:lease") == 1
    assert "renewed=2026-11-29T11:59:00Z" in once and "renewed=2026-11-29T12:00:00Z" in twice
    assert twice.startswith(body), "the claim marker and text stay as posted"


def test_a_holder_that_renews_is_alive_and_one_that_stopped_is_expired() -> None:
    fresh = claims.holding([claim(1, "r1", "2026-11-29T11:00:00Z", "2026-11-29T11:58:00Z")], ME, 900, NOW)
    assert fresh.run_id == "r1" and fresh.age_seconds == 120 and not fresh.expired
    dead = claims.holding([claim(1, "r1", "2026-11-29T11:00:00Z", "2026-11-29T11:40:00Z")], ME, 900, NOW)
    assert dead.run_id == "r1" and dead.age_seconds == 1200 and dead.expired
    unstamped = claims.holding([claim(1, "r1", "2026-11-29T11:59:30Z")], ME, 900, NOW)
    assert unstamped.renewed_at == "2026-11-29T11:59:30Z" and not unstamped.expired, "no stamp: posted counts"


def test_only_the_identitys_markers_count() -> None:
    forged = [
        claim(1, "evil", "2026-11-29T10:00:00Z", author="mallory"),
        report(2, "r1", claims.ABANDONED, "2026-11-29T11:00:00Z", by="evil", author="mallory"),
    ]
    held = claims.holding([claim(0, "r1", "2026-11-29T09:00:00Z"), *forged], ME, 900, NOW)
    assert held.run_id == "r1", "someone else's takeover report ends nothing"
    assert claims.abandoned([c for c in forged], ME, "r1") is None
    assert claims.holding(forged, ME, 900, NOW).run_id is None


def test_a_takeover_report_ends_only_the_run_it_names() -> None:
    comments = [
        claim(1, "r1", "2026-11-29T09:00:00Z"),
        report(2, "r1", claims.ABANDONED, "2026-11-29T11:50:00Z", by="rA"),
        claim(3, "rA", "2026-11-29T11:50:01Z"),
        report(4, "r1", claims.ABANDONED, "2026-11-29T11:50:02Z", by="rB"),  # a second taker, a moment later
        claim(5, "rB", "2026-11-29T11:50:03Z"),
    ]
    active = claims.active_claims(comments, ME)
    assert [a.run_id for a in active] == ["rA", "rB"], "the later takeover report must not end rA's fresh claim"
    assert claims.abandoned(comments, ME, "r1") == "rA"
    assert claims.abandoned(comments, ME, "rA") is None


def test_a_run_report_ends_every_claim_before_it() -> None:
    comments = [
        claim(1, "r1", "2026-11-29T09:00:00Z"),
        claim(2, "r2", "2026-11-29T09:00:01Z"),
        report(3, "r1", "review-7", "2026-11-29T10:00:00Z"),
        claim(4, "r3", "2026-11-29T11:00:00Z"),
    ]
    assert [a.run_id for a in claims.active_claims(comments, ME)] == ["r3"]
    kinds = [k for _r, k, _b in claims.reports_after(comments, ME, "2026-11-29T09:30:00Z")]
    assert kinds == ["review-7"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["claim", "report", "abandon"]),
            st.sampled_from(["r1", "r2", "r3"]),
            st.sampled_from(["r1", "r2", "r3"]),
        ),
        max_size=12,
    )
)
def test_every_reader_of_the_same_list_agrees_and_an_abandoned_run_never_holds(ops: list[tuple[str, str, str]]) -> None:
    comments = []
    for i, (op, run, by) in enumerate(ops):
        at = f"2026-11-29T10:{i:02d}:00Z"
        if op == "claim":
            comments.append(claim(i, run, at))
        elif op == "report":
            comments.append(report(i, run, "blocked-1", at))
        else:
            comments.append(report(i, run, claims.ABANDONED, at, by=by))
    active = claims.active_claims(comments, ME)
    held = claims.holding(comments, ME, 900, NOW)
    assert held.run_id == (active[0].run_id if active else None)
    for a in active:  # an active claim came after every run report, and after every takeover report naming its run
        after = [c for c in comments if c.id > a.comment.id]
        assert not any("kind=report-blocked" in c.body for c in after)
        last_abandon = max(
            (c.id for c in comments if f"orch:run={a.run_id} kind=report-abandoned" in c.body), default=-1
        )
        assert last_abandon < a.comment.id
    # a prefix of the list (a lagging replica) never shows a holder that the whole list says was ended before it
    for k in range(len(comments) + 1):
        prefix = claims.active_claims(comments[:k], ME)
        if prefix and active and prefix[0].comment.id < active[0].comment.id:
            ended = [c for c in comments[k:] if "kind=report-" in c.body]
            assert ended, "a holder may differ only when a later report ended it"
