"""The N+1 guard: every check runs a fixed number of SQL statements, however many plans are due."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import event

from sipflows.checks import ALL_CHECKS, CHECK_NAMES, run_checks
from sipflows.checks.base import CheckContext
from sipflows.models import Answer, MeetingKind, MeetingStatus, PlanOrigin
from sipflows.policy import Layer, build_policy

JUDGED = date(2026, 3, 12)
# an override and an organisation with its own closed day, so the per-organisation SQL is exercised
POLICY = build_policy(
    [
        Layer(
            "t",
            {
                "organisations": {
                    "RV-VC-KOP": {"deviations": {"reply_days": 5}},
                    "KOP-IFO": {"first_meeting": {"ordinary_working_days": 8, "discharge_days": 2}},
                }
            },
        )
    ]
)


@contextmanager
def counting(engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def add_plans(build, region, lss, n: int) -> None:
    """n plans, each with something due in every check on JUDGED."""
    for i in range(n):
        convener = lss if i % 5 == 0 else region["k"]
        case = build.case(
            convener, participants=(region["r"], region["f"], region["s"]), follow_up_due=date(2026, 3, 20)
        )
        build.meeting(case, date(2026, 3, 2), status=MeetingStatus.HELD)
        build.meeting(case, date(2026, 3, 5))  # passed, still scheduled: nobody marked it held
        upcoming = build.meeting(case, date(2026, 3, 16))
        build.invite(upcoming, region["r"], sent_on=date(2026, 3, 2))
        build.invite(upcoming, region["f"], sent_on=date(2026, 3, 2), answer=Answer.DECLINED)
        build.invite(upcoming, region["s"], sent_on=date(2026, 3, 2), answer=Answer.ACCEPTED)
        build.deviation(case, region["k"], region["region"], date(2026, 3, 2))
        # and a plan of each kind whose first SIP meeting was never called (a pre-meeting is not one)
        waiting = build.case(convener, identified_on=date(2026, 2, 2), consent_given_on=date(2026, 2, 3))
        build.meeting(waiting, date(2026, 2, 10), kind=MeetingKind.PRE_MEETING, status=MeetingStatus.HELD)
        build.case(convener, identified_on=date(2026, 2, 2), under_18=True)
        build.case(
            convener,
            identified_on=date(2026, 3, 2),
            consent_given_on=date(2026, 3, 2),
            origin=PlanOrigin.DISCHARGE,
            discharged_on=date(2026, 3, 4),
        )
    build.session.flush()


def statements_per_check(session, engine) -> tuple[dict[str, int], dict[str, int]]:
    ctx = CheckContext.load(session, JUDGED, POLICY)
    counts, found = {}, {}
    for check in ALL_CHECKS:
        with counting(engine) as statements:
            found[check.NAME] = len(check.run(session, ctx))
        counts[check.NAME] = len(statements)
    return counts, found


def test_statement_count_does_not_grow_with_the_register(build, session, engine):
    region = build.standard_region()
    lss = build.contact(build.org("KOP-LSS", closed_days=(date(2026, 3, 9),)), escalation=region["k_chief"])
    add_plans(build, region, lss, 10)
    small, found_small = statements_per_check(session, engine)
    add_plans(build, region, lss, 20)
    large, found_large = statements_per_check(session, engine)

    assert set(small) == set(CHECK_NAMES)
    for name in CHECK_NAMES:
        assert found_small[name] >= 10 and found_large[name] == 3 * found_small[name], name
    assert small == large
    assert all(1 <= n <= 3 for n in large.values()), large


def test_run_checks_loads_the_context_once(build, session, engine):
    region = build.standard_region()
    lss = build.contact(build.org("KOP-LSS", closed_days=(date(2026, 3, 9),)), escalation=region["k_chief"])
    add_plans(build, region, lss, 10)
    per_check, _ = statements_per_check(session, engine)
    with counting(engine) as statements:
        result = run_checks(session, JUDGED, POLICY)
    assert list(result) == list(CHECK_NAMES)
    assert len(statements) == sum(per_check.values()) + 2  # organisations and closed days
    with counting(engine) as statements:
        only = run_checks(session, JUDGED, POLICY, only=["pre_meeting"])
    assert list(only) == ["pre_meeting"] and only["pre_meeting"] == result["pre_meeting"]
    assert len(statements) == per_check["pre_meeting"] + 2


def test_unknown_check_names_are_refused(session):
    with pytest.raises(ValueError, match="unknown checks: nonsense"):
        run_checks(session, JUDGED, POLICY, only=["documentation", "nonsense"])
