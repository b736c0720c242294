"""Command line: ``share-gateway serve | migrate | check-config | sessions claim | demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from gateway import __version__, config, profiles
from gateway.pipeline.routes import RouteTable, RouteTableError


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per settings key: ``--auth.mode``, ``--shares.allow_anonymous`` …"""
    parser.add_argument("--config", "-c", help="YAML config file (default: $SHARE_GATEWAY_CONFIG)")
    group = parser.add_argument_group("settings (each also SHARE_GATEWAY_<KEY> with __ for dots)")
    for key, description in config.leaf_keys():
        group.add_argument(f"--{key}", dest=f"setting:{key}", metavar="VALUE", help=description or None)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name.split(":", 1)[1]: value
        for name, value in vars(args).items()
        if name.startswith("setting:") and value is not None
    }


def load_settings(
    args: argparse.Namespace, *, require_upstream: bool, refuse_exposed: bool = False
) -> config.Settings:
    """Settings from file, env and flags; exits 2 listing every problem.

    ``refuse_exposed`` (``serve``) also refuses ``config.exposure_problems()``.
    """
    try:
        settings = config.load(
            args.config, _overrides(args), require_upstream=require_upstream, refuse_exposed=refuse_exposed
        )
        profile = profiles.load(settings.profile)
        RouteTable(profile.rules)
        if require_upstream:
            from gateway.app import upstream_credentials

            upstream_credentials(settings, profile)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    except (profiles.ProfileError, RouteTableError, OSError, ValueError) as exc:
        print(f"invalid configuration:\n  - profile: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return
    uvloop.install()


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.app import serve
    from gateway.observe.logging import configure
    from gateway.observe.logging import flush as flush_logs

    settings = load_settings(args, require_upstream=True, refuse_exposed=True)
    configure(settings.log.level, settings.log.format)
    if settings.workers > 1 and args.worker_of is None:
        from gateway.workers import supervise

        return supervise(settings, args.argv)
    _install_uvloop()
    try:
        asyncio.run(serve(settings, reuse_port=args.worker_of is not None, metrics_dir=args.metrics_dir))
    finally:
        flush_logs()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.shares.store import StoreError, opened

    settings = load_settings(args, require_upstream=False)

    async def run() -> list[int]:
        async with opened(settings.store, migrate=False) as store:
            return await store.migrate()

    try:
        applied = asyncio.run(run())
    except StoreError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the effective settings; what ``serve`` would refuse is a warning here, exit status 0."""
    settings = load_settings(args, require_upstream=True)
    print(json.dumps(settings.redacted(), indent=2))
    warnings = config.exposure_problems(settings)
    for problem in warnings:
        print(f"warning: serve refuses this: {problem}", file=sys.stderr)
    print("configuration OK" + (" except for the warnings above" if warnings else ""), file=sys.stderr)
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    """Record the owner of a session that existed before the gateway (gateway-recorded profiles)."""
    import time

    from gateway.shares.store import StoreError, opened

    settings = load_settings(args, require_upstream=False)

    async def run() -> str | None:
        async with opened(settings.store) as store:
            if args.force:
                await store.reassign_session_owner(args.session_id, args.owner, time.time())
                return None
            if await store.set_session_owner(args.session_id, args.owner, time.time()):
                return None
            return await store.session_owner(args.session_id)

    try:
        existing = asyncio.run(run())
    except StoreError as exc:
        print(f"claim failed: {exc}", file=sys.stderr)
        return 1
    if existing is not None and existing != args.owner:
        print(
            f"session {args.session_id} is already owned by {existing} (use --force to reassign)",
            file=sys.stderr,
        )
        return 1
    print(f"session {args.session_id} is owned by {args.owner}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo.story import main as story

    return story(keep_running=args.keep_running)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="share-gateway",
        description="Authorization gateway for sharing agent chat sessions.",
    )
    parser.add_argument("--version", action="version", version=f"share-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("serve", cmd_serve, "run the gateway"),
        ("migrate", cmd_migrate, "apply store schema migrations and exit"),
        ("check-config", cmd_check_config, "validate the configuration, print it (secrets masked)"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        _add_setting_flags(sub)
        sub.set_defaults(func=func)
        if name == "serve":  # set by the --workers supervisor for its children
            sub.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)
            sub.add_argument("--metrics-dir", default=None, help=argparse.SUPPRESS)
    sessions = commands.add_parser("sessions", help="manage gateway-recorded session owners")
    session_commands = sessions.add_subparsers(dest="sessions_command", required=True)
    claim = session_commands.add_parser(
        "claim",
        help="record the owner of a session created before the gateway",
        description="record the owner of a session created before the gateway",
    )
    claim.add_argument("session_id")
    claim.add_argument("--owner", required=True, help="the user id that owns the session")
    claim.add_argument("--force", action="store_true", help="replace an existing owner")
    _add_setting_flags(claim)
    claim.set_defaults(func=cmd_claim)
    demo = commands.add_parser(
        "demo", help="run the share story against two demo A2A agents (profiles kagent and a2a)"
    )
    demo.add_argument("--keep-running", action="store_true", help="leave the demo running")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]  # what followed the command name, for worker processes
    return int(args.func(args))
