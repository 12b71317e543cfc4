"""``liaison-bridge``: the HL7 v2 admission feed of one enrolled integration profile.

Enrol the profile first like any device (``liaison --profile DIR enroll ...``, with an invite
for the organisation's integration account); its database key is unlocked the same way
(OS keyring, or LIAISON_PASSPHRASE). Only one process uses a profile at a time: stop
``serve`` before replaying dead letters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from app.bridge import mllp
from app.bridge.config import BridgeConfig, ConfigError
from app.bridge.ledger import Ledger
from app.bridge.service import Bridge, BridgeError
from app.cli.custody import profile_custody
from app.cli.main import FAILURES
from app.client.engine import ACCOUNT_FILE, Engine, EngineError

LOCK_FILE = "bridge.lock"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liaison-bridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="listen for ADT messages (MLLP) and apply them")
    _profile(serve)
    _config(serve)
    serve.add_argument("--listen", default="127.0.0.1:2575", metavar="HOST:PORT")
    serve.set_defaults(run=cmd_serve)

    letters = sub.add_parser("dead-letters", help="messages not applied").add_subparsers(
        dest="letters_command", required=True)
    listing = letters.add_parser("list", help="the dead letters, oldest first")
    _profile(listing)
    listing.set_defaults(run=cmd_list)
    replay = letters.add_parser("replay", help="apply one dead letter again")
    _profile(replay)
    _config(replay)
    replay.add_argument("id", type=int)
    replay.set_defaults(run=cmd_replay)
    replay_all = letters.add_parser("replay-all", help="apply every dead letter again, in order")
    _profile(replay_all)
    _config(replay_all)
    replay_all.set_defaults(run=cmd_replay)
    return parser


def _profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", type=Path, required=True,
                        help="the bridge's enrolled profile directory")


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True,
                        help="the bridge's JSON configuration (wards, identifier systems)")


@contextlib.contextmanager
def _exclusive(profile: Path) -> Iterator[None]:
    """Hold the profile for this process: two engines on one device would fork its MLS state."""
    with (profile / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EngineError(f"another liaison-bridge is using {profile}: stop it first") from None
        yield


@contextlib.asynccontextmanager
async def _running(args: argparse.Namespace) -> AsyncIterator[Bridge]:
    """The profile's engine online, its ledger open, and the bridge on top."""
    config = BridgeConfig.load(args.config)
    with _exclusive(args.profile):
        custody = profile_custody(args.profile)
        engine = Engine.open(args.profile, custody)
        ledger = Ledger.open(args.profile, custody, engine.device_id)
        bridge = Bridge(engine, ledger, config)
        try:
            await engine.start()
            yield bridge
        finally:
            await bridge.aclose()
            await engine.stop()
            ledger.close()


async def cmd_serve(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    async with _running(args) as bridge:

        async def answer(message: bytes) -> bytes:
            return (await bridge.handle(message)).ack

        server = await mllp.serve(answer, host or "127.0.0.1", int(port))
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        print(f"liaison-bridge: listening on {args.listen}", flush=True)
        await stop.wait()
        server.close()
        await server.wait_closed()
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    try:
        device_id = (args.profile / ACCOUNT_FILE).read_text("utf-8").strip()
    except FileNotFoundError:
        raise EngineError(f"no account in {args.profile}: enrol first") from None
    ledger = Ledger.open(args.profile, profile_custody(args.profile), device_id)
    try:
        for letter in ledger.dead_letters():
            when = datetime.fromtimestamp(letter.received_at).isoformat(timespec="seconds")
            print(f"{letter.id}\t{when}\t{letter.code}\t{letter.control_id or '-'}\t"
                  f"{letter.reason}")
    finally:
        ledger.close()
    return 0


async def cmd_replay(args: argparse.Namespace) -> int:
    """Replay one dead letter (``id``) or all; exit 1 if any is still not applied."""
    async with _running(args) as bridge:
        ids = [args.id] if "id" in args else [letter.id for letter in bridge.dead_letters()]
        failed = 0
        for letter_id in ids:
            outcome = await bridge.replay(letter_id)
            failed += outcome.dead_letter is not None
            print(f"{letter_id}\t{outcome.code.value}\t{outcome.reason or 'applied'}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.run(args))
    except (*FAILURES, BridgeError, ConfigError) as exc:
        print(f"liaison-bridge: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
