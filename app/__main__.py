"""`python -m app` (`make run`): the messenger on a local demonstration organisation.

On first run it creates a relay with SQLite in the user's data directory, seeds synthetic
staff and rooms, and prints the relay and the accounts; then it opens the app signed in as
one of them (``--as`` picks another: `make run-second`). Without a display or a Flet desktop
client the web renderer is served on 127.0.0.1 and its address printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.cli.custody import CUSTODY_FILE, new_custody, profile_custody, record_custody
from app.ui.app import AppProcess, NotLoopbackError, run, web_host
from app.ui.demo import FIRST, STAFF, Demo, DemoError
from app.ui.local_relay import LocalRelayError
from app.ui.profile import Profile
from storage.custody import CustodyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.split("\n")[0])
    parser.add_argument("--as", dest="who", default=FIRST, choices=[s.slug for s in STAFF],
                        help="the demo account to sign in as")
    parser.add_argument("--web", action="store_true",
                        help="serve the web renderer even where a desktop window could open")
    parser.add_argument("--host", default="127.0.0.1", help="web renderer host (loopback only)")
    parser.add_argument("--port", type=int, default=0, help="web renderer port (0: any free)")
    parser.add_argument("--language", choices=["fr", "en"], help="default: the system locale")
    parser.add_argument("--profile", type=Path,
                        help="a real profile instead of the demo: enrols it (onboarding) when "
                        "empty, asks its PIN when it has one")
    parser.add_argument("--relay", default="", help="with --profile: the relay address to offer")
    args = parser.parse_args(argv)
    try:
        web_host(args.host)  # refused before anything starts
    except NotLoopbackError as e:
        print(f"liaison: {e}", file=sys.stderr)
        return 2

    if args.profile is not None:
        try:
            profile = _real_profile(args.profile)
        except CustodyError as e:
            print(f"liaison: {e}", file=sys.stderr)
            return 1
        run(AppProcess(profile, args.language, args.relay), web=args.web, host=args.host,
            port=args.port)
        return 0

    demo = Demo()
    try:
        demo.ensure_relay()
        asyncio.run(demo.ensure_seeded())
        print(demo.describe(), flush=True)
        print(f"Signed in as: {args.who}", flush=True)
        run(AppProcess(demo.profile(args.who), args.language), web=args.web, host=args.host,
            port=args.port)
    except (LocalRelayError, DemoError) as e:
        print(f"liaison: {e}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    return 0


def _real_profile(directory: Path) -> Profile:
    """The profile with the custody the CLI would use (and records), so that `liaison
    --profile` and the app open the same profile the same way."""
    if (directory / CUSTODY_FILE).exists():
        return Profile(directory, profile_custody(directory))
    directory.mkdir(parents=True, exist_ok=True)
    name, custody = new_custody(directory)
    record_custody(directory, name)
    return Profile(directory, custody)


if __name__ == "__main__":
    sys.exit(main())
