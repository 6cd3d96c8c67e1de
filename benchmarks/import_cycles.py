"""The module import graph of the source trees and its cycles: every import statement counts, also one inside a
function or under TYPE_CHECKING, because a cycle there still ties two modules' designs together.

Usage: python benchmarks/import_cycles.py src providers/aws/src providers/gcp/src providers/azure/src
Prints each cycle (a strongly connected component of more than one module) and "N cycles"; exits 1 when N > 0.
tests/test_import_cycles.py runs it on the project's trees.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules(roots: list[Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each root (a package is its __init__.py)."""
    found: dict[str, Path] = {}
    for root in roots:
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            up = package.split(".")
            up = up[: len(up) - (node.level - 1)]
            base = ".".join(up + ([base] if base else []))
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the trees it imports (a name is resolved to its longest known module prefix)."""
    edges: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _imported(node, package):
                while target and target not in found:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name:
                    edges[name].add(target)
    return edges


def cycles(roots: list[Path]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm, iterative)."""
    edges = graph(modules(roots))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main(argv: list[str]) -> int:
    found = cycles([Path(arg) for arg in argv])
    for component in found:
        print(len(component), component)
    print(f"{len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
