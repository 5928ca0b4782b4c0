"""Larger than memory: a folder is read lazily and a big feature cache spills to disk."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Writes 20,000 files and fits twice in subprocesses to measure their memory.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def make_folder(root: Path, n_images: int) -> Path:
    """Tiny PNGs in two classes: bright or dark squares with noise."""
    rng = np.random.default_rng(0)
    for label in ("bright", "dark"):
        (root / label).mkdir(parents=True)
    base = {"bright": 180, "dark": 70}
    for i in range(n_images):
        label = "bright" if i % 2 else "dark"
        pixels = np.clip(base[label] + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / label / f"{i:05d}.png", compress_level=0)
    return root


def fit_in_fresh_process(folder: Path) -> dict:
    result = subprocess.run([sys.executable, str(HERE / "memory_worker.py"), str(folder)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fit_on_20000_files_keeps_memory_bounded(tmp_path):
    small = fit_in_fresh_process(make_folder(tmp_path / "small", 2_000))
    large = fit_in_fresh_process(make_folder(tmp_path / "large", 20_000))
    # 18,000 training images: their cached first-stage activations (8x32x32 fp32 = 32 KB each)
    # are 590 MB, far over the 64 MB budget, so the cache went to disk ...
    assert small["cache"] == "ram" and large["cache"] == "disk"
    # ... and ten times the images cost far less extra memory than that cache, or than the
    # images would take resized in RAM (245 MB as uint8, 980 MB as float). What remains is
    # the file list and allocator noise: about 60 MB in peak RSS on a 2-core AVX2 machine, but
    # 255 MB of anonymous memory on a 2-core AVX-512 bf16 one (2026-12-08; v0.3's code: 307 MB
    # of peak RSS there). That is ~14 KB per extra image, a 64 px uint8 image's size: something
    # may keep decoded images on that machine; not explained yet (README, Scale). Measured as
    # anonymous memory: pages of the spilled cache file may stay resident and count in the peak
    # RSS (270-760 MB of them there, varying from run to run). The bound still fails a cache held
    # in RAM (590 MB) or the images as floats (980 MB).
    growth = (large["peak_mb"] - large["before_mb"]) - (small["peak_mb"] - small["before_mb"])
    assert growth < 400, (small, large)
    assert large["val_accuracy"] > 0.9  # and it learned the task
