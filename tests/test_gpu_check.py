"""benchmarks/gpu_check.py runs end to end on a CPU-only machine (the CUDA rows are skipped)."""

import importlib.util
from pathlib import Path

import pytest
import torch

# Runs the GPU check script's CPU reference in a subprocess.
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_its_cpu_reference(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows, speed, failed = module.check(module.parse_args(
        ["--n-per-class", "8", "--epochs", "2", "--image-size", "32", "--images", "16",
         "--batch-size", "8"]))
    out = capsys.readouterr().out
    assert not failed
    reference = rows[0]
    assert reference["device"] == "cpu" and 0.5 <= reference["accuracy"] <= 1.0
    line = f"| cpu | fp32 | {reference['fit_s']:.1f} | {reference['accuracy']:.3f} | +0.000 reference |"
    assert line in out
    if not torch.cuda.is_available():
        assert [r.get("skipped") for r in rows[1:]] == ["no CUDA device"] * 3
    assert {(r["backbone"], r["device"]) for r in speed} >= {
        ("resnet18", "cpu"), ("efficientnet_lite0", "cpu")}
    assert all(r["train_img_s"] > 0 and r["predict_img_s"] > 0 for r in speed)
