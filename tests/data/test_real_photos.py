"""Real photo files as users have them: 16-bit, float, EXIF-rotated, palette, single images."""

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from easytl import FeatureExtractor, TransferClassifier
from easytl.data.sources import as_image_source
from easytl.data.images import find_unreadable, read_image_file

from conftest import tiny_kwargs


def write_png16_rgb(path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[i].astype(">u2").tobytes() for i in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_gray_png_is_scaled_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 48).reshape(32, 48).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    image = read_image_file(tmp_path / "gray16.png")
    assert image.shape == (3, 32, 48) and image.dtype == torch.uint8
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.array_equal(image[0].numpy(), expected) and torch.equal(image[0], image[2])
    assert image.float().mean() == pytest.approx(127.5, abs=1)  # a ramp, not a white page


def test_16_bit_rgb_png_keeps_its_colours(tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 65535, 32896, 1028
    write_png16_rgb(tmp_path / "rgb16.png", pixels)
    assert read_image_file(tmp_path / "rgb16.png")[:, 0, 0].tolist() == [255, 128, 4]


def test_float_tiff_in_unit_range_is_read_and_out_of_range_is_reported(tmp_path):
    ramp = np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)
    Image.fromarray(ramp).save(tmp_path / "unit.tif")
    assert read_image_file(tmp_path / "unit.tif")[0].numpy().tolist() == \
        np.rint(ramp * 255).astype(np.uint8).tolist()
    Image.fromarray(ramp * 1000).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"float image with values in \[0, 1e\+03\]"):
        read_image_file(tmp_path / "wide.tif")
    bad = find_unreadable([tmp_path / "unit.tif", tmp_path / "wide.tif"])
    assert [p.name for p, _ in bad] == ["wide.tif"] and "[0, 1]" in bad[0][1]


def test_exif_orientation_is_applied_on_every_path(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(20, 36, 3), dtype=np.uint8)  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "phone.png", exif=exif)
    upright = np.rot90(pixels, k=-1)  # what a photo viewer shows: portrait
    Image.fromarray(np.ascontiguousarray(upright)).save(tmp_path / "upright.png")

    decoded = read_image_file(tmp_path / "phone.png")
    assert decoded.shape == (3, 36, 20)
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), upright)
    # A PIL image the user opened is shown upright too, and is not modified.
    opened = Image.open(tmp_path / "phone.png")
    images, _ = as_image_source([opened], size=36)
    assert opened.size == (36, 20)
    assert torch.equal(images.load(0), as_image_source([str(tmp_path / "upright.png")], size=36)[0].load(0))
    extractor = FeatureExtractor(image_size=32, mixed_precision="no", verbose=0).fit()
    features = extractor.transform([str(tmp_path / "phone.png"), str(tmp_path / "upright.png")])
    np.testing.assert_allclose(features[0], features[1], rtol=0, atol=1e-6)


def test_palette_image_with_transparency_reads_without_a_warning(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = b"\x00\xff"
    image.save(tmp_path / "palette.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = read_image_file(tmp_path / "palette.png")
    assert decoded[:, 0, 0].tolist() == [255, 0, 0]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (10, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    decoded = read_image_file(tmp_path / "cmyk.jpg")
    assert decoded.shape == (3, 6, 10) and decoded[0].float().mean() > 200 and decoded[1].float().mean() < 60


@pytest.fixture(scope="module")
def fitted(textures):
    return TransferClassifier(**tiny_kwargs(epochs=1)).fit(*textures)


def test_one_image_array_is_one_image_not_a_batch_of_rows(fitted, tmp_path):
    photo = (np.random.default_rng(0).random((41, 41, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "cat.png")
    array = np.asarray(Image.open(tmp_path / "cat.png"))  # read-only, (41, 41, 3)
    assert not array.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "NumPy array is not writable" warning from torch
        assert fitted.predict(array).shape == (1,)
    assert fitted.predict_proba(np.dstack([array, np.full((41, 41), 255, np.uint8)])).shape == (1, 4)
    assert fitted.predict(array[None]).tolist() == fitted.predict(array).tolist()
    # A single file path works like a list of one.
    one_file = fitted.predict(str(tmp_path / "cat.png"))
    assert one_file.tolist() == fitted.predict([tmp_path / "cat.png"]).tolist()
    # Gray batches (N, H, W) are still batches.
    assert fitted.predict(np.zeros((5, 16, 16), np.float32)).shape == (5,)


def test_paths_that_mislead(tmp_path, fitted):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransferClassifier(**tiny_kwargs()).fit(str(tmp_path / "nonexistent"))
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(ValueError, match="single file"):
        TransferClassifier(**tiny_kwargs()).fit(str(tmp_path / "one.png"))
    (tmp_path / "table.txt").write_text("x")
    with pytest.raises(ValueError, match="a file but not an image"):
        fitted.predict(str(tmp_path / "table.txt"))
    single = tmp_path / "single"
    (single / "cats").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(single / "cats" / f"{i}.png")
    with pytest.raises(ValueError, match=r"a single class \('cats'\)") as caught:
        TransferClassifier(**tiny_kwargs()).fit(str(single))
    assert "np.str_" not in str(caught.value)
