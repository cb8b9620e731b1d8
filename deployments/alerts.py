"""Alerts for operations staff: the notification block and the automations of ``automations.yaml``.

Both are applied idempotently — the block is saved under one name (overwritten), each automation is
created or updated by its name — so running ``deployments.serve`` or ``deployments.setup`` again, on any
machine, leaves exactly one of each, matching the repository.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import yaml
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.blocks.notifications import CustomWebhookNotificationBlock, MicrosoftTeamsWebhook
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore
from pydantic import SecretStr

from sipflows.settings import Settings

AUTOMATIONS_YAML = Path(__file__).with_name("automations.yaml")
ALERTS_BLOCK_NAME = "sipflows-alerts"
# what the generic webhook posts: {"subject": ..., "text": ...} — "text" is what Slack-style receivers
# (Mattermost, Rocket.Chat, many chat bridges) show
WEBHOOK_JSON = {"subject": "{{subject}}", "text": "{{body}}"}


class AlertSetupError(RuntimeError):
    """The alert settings cannot be applied; the message names the SIPFLOWS_ALERTS_* setting."""


@dataclass
class AlertSetup:
    block: str | None = None  # "<type-slug>/<name>" of the notification block used, if any
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # need a notification block and none is configured

    def lines(self) -> list[str]:
        out = []
        if self.block:
            out.append(f"alerts go through the Prefect notification block {self.block}")
        else:
            out.append(
                "no alert channel configured (SIPFLOWS_ALERTS_WEBHOOK_URL or SIPFLOWS_ALERTS_BLOCK): "
                "failed runs and dead notices are shown in the Prefect UI only"
            )
        if self.created:
            out.append(f"automations created: {', '.join(self.created)}")
        if self.updated:
            out.append(f"automations up to date: {', '.join(self.updated)}")
        if self.skipped:
            out.append(f"automations not applied (no alert channel): {', '.join(self.skipped)}")
        return out


def load_automation_specs(path: Path = AUTOMATIONS_YAML) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    specs: list[dict[str, Any]] = data["automations"]
    return specs


def _sends_notifications(spec: dict[str, Any]) -> bool:
    return any(action.get("type") == "send-notification" for action in spec.get("actions", []))


def automation_for(spec: dict[str, Any], block_id: UUID | None) -> AutomationCore:
    """The automation of one ``automations.yaml`` entry, its notifications going to ``block_id``."""
    spec = copy.deepcopy(spec)
    for action in spec.get("actions", []):
        if action.get("type") == "send-notification":
            if block_id is None:
                raise AlertSetupError(f"automation {spec['name']} needs a notification block")
            action["block_document_id"] = str(block_id)
    return AutomationCore.model_validate(spec)


def alert_block(settings: Settings) -> tuple[UUID, str] | None:
    """Save (or find) the notification block alerts go through; None when no channel is configured."""
    if settings.alerts_block:
        try:
            block = Block.load(settings.alerts_block)
        except (ValueError, RuntimeError) as exc:
            raise AlertSetupError(
                f"SIPFLOWS_ALERTS_BLOCK={settings.alerts_block}: no such Prefect block ({exc}); give it as "
                "'<block-type-slug>/<name>', e.g. slack-webhook/ops"
            ) from None
        if not isinstance(block, NotificationBlock) or block._block_document_id is None:
            raise AlertSetupError(
                f"SIPFLOWS_ALERTS_BLOCK={settings.alerts_block} is not a notification block"
            )
        return block._block_document_id, settings.alerts_block
    if settings.alerts_webhook_url is None:
        return None
    url = settings.alerts_webhook_url.get_secret_value()
    new: Block
    try:
        if settings.alerts_kind == "teams":
            new = MicrosoftTeamsWebhook(url=SecretStr(url))
        else:
            new = CustomWebhookNotificationBlock(name="sipflows", url=url, json_data=dict(WEBHOOK_JSON))
    except ValueError:
        # never repeat the URL: a Teams or webhook URL carries its secret in it
        raise AlertSetupError(
            f"SIPFLOWS_ALERTS_WEBHOOK_URL is not a usable {settings.alerts_kind} URL "
            "(SIPFLOWS_ALERTS_KIND=teams needs a Teams workflow URL)"
        ) from None
    block_id = cast(UUID, new.save(ALERTS_BLOCK_NAME, overwrite=True))  # sync here
    return block_id, f"{new.get_block_type_slug()}/{ALERTS_BLOCK_NAME}"


def apply_alerts(settings: Settings, path: Path = AUTOMATIONS_YAML) -> AlertSetup:
    """Create or update the notification block and every automation of ``automations.yaml``."""
    found = alert_block(settings)
    result = AlertSetup(block=found[1] if found else None)
    block_id = found[0] if found else None
    with get_client(sync_client=True) as client:
        for spec in load_automation_specs(path):
            name = spec["name"]
            if _sends_notifications(spec) and block_id is None:
                result.skipped.append(name)
                continue
            automation = automation_for(spec, block_id)
            existing = client.read_automations_by_name(name)
            if not existing:
                client.create_automation(automation)
                result.created.append(name)
                continue
            client.update_automation(existing[0].id, automation)
            for extra in existing[1:]:  # a copy made by hand, or by an older sipflows: one is enough
                client.delete_automation(extra.id)
            result.updated.append(name)
    return result
