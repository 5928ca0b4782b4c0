"""Label tables with typos: a rare class named like a frequent one is named before training."""

import csv
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from easytl.data.fit_data import ReadOptions, prepare


def _images(n):
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _prepare(y, **options):
    return prepare(_images(len(y)), np.asarray(y), options=ReadOptions(image_size=32, **options))


def _label_warnings(y, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = _prepare(y, **options)
    return prepared, [str(w.message) for w in caught]


TYPOS = ["cat"] * 38 + ["dog"] * 20 + ["car"] * 20 + ["cta", "Cat"]


def test_a_rare_class_that_looks_like_a_typo_is_named_with_the_class_it_resembles():
    _, messages = _label_warnings(TYPOS)
    text = "\n".join(messages)
    assert "class 'cta' (1 image) looks like a typo of 'cat' (38 images)" in text
    assert "class 'Cat' (1 image) looks like a typo of 'cat' (38 images)" in text
    assert "'car'" not in text  # 'car' and 'cat' both have many images: two real classes


def test_the_split_error_names_the_typo_class_before_the_val_size_advice():
    prepared, _ = _label_warnings(TYPOS)
    with pytest.raises(ValueError) as info:
        prepared.split(0.2, seed=0)
    message = str(info.value)
    assert "'cta'" in message and "'Cat'" in message and "typo of 'cat'" in message
    assert message.index("'cta'") < message.index("val_size")


def test_a_single_image_class_is_named_in_the_split_error_without_a_typo():
    y = ["cat"] * 20 + ["dog"] * 20 + ["horse"]
    prepared, messages = _label_warnings(y)
    assert any("class 'horse' has 1 image" in m for m in messages)
    with pytest.raises(ValueError, match=r"^class 'horse' has 1 image.*val_size"):
        prepared.split(0.2, seed=0)


def test_names_differing_by_case_or_spacing_are_named_even_when_both_are_frequent():
    _, messages = _label_warnings(["cat"] * 20 + ["Cat"] * 20 + ["dog"] * 20)
    assert any("'Cat' (20 images) and 'cat' (20 images) differ only by case or spacing" in m
               for m in messages)
    _, messages = _label_warnings(["ice cream"] * 20 + ["icecream"] * 2 + [" dog"] + ["dog"] * 20)
    text = "\n".join(messages)
    assert "class 'icecream' (2 images) looks like a typo of 'ice cream' (20 images)" in text
    assert "class ' dog' (1 image) looks like a typo of 'dog' (20 images)" in text


@pytest.mark.parametrize("y", [
    ["cat"] * 20 + ["car"] * 20 + ["cap"] * 20,            # one edit apart, all frequent: real classes
    ["a"] * 30 + ["b"] * 30 + ["c"] * 2,                   # short codes
    [10] * 30 + [11] * 30 + [12] * 2,                      # numbers
    ["10"] * 30 + ["11"] * 30 + ["12"] * 2,                # numbers as text (a table's cells)
    ["cat", "car", "cap", "dog"],                          # one image per class: one-shot data
    ["cat"] * 20 + ["cats"] * 18 + ["dog"] * 20,           # similar, but not rare
])
def test_legitimate_label_sets_train_without_a_label_warning(y):
    _, messages = _label_warnings(y)
    assert not [m for m in messages if "typo" in m or "has 1 image" in m or "differ only" in m]


def test_a_rare_class_is_judged_against_the_median_class():
    # 4 images is rare beside classes of 200 (under 5% of the median class)
    y = ["cat"] * 200 + ["dog"] * 200 + ["cta"] * 4
    _, messages = _label_warnings(y)
    assert any("class 'cta' (4 images) looks like a typo of 'cat' (200 images)" in m for m in messages)


def test_multi_label_sets_are_checked_too():
    y = [("cat", "indoor")] * 20 + [("dog",)] * 20 + [("cta",)]
    with pytest.warns(UserWarning, match=r"class 'cta' \(1 image\) looks like a typo of 'cat'"):
        prepared = prepare(_images(len(y)), y, options=ReadOptions(image_size=32))
    assert prepared.labels.multi_label


def test_a_typo_in_a_label_table_is_named_before_training(tmp_path):
    rows = [("cat", 8), ("dog", 8), ("cta", 1), ("Cat", 1)]
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        k = 0
        for label, n in rows:
            for _ in range(n):
                Image.fromarray(_images(1)[0]).save(tmp_path / f"{k}.png")
                writer.writerow([f"{k}.png", label])
                k += 1
    with pytest.warns(UserWarning) as record:
        prepared = prepare(tmp_path / "labels.csv", "label",
                           options=ReadOptions(image_size=32, verbose=0))
    text = "\n".join(str(w.message) for w in record)
    assert re.search(r"class 'cta' \(1 image\) looks like a typo of 'cat' \(8 images\)", text)
    assert re.search(r"class 'Cat' \(1 image\) looks like a typo of 'cat' \(8 images\)", text)
    with pytest.raises(ValueError, match=r"^class 'Cat'.*typo.*val_size"):
        prepared.split(0.25, seed=0)
