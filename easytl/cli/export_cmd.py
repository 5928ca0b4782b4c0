"""``easytl export MODEL OUT``: an fp32 or int8 ONNX / OpenVINO / TorchScript export of a model file."""

from __future__ import annotations

from ..constants import EXPORT_FORMATS
from .commands import CommandError, _announce, _count, _load

DESCRIPTION = ("Write the whole predictor (resize + normalisation + network + softmax, and the "
               "novelty score) as one graph: input uint8 images (N, H, W, 3) of any size, output "
               "class probabilities; class labels, thresholds and the unknown threshold are "
               "stored with it, and easytl.Predictor(OUT) answers as the model does. "
               "--quantize int8 writes a post-training int8 model (ONNX Runtime, or NNCF for "
               "OpenVINO) calibrated on --calibration images; OpenVINO writes a folder.")
EXAMPLES = ["easytl export model.easytl model.onnx",
            "easytl export model.easytl model-int8.onnx --quantize int8 --calibration photos/",
            "easytl export model.easytl model-ov --format openvino --quantize int8 "
            "--calibration photos/",
            "easytl export model.easytl model.pt --format torchscript"]


def add_parser(command) -> None:
    """Add the ``export`` sub-command (``command`` is the CLI's sub-parser factory)."""
    export = command("export", run, "export a model file as ONNX, OpenVINO or TorchScript (int8 too)",
                     DESCRIPTION, EXAMPLES)
    export.add_argument("model", metavar="MODEL")
    export.add_argument("out", metavar="OUT", nargs="?", help="the file (OpenVINO: folder) to write")
    export.add_argument("--out", dest="out_option", metavar="OUT", help="the same as OUT")
    export.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    export.add_argument("--quantize", default=None, choices=["int8"],
                        help="post-training int8 quantization (onnx, openvino)")
    export.add_argument("--calibration", metavar="DIR", default=None,
                        help="images to calibrate int8 on: a folder (class sub-folders or flat), "
                             "ideally a few hundred training images")
    export.add_argument("--n-calibration", type=int, default=300,
                        help="at most this many calibration images (a seeded random subset)")
    export.add_argument("--verbose", type=int, default=1, choices=[0, 1],
                        help="0: no progress (what each long step is doing, on stderr)")


def run(args) -> int:
    if args.out and args.out_option and args.out != args.out_option:
        raise CommandError(f"two outputs given ({args.out} and --out {args.out_option}): give one.")
    out = args.out or args.out_option
    if out is None:
        raise CommandError("give the file to write: easytl export MODEL OUT")
    if args.quantize and args.format == "torchscript":
        raise CommandError("--quantize int8 works with --format onnx or openvino, not torchscript.")
    if args.quantize and args.calibration is None:
        raise CommandError("--quantize int8 needs --calibration DIR: a folder of a few hundred "
                           "training images to measure activation ranges on.")
    _announce(args, f"loading {args.model}")
    from ..deploy.export import export_model

    clf = _load(args.model)
    written = export_model(clf, out, args.format, quantize=args.quantize,
                           calibration=args.calibration, n_calibration=args.n_calibration,
                           verbose=args.verbose)
    kind = args.format + (f" {args.quantize}" if args.quantize else "")
    args.emit(f"{kind} model written to {written} (input: uint8 images (N, H, W, 3); "
              f"output: probabilities over {_count(len(clf.classes_), 'class')}; "
              f"run it with easytl.Predictor('{written}'))")
    return 0
