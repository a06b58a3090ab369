"""``memoserve`` command line: ``serve``, ``dev-stack`` and ``model ...``."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``memoserve`` console script."""
    parser = argparse.ArgumentParser(prog="memoserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run gunicorn with uvicorn workers (settings from MEMOSERVE_*)")
    stack = sub.add_parser("dev-stack", help="run MLflow, Redis + Sentinels and replicas locally")
    stack.add_argument("--replicas", type=int, default=2, help="service replicas (gunicorns)")
    stack.add_argument("--workers", type=int, default=2, help="workers per replica")
    stack.add_argument("--port", type=int, default=8080, help="first replica's port")
    stack.add_argument("--workdir", default=".run", help="logs, sqlite registry, artifacts")
    stack.add_argument(
        "--redis",
        choices=("sentinel", "cluster"),
        default="sentinel",
        help="master + replica + 3 Sentinels, or a 3-primary + 3-replica Redis Cluster",
    )
    sub.add_parser(
        "model", help="train, register and promote demo models (see `model -h`)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)

    if args.command == "serve":
        return _serve()
    if args.command == "dev-stack":
        try:
            from devtools.localstack.stack import run_stack
        except ImportError:  # the image ships the service only
            print("dev-stack needs a source checkout (devtools/): run `make run`", file=sys.stderr)
            return 2
        return run_stack(args.replicas, args.workers, args.port, args.workdir, redis=args.redis)
    from memoserve_models.cli import main as model_main

    return int(model_main(rest))


def _serve() -> int:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:service.gunicorn_conf",
        "service.app:create_app()",
    ]
    os.execv(sys.executable, argv)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
