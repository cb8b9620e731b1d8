"""One Prefect test harness for all flow tests (it takes ~15 s to start); domain tests never load it.

Flow tests are grouped onto one xdist worker (``xdist_group``; pyproject sets ``--dist loadgroup``) so the
harness starts once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/flows/" in str(item.fspath):
            item.add_marker(pytest.mark.xdist_group("prefect"))
            item.add_marker(pytest.mark.prefect)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def flow_env(prefect_harness, engine, tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """Settings for a flow run: this test's register, an outbox folder, no policy file."""
    from sipflows.settings import get_settings

    env = {
        "SIPFLOWS_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "SIPFLOWS_OUTBOX_DIR": str(tmp_path / "outbox"),
        "SIPFLOWS_REPORTS_DIR": str(tmp_path / "reports"),
        "SIPFLOWS_TRANSPORT": "outbox",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SIPFLOWS_POLICY_FILE", raising=False)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()
