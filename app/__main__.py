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
        "  protocol/, storage/, app/client/: package skeletons only.",
        "  relay/ (the relay server) and app/ui/ (the Flet app): come in later issues.",
        "",
        "There is no messenger to start yet; `make test` runs the test suite.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
