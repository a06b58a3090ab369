"""``memoserve model ...``: demo models and promotions in an MLflow registry."""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``memoserve model``."""
    # --tracking-uri may stand before or after the action (`model demo --tracking-uri URI`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        default=argparse.SUPPRESS,
        help="MLflow tracking server (default: $MLFLOW_TRACKING_URI)",
    )
    parser = argparse.ArgumentParser(prog="memoserve model", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="action", required=True)

    demo = sub.add_parser(
        "demo", parents=[common], help="register the iris demo as NAME@ALIAS if absent"
    )
    demo.add_argument("--name", default="iris")
    demo.add_argument("--alias", default="champion")

    reg = sub.add_parser(
        "register", parents=[common], help="train and register a demo model version"
    )
    reg.add_argument("kind", choices=("iris", "diabetes", "slow"))
    reg.add_argument("--name", help="registered model name (default: the kind)")
    reg.add_argument("--alias", help="set this alias on the new version")
    reg.add_argument(
        "--label-shift",
        type=int,
        default=0,
        help="iris only: rotate classes, so every answer differs from version 1",
    )
    reg.add_argument("--delay", type=float, default=1.0, help="slow only: seconds per call")
    reg.add_argument("--seed", type=int, default=0)

    pro = sub.add_parser("promote", parents=[common], help="point an alias at a version")
    pro.add_argument("name")
    pro.add_argument("version")
    pro.add_argument("--alias", default="champion")

    dig = sub.add_parser(
        "digest",
        parents=[common],
        help="record the artifact digest memoserve checks (versions other tools registered)",
    )
    dig.add_argument("name")
    dig.add_argument("version")

    lst = sub.add_parser("list", parents=[common], help="versions of a model with their aliases")
    lst.add_argument("name")

    hook = sub.add_parser(
        "webhook", parents=[common], help="register the alias webhook pointing at memoserve"
    )
    hook.add_argument("url", help="e.g. http://memoserve:8080/v1/webhooks/mlflow")
    hook.add_argument("--secret", default=os.environ.get("MEMOSERVE_WEBHOOK_SECRET", ""))
    hook.add_argument("--name", default="memoserve")

    save = sub.add_parser(
        "save", parents=[common], help="train a demo model into a joblib file (no MLflow)"
    )
    save.add_argument("kind", choices=("iris", "diabetes"))
    save.add_argument("path")
    save.add_argument("--label-shift", type=int, default=0)
    args = parser.parse_args(argv)

    if args.action == "save":
        import joblib

        from memoserve_models import demo as models

        if args.kind == "iris":
            model = models.train_iris(label_shift=args.label_shift)
        else:
            model = models.train_diabetes()
        joblib.dump(model, args.path)
        print(args.path)
        return 0

    from memoserve_models import registry

    uri = getattr(args, "tracking_uri", None) or os.environ.get(
        "MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"
    )
    if args.action == "demo":
        version = registry.ensure_demo(tracking_uri=uri, name=args.name, alias=args.alias)
        print(
            f"registered {args.name} version {version} as @{args.alias}"
            if version
            else f"{args.name}@{args.alias} exists; nothing to do"
        )
    elif args.action == "register":
        version = registry.register(
            args.kind,
            args.name or args.kind,
            tracking_uri=uri,
            alias=args.alias,
            label_shift=args.label_shift,
            delay_seconds=args.delay,
            seed=args.seed,
        )
        print(version)
    elif args.action == "promote":
        registry.promote(args.name, args.version, alias=args.alias, tracking_uri=uri)
        print(f"{args.name}@{args.alias} -> version {args.version}")
    elif args.action == "digest":
        print(registry.record_digest(args.name, args.version, tracking_uri=uri))
    elif args.action == "list":
        print(json.dumps(registry.versions(args.name, tracking_uri=uri), indent=2))
    elif args.action == "webhook":
        if not args.secret:
            parser.error("--secret (or MEMOSERVE_WEBHOOK_SECRET) is required")
        print(registry.register_webhook(args.url, args.secret, tracking_uri=uri, name=args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
