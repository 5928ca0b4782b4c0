"""A fit resumes only on the data it was checkpointed with: the images and labels, not just their count."""

import warnings

import numpy as np
import pytest
from PIL import Image

from easytl import Phase, TransferClassifier

from conftest import InterruptAt, tiny_kwargs


def _interrupted(X, y, folder):
    kwargs = tiny_kwargs(schedule=[Phase(3, "all")], epochs=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TransferClassifier(**kwargs, callbacks=[InterruptAt(2)]).fit(X, y, checkpoint_dir=folder)
    return TransferClassifier(**kwargs)


def test_resume_refuses_other_images_or_labels_of_the_same_count(textures, tmp_path):
    X, y = textures
    clf = _interrupted(X, y, tmp_path)
    changed = X.copy()
    changed[5] = 1.0 - changed[5]  # one image changed, same count, same labels
    with pytest.raises(ValueError, match="different fit .*data"):
        clf.fit(changed, y, checkpoint_dir=tmp_path, resume=True)
    swapped = y.copy()
    swapped[[0, -1]] = swapped[[-1, 0]]  # two labels swapped: the same counts per class
    with pytest.raises(ValueError, match="different fit .*data"):
        clf.fit(X, swapped, checkpoint_dir=tmp_path, resume=True)
    clf.fit(X, y, checkpoint_dir=tmp_path, resume=True)  # the same data resumes
    assert len(clf.history_) == 3


def test_resume_refuses_files_rewritten_since(textures, tmp_path):
    X, y = textures
    paths = []
    for i, image in enumerate(X):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray((image * 255).round().astype(np.uint8)).save(paths[-1])
    clf = _interrupted(paths, y, tmp_path / "run")
    Image.fromarray((255 - X[3] * 255).round().astype(np.uint8)).save(paths[3])  # rewritten
    with pytest.raises(ValueError, match="different fit .*data"):
        clf.fit(paths, y, checkpoint_dir=tmp_path / "run", resume=True)
