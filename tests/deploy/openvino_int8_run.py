"""Exports an easytl model file as an OpenVINO int8 folder (NNCF) and writes what
``easytl.Predictor`` answers on some image sets to a JSON file.

Run by tests/deploy/test_int8_export.py in a child process, so that a native crash in
OpenVINO or NNCF fails that test with its stderr instead of killing pytest (one
CI run died with a segmentation fault in the test after an in-process NNCF run)::

    python tests/deploy/openvino_int8_run.py MODEL CALIBRATION_DIR IMAGES.npz OUT.json
"""

import json
import sys
from pathlib import Path

import numpy as np


def main(model: str, calibration: str, images: str, out: str) -> int:
    from easytl import Predictor
    from easytl.cli import main as cli
    folder = Path(out).with_suffix(".openvino")
    code = cli(["export", model, str(folder), "--format", "openvino", "--quantize", "int8",
                "--calibration", calibration])
    if code != 0:
        return code
    predictor = Predictor(folder)
    sets = np.load(images)
    answers = {name: {"labels": predictor.predict(sets[name]).tolist(),
                      "rejected": predictor.predict(sets[name], reject_unknown=True).tolist(),
                      "proba": predictor.predict_proba(sets[name]).tolist()}
               for name in sets.files}
    Path(out).write_text(json.dumps({
        "quantize": predictor.quantize_, "classes": predictor.classes_.tolist(),
        "metadata": json.loads((folder / "easytl.json").read_text()), "answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
