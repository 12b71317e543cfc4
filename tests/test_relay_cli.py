"""The administration command line against a real relay: TLS, binding policy, revocation."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
import time

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.relay_harness import BIN, PASSPHRASE, RelayProcess, cli, new_device, running_relay


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.chu-exemple.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_serve_refuses_plaintext_beyond_loopback(tmp_path):
    relay = RelayProcess(tmp_path / "relay")
    relay.init()
    r = subprocess.run([str(BIN), "serve", "--data", str(relay.data), "--host", "0.0.0.0",
                        "--passphrase-file", str(tmp_path / "relay.pass")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "without TLS" in r.stderr


def test_serve_with_tls(tmp_path):
    relay = RelayProcess(tmp_path / "relay")
    relay.init()
    cert, key = _self_signed(tmp_path)
    proc = subprocess.Popen([str(BIN), "serve", "--data", str(relay.data), "--port",
                             str(relay.port), "--passphrase-file", str(tmp_path / "relay.pass"),
                             "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"https://localhost:{relay.port}/v1/health"
        trust = ssl.create_default_context(cafile=str(cert))
        for _ in range(100):
            try:
                r = httpx.get(url, verify=trust, timeout=2)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["organisation"] == "CHU Exemple"
        # and nothing answers in clear on that port
        try:
            plain = httpx.get(f"http://127.0.0.1:{relay.port}/v1/health", timeout=2)
            assert plain.status_code >= 400
        except httpx.HTTPError:
            pass
    finally:
        proc.terminate()
        proc.wait(20)


def test_wrong_passphrase_is_refused(tmp_path):
    relay = RelayProcess(tmp_path / "relay")
    relay.init()
    bad = tmp_path / "bad.pass"
    bad.write_text(PASSPHRASE + "!")
    r = subprocess.run([str(BIN), "serve", "--data", str(relay.data), "--passphrase-file",
                        str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "cannot unlock" in r.stderr


def test_cli_revocation_and_user_disable_cut_live_devices(tmp_path):
    with running_relay(tmp_path) as relay:
        alice, bob = new_device(relay), new_device(relay)

        async def scenario() -> None:
            await alice.connect()
            await bob.connect()
            listing = cli(relay.data, "device list", "--user", bob.user_id)
            assert bob.device_id in listing and "active" in listing
            cli(relay.data, "device revoke", bob.device_id)
            await bob.pump(lambda d: any(f["type"] == "revoked" for f in d.received))
            assert "revoked" in cli(relay.data, "device list", "--user", bob.user_id)
            with bob.http() as c:
                assert c.get("/v1/me").status_code == 401
            out = cli(relay.data, "user disable", alice.user_id)
            assert "1 device(s) revoked" in out
            await alice.pump(lambda d: any(f["type"] == "revoked" for f in d.received))
            with alice.http() as c:
                r = c.get("/v1/me")
            assert r.status_code in (401, 403)
            users = cli(relay.data, "user list")
            assert "disabled" in users
            await alice.close()
            await bob.close()

        asyncio.run(scenario())
