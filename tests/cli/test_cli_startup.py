"""The command line answers at once: a line on stderr before torch is imported (3-4 s), and
``easytl backbones`` without torch at all. Fresh interpreters, since this one has torch."""

import json
import subprocess
import sys

from PIL import Image


def fresh_python(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_backbones_prints_its_table_without_importing_torch():
    result = fresh_python("import sys; from easytl.cli import main; code = main(['backbones']); "
                          "print('torch imported:', 'torch' in sys.modules, code)")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "torch imported: False 0"
    lite0 = [line for line in lines if line.startswith("efficientnet_lite0 (default)")]
    assert lite0 and lite0[0].split()[2:5] == ["4.65", "75.1", "224"] and lite0[0].endswith("yes")
    vit = [line for line in lines if line.startswith("vit_b_16")]
    assert vit and "224 (fixed)" in vit[0] and "86.57" in vit[0]


# Runs each command as ``python -m easytl ...`` would, in one interpreter that refuses to import
# torch: what a command prints before it needs torch is what the user sees at once.
ANNOUNCE = """
import json, runpy, sys

class TorchImported(BaseException):
    pass

class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise TorchImported(name)

sys.meta_path.insert(0, RefuseTorch())
for argv in json.loads(sys.argv[1]):
    print("RUN", argv[0], file=sys.stderr, flush=True)
    sys.argv = ["easytl", *argv]
    try:
        runpy.run_module("easytl", run_name="__main__", alter_sys=True)
    except TorchImported:
        print("TORCH", file=sys.stderr, flush=True)
    except SystemExit:
        print("EXIT", file=sys.stderr, flush=True)
"""


def test_every_command_says_what_it_does_before_importing_torch(tmp_path):
    from easytl.cli import build_parser
    data = tmp_path / "photos"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (16, 16), (80 * k, 0, 0)).save(data / label / f"{k}.png")
    model = tmp_path / "m.easytl"
    model.write_bytes(b"easytl")  # never read: torch is needed first
    commands = {"fit": ["fit", data, "--out", tmp_path / "out.easytl"], "lr-find": ["lr-find", data],
                "predict": ["predict", model, data], "evaluate": ["evaluate", model, data],
                "compare": ["compare", data], "demo": ["demo", "--n-per-class", "8"],
                "export": ["export", model, "--format", "onnx", "--out", tmp_path / "m.onnx"],
                "serve": ["serve", model, "--port", "1"],
                "suggest": ["suggest", model, data, "--out", tmp_path / "s.csv"]}
    every = set(build_parser()._subparsers._group_actions[0].choices) - {"backbones"}
    assert every <= set(commands), (f"add {sorted(every - set(commands))} here: each command prints "
                                    "what it does before importing torch")
    argvs = [[str(a) for a in argv] for argv in commands.values()]
    result = fresh_python(ANNOUNCE, json.dumps(argvs))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = result.stderr.split("RUN ")[1:]
    assert [run.split("\n")[0] for run in runs] == list(commands)
    for name, run in zip(commands, runs):
        lines = run.splitlines()[1:]
        # torch was wanted, or the command stopped with an error (serve without its extra)
        assert lines[-1] == "TORCH" or "easytl: error:" in run, f"easytl {name} ran to the end:\n{run}"
        first = lines[0]
        assert first.startswith(f"easytl {name}: ") and first.endswith("..."), \
            f"easytl {name} printed nothing before importing torch:\n{run}"
