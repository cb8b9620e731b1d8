"""The register's words in Swedish and English: meeting kinds, deviation kinds, severities, organisation
kinds, principals, and the names of days and months (OS locales are not to be relied on).

One place for the notices (``sipflows.notices.render``) and the report (``sipflows.report.words``), so that
a mail and the report call the same thing the same name. The tables hold the word as it stands inside a
sentence (``part uteblev``); ``heading`` gives the form that starts a line or a column (``Part uteblev``).
Imports nothing from ``sipflows``: every layer may use it.
"""

from __future__ import annotations

from collections.abc import Mapping

Labels = Mapping[str, Mapping[str, str]]  # language -> value -> label

WEEKDAYS = {
    "sv": ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
MONTHS = {
    "sv": (
        "januari",
        "februari",
        "mars",
        "april",
        "maj",
        "juni",
        "juli",
        "augusti",
        "september",
        "oktober",
        "november",
        "december",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}

# one meeting (a notice about it) ...
MEETING_KIND_LABELS = {
    "sv": {"pre_meeting": "förmöte", "sip_meeting": "SIP-möte", "follow_up": "uppföljningsmöte"},
    "en": {"pre_meeting": "pre-meeting", "sip_meeting": "SIP meeting", "follow_up": "follow-up meeting"},
}
# ... and meetings counted (the report counts SIP and follow-up meetings)
MEETING_KIND_PLURALS = {
    "sv": {"sip_meeting": "SIP-möten", "follow_up": "uppföljningsmöten"},
    "en": {"sip_meeting": "SIP meetings", "follow_up": "follow-up meetings"},
}
DEVIATION_KIND_LABELS = {
    "sv": {
        "party_absent": "part uteblev",
        "plan_not_followed": "planen följdes inte",
        "documentation_late": "sen dokumentation",
        "invitation_not_answered": "kallelse obesvarad",
        "other": "övrigt",
    },
    "en": {
        "party_absent": "party absent",
        "plan_not_followed": "plan not followed",
        "documentation_late": "documentation late",
        "invitation_not_answered": "invitation not answered",
        "other": "other",
    },
}
SEVERITY_LABELS = {"sv": {"normal": "normal", "high": "hög"}, "en": {"normal": "normal", "high": "high"}}
ORG_KIND_LABELS = {
    "sv": {
        "municipal_unit": "kommunal verksamhet",
        "region_unit": "regionens verksamhet",
        "forsakringskassan": "Försäkringskassan",
        "arbetsformedlingen": "Arbetsförmedlingen",
        "school": "skola/elevhälsa",
        "kriminalvarden": "Kriminalvården",
        "police": "polisen",
        "user_organisation": "brukarorganisation",
        "other": "annan",
    },
    "en": {
        "municipal_unit": "municipal unit",
        "region_unit": "region unit",
        "forsakringskassan": "Försäkringskassan",
        "arbetsformedlingen": "Arbetsförmedlingen",
        "school": "school / pupil health",
        "kriminalvarden": "Kriminalvården",
        "police": "police",
        "user_organisation": "user organisation",
        "other": "other",
    },
}
PRINCIPAL_LABELS = {
    "sv": {"kommun": "kommunen", "region": "regionen"},
    "en": {"kommun": "the municipality", "region": "the region"},
}


def heading(label: str) -> str:
    """The label as it starts a line: first letter upper case, the rest as it is (``SIP-möten`` stays)."""
    return label[:1].upper() + label[1:]


def headings(labels: Labels) -> dict[str, dict[str, str]]:
    """A copy of a label table with every label as a heading."""
    return {lang: {value: heading(label) for value, label in table.items()} for lang, table in labels.items()}
