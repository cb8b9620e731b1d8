"""The pull step of prefect.yaml: a worker runs the flows from its own SIPFLOWS_HOME, or says to set it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.steps import SipflowsHomeError, enter_sipflows_home

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cwd() -> Iterator[Path]:
    before = Path.cwd()
    yield before
    os.chdir(before)


def test_a_worker_without_sipflows_home_is_told_to_set_it(cwd, monkeypatch):
    monkeypatch.delenv("SIPFLOWS_HOME", raising=False)
    with pytest.raises(SipflowsHomeError, match="SIPFLOWS_HOME is not set on this worker: set it"):
        enter_sipflows_home()
    assert Path.cwd() == cwd


def test_a_sipflows_home_that_is_not_a_checkout_is_named(cwd, monkeypatch, tmp_path):
    monkeypatch.setenv("SIPFLOWS_HOME", str(tmp_path))
    with pytest.raises(SipflowsHomeError, match=f"SIPFLOWS_HOME={tmp_path} is not a sipflows checkout"):
        enter_sipflows_home()


def test_the_step_enters_the_checkout(cwd, monkeypatch, tmp_path):
    monkeypatch.setenv("SIPFLOWS_HOME", str(CHECKOUT))
    os.chdir(tmp_path)
    assert enter_sipflows_home() == {"directory": str(CHECKOUT)}
    assert Path.cwd() == CHECKOUT
