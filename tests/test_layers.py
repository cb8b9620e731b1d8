"""The domain library stands without Prefect: only the entry points (flows/, the CLI) know it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_the_domain_library_imports_without_prefect() -> None:
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class NoPrefect:
            def find_spec(self, name, path=None, target=None):
                if name == "prefect" or name.startswith("prefect."):
                    raise ImportError(f"{name} imported by the domain library")
                return None

        sys.meta_path.insert(0, NoPrefect())
        import sipflows
        names = [m.name for m in pkgutil.walk_packages(sipflows.__path__, "sipflows.")]
        library = [n for n in names if not n.startswith(("sipflows.cli", "sipflows.migrations"))]
        for name in library:
            importlib.import_module(name)
        print(len(library))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 40  # every module was walked, not an empty package


def _imports_between_packages() -> dict[str, set[str]]:
    """sipflows' subpackages and top modules, each with those it imports (at any depth of the code)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sipflows"

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = unit(".".join(path.relative_to(root.parent).with_suffix("").parts))
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("sipflows.")
            ):
                found.add(unit(node.module or ""))
            elif isinstance(node, ast.Import):
                found.update(unit(a.name) for a in node.names if a.name.startswith("sipflows."))
        found.discard(name)
    return graph


def test_the_library_has_no_import_cycle_between_its_parts() -> None:
    graph = _imports_between_packages()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " → ".join((*path, node))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, (*path, node))
        done.add(node)

    for node in sorted(graph):
        visit(node, ())


def test_transports_know_nothing_of_notices_checks_or_replies() -> None:
    """A transport sends what it is given; the notices, checks and answers sit above it."""
    above = {"sipflows.notices", "sipflows.checks", "sipflows.replies", "sipflows.sweep", "sipflows.cli"}
    assert not (_imports_between_packages()["sipflows.transports"] & above)


def test_the_importer_modules_depend_one_way() -> None:
    """Inside sipflows.importer: results at the bottom, then cells, specs, the CSV reader, the register
    side, the upserts and the file handling on top; no module imports one listed after it."""
    import ast
    from pathlib import Path

    order = ["results", "cells", "specs", "csvfile", "register", "directory", "plans", "files"]
    root = Path(__file__).resolve().parent.parent / "sipflows" / "importer"
    assert sorted(p.stem for p in root.glob("*.py") if p.stem != "__init__") == sorted(order)
    for position, name in enumerate(order):
        tree = ast.parse((root / f"{name}.py").read_text(encoding="utf-8"))
        used = {
            (node.module or "").removeprefix("sipflows.importer.")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sipflows.importer.")
        }
        assert used <= set(order[:position]), f"sipflows.importer.{name} imports {sorted(used)}"
