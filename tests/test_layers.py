"""The library's layers: no Prefect below the entry points, no import cycle, imports only downwards."""

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
    """sipflows' subpackages and top modules, each with those it imports (at any depth of the code, so a
    lazy import inside a function counts too); an import of the entry points shows as ``flows`` or
    ``deployments``."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sipflows"

    def ours(module: str) -> bool:
        return module.startswith("sipflows.") or module.split(".")[0] in ("flows", "deployments")

    def unit(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "sipflows" else parts[0]

    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = unit(".".join(path.relative_to(root.parent).with_suffix("").parts))
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "sipflows":
                found.update(f"sipflows.{a.name}" for a in node.names)  # from sipflows import labels
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and ours(node.module):
                found.add(unit(node.module))
            elif isinstance(node, ast.Import):
                found.update(unit(a.name) for a in node.names if ours(a.name))
        found.discard(name)
    return graph


def test_the_library_has_no_import_cycle_between_its_parts() -> None:
    graph = _imports_between_packages()
    done: set[str] = set()
    graph = {k: v - {"flows", "deployments"} for k, v in graph.items()}

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " → ".join((*path, node))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, (*path, node))
        done.add(node)

    for node in sorted(graph):
        visit(node, ())


# The layers of sipflows, lowest first. A part may import parts of its own layer (without a cycle, see
# above) and of the layers below it, never one above: README's "What is where" tells the same story.
LAYERS: dict[str, tuple[str, ...]] = {
    # the register and its vocabulary: models, time and working days, settings, the deadline policy
    "core": (
        "__init__",
        "addresses",
        "collector",
        "db",
        "hygiene",
        "labels",
        "metrics",
        "migrations",
        "models",
        "policy",
        "settings",
        "stages",
        "timeutil",
        "workdays",
    ),
    # the ways out: outbox, SMTP, Exchange, Graph; they send the message they are given
    "transports": ("transports",),
    # judging and recording: the checks, booking, the import, the figures, the ledger's status
    "domain": ("booking", "checks", "importer", "stats", "status"),
    # the notices built from findings and meetings (and sent through a transport), the answers read back
    "messaging": ("notices", "replies"),
    # the operations a run or a command performs
    "operations": ("demo", "report", "sweep"),
    # what the entry points (the CLI here, flows/ outside) need: artifacts, the quickstart's environment
    "entry": ("artifacts", "cli", "quickstart"),
}


def _layer_of() -> dict[str, int]:
    return {f"sipflows.{part}": rank for rank, parts in enumerate(LAYERS.values()) for part in parts}


def test_every_part_of_the_library_has_its_layer() -> None:
    """A new module or package is placed in LAYERS (and README) before it can be imported from."""
    assert sorted(set(_imports_between_packages()) - set(_layer_of())) == []


def test_no_part_imports_a_layer_above_its_own() -> None:
    rank, names = _layer_of(), list(LAYERS)
    upward = [
        f"{part} ({names[rank[part]]}) imports {dep} ({names[rank[dep]]})"
        for part, deps in sorted(_imports_between_packages().items())
        for dep in sorted(deps)
        if dep in rank and part in rank and rank[dep] > rank[part]
    ]
    assert upward == []


def test_only_the_cli_knows_the_flows() -> None:
    """flows/ and deployments/ sit above the library; the CLI's quickstart is the one part that runs flows."""
    knows = sorted(p for p, deps in _imports_between_packages().items() if deps & {"flows", "deployments"})
    assert knows == ["sipflows.cli"]


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
