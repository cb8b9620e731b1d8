"""The Prefect-specific pieces every flow shares: settings, the policy's Variable layer, loud failures."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.system import Secret
from prefect.runtime import flow_run
from prefect.variables import Variable
from sqlalchemy import Engine

from sipflows.artifacts import Artifact, MarkdownArtifact, configuration_error, policy_log_lines
from sipflows.db import RegisterError, describe_url, read_scope, register
from sipflows.policy import EffectivePolicy, PolicyError, check_organisations_in, load_policy
from sipflows.settings import Settings, SettingsError
from sipflows.settings import load_settings as read_settings
from sipflows.timeutil import run_dates


class ConfigurationError(RuntimeError):
    """Settings, register or policy cannot be used: the run stops before touching anything."""


def publish(artifacts: Iterable[Artifact]) -> None:
    """Create the Prefect artifacts ``sipflows.artifacts`` built for this run."""
    for artifact in artifacts:
        if isinstance(artifact, MarkdownArtifact):
            create_markdown_artifact(
                key=artifact.key, markdown=artifact.markdown, description=artifact.description
            )
        else:
            create_table_artifact(key=artifact.key, table=artifact.table, description=artifact.description)


def fail_loudly(flow_key: str, what: str, detail: str, verb: str = "is invalid") -> ConfigurationError:
    """Leave an artifact that says why, then hand back the exception for the flow to raise."""
    publish([configuration_error(flow_key, what, detail, verb)])
    get_run_logger().error("%s %s:\n%s", what, verb, detail)
    return ConfigurationError(f"{what} {verb}:\n{detail}")


def prefect_secret(block_name: str) -> object:
    """The value of a Prefect Secret block: how the flows give Exchange and Graph their credentials."""
    block: Any = Secret.load(block_name)  # sync in a sync flow; typed as maybe-awaitable by Prefect
    return block.get()


def load_settings(flow_key: str) -> Settings:
    try:
        return read_settings()
    except SettingsError as exc:
        # names the environment variable to fix; SecretStr keeps values out of the message
        raise fail_loudly(flow_key, "Settings", str(exc)) from None


@contextmanager
def flow_register(flow_key: str, settings: Settings) -> Iterator[Engine]:
    """The register the run works on, logged without credentials and closed after the run; a missing
    one fails the run loudly."""
    url = settings.sqlalchemy_url()
    get_run_logger().info("Register: %s", describe_url(url))
    with ExitStack() as stack:
        try:
            engine = stack.enter_context(register(url))
        except RegisterError as exc:
            raise fail_loudly(flow_key, "The register", str(exc), verb="cannot be used") from None
        yield engine


def check_policy_organisations(flow_key: str, engine: Engine, policy: EffectivePolicy) -> None:
    """An override for an organisation code the register does not hold fails the run (it never applies)."""
    try:
        with read_scope(engine) as session:
            check_organisations_in(session, policy)
    except PolicyError as exc:
        raise fail_loudly(flow_key, "The deadline policy", str(exc)) from None


def load_effective_policy(flow_key: str, settings: Settings) -> EffectivePolicy:
    """Defaults < the settings' TOML file < the Prefect Variable; logged so every run shows what it used."""
    try:
        if settings.policy_file is not None and not settings.policy_file.is_file():
            raise PolicyError(f"SIPFLOWS_POLICY_FILE={settings.policy_file}: no such file")
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


def this_run(date_override: date | None) -> tuple[date, datetime]:
    """The judged date and ``now`` from the scheduled start (or the parameter, for replays)."""
    start: datetime = flow_run.get_scheduled_start_time()  # the run's expected start, aware
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return run_dates(start, date_override)


def flow_run_id() -> str | None:
    value = flow_run.get_id()
    return str(value) if value else None
