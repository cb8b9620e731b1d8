"""The deadline policy: every deadline in one validated model, with where each value came from.

Layers, lowest first: built-in defaults < the administrator's TOML file < a Prefect Variable (when the
flows run under Prefect). Each layer may also hold per-organisation overrides under
``[organisations."<organisation code>"]``. Unknown keys, wrong types and nonsensical values are refused
with a message naming the key; so is an override for an organisation code the register does not hold
(:func:`check_organisations`): a typo such as ``KOP-IF0`` for ``KOP-IFO`` would otherwise never apply.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sipflows.models import Severity


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DocumentationPolicy(_Section):
    due_working_days: int = Field(
        2,
        ge=0,
        le=60,
        description="Documentation of a held SIP meeting or follow-up is due this many working days after "
        "it. Source: county collaboration agreement, Västmanland (and Uppsala, Dalarna): 'inom två "
        "arbetsdagar'.",
    )
    escalation_after_working_days: int = Field(
        3,
        ge=1,
        le=60,
        description="Escalate to the convener's escalation contact this many working days after the due "
        "day. Source: sipflows default, agreed with Västra Mälardalen's SIP developers.",
    )


class MeetingHeldPolicy(_Section):
    ask_after_working_days: int = Field(
        1,
        ge=1,
        le=20,
        description="Ask the convener to confirm that a SIP meeting or follow-up was held (or to say it was "
        "moved or cancelled) this many working days after its day, while the register still has it "
        "scheduled. Source: sipflows default — the county agreements' documentation deadline (two working "
        "days, Västmanland, Uppsala, Dalarna) can only be watched once the meeting is known to be held, so "
        "the question comes before that deadline.",
    )
    escalation_after_working_days: int = Field(
        3,
        ge=1,
        le=60,
        description="Escalate to the convener's escalation contact this many working days after the "
        "question when the meeting is still not confirmed. Source: sipflows default, as for documentation.",
    )


class InvitationPolicy(_Section):
    reminder_after_working_days: int = Field(
        3,
        ge=1,
        le=60,
        description="Remind an invitee who has not answered this many working days after the invitation "
        "was sent. Source: sipflows default (the county reports name unanswered invitations as a main "
        "failure).",
    )
    convener_alert_within_working_days: int = Field(
        2,
        ge=0,
        le=60,
        description="Alert the convener when the meeting is at most this many working days away and a "
        "required invitation is unanswered or declined, or a principal (kommun or region) has no "
        "accepting participant. Source: SIP law (both principals are obliged) and sipflows default.",
    )


class PreMeetingPolicy(_Section):
    alert_within_working_days: int = Field(
        5,
        ge=0,
        le=60,
        description="Alert the convener when a SIP meeting is at most this many working days away and no "
        "pre-meeting has been held for the plan. Source: Region Uppsala final report (förmöte before "
        "every SIP meeting).",
    )


class FollowUpPolicy(_Section):
    reminder_before_working_days: int = Field(
        10,
        ge=0,
        le=120,
        description="Remind the convener this many working days before the follow-up due date when no "
        "follow-up meeting is booked. Source: sipflows default (Dalarna: follow-ups that never happen).",
    )
    overdue_after_working_days: int = Field(
        1,
        ge=1,
        le=60,
        description="Overdue notice this many working days after the due date when no follow-up was held. "
        "Source: sipflows default.",
    )
    escalation_after_working_days: int = Field(
        5,
        ge=1,
        le=120,
        description="Escalate to the convener's escalation contact this many working days after the "
        "overdue notice. Source: sipflows default.",
    )


class FirstMeetingPolicy(_Section):
    """From the identified need (or the discharge) to the first SIP meeting being called."""

    ordinary_working_days: int = Field(
        10,
        ge=1,
        le=60,
        description="An open plan with consent must have its first SIP meeting booked (scheduled or held) "
        "within this many working days of the day the need was identified; the working day after, the "
        "convener and the coordinator are reminded. Source: no exact figure exists — the law (HSL 16 kap. "
        "4 §, SoL 2 kap. 7 §) says the work with the plan starts 'utan dröjsmål', Västra Mälardalen's SIP "
        "project 'skyndsamt'. Conservative sipflows default: two working weeks, shorter than the only "
        "figure an agreement in the sources names (Västbus: three weeks, for children).",
    )
    child_days: int = Field(
        21,
        ge=1,
        le=120,
        description="For a plan for a child or young person (under 18), calendar days from the identified "
        "need instead of ordinary_working_days, the limit ending on the next working day when it falls on "
        "a weekend or holiday. Source: Västbus, the agreement for children and young people in Västra "
        "Götaland: 'Västbusmöte ska ske senast inom 3 veckor'. That figure is for the meeting itself; "
        "sipflows watches the booking, so set it lower where the meeting must be held within it.",
    )
    discharge_days: int = Field(
        3,
        ge=1,
        le=30,
        description="For a plan arising at discharge from inpatient care, calendar days from the discharge "
        "date, the limit ending on the next working day when it falls on a weekend or holiday. Source: Lag "
        "(2017:612) om samverkan vid utskrivning från sluten hälso- och sjukvård 4 kap. (SFS 2019:979): "
        "the fasta vårdkontakt calls to SIP within three days of the notice that the patient is ready for "
        "discharge. The register holds the discharge date, not that notice (which comes before it), so "
        "this counts from a later day than the law does.",
    )
    escalation_after_working_days: int = Field(
        5,
        ge=1,
        le=60,
        description="Escalate to the convener's escalation contact this many working days after the "
        "reminder when the first SIP meeting is still not booked. Source: sipflows default, as for "
        "follow-ups.",
    )


class DeviationPolicy(_Section):
    acknowledgement_working_days: int = Field(
        2,
        ge=1,
        le=60,
        description="A deviation must be acknowledged by the concerning organisation within this many "
        "working days (reported 'skyndsamt'). Source: Göteborg area agreement / Västra Götaland.",
    )
    reply_days: int = Field(
        60,
        ge=1,
        le=365,
        description="Reply with measures within this many calendar days of the report. Source: Göteborg "
        "area agreement (svar inom 60 dagar).",
    )
    escalation_after_working_days: int = Field(
        3,
        ge=1,
        le=60,
        description="After the reminder (the working day after a missed deadline), escalate to the "
        "concerning organisation's escalation contact this many working days later. Source: sipflows "
        "default.",
    )
    repeat_escalation_every_working_days: int = Field(
        5,
        ge=1,
        le=60,
        description="While still open, escalate again every this many working days. Source: sipflows "
        "default.",
    )
    max_escalations: int = Field(
        3,
        ge=1,
        le=20,
        description="Stop repeating escalations after this many steps. Source: sipflows default.",
    )
    high_severity_factor: float = Field(
        0.5,
        gt=0,
        le=1,
        description="High severity multiplies the acknowledgement and reply times (rounded up, at least 1). "
        "Source: brief — high severity halves the times.",
    )

    def acknowledgement_for(self, severity: Severity) -> int:
        return self._scaled(self.acknowledgement_working_days, severity)

    def reply_for(self, severity: Severity) -> int:
        return self._scaled(self.reply_days, severity)

    def _scaled(self, value: int, severity: Severity) -> int:
        if severity == Severity.HIGH:
            return max(1, math.ceil(value * self.high_severity_factor))
        return value


class Policy(_Section):
    """Every deadline the checks use. Values in working days unless the name says otherwise."""

    documentation: DocumentationPolicy = DocumentationPolicy()
    meeting_held: MeetingHeldPolicy = MeetingHeldPolicy()
    invitations: InvitationPolicy = InvitationPolicy()
    pre_meeting: PreMeetingPolicy = PreMeetingPolicy()
    follow_up: FollowUpPolicy = FollowUpPolicy()
    deviations: DeviationPolicy = DeviationPolicy()
    first_meeting: FirstMeetingPolicy = FirstMeetingPolicy()


class PolicyError(ValueError):
    """The policy (a file, a variable or an override) is invalid; the message names every bad key."""


def descriptions() -> dict[str, str]:
    """Every key's documented meaning and source, as ``sipflows policy show --explain`` prints it."""
    out: dict[str, str] = {}
    for section, info in Policy.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, field_info in model.model_fields.items():
            out[f"{section}.{name}"] = field_info.description or ""
    return out


