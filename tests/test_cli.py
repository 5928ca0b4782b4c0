import subprocess
import sys


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "easytl", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_prints_a_held_out_report():
    result = run("demo", "--n-per-class", "12", "--epochs", "3", "--image-size", "64",
                 "--verbose", "0")
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout
    for label in ("dots", "grid", "noise", "stripes"):
        assert label in result.stdout
    accuracy = float(result.stdout.split("held-out accuracy ")[1].split(";")[0])
    assert accuracy >= 0.9  # the textures are easy for the pretrained backbone even at 64 px


def test_backbones_table_and_usage_errors():
    result = run("backbones")
    assert result.returncode == 0
    lite0 = [line for line in result.stdout.splitlines() if line.startswith("efficientnet_lite0")]
    assert lite0 and lite0[0].rstrip().endswith("yes")
    assert run("fly").returncode == 2
    bad = run("demo", "--backbone", "resnet81", "--verbose", "0")
    assert bad.returncode == 1 and "resnet18" in bad.stderr and "Traceback" not in bad.stderr
