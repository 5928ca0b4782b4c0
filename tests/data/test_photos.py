"""Camera photos at real size: decoded at the size the model needs, in threads, once per fit."""

import os
import pickle
import threading
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from easytl import FeatureExtractor, TransferClassifier
from easytl.data.decoded import DecodedImages
from easytl.data.images import read_image_file
from easytl.data.sources import ThreadedBatches, as_image_source, batches
from easytl.data.split import drop_unreadable

from conftest import tiny_kwargs

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = {"cat": "chelsea", "cup": "coffee", "person": "astronaut"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three scikit-image photos scaled up to 3000 × 2250 and saved as camera-like JPEGs."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for label, name in PHOTOS.items():
        image = Image.fromarray(getattr(skimage_data, name)()).convert("RGB")
        path = folder / f"{label}.jpg"
        image.resize((3000, 2250), Image.BICUBIC).save(path, quality=92)
        paths.append(path)
    return paths


def full_decode(path) -> np.ndarray:
    """The whole photo, upright, as a viewer shows it: the reference for reduced decoding."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def test_a_photo_decodes_at_the_smallest_scale_that_keeps_one_and_a_half_times_the_input(photos):
    full = read_image_file(photos[0])
    assert tuple(full.shape) == (3, 2250, 3000)
    # 224 px input: 1.5 x 224 = 336 px needed; 1/8 would leave 281, so 1/4
    assert tuple(read_image_file(photos[0], min_side=336).shape) == (3, 563, 750)
    # 160 px input: 240 px needed, which 1/8 keeps
    assert tuple(read_image_file(photos[0], min_side=240).shape) == (3, 282, 375)
    reduced = read_image_file(photos[0], min_side=336)
    source, _ = as_image_source([str(p) for p in photos], size=224)
    assert tuple(source.load(0).shape) == (3, 224, 224)
    # Resized exactly as an exported model resizes the decoded image (easytl.export), so an
    # export fed the same decoded pixels reproduces predict_proba.
    hwc = reduced.permute(1, 2, 0)[None]
    exported = torch.nn.functional.interpolate(hwc.permute(0, 3, 1, 2).float(), size=(224, 224),
                                               mode="bilinear", antialias=True,
                                               align_corners=False).round().clamp(0, 255)
    assert torch.equal(source.load(0), exported[0].to(torch.uint8))


@pytest.mark.parametrize("size", [224, 160])  # the photos decode at 1/4 and at 1/8 scale
def test_features_and_predictions_of_reduced_decoding_agree_with_full_decoding(photos, size):
    files = [str(p) for p in photos]
    arrays = [full_decode(p) for p in photos]  # a list: each is resized from its full size
    extractor = FeatureExtractor(image_size=size, mixed_precision="no", verbose=0).fit()
    reduced, full = extractor.transform(files), extractor.transform(arrays)
    cosine = (reduced * full).sum(1) / np.linalg.norm(reduced, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() >= 0.99, cosine
    # A model trained on small copies of the photos predicts the same from files as from arrays.
    from sklearn.linear_model import LogisticRegression
    small = [np.asarray(Image.fromarray(a).resize((256, 192))) for a in arrays]
    model = LogisticRegression(max_iter=1000).fit(
        extractor.transform(small + [a[:, ::-1] for a in small]), list(PHOTOS) * 2)
    from_files, from_arrays = model.predict_proba(reduced), model.predict_proba(full)
    assert list(model.predict(reduced)) == list(model.predict(full)) == list(PHOTOS)
    np.testing.assert_allclose(from_files, from_arrays, atol=0.05)


def test_exif_orientation_is_applied_to_a_reduced_decode(tmp_path):
    stored = np.asarray(Image.fromarray(skimage_data.chelsea()).resize((2400, 1600), Image.BICUBIC))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": a phone held upright
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=92)
    reduced = read_image_file(tmp_path / "phone.jpg", min_side=448)
    assert tuple(reduced.shape) == (3, 1200, 800)  # portrait, at 1/2 scale
    upright = np.asarray(Image.fromarray(full_decode(tmp_path / "phone.jpg")).resize((800, 1200),
                                                                                     Image.BILINEAR))
    difference = np.abs(reduced.permute(1, 2, 0).numpy().astype(int) - upright.astype(int))
    assert difference.mean() < 2.0
    # The same picture through fit's decode-once store and through prediction.
    source, _ = as_image_source([str(tmp_path / "phone.jpg")], size=224)
    kept, _, _, _ = drop_unreadable(source, None, "error", 0)
    assert int((kept.load(0).int() - source.load(0).int()).abs().float().mean()) <= 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_formats_decode_in_full_as_before(tmp_path, fmt):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(600, 900, 3), dtype=np.uint8)
    path = tmp_path / f"image.{fmt.lower()}"
    Image.fromarray(pixels).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    reduced = read_image_file(path, min_side=64)
    assert torch.equal(reduced, read_image_file(path))
    assert np.array_equal(reduced.permute(1, 2, 0).numpy(), pixels)


def test_a_truncated_photo_is_still_reported_as_unreadable(tmp_path, photos):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for k in range(3):
            (tmp_path / label / f"{k}.jpg").write_bytes(photos[k].read_bytes())
    data = photos[0].read_bytes()
    (tmp_path / "a" / "0.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"(?s)1 of 6 image files.*0\.jpg: image file is truncated"):
        TransferClassifier(**tiny_kwargs()).fit(tmp_path)
    clf = TransferClassifier(**tiny_kwargs(val_size=0, on_bad_image="skip"))
    with pytest.warns(UserWarning, match="left out 1 unreadable"):
        clf.fit(tmp_path)
    assert [p.name for p, _ in clf.skipped_images_] == ["0.jpg"]


@pytest.fixture
def counted_decodes(monkeypatch):
    """Counts, per file, the times Pillow really decodes it (load with data left to read)."""
    counts, lock, load = Counter(), threading.Lock(), ImageFile.ImageFile.load

    def counting_load(self):
        if self.tile and getattr(self, "filename", None):
            with lock:
                counts[self.filename] += 1
        return load(self)
    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return counts


def test_fit_decodes_each_file_once(digit_folder, counted_decodes):
    # Two epochs through the backbone, a validation split and the statistics after training:
    # several passes over every image, one decode.
    clf = TransferClassifier(**tiny_kwargs(schedule="fine_tune", epochs=2, cache_features=False))
    clf.fit(digit_folder)
    n_files = sum(1 for p in digit_folder.rglob("*") if p.is_file())
    assert len(counted_decodes) == n_files
    assert set(counted_decodes.values()) == {1}


def test_decoded_images_spill_to_disk_and_read_back_the_same(tmp_path):
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 256, size=(3, h, w), dtype=np.uint8))
              for h, w in ((10, 12), (64, 40), (7, 7))]
    store = DecodedImages(side=64, budget=10 * 12 * 3 + 1, directory=tmp_path)
    for key, image in enumerate(images):
        store.put(key, image)
    assert len(store.ram) == 1 and len(store.disk) == 2 and store.storage == "ram+disk"
    assert all(torch.equal(store.get(k), image) for k, image in enumerate(images))
    assert store.get(99) is None
    copy = pickle.loads(pickle.dumps(store))  # what a DataLoader worker process gets
    assert all(torch.equal(copy.get(k), image) for k, image in enumerate(images))
    path = store.path
    del store, copy
    import gc
    gc.collect()
    assert not os.path.exists(path)


def test_fit_keeps_decoded_images_on_disk_beyond_the_budget_with_the_same_result(digit_folder):
    # cache_features=True: with no memory budget, "auto" would skip a feature cache read once,
    # and training on images in the loop (BatchNorm unfolded) rounds differently.
    in_ram = TransferClassifier(**tiny_kwargs(cache_features=True)).fit(digit_folder)
    on_disk = TransferClassifier(**tiny_kwargs(cache_memory=0, cache_features=True)).fit(digit_folder)
    assert [r["train_loss"] for r in on_disk.history_] == [r["train_loss"] for r in in_ram.history_]
    source, _ = as_image_source(digit_folder, size=32)
    kept, _, _, _ = drop_unreadable(source, None, "error", 0, memory=0)
    assert kept.store.storage == "disk"
    assert all(torch.equal(kept.load(i), source.load(i)) for i in range(len(source)))


_SPILLED = {}


def _read_spilled(_):
    store, images = _SPILLED["store"], _SPILLED["images"]
    return sum(not torch.equal(store.get(k), image) for _ in range(100)
               for k, image in enumerate(images))


def test_forked_worker_processes_read_spilled_images_correctly(tmp_path):
    # DataLoader workers are forked and share the spilled file's offset with each other: a
    # seek in one and a read in another read another image's bytes (2,516 wrong of 30,000
    # with seek + read when this test was written).
    import multiprocessing
    images = [torch.full((3, 16, 16), k, dtype=torch.uint8) for k in range(50)]
    store = DecodedImages(side=64, budget=0, directory=tmp_path)
    for k, image in enumerate(images):
        store.put(k, image)
    _SPILLED.update(store=store, images=images)
    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert sum(pool.map(_read_spilled, range(6))) == 0


def test_threads_decode_by_default_and_give_the_same_batches_in_the_same_order(digit_folder):
    assert TransferClassifier().num_workers == "auto" == FeatureExtractor().num_workers
    source, labels = as_image_source(digit_folder, size=32)
    targets = np.arange(len(source))
    runs = []
    for workers in ("auto", 0):
        generator = torch.Generator().manual_seed(3)
        loader = batches(source, targets, 5, shuffle=True, generator=generator, num_workers=workers)
        assert isinstance(loader, ThreadedBatches) == (workers == "auto")
        runs.append(([(x.clone(), t.clone()) for x, t in loader], generator.get_state()))
    (threaded, state_threaded), (plain, state_plain) = runs
    assert len(threaded) == len(plain) == 5
    assert all(torch.equal(a, b) and torch.equal(s, t) for (a, s), (b, t) in zip(threaded, plain))
    assert torch.equal(state_threaded, state_plain)  # the same random numbers drawn
    arrays, _ = as_image_source(np.zeros((4, 8, 8, 3), np.uint8))
    assert not isinstance(batches(arrays, num_workers="auto"), ThreadedBatches)


def test_a_seeded_fit_on_files_is_the_same_with_and_without_threads(digit_folder):
    threaded = TransferClassifier(**tiny_kwargs(schedule="fine_tune")).fit(digit_folder)
    serial = TransferClassifier(**tiny_kwargs(schedule="fine_tune", num_workers=0)).fit(digit_folder)
    assert [r["train_loss"] for r in threaded.history_] == [r["train_loss"] for r in serial.history_]
    np.testing.assert_array_equal(threaded.predict_proba(digit_folder),
                                  serial.predict_proba(digit_folder))
    with pytest.raises(ValueError, match="num_workers"):
        TransferClassifier(num_workers="many").fit(digit_folder)


@pytest.mark.parametrize("extra", [[], ["--reject-unknown", "--tta", "2"]])
def test_cli_predict_decodes_each_file_once_and_answers_as_the_api(
        digit_folder, capsys, monkeypatch, counted_decodes, extra):
    import json

    from easytl.cli import commands, main
    clf = TransferClassifier(**tiny_kwargs()).fit(digit_folder)
    monkeypatch.setattr(commands, "_load", lambda path: clf)  # a tiny custom backbone: no file
    files = sorted(str(p) for p in digit_folder.rglob("*") if p.is_file())
    counted_decodes.clear()
    assert main(["predict", "model.easytl", str(digit_folder), "--format", "json",
                 "--top-k", "3", *extra]) == 0
    assert sorted(counted_decodes) == files and set(counted_decodes.values()) == {1}
    rows = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in rows] == files
    expected = (clf.predict_tta(files, n_augment=2, return_proba=True) if extra
                else clf.predict_proba(files))
    got = np.array([[top["probability"] for top in row["top_k"]] for row in rows])
    np.testing.assert_allclose(got, -np.sort(-expected, axis=1), atol=1e-4)
    if extra:
        novelty = clf.novelty_score(files)
        assert [row["novelty"] for row in rows] == pytest.approx(novelty.tolist(), abs=1e-3)


def test_cli_evaluate_with_its_html_report_decodes_each_file_once(
        digit_folder, tmp_path, capsys, monkeypatch, counted_decodes):
    from easytl.cli import commands, main
    # 96 px input: the kept images serve the 96 px thumbnails too
    clf = TransferClassifier(**tiny_kwargs(image_size=96)).fit(digit_folder)
    monkeypatch.setattr(commands, "_load", lambda path: clf)  # a tiny custom backbone: no file
    files = sorted(str(p) for p in digit_folder.rglob("*") if p.is_file())
    counted_decodes.clear()
    page = tmp_path / "report.html"
    assert main(["evaluate", "model.easytl", str(digit_folder), "--train", str(digit_folder),
                 "--html", str(page)]) == 0
    # the same folder as test and training set: each file is read twice (once per role), and
    # thumbnails, Grad-CAM and the near-duplicate search decode nothing again
    assert sorted(counted_decodes) == files and set(counted_decodes.values()) == {2}
    expected = clf.score([str(f) for f in files], [os.path.basename(os.path.dirname(f)) for f in files])
    assert f"accuracy {expected:.3f} on {len(files)} images" in capsys.readouterr().out
    assert "class_0/0.png" in page.read_text()


def test_cli_suggest_decodes_each_pool_file_once(digit_folder, tmp_path, monkeypatch, counted_decodes):
    from easytl.cli import commands, main, suggest_cmd
    clf = TransferClassifier(**tiny_kwargs()).fit(digit_folder)
    monkeypatch.setattr(commands, "_load", lambda path: clf)  # a tiny custom backbone: no file
    monkeypatch.setattr(suggest_cmd, "_load", lambda path: clf)
    files = sorted(str(p) for p in digit_folder.rglob("*") if p.is_file())
    counted_decodes.clear()
    assert main(["suggest", "model.easytl", str(digit_folder), "--n", "5",
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert sorted(counted_decodes) == files and set(counted_decodes.values()) == {1}
    assert len((tmp_path / "s.csv").read_text().splitlines()) >= 6  # header + 5 suggestions


def test_commands_keep_decoded_images_within_the_budget_and_write_no_temporary_file(digit_folder):
    from easytl.data.decoded import read_files_once
    files = sorted(digit_folder.rglob("*.png"))
    one = 32 * 32 * 3
    source, bad = read_files_once(files, 32, budget=3 * one)
    assert bad == [] and len(source.store) == 3 and source.store.path is None
    fresh, _ = as_image_source([str(f) for f in files], size=32)
    for i in range(len(files)):  # kept or decoded again: the same pixels
        assert torch.equal(source.load(i), fresh.load(i))


def test_kept_images_settle_at_the_input_size_without_changing_the_fit(digit_folder, monkeypatch):
    # 24 px PNGs kept at 1.5 x 32 = 48 px a side at most, then settled at the plan's 32 px: the
    # training passes read them without resizing, and every number comes out the same
    files = sorted(str(p) for p in digit_folder.rglob("*") if p.is_file())
    settled = TransferClassifier(**tiny_kwargs(cache_features=False)).fit(digit_folder)
    monkeypatch.setattr(DecodedImages, "settle", lambda self, size: None)
    unsettled = TransferClassifier(**tiny_kwargs(cache_features=False)).fit(digit_folder)
    np.testing.assert_array_equal(settled.predict_proba(files), unsettled.predict_proba(files))
    assert [r["train_loss"] for r in settled.history_] == [r["train_loss"] for r in unsettled.history_]
    monkeypatch.undo()
    store = DecodedImages(side=48, budget=10**6)
    image = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    store.put(0, image)
    store.settle(32)
    assert store.side == 32 and tuple(store.get(0).shape) == (3, 32, 32)
    from easytl.data.sources import resize
    assert torch.equal(store.get(0), resize(image[None], 32)[0])
