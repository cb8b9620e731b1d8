"""The Prefect-specific pieces every flow shares: settings, the policy's Variable layer, loud failures."""

from __future__ import annotations

from datetime import UTC, date, datetime

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.variables import Variable
from pydantic import ValidationError

from sipflows.policy import EffectivePolicy, PolicyError, load_policy
from sipflows.runs import policy_log_lines, policy_markdown, run_dates
from sipflows.settings import Settings


class ConfigurationError(RuntimeError):
    """Settings or policy are invalid: the run stops before touching anything."""


def fail_loudly(flow_key: str, what: str, detail: str) -> ConfigurationError:
    """Leave an artifact that says why, then hand back the exception for the flow to raise."""
    create_markdown_artifact(
        key=f"{flow_key}-configuration-error",
        markdown=f"# {what} is invalid\n\nThe run stopped before doing anything.\n\n```\n{detail}\n```\n",
        description=f"{what} is invalid",
    )
    get_run_logger().error("%s is invalid:\n%s", what, detail)
    return ConfigurationError(f"{what} is invalid:\n{detail}")


def load_settings(flow_key: str) -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # pydantic names the field; SecretStr keeps values out of the message
        raise fail_loudly(flow_key, "Settings", str(exc)) from None


def load_effective_policy(flow_key: str, settings: Settings) -> EffectivePolicy:
    """Defaults < the settings' TOML file < the Prefect Variable; logged so every run shows what it used."""
    try:
        variable = Variable.get(settings.policy_variable, default=None)
        if variable is not None and not isinstance(variable, dict):
            kind = type(variable).__name__
            raise PolicyError(
                f"prefect variable {settings.policy_variable}: must be a JSON object, got {kind}"
            )
        policy = load_policy(settings.policy_file, variable=variable, variable_name=settings.policy_variable)
    except PolicyError as exc:
        raise fail_loudly(flow_key, "The deadline policy", str(exc)) from None
    logger = get_run_logger()
    logger.info("Effective deadline policy:\n%s", "\n".join(policy_log_lines(policy)))
    return policy


def policy_artifact(flow_key: str, policy: EffectivePolicy) -> None:
    create_markdown_artifact(
        key=f"{flow_key}-policy",
        markdown="# Deadline policy used by this run\n\n" + policy_markdown(policy),
        description="The effective deadline policy and where each value came from",
    )


def this_run(date_override: date | None) -> tuple[date, datetime]:
    """The judged date and ``now`` from the scheduled start (or the parameter, for replays)."""
    start: datetime = flow_run.get_scheduled_start_time()  # the run's expected start, aware
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return run_dates(start, date_override)


def flow_run_id() -> str | None:
    value = flow_run.get_id()
    return str(value) if value else None
