"""The alert block and the automations of deployments/automations.yaml, applied to a Prefect API.

What they do end to end (a failed run and dead notices reaching a webhook) is tested against a real
Prefect server in tests/deployed/; here: that applying them is idempotent and follows the settings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, MicrosoftTeamsWebhook
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from deployments.alerts import (
    ALERTS_BLOCK_NAME,
    AlertSetupError,
    alert_block,
    apply_alerts,
    automation_for,
    load_automation_specs,
)
from sipflows.settings import Settings

NAMES = {spec["name"] for spec in load_automation_specs()}
TEAMS_URL = (
    "https://prod-01.westeurope.logic.azure.com:443/workflows/abc123/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Hemlig-signatur-77"
)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def sipflows_automations() -> dict[str, list]:
    with get_client(sync_client=True) as client:
        found: dict[str, list] = {}
        for automation in client.read_automations():
            if automation.name in NAMES:
                found.setdefault(automation.name, []).append(automation)
        return found


@pytest.fixture
def clean(prefect_harness) -> Iterator[None]:
    def wipe() -> None:
        with get_client(sync_client=True) as client:
            for automations in sipflows_automations().values():
                for automation in automations:
                    client.delete_automation(automation.id)

    wipe()
    yield
    wipe()


def test_the_repository_holds_the_three_automations():
    assert {"sipflows-run-failed", "sipflows-dead-notices", "sipflows-silent-runs"} == NAMES
    silent = next(s for s in load_automation_specs() if s["name"] == "sipflows-silent-runs")
    assert silent["trigger"]["posture"] == "Proactive" and silent["trigger"]["within"] == 120
    assert silent["actions"] == [silent["actions"][0]] and silent["actions"][0]["state"] == "CRASHED"


def test_a_webhook_url_makes_the_block_and_every_automation_once(clean):
    config = settings(alerts_webhook_url="http://127.0.0.1:9/hook")
    first = apply_alerts(config)
    assert first.block == f"custom-webhook/{ALERTS_BLOCK_NAME}"
    assert sorted(first.created) == sorted(NAMES) and first.skipped == []
    again = apply_alerts(config)  # a restarted serve process, or setup run on a second machine
    assert again.created == [] and sorted(again.updated) == sorted(NAMES)
    found = sipflows_automations()
    assert {name: len(a) for name, a in found.items()} == {name: 1 for name in NAMES}
    block = CustomWebhookNotificationBlock.load(ALERTS_BLOCK_NAME)
    assert block.url == "http://127.0.0.1:9/hook" and block.json_data == {
        "subject": "{{subject}}",
        "text": "{{body}}",
    }
    (failed,) = found["sipflows-run-failed"]
    (action,) = failed.actions
    assert action.block_document_id == block._block_document_id
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}


def test_a_changed_definition_is_brought_up_to_date_by_name(clean):
    config = settings(alerts_webhook_url="http://127.0.0.1:9/hook")
    apply_alerts(config)
    with get_client(sync_client=True) as client:
        (failed,) = client.read_automations_by_name("sipflows-run-failed")
        spec = next(s for s in load_automation_specs() if s["name"] == "sipflows-run-failed")
        old = automation_for(
            {**spec, "description": "an old description"}, failed.actions[0].block_document_id
        )
        client.update_automation(failed.id, old)
        client.create_automation(old)  # a stray copy, made by hand
    apply_alerts(config)
    (current,) = sipflows_automations()["sipflows-run-failed"]
    assert current.description == spec["description"]


def test_without_an_alert_channel_only_the_silent_runs_automation_is_applied(clean):
    result = apply_alerts(settings())
    assert result.block is None and result.created == ["sipflows-silent-runs"]
    assert sorted(result.skipped) == ["sipflows-dead-notices", "sipflows-run-failed"]
    assert "SIPFLOWS_ALERTS_WEBHOOK_URL" in "\n".join(result.lines())
    assert set(sipflows_automations()) == {"sipflows-silent-runs"}


def test_teams_is_chosen_by_a_setting(clean):
    found = alert_block(settings(alerts_kind="teams", alerts_webhook_url=SecretStr(TEAMS_URL)))
    assert found is not None and found[1] == f"ms-teams-webhook/{ALERTS_BLOCK_NAME}"
    block = MicrosoftTeamsWebhook.load(ALERTS_BLOCK_NAME)
    assert block.url.get_secret_value() == TEAMS_URL


def test_a_url_teams_cannot_use_is_refused_without_repeating_it(clean):
    with pytest.raises(AlertSetupError, match="SIPFLOWS_ALERTS_WEBHOOK_URL") as raised:
        alert_block(
            settings(alerts_kind="teams", alerts_webhook_url=SecretStr("https://example.com/hook?k=Hemlig-1"))
        )
    assert "Hemlig-1" not in str(raised.value)


def test_an_existing_notification_block_can_be_named_instead(clean):
    CustomWebhookNotificationBlock(name="ops", url="http://127.0.0.1:9/ops").save(
        "ops-channel", overwrite=True
    )
    result = apply_alerts(settings(alerts_block="custom-webhook/ops-channel"))
    assert result.block == "custom-webhook/ops-channel" and sorted(result.created) == sorted(NAMES)
    with pytest.raises(AlertSetupError, match="SIPFLOWS_ALERTS_BLOCK=custom-webhook/nowhere"):
        apply_alerts(settings(alerts_block="custom-webhook/nowhere"))
