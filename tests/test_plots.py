import numpy as np
import pytest

import easytl.plots as plots
from easytl import (FeatureExtractor, TransferClassifier, plot_backbones, plot_confusion, plot_history,
                    plot_tsne)

from conftest import tiny_kwargs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(textures):
    from easytl import Phase
    return TransferClassifier(**tiny_kwargs(schedule=[Phase(2, 0), Phase(2, "all")],
                                            epochs=None)).fit(*textures)


def is_png(path):
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_history_plot_marks_phase_boundaries(fitted, tmp_path):
    fig = plot_history(fitted, path=tmp_path / "history.png")
    assert is_png(tmp_path / "history.png") and len(fig.axes) == 3
    boundaries = [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert boundaries == [2.5]


def test_tsne_before_and_after_side_by_side(fitted, textures, tmp_path):
    X, y = textures
    before = FeatureExtractor(fitted.backbone, image_size=32, mixed_precision="no").fit()
    fig = plot_tsne(X, y, [before, fitted], titles=["before", "after"], path=tmp_path / "tsne.png")
    assert is_png(tmp_path / "tsne.png") and len(fig.axes) == 2
    points = sum(len(c.get_offsets()) for c in fig.axes[1].collections)
    assert points == len(X)


def test_backbones_and_confusion_plots(fitted, textures, tmp_path):
    rows = [{"backbone": "a", "params_m": 4.6, "accuracy_mean": 0.9, "accuracy_std": 0.01,
             "skipped": None},
            {"backbone": "b", "params_m": 11.7, "accuracy_mean": 0.8, "accuracy_std": 0.02,
             "skipped": None},
            {"backbone": "c", "skipped": "offline"}]
    fig = plot_backbones(rows, path=tmp_path / "backbones.png")
    assert is_png(tmp_path / "backbones.png") and len(fig.axes[0].texts) == 2
    fig = plot_confusion(fitted, *textures, path=tmp_path / "cm.png")
    assert is_png(tmp_path / "cm.png")
    shown = np.array([[int(t.get_text()) for t in fig.axes[0].texts]]).reshape(4, 4)
    assert shown.sum() == len(textures[0])


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"easytl\[plots\]"):
        plots.plot_backbones([])
