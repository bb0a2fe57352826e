"""`orch daemon`: serve the repository's eligible issues until stopped (or once); live table, JSON lines, HTTP state."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from statemachine.daemon import Daemon, Options
from statemachine.errors import OrchError
from statemachine.output import Output
from statemachine.runtime import open_runtime


def _parse_http(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise OrchError(f"--http wants HOST:PORT, not {text!r}", "for example --http 127.0.0.1:8765")
    return host, int(port)


def main(args: argparse.Namespace, out: Output) -> int:
    if args.concurrency < 1:
        raise OrchError("--concurrency must be at least 1", "for example --concurrency 4")
    http = _parse_http(args.http) if args.http else None
    rt = open_runtime(args.repo, args.policy)
    try:
        rt.jail.require()
    except BaseException:
        rt.close()
        raise
    from statemachine import liveview

    view = liveview.RichTable() if sys.stdout.isatty() and not args.json else liveview.JsonLines()
    server = None
    try:
        opts = Options(
            concurrency=args.concurrency,
            interval=args.interval_seconds,
            once=args.once,
            max_runs=args.max_runs,
            policy=args.policy,
            first=args.first or None,
            poll_cursor=Path(args.poll_cursor).absolute() if args.poll_cursor else None,
            live=http is not None or isinstance(view, liveview.RichTable),  # JSON lines alone show no rows
            shutdown_deadline=args.shutdown_deadline if args.shutdown_deadline is not None else -1.0,
        )
        daemon = Daemon(rt, opts, view.event)
        if http:
            server = liveview.serve(http[0], http[1], lambda: daemon.state, str(rt.repo))
            view.event({"at": "", "event": "http", "url": f"http://{http[0]}:{server.server_address[1]}/"})
        return daemon.run(on_tick=view.tick)  # 0, or 130 when Ctrl-C (SIGINT) stopped it
    finally:
        view.close()
        if server is not None:
            server.shutdown()
        rt.close()
