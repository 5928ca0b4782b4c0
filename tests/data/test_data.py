import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from easytl.data.augment import Preprocessor, default_augment
from easytl.data.sources import as_image_source, read_class_folders


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(4, 10, 12, 3), dtype=np.uint8)


def loaded(X, y=None, size=16):
    source, labels = as_image_source(X, y, size=size)
    return source.__getitems__(list(range(len(source)))), labels


def test_array_layouts_and_dtypes_agree(rgb):
    expected = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    for X in (rgb, rgb / 255.0, rgb.astype(np.float32) / 255, np.moveaxis(rgb, -1, 1),
              torch.from_numpy(rgb), rgb.astype(np.int64)):
        images, _ = loaded(X)
        assert images.dtype == torch.uint8
        assert torch.equal(images, expected)


def test_gray_and_rgba_become_rgb(rgb):
    gray, _ = loaded(rgb[..., 0])
    assert gray.shape == (4, 3, 10, 12) and torch.equal(gray[:, 0], gray[:, 2])
    rgba = np.concatenate([rgb, np.full(rgb.shape[:3] + (1,), 7, np.uint8)], axis=-1)
    assert torch.equal(loaded(rgba)[0], loaded(rgb)[0])


@pytest.mark.parametrize("X, message", [
    (np.full((2, 8, 8, 3), np.nan), "NaN"),
    (np.full((2, 8, 8, 3), 1.5), r"\[0, 1\]"),
    (np.full((2, 8, 8, 3), 300), r"\[0, 255\]"),
    (np.zeros((2, 8)), "expected"),
    (np.zeros((2, 8, 8, 7)), "colour channels"),
    (np.zeros((0, 8, 8, 3)), "empty"),
    (np.zeros((2, 0, 8, 3)), "0 pixels"),
])
def test_bad_arrays_get_clear_errors(X, message):
    with pytest.raises(ValueError, match=message):
        as_image_source(X)


def test_label_count_must_match(rgb):
    with pytest.raises(ValueError, match="4 images but y has 3 labels"):
        as_image_source(rgb, [0, 1, 2])


def test_pil_images_of_mixed_sizes_are_resized(rgb):
    pils = [Image.fromarray(rgb[0]), Image.fromarray(rgb[1]).resize((30, 20))]
    images, _ = loaded(pils, size=16)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8


def test_file_paths_and_class_folders(digit_folder):
    paths, labels = read_class_folders(digit_folder)
    assert len(paths) == 24 and sorted(set(labels)) == ["class_0", "class_1", "class_2"]
    assert any(p.suffix == ".PNG" for p in paths)  # extensions are case-insensitive
    images, labels_from_dir = loaded(str(digit_folder), size=20)
    assert images.shape == (24, 3, 20, 20) and list(labels_from_dir) == list(labels)
    images_from_list, none = loaded([str(p) for p in paths], size=20)
    assert none is None and torch.equal(images_from_list, images)


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    source, _ = as_image_source([str(bad)], size=8)
    with pytest.raises(ValueError, match="broken.png"):
        source.load(0)


def test_dataset_of_image_label_pairs(rgb):
    dataset = TensorDataset(torch.from_numpy(np.moveaxis(rgb, -1, 1)), torch.tensor([0, 1, 0, 1]))
    images, labels = loaded(dataset, size=10)
    assert images.shape == (4, 3, 10, 10) and labels.tolist() == [0, 1, 0, 1]


def test_preprocessor_normalises_without_augmenting_at_test_time():
    images = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    prep = Preprocessor(16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = prep(images, train=False)
    assert x.shape == (2, 3, 16, 16)
    assert torch.allclose(x, torch.full_like(x, 2.0))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_default_augmentation_differs_per_image_and_is_seeded():
    x = torch.rand(1, 3, 32, 32).expand(8, -1, -1, -1).contiguous()
    a = default_augment(x, 24, torch.Generator().manual_seed(0))
    b = default_augment(x, 24, torch.Generator().manual_seed(0))
    assert a.shape == (8, 3, 24, 24) and torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # each image gets its own crop/flip/jitter
    assert a.min() >= 0 and a.max() <= 1


def test_datasets_are_read_lazily_and_labels_come_from_targets(rgb):
    class CountingDataset(torch.utils.data.Dataset):
        targets = [0, 1, 0, 1]
        reads = 0

        def __len__(self):
            return 4

        def __getitem__(self, i):
            CountingDataset.reads += 1
            return Image.fromarray(rgb[i]), self.targets[i]

    source, labels = as_image_source(CountingDataset(), size=8)
    part = source.subset([3, 1])
    assert CountingDataset.reads == 0 and labels.tolist() == [0, 1, 0, 1]
    assert torch.equal(part.load(0), source.load(3)) and len(part) == 2
