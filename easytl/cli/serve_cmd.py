"""``easytl serve MODEL``: the model behind HTTP, with a page to try it (the ``serve`` extra)."""

from __future__ import annotations

import argparse

from .commands import CommandError, _announce, _say

HELP = "serve a model file over HTTP, with a page to try it in a browser"
DESCRIPTION = ("Serve MODEL (a file written by 'easytl fit' or TransferClassifier.save) with "
               "FastAPI and uvicorn: POST /predict (multipart files or base64 JSON), POST "
               "/explain (Grad-CAM), GET /health, GET /model, and a page at / to drop images "
               "on. Concurrent requests share forward passes (dynamic batching). Binds to "
               "127.0.0.1 (this machine only) unless --host says otherwise. Needs "
               "pip install 'easytl[serve]'.")
EXAMPLES = ["easytl serve model.easytl",
            "easytl serve model.easytl --port 8080 --max-batch 64",
            "easytl serve model.easytl --host 0.0.0.0  # reachable from other machines"]
ALL_INTERFACES = ("0.0.0.0", "::", "")


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=_positive(int), default=32,
                        help="most images in one forward pass (default 32)")
    parser.add_argument("--max-wait-ms", type=_non_negative, default=5.0,
                        help="how long a forward pass waits for more requests (default 5)")
    parser.add_argument("--max-upload-mb", type=_positive(float), default=32.0,
                        help="largest request body (default 32)")
    parser.add_argument("--max-images", type=_positive(int), default=64,
                        help="most images in one request (default 64)")
    parser.add_argument("--max-pixels", type=_positive(int), default=40_000_000,
                        help="largest image, width x height (default 40,000,000)")


def run(args) -> int:
    _announce(args, f"loading {args.model}")
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: FastAPI's form parsing)
        import uvicorn
    except ImportError as exc:
        raise CommandError(f"easytl serve needs FastAPI, uvicorn and python-multipart "
                           f"({exc.name} is missing): pip install 'easytl[serve]'") from None
    from ..deploy.serve import create_app
    app = create_app(args.model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     max_upload_mb=args.max_upload_mb, max_images=args.max_images,
                     max_pixels=args.max_pixels)
    if args.host in ALL_INTERFACES:
        _say(f"easytl: warning: binding {args.host or 'every interface'}: anyone who can reach "
             "this machine can use the model; the server has no authentication.")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    _say(f"easytl: serving {args.model} at http://{shown}:{args.port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
