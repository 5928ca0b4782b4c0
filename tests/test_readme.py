"""README.md and the program must agree: its tables are the program's output, its code runs."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def markdown_table_after(marker: str) -> list[list[str]]:
    """The rows (cells) of the first markdown table after ``marker`` in README."""
    text = README[README.index(marker):]
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
            if not set(line) <= set("|-: ")]


def test_backbones_table_is_the_output_of_easytl_backbones(capsys):
    from easytl.cli import main
    assert main(["backbones", "--format", "markdown"]) == 0
    printed = [[cell.strip() for cell in line.strip("|").split("|")]
               for line in capsys.readouterr().out.splitlines() if not set(line) <= set("|-: ")]
    documented = markdown_table_after("<!-- easytl backbones -->")
    # Every column but the last: whether weights are cached differs between machines.
    assert [row[:-1] for row in documented] == [row[:-1] for row in printed]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_python_snippets_import_what_they_use():
    """Each snippet, read in order as one script, defines or imports every name it uses
    (the API tour's GridSearchCV snippet once forgot its import)."""
    pyflakes = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter
    import io
    source = "\n".join(python_blocks())
    # Names a reader supplies: their own data and files.
    preamble = "images = labels = new_images = None\n"
    errors = io.StringIO()
    pyflakes.check(preamble + source, "README.md", Reporter(io.StringIO(), errors))
    warnings = io.StringIO()
    pyflakes.check(preamble + source, "README.md", Reporter(warnings, errors))
    undefined = [line for line in warnings.getvalue().splitlines() if "undefined name" in line]
    assert not undefined and not errors.getvalue()


def test_api_tour_predict_comment_matches_the_data():
    from easytl import make_textures
    X, y = make_textures()
    shown = re.search(r"clf\.predict\(X\[:5\]\)\s+# labels as you gave them: array\(\[(.*?)\]", README)
    assert shown, "the API tour shows clf.predict(X[:5]) with its result"
    first = shown.group(1).split(",")[0].strip().strip("'")
    assert first == y[0]


def test_api_tour_shows_the_defaults():
    """The API tour's TransferClassifier(...) call lists parameters with their default values:
    a value there that is not the default (it once showed random_state=0, while the default
    is None, so repeated fits differ) tells a reader something false."""
    import ast
    import inspect
    from easytl import TransferClassifier
    tour = next(block for block in python_blocks() if "unknown_rate=" in block)
    call = max((node for node in ast.walk(ast.parse(tour)) if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "TransferClassifier"), key=lambda c: len(c.keywords))
    defaults = {name: p.default for name, p in inspect.signature(TransferClassifier).parameters.items()}
    shown = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert "random_state" in shown
    assert {k: v for k, v in shown.items() if defaults[k] != v} == {}
