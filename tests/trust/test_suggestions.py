"""Active learning: which pool images to label next (``suggest_labels``, ``easytl suggest``)."""

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import lite0, tiny_kwargs
from easytl import TransferClassifier, make_textures
from easytl.trust.report import DUPLICATE_COSINE
from easytl.trust.suggestions import uncertainty_scores


@pytest.fixture(scope="module")
def tiny():
    X, y = make_textures(n_per_class=20, size=32, random_state=0)
    return TransferClassifier(**tiny_kwargs()).fit(X, y)


def _unit(features):
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def test_uncertainty_scores_margin_entropy_and_multi_label():
    proba = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(uncertainty_scores(proba, "margin"), [1.0, 0.0, 0.7, 1.0])
    entropy = uncertainty_scores(proba, "entropy")
    np.testing.assert_allclose(entropy[[0, 1, 3]], [np.log(2) / np.log(3), 0.0, 1.0], atol=1e-9)
    # multi-label: the class closest to its threshold decides; 0 and 1 are certain
    multi = np.array([[0.9, 0.05], [0.3, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(uncertainty_scores(multi, "margin", True, [0.5, 0.2]),
                               [0.25, 0.6, 0.0])
    assert uncertainty_scores(multi, "entropy", True).max() <= 1.0


def _pool_with_copies(clf, n_copies=30, n_distinct=12):
    """Many near-copies (±1 grey level) of the image the model is least sure of, then distinct
    images: "noise" textures (each is its own draw, while the drawn textures of one class are
    near-duplicates of each other in a tiny network's features)."""
    candidates, kind = make_textures(n_per_class=10, size=32, random_state=5)
    candidates = candidates[kind != "noise"]
    margin = uncertainty_scores(clf.predict_proba(candidates))
    base = (candidates[int(np.argmax(margin))] * 255).round()
    rng = np.random.default_rng(0)
    copies = np.clip(base + rng.integers(-1, 2, (n_copies, *base.shape)), 0, 255)
    distinct, kind = make_textures(n_per_class=n_distinct, size=32, random_state=9)
    return np.concatenate([copies, distinct[kind == "noise"] * 255]).astype(np.uint8)


def test_suggestions_are_valid_unique_and_not_near_duplicates(tiny):
    pool = _pool_with_copies(tiny)
    found = tiny.suggest_labels(pool, n=8)
    chosen = np.r_[found.indices, found.unknown]
    assert len(np.unique(chosen)) == len(chosen)  # unique, and never both suggested and unknown
    assert chosen.min() >= 0 and chosen.max() < len(pool)
    features = _unit(tiny.transform(pool))
    assert (features[:30] @ features[:30].T).min() >= DUPLICATE_COSINE  # the copies are near-copies
    cosine = features[found.indices] @ features[found.indices].T
    np.fill_diagonal(cosine, -1)
    assert cosine.max() < DUPLICATE_COSINE, "two suggestions are near-duplicates"
    assert len(found) == 8 and np.sum(found.indices < 30) <= 1
    assert found.scores.min() >= 0 and found.scores.max() <= 1
    np.testing.assert_array_equal(found.guesses, tiny.predict(pool)[found.indices])
    # uncertainty alone picks the near-copies: what the diversity step is for
    greedy = tiny.suggest_labels(pool, n=8, diversity=False)
    assert np.sum(greedy.indices < 30) >= 4


def test_suggestions_come_in_farthest_first_order_with_their_uncertainty_rank(tiny, tmp_path):
    """The order is the diversity step's, not usefulness: each suggestion is the candidate
    farthest from those before it (so the first k are a spread-out batch of k), and
    ``uncertainty_ranks`` says where each stands by uncertainty alone."""
    from easytl.trust.suggestions import write_html
    pool = _pool_with_copies(tiny)
    found = tiny.suggest_labels(pool, n=8)
    scores = uncertainty_scores(tiny.predict_proba(pool))
    known = np.setdiff1d(np.arange(len(pool)), found.unknown)
    by_uncertainty = known[np.argsort(-scores[known], kind="stable")]
    expected = {int(i): rank for rank, i in enumerate(by_uncertainty, start=1)}
    assert found.uncertainty_ranks.tolist() == [expected[int(i)] for i in found.indices]
    assert found.uncertainty_ranks[0] == 1  # the traversal starts from the most uncertain
    assert np.any(np.diff(found.uncertainty_ranks) < 0), "this pool should show picks out of rank"
    # farthest-first: the distance of each pick to the picks before it never grows
    features = _unit(tiny.transform(pool))[found.indices]
    gaps = [np.min(np.linalg.norm(features[:k] - features[k], axis=1)) for k in range(1, len(found))]
    assert np.all(np.diff(gaps) <= 1e-5), gaps
    greedy = tiny.suggest_labels(pool, n=8, diversity=False)  # then: most uncertain first
    assert greedy.uncertainty_ranks.tolist() == list(range(1, 9))
    page = write_html(found, pool, tmp_path / "page.html").read_text()
    assert "most useful first" not in page
    assert "farthest" in page and "uncertainty rank 1" in page
    assert "most uncertain first" in write_html(greedy, pool, tmp_path / "greedy.html").read_text()


def test_unknown_images_are_listed_apart_as_predict_rejects_them(tiny):
    known, _ = make_textures(n_per_class=5, size=32, random_state=3)
    rng = np.random.default_rng(1)
    odd = np.stack([np.full((32, 32, 3), v, np.float32) for v in (0.0, 1.0)]
                   + [rng.random((32, 32, 3), dtype=np.float32) for _ in range(2)])
    pool = np.concatenate([known, odd])
    found = tiny.suggest_labels(pool, n=5, uncertainty="entropy")
    rejected = np.flatnonzero(tiny.predict(pool, reject_unknown=True) == "unknown")
    assert len(rejected) and sorted(found.unknown.tolist()) == rejected.tolist()
    assert not set(found.indices.tolist()) & set(rejected.tolist())
    assert np.all(np.diff(found.unknown_scores) <= 0)  # most novel first
    assert found.paths is None and found.unknown_paths is None


def test_n_larger_than_the_pool_or_not_positive_is_a_clear_error(tiny):
    pool, _ = make_textures(n_per_class=2, size=32, random_state=3)
    with pytest.raises(ValueError, match="n=9 but the pool holds 8 images"):
        tiny.suggest_labels(pool, n=9)
    with pytest.raises(ValueError, match="positive integer"):
        tiny.suggest_labels(pool, n=0)
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        tiny.suggest_labels(pool, n=2, uncertainty="variance")


def _save_pngs(folder, images, names):
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names):
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / name)


@pytest.mark.slow  # two pretrained fits, as the CLI tests
def test_cli_round_trip_suggest_fill_the_csv_fit_on_it(tmp_path, capsys):
    """easytl suggest → the user fills the label column → easytl fit --labels reads it."""
    from easytl.cli import main
    X, y = make_textures(n_per_class=6, size=32, random_state=0)
    model = lite0(val_size=0.34).fit(X, y).save(tmp_path / "m.easytl")
    pool_X, pool_y = make_textures(n_per_class=5, size=32, random_state=7)
    names = [f"{k:02d}.png" for k in range(len(pool_X))]
    _save_pngs(tmp_path / "pool" / "batch", pool_X, names)
    truth = {f"batch/{name}": label for name, label in zip(names, pool_y)}
    out, page = tmp_path / "to_label.csv", tmp_path / "to_label.html"
    assert main(["suggest", str(model), str(tmp_path / "pool"), "--n", "6", "--out", str(out),
                 "--html", str(page)]) == 0
    assert "6 images to label" in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "guess", "probability", "score", "unknown", "novelty",
                             "pick", "uncertainty_rank"]
    suggested = [r for r in rows if r["unknown"] == "no"]
    assert len(suggested) == 6 and all(r["label"] == "" for r in rows)
    assert [r["pick"] for r in suggested] == ["1", "2", "3", "4", "5", "6"]  # the rows' order
    ranks = [int(r["uncertainty_rank"]) for r in suggested]
    assert ranks[0] == 1 and len(set(ranks)) == 6
    assert all(r["pick"] == r["uncertainty_rank"] == "" for r in rows if r["unknown"] == "yes")
    assert len({r["path"] for r in rows}) == len(rows) and all(r["path"] in truth for r in rows)
    assert all(r["guess"] in set(y) for r in rows)
    assert all(0 <= float(r["score"]) <= 1 for r in suggested)
    html = page.read_text()
    assert html.count("data:image/png;base64,") == len(rows) and "http" not in html
    assert all(r["path"].split("/")[-1] in html for r in rows)

    fit_args = ["fit", str(tmp_path / "pool"), "--labels", str(out), "--out", str(tmp_path / "m2.easytl"),
                "--image-size", "32", "--schedule", "feature_extraction", "--epochs", "1",
                "--val-size", "0", "--verbose", "0"]
    # a row left empty: refused with its row number (the guess column is not read as labels)
    assert main(fit_args) == 1
    error = capsys.readouterr().err
    assert "row 2" in error and "empty label" in error and "--skip-bad-images" in error
    for row in rows:  # the user labels every row
        row["label"] = truth[row["path"]]
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(fit_args) == 0
    refit = TransferClassifier.load(tmp_path / "m2.easytl")
    assert sorted(refit.classes_.tolist()) == sorted({truth[r["path"]] for r in rows})