def _format_errors(exc: ValidationError, source: str, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}{key}" if key else prefix.rstrip(".") or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def _validate_layer(data: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """Check one layer on its own (so the error names the layer); returns it without organisations."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: the policy must be a table of sections, got {type(data).__name__}")
    body = {k: v for k, v in data.items() if k != "organisations"}
    try:
        Policy.model_validate(body)
    except ValidationError as exc:
        raise PolicyError(_format_errors(exc, source, prefix)) from None
    return body


def _leaves(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for section, values in layer.items():
        merged.setdefault(section, {}).update(values)
    return merged


@dataclass(frozen=True)
class Layer:
    source: str
    data: Mapping[str, Any]


@dataclass
class EffectivePolicy:
    """The policy in force, per organisation, and where each value came from."""

    policy: Policy
    origins: dict[str, str]
    overrides: dict[str, Policy] = field(default_factory=dict)
    override_origins: dict[str, dict[str, str]] = field(default_factory=dict)

    def for_organisation(self, code: str | None) -> Policy:
        if code is None:
            return self.policy
        return self.overrides.get(code, self.policy)

    def describe(self) -> list[tuple[str, str, Any, str]]:
        """Rows of (scope, key, value, source) for display and logging."""
        rows: list[tuple[str, str, Any, str]] = []
        for key, value in _leaves(self.policy.model_dump()).items():
            rows.append(("all", key, value, self.origins.get(key, "default")))
        for code, pol in sorted(self.overrides.items()):
            origins = self.override_origins.get(code, {})
            for key, value in _leaves(pol.model_dump()).items():
                if key in origins:
                    rows.append((code, key, value, origins[key]))
        return rows

    def describe_for(self, code: str) -> list[tuple[str, str, Any, str]]:
        """Every value in force for one organisation, its own overrides marked with their source."""
        origins = self.override_origins.get(code, {})
        return [
            (code, key, value, origins.get(key) or self.origins.get(key, "default"))
            for key, value in _leaves(self.for_organisation(code).model_dump()).items()
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.model_dump(),
            "organisations": {c: p.model_dump() for c, p in sorted(self.overrides.items())},
            "origins": dict(self.origins),
        }


def read_policy_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None


def build_policy(layers: list[Layer]) -> EffectivePolicy:
    """Merge layers in order (later wins) and validate the result and every organisation override."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    org_layers: dict[str, list[Layer]] = {}
    for layer in layers:
        data = layer.data
        body = _validate_layer(data, layer.source)
        orgs = data.get("organisations", {})
        if not isinstance(orgs, Mapping):
            raise PolicyError(f"{layer.source}: organisations: must be a table keyed by organisation code")
        for code, org_data in orgs.items():
            _validate_layer(org_data, layer.source, prefix=f"organisations.{code}.")
            if isinstance(org_data, Mapping) and "organisations" in org_data:
                raise PolicyError(f"{layer.source}: organisations.{code}.organisations: unknown key")
            org_layers.setdefault(str(code), []).append(Layer(layer.source, org_data))
        merged = _merge(merged, body)
        for key in _leaves(body):
            origins[key] = layer.source
    try:
        policy = Policy.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - each layer was validated already
        raise PolicyError(_format_errors(exc, "merged policy")) from None
    overrides: dict[str, Policy] = {}
    override_origins: dict[str, dict[str, str]] = {}
    for code, olayers in org_layers.items():
        org_merged = _merge(merged, {})
        o_origins: dict[str, str] = {}
        for ol in olayers:
            org_merged = _merge(org_merged, ol.data)
            for key in _leaves(ol.data):
                o_origins[key] = f"{ol.source} [organisations.{code}]"
        overrides[code] = Policy.model_validate(org_merged)
        override_origins[code] = o_origins
    return EffectivePolicy(policy, origins, overrides, override_origins)


def load_policy(
    policy_file: Path | None = None,
    variable: Mapping[str, Any] | None = None,
    variable_name: str = "variable",
) -> EffectivePolicy:
    """Defaults < TOML file < Prefect Variable contents (already read by the caller)."""
    layers: list[Layer] = []
    if policy_file is not None:
        layers.append(Layer(str(policy_file), read_policy_file(policy_file)))
    if variable:
        layers.append(Layer(f"prefect variable {variable_name}", variable))
    return build_policy(layers)


def default_policy() -> EffectivePolicy:
    return build_policy([])


def check_organisations(effective: EffectivePolicy, known_codes: Iterable[str]) -> None:
    """Refuse overrides for organisation codes that are not in the register: they would never apply."""
    known = set(known_codes)
    unknown = sorted(set(effective.overrides) - known)
    if not unknown:
        return
    lines = []
    for code in unknown:
        origins = effective.override_origins.get(code, {})
        source = next(iter(origins.values()), "policy").split(" [organisations.")[0]
        close = difflib.get_close_matches(code, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{source}: organisations.{code}: no organisation with this code in the register{hint}")
    raise PolicyError("\n".join(lines))


def check_organisations_in(session: Any, effective: EffectivePolicy) -> None:
    """:func:`check_organisations` against the organisation codes of the register ``session`` reads."""
    from sqlalchemy import select

    from sipflows.models import Organisation

    if effective.overrides:
        check_organisations(effective, session.scalars(select(Organisation.code)))
