"""The ``easytl`` command line: fit, lr-find, predict, evaluate, compare, export, backbones, demo,
serve, suggest (one module each: fit_cmd.py, predict_cmd.py, ...; the helpers they share
are in commands.py).

Results go to stdout and nothing else does: progress bars, logs and per-file
problems go to stderr, so ``easytl predict ... --format csv > out.csv`` gives
a clean file. Exit codes: 0 success, 2 usage error (argparse), 1 a runtime
failure, reported in one line (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import warnings

from . import (backbones_cmd, compare_cmd, demo_cmd, evaluate_cmd, export_cmd, fit_cmd, lr_find_cmd,
               predict_cmd, serve_cmd, suggest_cmd)
from .arguments import _positive_int
from .commands import CommandError, _say
# easytl.cli.DEFAULT_BACKBONE: the one definition, as the commands' --backbone default
from ..constants import DEFAULT_BACKBONE  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    """The ``easytl`` parser: each command's module adds its sub-command and arguments."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="easytl", description="Transfer learning for image classification from the shell.",
        epilog="Run 'easytl COMMAND --help' for each command's options and examples.")
    parser.add_argument("--version", action="version", version=f"easytl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    command = _command_factory(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for module in (fit_cmd, lr_find_cmd, predict_cmd, evaluate_cmd, compare_cmd, export_cmd,
                   backbones_cmd, demo_cmd):  # the order of 'easytl --help'
        module.add_parser(command)
    serve_cmd.add_arguments(command("serve", serve_cmd.run, serve_cmd.HELP, serve_cmd.DESCRIPTION,
                                    serve_cmd.EXAMPLES))
    suggest_cmd.add_parser(command, _positive_int)  # active learning: easytl suggest
    return parser


def _command_factory(subparsers):
    """``command(name, run, help, description, examples)``: a sub-parser that runs ``run``, with
    its examples under its options and ``--debug`` accepted after the command too."""
    # --debug works before or after the command: the command's copy only sets it when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")

    def command(name, run, help, description, examples):
        sub = subparsers.add_parser(name, parents=[common], help=help, description=description,
                                    epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run)
        return sub
    return command


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``easytl: warning: ...`` lines, without Python's source-line echo."""
    _say(f"easytl: warning: {message}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Results go to the real stdout; anything else that prints (a library, a download
    # message) is sent to stderr so that stdout stays machine-readable.
    args.results = sys.stdout
    args.emit = functools.partial(print, file=args.results, flush=True)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except KeyboardInterrupt:
        _say("easytl: interrupted")
        return 130
    except Exception as exc:  # one line for the user; the traceback only on request
        if args.debug:
            raise
        message = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, (CommandError, ValueError, TypeError, FileNotFoundError,
                                IsADirectoryError, NotADirectoryError, PermissionError,
                                ImportError, RuntimeError)):
            message = f"{type(exc).__name__}: {message}"
        _say(f"easytl: error: {message}" + ("" if isinstance(exc, CommandError)
                                            else "  (run with --debug for the traceback)"))
        return 1
