"""The package structure stays as issue 14 left it: no import cycles between packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "structure.py"


def _report() -> dict[str, object]:
    spec = importlib.util.spec_from_file_location("structure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.report()  # type: ignore[no-any-return]


def test_no_import_cycles_between_packages() -> None:
    report = _report()
    assert report["package_cycles"] == 0, report["cycle_edges"]
