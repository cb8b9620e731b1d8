"""The demo's dates, relative to the judged day, found with the same calendar and ladders the checks use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from sipflows.checks import first_meeting
from sipflows.checks.base import ladder_stage
from sipflows.models import Severity
from sipflows.policy import EffectivePolicy, Policy
from sipflows.workdays import WorkCalendar


class Timeline:
    """Dates relative to the judged day, on the calendar and policy of the deciding organisation."""

    def __init__(self, today: date, calendars: dict[str, WorkCalendar], policy: EffectivePolicy) -> None:
        self.today = today
        self.calendars = calendars
        self.policy = policy

    def cal(self, org: str) -> WorkCalendar:
        return self.calendars.get(org) or WorkCalendar()

    def pol(self, org: str) -> Policy:
        return self.policy.for_organisation(org)

    def wd(self, n: int, org: str = "") -> date:
        return self.cal(org).add_working_days(self.today, n)

    def search(
        self, org: str, wanted: str, stage_of: Callable[[date], str | None], start: date
    ) -> date | None:
        """The latest day on or before ``start`` whose stage on the judged day is ``wanted``: a working day
        if there is one (people mostly work then), else any day (a deviation can be reported on Easter
        Sunday)."""
        cal = self.cal(org)
        for working_only in (True, False):
            day = start
            for _ in range(400):
                if (cal.is_working_day(day) or not working_only) and stage_of(day) == wanted:
                    return day
                day -= timedelta(days=1)
        return None

    def documentation_meeting_day(self, org: str, stage: str) -> date | None:
        doc = self.pol(org).documentation
        steps = [("reminder", 0), ("overdue", 1), ("escalation-1", doc.escalation_after_working_days)]
        cal = self.cal(org)

        def stage_of(day: date) -> str | None:
            return ladder_stage(cal, cal.add_working_days(day, doc.due_working_days), self.today, steps)

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))

    def unconfirmed_meeting_day(self, org: str, stage: str) -> date | None:
        held = self.pol(org).meeting_held
        steps = [("reminder", 0), ("escalation-1", held.escalation_after_working_days)]
        cal = self.cal(org)

        def stage_of(day: date) -> str | None:
            return ladder_stage(
                cal, cal.add_working_days(day, held.ask_after_working_days), self.today, steps
            )

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))

    def follow_up_due(self, org: str, stage: str) -> date | None:
        fu = self.pol(org).follow_up
        steps = [
            ("reminder", -fu.reminder_before_working_days),
            ("overdue", fu.overdue_after_working_days),
            ("escalation-1", fu.overdue_after_working_days + fu.escalation_after_working_days),
        ]
        cal = self.cal(org)

        def stage_of(day: date) -> str | None:
            return ladder_stage(cal, day, self.today, steps)

        return self.search(org, stage, stage_of, self.wd(fu.reminder_before_working_days + 20, org))

    def deviation_reported_day(self, org: str, severity: Severity, ladder: str, stage: str) -> date | None:
        dev = self.pol(org).deviations
        steps = [(f"{ladder}-reminder", 1)]
        for i in range(1, dev.max_escalations + 1):
            offset = (
                1 + dev.escalation_after_working_days + (i - 1) * dev.repeat_escalation_every_working_days
            )
            steps.append((f"{ladder}-escalation-{i}", offset))
        cal = self.cal(org)

        def due(day: date) -> date:
            if ladder == "acknowledgement":
                return cal.add_working_days(day, dev.acknowledgement_for(severity))
            return cal.next_working_day(day + timedelta(days=dev.reply_for(severity)))

        def stage_of(day: date) -> str | None:
            return ladder_stage(cal, due(day), self.today, steps)

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))

    def first_meeting_base_day(self, org: str, kind: str, stage: str) -> date | None:
        """The identified day (or, for a discharge, the discharge date) whose first-meeting stage on the
        judged day is ``stage``."""
        policy, cal = self.pol(org).first_meeting, self.cal(org)

        def stage_of(day: date) -> str | None:
            return first_meeting.stage_on(cal, policy, kind, day, self.today)[1]

        return self.search(org, stage, stage_of, self.today - timedelta(days=1))
