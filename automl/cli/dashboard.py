"""`automl dashboard`: optuna-dashboard on the study's storage and artifact store.

Bound to 127.0.0.1 unless ``--host`` says otherwise: the dashboard has no login, and anyone who
reaches it can edit notes and delete studies. ``--port 0`` picks a free port. The study note is
refreshed first, so the audit and the final report show up once they exist.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from rich.console import Console

from automl.cli.common import add_study_args, open_latest_study
from automl.errors import AutoMLError
from automl.terminal import markup_safe

log = logging.getLogger(__name__)


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the page polls; a slow request must not block the others


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("dashboard: " + format, *args)


def open_server(storage, run_dir: Path, host: str, port: int) -> WSGIServer:
    """optuna-dashboard's WSGI app with the study's artifact store, bound and ready to serve."""
    from optuna_dashboard import wsgi

    from automl.study.artifacts import artifact_store

    app = wsgi(storage, artifact_store=artifact_store(run_dir))
    try:
        return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise AutoMLError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port "
                          "(0 picks a free one)") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    from automl.study.storage import mask_url
    from automl.view.notes import refresh_study_note

    opened = open_latest_study(args, console)
    if opened is None:
        return 1
    sf, url, storage, study = opened.sf, opened.url, opened.storage, opened.study
    name = study.study_name
    refresh_study_note(study, sf)
    server = open_server(storage, sf.run_dir, args.host, args.port)
    host, port = server.server_address[:2]
    console.print(f"study {name} on {mask_url(url)}; artifacts from {sf.run_dir / 'artifacts'}",
                  highlight=False, markup=False, soft_wrap=True)
    if not _is_loopback(args.host):
        console.print(f"[yellow]warning:[/] listening on {markup_safe(args.host)}: the dashboard has no login, and anyone "
                      "who can reach it can edit notes and delete studies", highlight=False)
    console.print(f"dashboard: http://{host}:{port}/dashboard/studies/{study._study_id}   (Ctrl-C to stop)",
                  highlight=False, markup=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("dashboard stopped")
    finally:
        server.server_close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="open optuna-dashboard on the study (notes, artifacts, plots)")
    add_study_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    p.set_defaults(func=cmd_dashboard)
