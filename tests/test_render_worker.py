"""The render worker: a child process that renders exactly what this process would, batch by batch, and
fails loudly — a template's error comes back as that error, a dead child as an error naming it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from sipflows.notices.render import FINDING_KINDS, Renderer, RenderError
from sipflows.notices.worker import RenderWorker
from tests.test_render import full_context


def jobs() -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    return [(kind, lang, full_context(kind, lang)) for kind in sorted(FINDING_KINDS) for lang in ("sv", "en")]


def test_the_worker_renders_every_kind_as_this_process_does_batch_after_batch() -> None:
    here = Renderer()
    expected = [here.render(kind, lang, ctx) for kind, lang, ctx in jobs()]
    with RenderWorker(None) as worker:
        worker.submit(jobs())
        worker.submit(jobs()[:3])  # a second batch in flight: answers come in order
        assert worker.result() == expected
        assert worker.result() == expected[:3]


def test_an_override_folder_is_used_by_the_worker(tmp_path: Path) -> None:
    (tmp_path / "documentation.sv.subject.txt").write_text("Egen rubrik {{ case.reference }}\n")
    with RenderWorker(tmp_path) as worker:
        worker.submit([("documentation.reminder", "sv", full_context("documentation.reminder", "sv"))])
        [rendered] = worker.result()
    assert rendered.subject == "Egen rubrik SIP-2026-17"
    assert rendered == Renderer(tmp_path).render(
        "documentation.reminder", "sv", full_context("documentation.reminder", "sv")
    )


def test_a_template_error_comes_back_as_itself_and_the_next_batch_still_renders(tmp_path: Path) -> None:
    (tmp_path / "follow_up.sv.subject.txt").write_text("{{ no_such_value.field }}\n")
    good = ("documentation.reminder", "sv", full_context("documentation.reminder", "sv"))
    with RenderWorker(tmp_path) as worker:
        worker.submit([good, ("follow_up.reminder", "sv", full_context("follow_up.reminder", "sv"))])
        with pytest.raises(UndefinedError, match="no_such_value"):
            worker.result()
        worker.submit([good, ("no.such-kind", "sv", {})])
        with pytest.raises(RenderError, match="unknown notice kind"):
            worker.result()
        worker.submit([good])
        assert [r.subject for r in worker.result()] == [Renderer(tmp_path).render(*good).subject]


def test_a_context_that_is_not_plain_is_refused_in_the_worker_too() -> None:
    ctx = full_context("documentation.reminder", "sv")
    ctx["case"] = {"reference": "SIP-1", "note": {1, 2}}  # a set: not a plain value
    with RenderWorker(None) as worker:
        worker.submit([("documentation.reminder", "sv", ctx)])
        with pytest.raises(RenderError, match="only plain values"):
            worker.result()


def test_a_worker_that_dies_is_an_error_naming_it_not_a_shorter_batch() -> None:
    worker = RenderWorker(None)
    try:
        worker.submit(jobs()[:1])
        assert len(worker.result()) == 1
        os.kill(worker._process.pid, signal.SIGKILL)
        worker._process.wait()
        with pytest.raises(RuntimeError, match="render worker"):
            worker.submit(jobs()[:1])
            worker.result()
        with pytest.raises(RuntimeError, match="render worker"):  # and stays so
            worker.submit(jobs()[:1])
            worker.result()
    finally:
        worker.close()
    assert worker._process.returncode is not None


def test_closing_stops_the_child() -> None:
    with RenderWorker(None) as worker:
        worker.submit(jobs()[:2])
        pid = worker._process.pid
    assert worker._process.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
