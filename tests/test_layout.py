"""The package layout: sub-packages along the path of the data, and no import circles."""

import ast
from pathlib import Path

import easytl

PACKAGE = Path(easytl.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """easytl modules that ``path`` imports anywhere (also inside functions, which run too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target + "." + a.name for a in node.names]
            found |= {n for n in names if n in modules} or {target}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("easytl"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("easytl")}
    # a module importing its own package's __init__ (for __version__) is not a circle
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def import_graph() -> dict[str, set[str]]:
    files = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def test_no_import_circles():
    graph = import_graph()
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_sub_packages_follow_the_data():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert {"data", "models", "training", "trust", "cli"} <= set(packages)
    assert len(top) <= 14, f"too many modules side by side: {top}"


def test_every_public_name_imports_from_the_package():
    for name in easytl.__all__:
        assert getattr(easytl, name) is not None


def _code_lines(node, source_lines) -> int:
    """Lines of a function that hold code: not blank, not a comment, not its docstring."""
    body = node.body
    skip = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):
        text = source_lines[number - 1].strip()
        if text and not text.startswith("#") and number not in skip:
            count += 1
    return count


def test_functions_and_modules_stay_small():
    """No function over 80 lines of code and no module over 450 lines (readable top-down)."""
    long_functions, long_modules = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        if len(lines) > 450:
            long_modules.append(f"{path.relative_to(PACKAGE)} ({len(lines)} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, lines)
                if n > 80:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name} ({n})")
    assert not long_modules, "modules over 450 lines: " + ", ".join(long_modules)
    assert not long_functions, "functions over 80 lines of code: " + ", ".join(long_functions)
