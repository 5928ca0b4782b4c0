import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_example_runs_at_tiny_size(capsys):
    accuracy = load_example("digits").main(["--limit", "200", "--image-size", "64", "--epochs", "3",
                                            "--verbose", "0"])
    out = capsys.readouterr().out
    assert f"held-out accuracy {accuracy:.3f} on 50 images" in out
    assert accuracy > 0.5  # 10 classes: far above chance even at 64 px and 3 epochs
