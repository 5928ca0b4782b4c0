import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~4-6 s of fitting: keeps the fast subset under 5 min
def test_digits_example_runs_at_tiny_size(capsys):
    accuracy = load_example("digits").main(["--limit", "200", "--image-size", "64", "--epochs", "3",
                                            "--verbose", "0"])
    out = capsys.readouterr().out
    assert f"held-out accuracy {accuracy:.3f} on 50 images" in out
    assert accuracy > 0.5  # 10 classes: far above chance even at 64 px and 3 epochs


def test_feature_extraction_example():
    assert load_example("feature_extraction").main(["--n-per-class", "12", "--image-size", "64"]) >= 0.9


def test_fine_tuning_example():
    accuracy = load_example("fine_tuning").main(["--epochs", "1", "--n-per-class", "12",
                                                 "--image-size", "64", "--verbose", "0"])
    assert accuracy >= 0.75


@pytest.mark.slow  # an example end to end (~3-4 s): keeps the fast subset under 5 min
def test_progressive_unfreezing_example_saves_the_history_plot(tmp_path):
    out = tmp_path / "history.png"
    load_example("progressive_unfreezing").main(["--out", str(out), "--epochs", "3", "--n-per-class", "12",
                                                 "--image-size", "64", "--verbose", "0"])
    assert out.stat().st_size > 1000


@pytest.mark.slow  # several pretrained backbones or fits at size
def test_model_selection_example(tmp_path):
    out = tmp_path / "backbones.png"
    rows, accuracy = load_example("model_selection").main(
        ["--backbones", "efficientnet_lite0", "--out", str(out), "--n-per-class", "8",
         "--image-size", "32", "--cv", "2", "--verbose", "0"])
    assert rows.best == "efficientnet_lite0" and out.stat().st_size > 1000
    assert 0.5 <= accuracy <= 1


def test_tta_example():
    plain, tta = load_example("tta").main(["--epochs", "1", "--limit", "120", "--image-size", "32"])
    assert 0 <= plain <= 1 and 0 <= tta <= 1


@pytest.mark.slow  # an example end to end (~3-4 s): keeps the fast subset under 5 min
def test_tsne_example(tmp_path):
    out = tmp_path / "tsne.png"
    load_example("tsne").main(["--out", str(out), "--epochs", "1", "--limit", "60", "--image-size", "32"])
    assert out.stat().st_size > 1000


@pytest.mark.slow  # an example end to end (~3-4 s): keeps the fast subset under 5 min
def test_folder_of_images_example(tmp_path):
    accuracy = load_example("folder_of_images").main(["--root", str(tmp_path), "--per-class", "8",
                                                      "--epochs", "2", "--image-size", "32"])
    assert len(list((tmp_path / "train").iterdir())) == 10 and 0 <= accuracy <= 1


@pytest.mark.slow  # an example end to end (~3-4 s): keeps the fast subset under 5 min
def test_distributed_example_in_one_process(tmp_path):
    out = tmp_path / "textures.easytl"
    accuracy = load_example("distributed").main(["--out", str(out), "--n-per-class", "12",
                                                 "--epochs", "3", "--image-size", "64", "--verbose", "0"])
    assert out.is_file() and accuracy >= 0.9


@pytest.mark.slow  # an example end to end (~3-4 s): keeps the fast subset under 5 min
def test_multi_label_example_reads_its_csv_and_reports_sample_f1(tmp_path, capsys):
    f1 = load_example("multi_label").main(["--n-images", "48", "--root", str(tmp_path), "--epochs", "2",
                                           "--image-size", "32", "--verbose", "0"])
    out = capsys.readouterr().out
    assert (tmp_path / "train.csv").is_file() and len(list((tmp_path / "images").iterdir())) == 48
    assert f"sample F1 {f1:.3f}" in out and "predicted (" in out and 0 <= f1 <= 1
