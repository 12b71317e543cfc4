"""``liaison-relay``: set up, run and administer a Liaison relay.

Scripts take ids and codes from the last word of a command's output.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from pathlib import Path

from crypto.errors import MLSError
from protocol.encoding import b64encode
from protocol.rest import Profession
from record.options import add_options as fhir_options
from relay import admin, orgkey
from relay.config import DataDir, RelayConfig
from relay.migrate import upgrade

_KDF = {"moderate": None, "interactive": (2, 64 * 1024 * 1024)}


def _passphrase(path: Path | None, *, confirm: bool = False) -> bytes:
    if path is not None:
        text = path.read_text("utf-8").rstrip("\r\n")
    else:
        text = getpass.getpass("Organisation key passphrase: ")
        if confirm and getpass.getpass("Again: ") != text:
            raise SystemExit("passphrases differ")
    if len(text) < 8:
        raise SystemExit("the passphrase must be at least 8 characters")
    return text.encode()


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError("use a duration such as 90m, 72h or 7d")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def cmd_init(a: argparse.Namespace) -> None:
    data = DataDir(a.data)
    if data.config_file.exists():
        raise SystemExit(f"{a.data} already holds a relay")
    a.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    a.data.chmod(0o700)  # config, database and wrapped key are for the relay's user only
    os.umask(0o077)
    passphrase = _passphrase(a.passphrase_file, confirm=True)
    cost = _KDF[a.kdf]
    key = orgkey.create(data.org_key_file, passphrase,
                        kdf_ops=cost[0] if cost else None, kdf_mem=cost[1] if cost else None)
    config = RelayConfig(organisation=a.org, db_url=a.db,
                         organisation_key=b64encode(key.public_key))
    data.save_config(config)
    data.blob_dir.mkdir(exist_ok=True)
    upgrade(data.db_url(config))
    print(f"Relay for {config.organisation} created in {a.data}")
    print(f"Organisation key fingerprint: {key.fingerprint}")


def cmd_serve(a: argparse.Namespace) -> None:
    from relay.server import InsecureBindError, serve

    if (a.tls_cert is None) != (a.tls_key is None):
        raise SystemExit("give both --tls-cert and --tls-key")
    try:
        serve(a.data, _passphrase(a.passphrase_file), host=a.host, port=a.port,
              tls_cert=a.tls_cert, tls_key=a.tls_key, insecure=a.insecure,
              forwarded_allow_ips=a.forwarded_allow_ips)
    except InsecureBindError as e:
        raise SystemExit(str(e)) from None
    except MLSError as e:
        raise SystemExit(f"cannot unlock the organisation key: {e}") from None


def cmd_user_add(a: argparse.Namespace) -> None:
    uid = asyncio.run(admin.add_user(DataDir(a.data), name=a.name, profession=a.profession,
                                     specialty=a.specialty, services=a.service, sites=a.site,
                                     rpps=a.rpps, roles=a.role))
    print(f"Added {a.name}: {uid}")


def cmd_user_list(a: argparse.Namespace) -> None:
    rows = asyncio.run(admin.list_users(DataDir(a.data)))
    if a.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        print(f"{r['id']}  {r['status']:<8}  {r['profession']:<14}  {r['devices']} device(s)  "
              f"{r['name']}  {', '.join(r['services'])}")


def cmd_user_disable(a: argparse.Namespace) -> None:
    n = asyncio.run(admin.disable_user(DataDir(a.data), a.user_id))
    print(f"Disabled {a.user_id}; {n} device(s) revoked")


def cmd_invite(a: argparse.Namespace) -> None:
    data = DataDir(a.data)
    ttl = a.ttl if a.ttl is not None else data.load_config().invite_ttl_hours_default * 3600
    code = asyncio.run(admin.create_invite(data, a.user_id, ttl))
    print(f"One-time enrollment code for {a.user_id} (valid {ttl / 3600:g} h): {code}")


def cmd_device_list(a: argparse.Namespace) -> None:
    for d in asyncio.run(admin.list_devices(DataDir(a.data), a.user)):
        state = "revoked" if d["revoked"] else "active"
        print(f"{d['id']}  {d['user_id']}  {state:<7}  {d['name']}")


def cmd_device_revoke(a: argparse.Namespace) -> None:
    asyncio.run(admin.revoke_device(DataDir(a.data), a.device_id))
    print(f"Revoked {a.device_id} (a running relay disconnects it within a second)")


def cmd_audit_verify(a: argparse.Namespace) -> None:
    result = asyncio.run(admin.verify_audit(DataDir(a.data)))
    if result.ok:
        print(f"Audit trail intact: {result.records} records")
        if not DataDir(a.data).audit_head_file.exists():
            print("(no signed head yet: the relay has not served; truncation of the newest "
                  "records cannot be checked)")
        return
    print(f"AUDIT TRAIL BROKEN at record {result.first_bad_seq}: {result.reason}")
    sys.exit(1)


def cmd_audit_export(a: argparse.Namespace) -> None:
    out = a.out.open("w", encoding="utf-8") if a.out else sys.stdout
    try:
        n = asyncio.run(admin.export_audit(DataDir(a.data), out, a.since))
    finally:
        if a.out:
            out.close()
    print(f"Exported {n} audit records", file=sys.stderr)


def cmd_directory_import(a: argparse.Namespace) -> None:
    from relay import directory

    added, updated = asyncio.run(directory.import_file(DataDir(a.data), a.file))
    print(f"Imported {a.file}: {added} added, {updated} updated")


def cmd_directory_import_fhir(a: argparse.Namespace) -> None:
    from record import FhirClient, FhirError, options
    from record.directory import staff_bundle
    from relay import directory

    async def run() -> tuple[int, int]:
        async with FhirClient(options.config_from(a)) as fhir:
            bundle = await staff_bundle(fhir, a.finess)
        return await directory.import_entries(DataDir(a.data),
                                              directory.BundleReader(bundle).entries())

    try:
        added, updated = asyncio.run(run())
    except FhirError as e:
        raise SystemExit(f"liaison-relay: nothing imported: {e}") from None
    print(f"Imported the directory of {a.base}: {added} added, {updated} updated")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liaison-relay", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def data_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", type=Path, required=True, help="the relay's data directory")

    sp = sub.add_parser("init", help="create a relay: data directory, database, org key")
    data_arg(sp)
    sp.add_argument("--org", required=True, help='organisation name, e.g. "CHU Exemple"')
    sp.add_argument("--passphrase-file", type=Path)
    sp.add_argument("--db", help="database URL (default: SQLite in the data directory)")
    sp.add_argument("--kdf", choices=sorted(_KDF), default="moderate",
                    help="Argon2id cost for the org key (interactive: test machines only)")
    sp.set_defaults(fn=cmd_init)

    sp = sub.add_parser("serve", help="unlock the org key and serve")
    data_arg(sp)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8765)
    sp.add_argument("--passphrase-file", type=Path)
    sp.add_argument("--tls-cert", type=Path)
    sp.add_argument("--tls-key", type=Path)
    sp.add_argument("--insecure", action="store_true",
                    help="allow plaintext on a non-loopback address (TLS proxy in front)")
    sp.add_argument("--forwarded-allow-ips", metavar="IPS",
                    help="trust X-Forwarded-For from these proxy addresses (comma-separated)")
    sp.set_defaults(fn=cmd_serve)

    user = sub.add_parser("user", help="directory users").add_subparsers(dest="sub",
                                                                        required=True)
    sp = user.add_parser("add")
    data_arg(sp)
    sp.add_argument("--name", required=True)
    sp.add_argument("--profession", required=True, choices=[x.value for x in Profession])
    sp.add_argument("--specialty")
    sp.add_argument("--service", action="append", default=[])
    sp.add_argument("--site", action="append", default=[])
    sp.add_argument("--rpps")
    sp.add_argument("--role", action="append", default=[])
    sp.set_defaults(fn=cmd_user_add)
    sp = user.add_parser("list")
    data_arg(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_user_list)
    sp = user.add_parser("disable")
    data_arg(sp)
    sp.add_argument("user_id")
    sp.set_defaults(fn=cmd_user_disable)

    sp = sub.add_parser("invite", help="print a one-time enrollment code for a user")
    data_arg(sp)
    sp.add_argument("user_id")
    sp.add_argument("--ttl", type=_duration, default=None,
                    help="validity, e.g. 90m, 72h, 7d (default: relay.json's, 72h)")
    sp.set_defaults(fn=cmd_invite)

    directory = sub.add_parser("directory", help="bulk directory operations").add_subparsers(
        dest="sub", required=True)
    sp = directory.add_parser("import", help="import users from CSV or a FHIR R4 Bundle")
    data_arg(sp)
    sp.add_argument("file", type=Path)
    sp.set_defaults(fn=cmd_directory_import)
    sp = directory.add_parser("import-fhir", help="import users from the hospital's FHIR R4 "
                              "server (Practitioner, PractitionerRole, Organization)")
    data_arg(sp)
    fhir_options(sp)
    sp.add_argument("--finess", help="only the staff of the establishment with this FINESS "
                    "(and the organisations under it)")
    sp.set_defaults(fn=cmd_directory_import_fhir)

    device = sub.add_parser("device", help="enrolled devices").add_subparsers(dest="sub",
                                                                             required=True)
    sp = device.add_parser("list")
    data_arg(sp)
    sp.add_argument("--user")
    sp.set_defaults(fn=cmd_device_list)
    sp = device.add_parser("revoke")
    data_arg(sp)
    sp.add_argument("device_id")
    sp.set_defaults(fn=cmd_device_revoke)

    audit = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(
        dest="sub", required=True)
    sp = audit.add_parser("verify")
    data_arg(sp)
    sp.set_defaults(fn=cmd_audit_verify)
    sp = audit.add_parser("export", help="JSON lines")
    data_arg(sp)
    sp.add_argument("--since", help="ISO date or datetime (UTC)")
    sp.add_argument("--out", type=Path)
    sp.set_defaults(fn=cmd_audit_export)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"liaison-relay: {e}") from None


if __name__ == "__main__":
    main()