def test_multi_label_models_suggest_by_the_class_closest_to_its_threshold():
    from easytl import make_texture_mosaics
    X, y = make_texture_mosaics(100, size=32, random_state=0)
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0.3)).fit(X[:60], y[:60])
    found = clf.suggest_labels(X[60:], n=6)
    proba = clf.predict_proba(X[60:])
    expected = uncertainty_scores(proba, "margin", True, clf.thresholds_)
    np.testing.assert_allclose(found.scores, expected[found.indices], rtol=1e-5)
    assert len(set(found.indices.tolist())) == 6
    assert found.guesses == [clf.predict(X[60:])[i] for i in found.indices]  # label tuples


def test_multi_label_models_fitted_on_an_indicator_matrix_name_their_guesses():
    from easytl import make_texture_mosaics
    from easytl.trust.suggestions import _label_text
    X, y = make_texture_mosaics(100, size=32, random_state=0)
    classes = sorted({c for labels in y for c in labels})
    indicator = np.array([[int(c in labels) for c in classes] for labels in y])
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0.3)).fit(X[:60], indicator[:60])
    found = clf.suggest_labels(X[60:], n=6)
    rows = clf.predict(X[60:])
    assert found.guesses == [tuple(clf.classes_[np.flatnonzero(rows[i])].tolist())
                             for i in found.indices]
    assert all(isinstance(_label_text(g), str) for g in found.guesses)
