"""``python3 -m spool worker module:function QUEUE...``: run a Worker from the command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Callable, Sequence

from .worker import Worker


def load_handler(spec: str) -> Callable[..., Any]:
    """``package.module:function`` (the current directory is importable, as with python -m)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"spool worker: handler must be module:function, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SystemExit(f"spool worker: {spec} is not callable")
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m spool")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a handler on the jobs of one or more queues")
    w.add_argument("handler", help="module:function, called with each spool.Delivery")
    w.add_argument("queues", nargs="+", metavar="QUEUE")
    w.add_argument("--address", default=None, help="HOST:PORT (default $SPOOL_ADDRESS or "
                   "127.0.0.1:7711)")
    w.add_argument("--auth-file", default=None, help="file whose first line is the secret")
    w.add_argument("--concurrency", type=int, default=8)
    w.add_argument("--batch", type=int, default=None, help="jobs per reserve (default: "
                   "concurrency)")
    w.add_argument("--max-attempts", type=int, default=5)
    w.add_argument("--backoff", type=float, default=1.0, help="first retry delay, seconds")
    w.add_argument("--backoff-max", type=float, default=300.0)
    w.add_argument("--grace", type=float, default=30.0, help="seconds to finish at SIGTERM")
    w.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    auth = None
    if args.auth_file:
        with open(args.auth_file, encoding="utf-8") as f:
            auth = f.readline().rstrip("\n")
    worker = Worker(load_handler(args.handler), args.queues, address=args.address, auth=auth,
                    concurrency=args.concurrency, batch=args.batch,
                    max_attempts=args.max_attempts, backoff=args.backoff,
                    backoff_max=args.backoff_max, grace=args.grace)
    worker.run()
    s = worker.stats
    print(f"spool worker: acked {s.acked}, released {s.released}, buried {s.buried}, "
          f"abandoned {s.abandoned}", file=sys.stderr)
    if s.abandoned:
        # Handler threads still running after the grace period cannot be stopped, and the
        # interpreter would join them at exit: their leases are released already, so leave.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def worker_main() -> int:
    """The ``spool-worker`` console script: ``spool-worker module:function QUEUE...``."""
    return main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
