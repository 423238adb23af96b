"""`adapt-bot worker`: a Celery worker for the control queue, or for ONE runner pool's queue.

One per runner host: `adapt-bot worker --pool a2-8` (its child is `python -m runners.host.worker`,
which loads runners/ only and connects as the pool's Redis user). The control plane:
`adapt-bot worker --control` (control tasks, the intent outbox and the runners' event inbox).
Runner workers take one stage at a time (prefork, concurrency 1, prefetch 1); the control worker
uses threads (its tasks wait on GitHub, not on CPU).

The Celery worker runs in a child process that is restarted when it dies (kombu's Redis transport
can end a worker with an "Unrecoverable error" when the broker restarts under it); SIGTERM/SIGINT
are passed on and stop it for good. A control worker re-arms the watch of every running job when
it starts (`bot.tasks.reconcile`), so messages it held when it died cannot stall a job.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HELP = "run a Celery worker: --pool POOL for a runner host, --control for the control plane"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pool", action="append", default=[], metavar="POOL", help="the runner pool this host serves"
    )
    parser.add_argument("--control", action="store_true", help="consume the control queue")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="parallel tasks (default: control 4, runner 1)"
    )
    parser.add_argument("--loglevel", default="info")
    parser.add_argument("--name", default=None, help="worker node name (default: <queues>@<host>)")
    parser.add_argument(
        "--no-supervise", action="store_true", help="run Celery in this process; do not restart it"
    )


def _check(args: argparse.Namespace) -> None:
    if not args.control and not args.pool:
        raise SystemExit("adapt-bot worker: give --pool POOL (a runner host) or --control")
    if args.control and args.pool:
        raise SystemExit(
            "adapt-bot worker: --control and --pool run in separate processes (a runner host must "
            "not hold the control plane's credentials); start two workers"
        )
    if len(args.pool) > 1:
        raise SystemExit("adapt-bot worker: one --pool per runner worker (each pool has its own Redis user)")


def celery_argv(args: argparse.Namespace) -> list[str]:
    """The control worker's Celery argv (runner workers: `runners.host.worker.celery_argv`)."""
    from bot.celery_app import CONTROL_QUEUE

    _check(args)
    return [
        "worker",
        "-Q",
        CONTROL_QUEUE,
        "-P",
        "threads",
        "-c",
        str(args.concurrency or 4),
        "-n",
        args.name or f"{CONTROL_QUEUE}@{socket.gethostname()}",
        "--loglevel",
        args.loglevel.upper(),
        "--without-gossip",
        "--without-mingle",
    ]


def _publish_outbox_while_running() -> None:
    """The control worker also publishes the intent outbox (see bot.api.outbox), off the web path,
    and consumes the runners' event streams (bot.runner_link.Inbox)."""
    from celery import signals

    from bot.api.outbox import Outbox
    from bot.celery_app import CeleryQueue, get_celery
    from bot.config import get_settings
    from bot.redis_conn import client

    state: dict[str, Any] = {}

    @signals.worker_ready.connect(weak=False)
    def _start(**_kw: object) -> None:
        import os

        from bot.jobs.logs import from_settings
        from bot.jobs.store import JobStore
        from bot.runner_link import Inbox

        settings = get_settings()
        queue = CeleryQueue(get_celery(), settings)
        from bot.api.redeliver import sweeper_for

        box = Outbox(  # also sweeps for failed deliveries GitHub never got a 2xx for (App key here)
            client(settings),
            queue,
            sweeper=sweeper_for(settings, client(settings)),
            sweep_every_s=settings.redelivery_sweep_s,
        )
        box.start()
        state["box"] = box
        inbox = Inbox(
            JobStore(client(settings), from_settings(settings)),
            settings.runner_pools,
            lambda task, args: queue.control(task, *args),
            consumer=f"{socket.gethostname()}:{os.getpid()}",
            refresh_s=settings.status_refresh_s,
        )
        inbox.start()
        state["inbox"] = inbox

    @signals.worker_shutdown.connect(weak=False)
    def _stop(**_kw: object) -> None:
        for name in ("inbox", "box"):
            if name in state:
                state.pop(name).stop()


