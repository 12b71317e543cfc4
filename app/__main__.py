"""`python -m app` (`make run`): for now, an honest status of what exists in this checkout."""

from __future__ import annotations

import importlib.util
import sys


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def main() -> int:
    crypto = _present("crypto")
    vectors = crypto and _present("crypto.vectors")
    lines = [
        "Liaison — end-to-end encrypted messenger for hospital care teams (MLS, RFC 9420).",
        "",
        "Status of this checkout:",
        "  crypto/   MLS (RFC 9420) and HPKE core: "
        + ("present." if crypto else "not present yet."),
        "            IETF interoperability vectors: "
        + (
            "run them with `make vectors`"
            " (python -m crypto.vectors ../shared/mls/test-vectors)."
            if vectors
            else "runner (crypto.vectors) not present yet."
        ),
        "  protocol/  the wire contract (REST bodies, WebSocket frames): present.",
        "  relay/    the relay server: " + ("present." if _present("relay.cli") else "not yet."),
        "            try it: .venv/bin/liaison-relay init --data ./relay-data --org Demo",
        "                    .venv/bin/liaison-relay serve --data ./relay-data",
        "            (docs/OPERATIONS.md has the whole walk-through)",
        "  storage/, app/client/, app/ui/ (the Flet app): come in later issues.",
        "",
        "There is no messenger UI to start yet; `make test` runs the test suite.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
