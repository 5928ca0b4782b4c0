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


def test_tsne_perplexity_suits_small_inputs_and_says_when_lowered(fitted, textures):
    from easytl.plots import tsne_perplexity
    assert tsne_perplexity(1000) == 30 and tsne_perplexity(80) == 16 and tsne_perplexity(6) == 2
    X, y = textures
    with pytest.warns(UserWarning, match="perplexity 50 is too large for 30 images; using 9.67"):
        fig = plot_tsne(X[:30], y[:30], fitted, perplexity=50)
    assert "perplexity 9.67" in fig.axes[0].get_title()
    fig = plot_tsne(X[:40], y[:40], fitted)  # no request: chosen for n, no warning
    assert "perplexity 8" in fig.axes[0].get_title()


def test_confusion_matrix_grows_with_classes_and_labels_do_not_collide(tmp_path):
    def draw(k, name):
        labels = [f"{name}_{i}" for i in range(k)]
        result = {"labels": labels, "accuracy": 0.5, "confusion_matrix": np.eye(k, dtype=int) * 3}
        fig = plots.plot_report(result, path=tmp_path / f"cm{k}.png")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        rows = [label.get_window_extent(renderer) for label in ax.get_yticklabels()]
        assert not any(a.overlaps(b) for i, a in enumerate(rows) for b in rows[i + 1:])
        # x labels may be rotated: parallel lines of text must lie at least one text height apart.
        columns = ax.get_xticklabels()
        angle = np.radians(columns[0].get_rotation())
        spacing = np.diff(ax.transData.transform([(i, 0) for i in range(k)])[:, 0]).min()
        text_height = columns[0].get_fontsize() * fig.dpi / 72
        assert spacing * (np.sin(angle) if angle else 1) >= text_height
        if not angle:
            boxes = [label.get_window_extent(renderer) for label in columns]
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        from PIL import Image
        return Image.open(tmp_path / f"cm{k}.png").size

    small, large = draw(3, "cat"), draw(20, "long_class_name")
    assert min(small) >= 400 and min(large) > min(small)


def test_history_plot_draws_the_monitored_metric_and_skips_probe_lr(textures):
    from easytl import Phase
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0, probe=True, name="probe"),
                                                     Phase(2, "all", name="all")],
                                           head="linear", epochs=None,
                                           monitor="val_f1_macro")).fit(*textures)
    fig = plot_history(clf)
    labels = [line.get_label() for line in fig.axes[1].lines]
    assert "val_f1_macro" in labels
    curve = fig.axes[1].lines[labels.index("val_f1_macro")]
    assert list(curve.get_ydata()) == pytest.approx(clf.history_.column("val_f1_macro"))
    lr = fig.axes[2].lines[0].get_ydata()
    assert np.isnan(lr[0]) and not np.isnan(lr[1:]).any()


def test_calibration_and_error_plots(fitted, textures, tmp_path):
    from easytl import plot_calibration, plot_errors
    X, y = textures
    fig = plot_calibration(fitted, X, y, path=tmp_path / "calibration.png")
    assert is_png(tmp_path / "calibration.png")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert any(label.startswith("before") for label in labels)
    assert any(label.startswith(f"after (T = {fitted.temperature_:.2f})") for label in labels)
    wrong = int((fitted.predict(X) != y).sum())
    fig = plot_errors(fitted, X, y, path=tmp_path / "errors.png", n=4)
    assert is_png(tmp_path / "errors.png")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * min(wrong, 4)  # each error beside its heatmap
