"""Image formats Pillow alone does not open (RGB float TIFFs), and the words of the data
messages: empty files, files left out of a folder listing, missing files of a label table."""

import warnings

import numpy as np
import pytest

from easytl.data.decoded import decode_once
from easytl.data.images import (EncodedImage, find_unreadable, read_image_file, unreadable_reason)
from easytl.data.sources import as_image_source, read_class_folders
from easytl.data.tables import read_table

tifffile = pytest.importorskip("tifffile")


def _ramp(height=6, width=10, channels=3):
    """Float pixels in [0, 1], every channel different (a swapped or dropped channel shows)."""
    values = np.linspace(0.0, 1.0, height * width * channels, dtype=np.float32)
    return values.reshape(height, width, channels)


def test_an_rgb_float_tiff_in_the_unit_range_is_read(tmp_path):
    pixels = _ramp()
    tifffile.imwrite(tmp_path / "rgb.tif", pixels, photometric="rgb")
    expected = np.rint(pixels * 255).astype(np.uint8)
    image = read_image_file(tmp_path / "rgb.tif")
    assert image.shape == (3, 6, 10) and image.dtype.is_floating_point is False
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected)
    assert unreadable_reason(tmp_path / "rgb.tif") is None and not find_unreadable([tmp_path / "rgb.tif"])
    source, _ = as_image_source([str(tmp_path / "rgb.tif")], size=32)
    assert source.native_size(0) == (6, 10) and source.__getitems__([0]).shape == (1, 3, 32, 32)
    # the same bytes uploaded (EncodedImage) and stored planar (one plane per channel)
    data = (tmp_path / "rgb.tif").read_bytes()
    assert np.array_equal(read_image_file(EncodedImage(data, "up.tif")).permute(1, 2, 0).numpy(),
                          expected)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(pixels, -1, 0), photometric="rgb",
                     planarconfig="separate")
    assert np.array_equal(read_image_file(tmp_path / "planar.tif").permute(1, 2, 0).numpy(), expected)


def test_an_rgba_float_tiff_loses_its_alpha_and_float64_is_read_too(tmp_path):
    pixels = _ramp(channels=4)
    tifffile.imwrite(tmp_path / "rgba.tif", pixels, photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(tmp_path / "rgb64.tif", pixels[..., :3].astype(np.float64), photometric="rgb")
    expected = np.rint(pixels[..., :3] * 255).astype(np.uint8)
    for name in ("rgba.tif", "rgb64.tif"):
        assert np.array_equal(read_image_file(tmp_path / name).permute(1, 2, 0).numpy(), expected)


def test_an_rgb_float_tiff_out_of_range_or_not_finite_is_named_with_its_values(tmp_path):
    tifffile.imwrite(tmp_path / "wide.tif", _ramp() * 300, photometric="rgb")
    nan = _ramp()
    nan[0, 0, 0] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan, photometric="rgb")
    with pytest.raises(ValueError, match=r"wide\.tif.*float image with values in \[0, 300\].*\[0, 1\]"):
        read_image_file(tmp_path / "wide.tif")
    bad = dict(find_unreadable([tmp_path / "wide.tif", tmp_path / "nan.tif"]))
    assert "[0, 1]" in bad[tmp_path / "wide.tif"] and "NaN" in bad[tmp_path / "nan.tif"]


def test_an_empty_file_is_called_empty_everywhere(tmp_path):
    """The server said 'is empty (0 bytes)' while fit said 'not a readable image (corrupted...)'."""
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert unreadable_reason(tmp_path / "empty.png") == "empty file (0 bytes)"
    assert "corrupted" in unreadable_reason(tmp_path / "broken.png")  # a broken file is not empty
    assert unreadable_reason(EncodedImage(b"", "upload.png")) == "empty file (0 bytes)"
    _, bad = decode_once([tmp_path / "empty.png"], side=32, budget=10**6)
    assert bad[0][2] == "empty file (0 bytes)"
    with pytest.raises(ValueError, match=r"empty\.png: empty file \(0 bytes\)"):
        read_image_file(tmp_path / "empty.png")


@pytest.fixture
def two_class_folder(tmp_path):
    from PIL import Image
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a.png")
    return tmp_path


def _left_out_warning(folder) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_class_folders(folder)
    [warning] = [str(w.message) for w in caught if "non-image" in str(w.message)]
    return warning


def test_a_non_image_file_at_the_top_of_a_folder_is_not_said_to_be_in_its_sub_folders(two_class_folder):
    (two_class_folder / "notes.txt").write_text("x")
    message = _left_out_warning(two_class_folder)
    assert "sub-folders" not in message.split(":")[0] and "notes.txt" in message, message
    assert f"in {two_class_folder}" in message
    (two_class_folder / "cat" / "readme.md").write_text("x")
    message = _left_out_warning(two_class_folder)
    assert "left out 2 files: non-images in" in message and "notes.txt" in message
    assert "non-images in the class sub-folders" in message and "readme.md" in message, message
    (two_class_folder / "loose.png").write_bytes((two_class_folder / "cat" / "a.png").read_bytes())
    assert "images outside the class sub-folders (no class) of" in _left_out_warning(two_class_folder)


def test_a_missing_file_of_a_table_names_the_folder_looked_in_and_how_to_change_it(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("path,label\nmissing.png,cat\n")
    with pytest.raises(ValueError) as default_root:
        read_table(tmp_path / "labels.csv")
    message = str(default_root.value)
    assert "root=;" not in message and "root=)" not in message
    assert f"under {tmp_path}" in message and "the table's folder" in message and "root=" in message
    with pytest.raises(ValueError) as given_root:
        read_table(tmp_path / "labels.csv", root=tmp_path / "images")
    message = str(given_root.value)
    assert f"under {tmp_path / 'images'}" in message and "root=;" not in message
    assert "the folder given" in message, message


def test_an_rgb_float_tiff_is_shown_upright_as_its_orientation_tag_says(tmp_path):
    pixels = _ramp()
    tifffile.imwrite(tmp_path / "sideways.tif", pixels, photometric="rgb",
                     extratags=[(274, "H", 1, 6, False)])  # 6: rotate 90 degrees clockwise to view
    upright = np.rot90(np.rint(pixels * 255).astype(np.uint8), -1)
    assert np.array_equal(read_image_file(tmp_path / "sideways.tif").permute(1, 2, 0).numpy(), upright)
