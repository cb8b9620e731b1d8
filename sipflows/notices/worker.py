"""Rendering in a second process, so a first day's tens of thousands of notices use two cores.

Jinja renders in pure Python: inside the sweep's process it cannot run beside the rest of the day's work
(reading the register, building each notice's context, writing the ledger), however many cores the
machine has. :class:`RenderWorker` starts ``python -m sipflows.notices.worker``, which renders batches of
``(kind, language, context)`` with the same :class:`~sipflows.notices.render.Renderer` (the built-in
templates, or the administrator's folder, sandboxed) while the sweep prepares the next batch. The output
is the same string for string: the child runs the same code on the same plain values.

Frames on the child's stdin and stdout: an 8-byte length, then a pickle. The parent only unpickles what
its own child wrote (the rendered strings, or the exception rendering raised); the child is stopped with
the sweep. An error in a template is raised in the sweep as it would be raised here (a ``RenderError``,
Jinja's ``UndefinedError``…); a child that dies takes the sweep with it (its transaction rolls back),
never a silently shorter day.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from sipflows.notices.render import Rendered, get_renderer

_LENGTH = struct.Struct("!Q")

# A job: the notice kind, the language and the context (plain values) of one rendering.
Job = tuple[str, str, dict[str, Any]]


def _write(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class RenderWorker:
    """A child process that renders batches in order; at most a few batches are in flight."""

    def __init__(self, template_dir: Path | None) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sipflows.notices.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin = self._process.stdin
        self._results: queue.Queue[Any] = queue.Queue()
        # drains the child's answers as they come, so it never waits on a full pipe while we work
        self._reader = threading.Thread(
            target=self._drain, args=(self._process.stdout,), name="sipflows-render-reader", daemon=True
        )
        self._reader.start()
        self._pending = 0
        _write(self._stdin, str(template_dir) if template_dir is not None else None)

    def _drain(self, stdout: IO[bytes]) -> None:
        try:
            while True:
                self._results.put(("ok", _read(stdout)))
        except EOFError:
            self._results.put(("gone", None))
        except Exception as exc:  # a broken frame: reported to the waiting sweep
            self._results.put(("gone", repr(exc)))

    def submit(self, jobs: Sequence[Job]) -> None:
        """Hand a batch to the child; its answer comes from :meth:`result`, batches in order."""
        try:
            _write(self._stdin, list(jobs))
        except (BrokenPipeError, OSError) as exc:
            raise RuntimeError(f"the render worker is gone (exit code {self._process.poll()})") from exc
        self._pending += 1

    def result(self) -> list[Rendered]:
        """The oldest submitted batch, rendered; raises what the child raised."""
        if self._pending == 0:
            raise RuntimeError("no batch submitted")
        status, answer = self._results.get()
        if status == "gone":
            self._results.put((status, answer))  # every later call fails the same way
            code = self._process.wait()
            why = f": {answer}" if answer else ""
            raise RuntimeError(f"the render worker stopped (exit code {code}){why}")
        self._pending -= 1
        kind, payload = answer
        if kind == "error":  # the child's exception itself, or its kind and message if it would not pickle
            if isinstance(payload, BaseException):
                raise payload
            raise RuntimeError(f"rendering failed in the render worker: {payload[0]}: {payload[1]}")
        return [Rendered(*parts) for parts in payload]

    def close(self) -> None:
        """Stop the child: its stdin closed, it exits; killed if it does not within a few seconds."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child's loop: the template folder first, then batches until stdin closes."""
    template_dir = _read(stdin)
    renderer = get_renderer(Path(template_dir) if template_dir is not None else None)
    templates: dict[tuple[str, str], Any] = {}
    while True:
        try:
            jobs = _read(stdin)
        except EOFError:
            return
        try:
            out = []
            for kind, lang, context in jobs:
                if (kind, lang) not in templates:
                    templates[kind, lang] = renderer.templates(kind, lang)
                r = renderer.render(kind, lang, context, templates[kind, lang])
                out.append((r.subject, r.text, r.html))
            answer: tuple[str, Any] = ("ok", out)
        except Exception as exc:  # the sweep raises it; the next batch still gets an answer
            answer = ("error", exc if _picklable(exc) else (type(exc).__name__, str(exc)))
        _write(stdout, answer)
        del jobs, answer
        gc.collect()


def _picklable(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True


def main() -> None:
    """Frames go to the real stdout; anything else printing there would corrupt them, so it is stderr."""
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    gc.disable()  # collected after each batch instead: its objects are short-lived
    serve(sys.stdin.buffer, frames)


if __name__ == "__main__":
    main()
