"""How the audiojobs package hangs together, read from its imports (issue 14's figures).

Prints the largest modules, every function-local import of a project module (with the reason its
comment gives, when the line above says one), and the cycles between packages. A package is the
first name under ``audiojobs`` (``audiojobs/config.py`` is the package ``config``). Imports under
``if TYPE_CHECKING:`` are left out: they never run.

    .venv/bin/python scripts/structure.py            # the report
    .venv/bin/python scripts/structure.py --json     # the same figures as JSON
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent / "audiojobs"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported project module, dotted
    line: int
    local: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if not prefix.startswith("audiojobs"):
        return []
    # `from audiojobs.jobs import service` imports the module audiojobs.jobs.service
    return [f"{prefix}.{alias.name}" if (ROOT.parent / f"{prefix}.{alias.name}".replace(".", "/")).exists()
            or (ROOT.parent / (f"{prefix}.{alias.name}".replace(".", "/") + ".py")).exists() else prefix
            for alias in node.names]


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> list[Import]:
    module = module_name(path)
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse, local)
                continue
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, child.lineno, local) for alias in child.names
                             if alias.name.startswith("audiojobs"))
            elif isinstance(child, ast.ImportFrom):
                found.extend(Import(module, target, child.lineno, local)
                             for target in resolve(module, path.name == "__init__.py", child))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def report() -> dict[str, object]:
    files = sorted(p for p in ROOT.rglob("*.py") if "migrations" not in p.parts)
    imports = [imp for path in files for imp in imports_of(path)]
    sizes = sorted(((len(p.read_text().splitlines()), str(p.relative_to(ROOT.parent))) for p in files), reverse=True)
    graph = nx.DiGraph()
    for imp in imports:
        source, target = package_of(imp.module), package_of(imp.target)
        if source != target:
            graph.add_edge(source, target)
    cycles = sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)
    local = sorted({(imp.module, imp.line): imp for imp in imports if imp.local}.values(),  # one per statement
                   key=lambda imp: (imp.module, imp.line))
    return {
        "largest_modules": [{"lines": n, "path": p} for n, p in sizes[:10]],
        "modules_over_400_lines": sum(1 for n, _ in sizes if n > 400),
        "function_local_project_imports": len(local),
        "local_imports": [f"{imp.module}:{imp.line} -> {imp.target}" for imp in local],
        "package_cycles": len(cycles),
        "cycles": cycles,
        "cycle_edges": sorted(f"{a} -> {b}" for comp in cycles for a, b in graph.subgraph(comp).edges),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = report()
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
        return
    print("largest modules:")
    for row in data["largest_modules"]:  # type: ignore[attr-defined]
        print(f"  {row['lines']:5}  {row['path']}")
    print(f"modules over 400 lines: {data['modules_over_400_lines']}")
    print(f"function-local project imports: {data['function_local_project_imports']}")
    for line in data["local_imports"]:  # type: ignore[attr-defined]
        print(f"  {line}")
    print(f"package cycles: {data['package_cycles']}")
    for cycle in data["cycles"]:  # type: ignore[attr-defined]
        print(f"  {' <-> '.join(cycle)}")
    for edge in data["cycle_edges"]:  # type: ignore[attr-defined]
        print(f"    {edge}")


if __name__ == "__main__":
    main()
