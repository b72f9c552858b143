"""The ``automl`` command line: one verb per stage. Each verb lives in its own module here
and registers itself with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from automl import interrupts
from automl.errors import AutoMLError
from automl.terminal import visible

# One module per verb, in the order of the flow.
COMMANDS = ["init", "search", "worker", "status", "rerun", "audit", "inspect", "final", "distill", "predict", "dashboard", "report", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description="AutoML for semantic segmentation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"automl.cli.{name}").register(sub)
    return parser


def _raise_interrupt(signum, frame):
    # SIGTERM takes the same path as Ctrl-C: Optuna marks the running trial failed (so it is
    # retried on resume) and the study stays consistent. The request is also remembered, in case
    # the exception lands where something swallows it (interrupts.raise_if_requested).
    interrupts.request_stop()
    raise KeyboardInterrupt


def install_interrupts() -> None:
    """SIGTERM raises KeyboardInterrupt, like Ctrl-C, and neither is ever lost.

    A signal's exception is raised wherever the main thread happens to be. If that is inside a
    finalizer or a weakref callback (SQLAlchemy runs some during garbage collection), Python
    drops it ("Exception ignored in ...") and the process carries on as if never told to stop;
    the unraisable hook sees that case and has the signal sent again, so it lands in normal code.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if unraisable.exc_type is KeyboardInterrupt:
            # Raising it here would be dropped as well: another thread sends the signal, and the
            # main thread takes it once this callback has returned.
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return
        previous(unraisable)

    sys.unraisablehook = hook


def print_error(console: Console, exc: BaseException, verbose: bool = False) -> None:
    """One error, as plain text: its message names user paths and file names, which may hold
    rich markup (``[/b]``) or escape sequences. With -v, the traceback of what caused it."""
    if verbose and exc.__cause__ is not None:
        import traceback

        console.print(visible("".join(traceback.format_exception(exc.__cause__))), markup=False, highlight=False)
    console.print(Text("error: ", style="red") + Text(visible(exc)), highlight=False, soft_wrap=True)


class _NoTracebackFor(logging.Filter):
    """Optuna logs the exception of a failed trial with its traceback. For Ctrl-C or SIGTERM
    (about 80 lines of Optuna and PyTorch frames) and for a storage that cannot be written, the
    CLI says what happened in one line: the traceback is kept for -v."""

    def filter(self, record: logging.LogRecord) -> bool:
        from automl.study.storage import is_write_failure

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and (isinstance(exc, KeyboardInterrupt) or is_write_failure(exc)):
            record.exc_info, record.exc_text = None, None
        return True


class _VisibleFormatter(logging.Formatter):
    """Log lines with control characters shown as escapes (file names end up in messages)."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    handler.setFormatter(_VisibleFormatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for h in logging.getLogger("optuna").handlers:
        for f in [f for f in h.filters if isinstance(f, _NoTracebackFor)]:
            h.removeFilter(f)  # main() may run more than once in a process
        if not args.verbose:
            h.addFilter(_NoTracebackFor())
    # Heartbeat, retries and metric names are marked experimental in Optuna 5; we rely on them on
    # purpose and the warnings would bury the progress view.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    install_interrupts()
    try:
        return args.func(args, console)
    except AutoMLError as exc:
        print_error(console, exc, args.verbose)
        return 2
    except KeyboardInterrupt:
        interrupts.stop_handled()
        console.print("interrupted: the running trial is marked failed; run the same command to resume")
        return 130
    except Exception as exc:
        from automl.study.storage import write_failure

        err = write_failure(exc)  # a full disk or a read-only database: one line, not a traceback
        if err is None:
            raise
        err.__cause__ = exc
        print_error(console, err, args.verbose)
        return 2


if __name__ == "__main__":
    sys.exit(main())
