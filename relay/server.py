"""Run the relay under uvicorn: loopback by default, TLS required anywhere else."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from protocol.loopback import is_loopback
from relay import orgkey
from relay.app import create_app
from relay.config import DataDir
from relay.migrate import upgrade
from relay.service import Relay


class InsecureBindError(ValueError):
    """Refusing to expose a plaintext relay beyond this machine."""


def _log_config(data: DataDir) -> dict[str, object]:
    """Logs carry ids and status codes only: no query strings, no bodies."""
    data.log_dir.mkdir(exist_ok=True)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "filters": {"no_query": {"()": "relay.server.StripQuery"}},
        "handlers": {
            "file": {"class": "logging.handlers.RotatingFileHandler", "formatter": "plain",
                     "filename": str(data.log_dir / "relay.log"), "maxBytes": 10_000_000,
                     "backupCount": 5, "filters": ["no_query"]},
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                       "filters": ["no_query"]},
        },
        "loggers": {
            "liaison": {"handlers": ["file", "stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["file", "stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
        },
    }


class StripQuery(logging.Filter):
    """Access-log lines lose their query string (a directory search is nobody's business)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str):
                args[2] = args[2].split("?", 1)[0]
            record.args = tuple(args)
        return True


def serve(data_dir: Path, passphrase: bytes, *, host: str = "127.0.0.1", port: int = 8765,
          tls_cert: Path | None = None, tls_key: Path | None = None,
          insecure: bool = False, forwarded_allow_ips: str | None = None) -> None:
    """Unlock the organisation key, migrate the database, and serve until stopped.

    ``forwarded_allow_ips`` names the reverse proxies whose X-Forwarded-For is believed.
    """
    if not is_loopback(host) and tls_cert is None and not insecure:
        raise InsecureBindError(
            f"refusing to listen on {host} without TLS: give --tls-cert and --tls-key "
            "(or --insecure if a TLS proxy sits in front)")
    data = DataDir(data_dir)
    config = data.load_config()
    key = orgkey.load(data.org_key_file, passphrase)
    upgrade(data.db_url(config))
    relay = Relay(data, config, key)
    app = create_app(relay)
    uv = uvicorn.Config(
        app, host=host, port=port, log_config=_log_config(data),
        ws_max_size=config.max_frame_bytes, ws_ping_interval=20.0, ws_ping_timeout=20.0,
        ws_per_message_deflate=False,  # frames carry ciphertext: deflate costs CPU, saves little
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        timeout_graceful_shutdown=10, server_header=False,
        # behind a TLS proxy, the client address (for rate limits) comes from the proxy
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips)
    uvicorn.Server(uv).run()