def _run_celery(args: argparse.Namespace) -> int:
    import logging

    from bot.celery_app import make_celery

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = make_celery()
    if args.control:
        _publish_outbox_while_running()
        _reconcile_when_ready(app)
        _exit_on_broker_restart()
    app.worker_main(celery_argv(args))
    return 0


#: Exit code of a control worker that saw its broker restart (the supervisor starts a new one).
BROKER_RESTARTED = 75


def _exit_on_broker_restart(poll_s: float = 2.0) -> None:
    """Control worker: when Redis restarts (its run_id changes), exit so the supervisor starts a
    fresh worker that reconciles every running job.

    kombu's Redis transport can neither restore the messages it held nor always recover its own
    consumer after the server restarts under it (it logs "Unrecoverable error" and may hang in
    shutdown). A fresh process plus `reconcile` re-arms everything the old one held; control tasks
    are idempotent, so a message that is also redelivered later changes nothing.
    """
    import logging
    import os
    import threading

    from bot.config import get_settings
    from bot.redis_conn import client

    log = logging.getLogger("bot.cli.worker")

    def run_id(r: object) -> str | None:
        try:
            return str(r.info("server")["run_id"])  # type: ignore[attr-defined]
        except Exception:
            return None

    def loop() -> None:
        r = client(get_settings())
        first = None
        while first is None:
            first = run_id(r)
            time.sleep(poll_s)
        while True:
            time.sleep(poll_s)
            now = run_id(r)
            if now is not None and now != first:
                log.warning("Redis restarted (run_id changed); restarting this control worker")
                logging.shutdown()
                os._exit(BROKER_RESTARTED)

    threading.Thread(target=loop, name="adapt-broker-watch", daemon=True).start()


def _reconcile_when_ready(app: object) -> None:
    from celery import signals

    @signals.worker_ready.connect(weak=False)
    def _go(**_kw: object) -> None:
        from bot.celery_app import CONTROL_QUEUE

        app.send_task("bot.tasks.reconcile", queue=CONTROL_QUEUE)  # type: ignore[attr-defined]


#: Restart policy of the supervised Celery worker.
MAX_RESTARTS = 10
RESTART_WINDOW_S = 600.0


def supervise(argv: list[str], sleep: Callable[[float], None] = time.sleep) -> int:
    """Run `argv` as a child; restart it whenever it exits without being asked to, with backoff.

    Gives up (returning the child's code) after MAX_RESTARTS unrequested exits within
    RESTART_WINDOW_S, so a worker that cannot start does not spin forever.
    """
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    crashes: list[float] = []
    while True:
        child = subprocess.Popen(argv)
        code = child.wait()
        if stopping:
            return code
        # A worker never ends by itself: even a clean exit without a stop signal (Celery returns 0
        # after an "Unrecoverable error") means it must be started again.
        now = time.monotonic()
        crashes = [t for t in crashes if now - t < RESTART_WINDOW_S] + [now]
        if len(crashes) > MAX_RESTARTS:
            print(f"adapt-bot worker: Celery worker died {len(crashes)} times; giving up", file=sys.stderr)
            return code
        delay = min(30.0, 2.0 ** (len(crashes) - 1))
        print(
            f"adapt-bot worker: Celery worker exited with {code}; restarting in {delay:.0f} s",
            file=sys.stderr,
        )
        sleep(delay)


def main(args: argparse.Namespace) -> int:
    _check(args)
    if args.pool:  # a runner host: the child loads runners/ only (no control-plane module, no githubkit)
        argv = [
            sys.executable,
            "-m",
            "runners.host.worker",
            "--pool",
            args.pool[0],
            "--loglevel",
            args.loglevel,
        ]
        if args.name:
            argv += ["--name", args.name]
        if args.no_supervise:
            from runners.host.worker import main as runner_main

            return runner_main(argv[3:])
        return supervise(argv)
    if args.no_supervise:
        return _run_celery(args)
    return supervise([sys.executable, "-m", "bot.cli", "worker", *child_args(args)])


def child_args(args: argparse.Namespace) -> list[str]:
    """The control worker's options for the supervised child, which runs Celery itself."""
    out = ["--control"]
    if args.concurrency is not None:
        out += ["--concurrency", str(args.concurrency)]
    if args.name:
        out += ["--name", args.name]
    return [*out, "--loglevel", args.loglevel, "--no-supervise"]
