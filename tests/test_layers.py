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
