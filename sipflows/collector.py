"""Python's cyclic garbage collector, paused around work that keeps hundreds of thousands of objects alive.

An import of 100,000 rows and a sweep's first day allocate millions of short-lived objects beside the
ones they keep (rows, findings, rendered parts); with the collector running, every few thousand
allocations start a pass over everything that survives, which cost a sixth (sweep) to a third (import)
of their CPU. Nothing in them depends on cycles being freed early: reference counting frees what they
drop as before, and any cycle waits for the collector's next pass after the work.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block, then as it was (process-wide: for the few seconds of the work)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
