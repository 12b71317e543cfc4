"""The directory through a real relay: CSV and FHIR imports by the CLI, search over REST."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from relay import directory
from relay.admin import fold, list_users
from relay.config import DataDir
from tests.relay_harness import BIN, Device, RelayProcess, cli, new_device, running_relay

FIXTURES = Path(__file__).parent / "fixtures"
CSV = FIXTURES / "directory.csv"
BUNDLE = FIXTURES / "practitioners-bundle.json"
SEARCHER = "Poste Secrétariat"  # the user whose device searches (a secretary)
EVERYONE = sorted(["Hélène Dubois", "Élodie Lefèvre", "Jean-Pierre Martin", "Zoé Moreau",
                   "François Hélie", "Chloé Bernard", "Noël Garçon", "Inès Da Silva",
                   "Dr Alice Martin", "Benoît Lemaître", "Camille Rousseau", SEARCHER],
                  key=fold)
USER_FIELDS = {"id", "display_name", "profession", "specialty", "services", "sites", "rpps",
               "roles", "status"}


def import_file(relay: RelayProcess, path: Path) -> str:
    return cli(relay.data, "directory import", str(path)).strip()


def run_cli(relay: RelayProcess, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *command.split(), "--data", str(relay.data), *args],
                          capture_output=True, text=True, timeout=120)


def page(dev: Device, **params: str | int) -> dict:
    with dev.http() as c:
        r = c.get("/v1/directory", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def names(dev: Device, **params: str | int) -> list[str]:
    body = page(dev, limit=100, **params)
    assert body["next_cursor"] is None
    return [u["display_name"] for u in body["users"]]


def user_id(dev: Device, name: str) -> str:
    (user,) = [u for u in page(dev, q=name, limit=100)["users"] if u["display_name"] == name]
    return user["id"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A relay holding both fixtures, and a device of a user who is not an administrator."""
    with running_relay(tmp_path_factory.mktemp("directory")) as relay:
        assert import_file(relay, CSV) == f"Imported {CSV}: 8 added, 0 updated"
        assert import_file(relay, BUNDLE) == f"Imported {BUNDLE}: 3 added, 0 updated"
        assert import_file(relay, BUNDLE) == f"Imported {BUNDLE}: 0 added, 0 updated"
        yield relay, new_device(relay, name=SEARCHER, profession="secretary")


@pytest.mark.parametrize(("q", "expected"), [
    ("helene", ["Hélène Dubois"]),
    ("HEL", ["François Hélie", "Hélène Dubois"]),
    ("lefe", ["Élodie Lefèvre"]),
    ("dub", ["Hélène Dubois"]),
    ("Élo", ["Élodie Lefèvre"]),
    ("mart", ["Dr Alice Martin", "Jean-Pierre Martin"]),
    ("martin al", ["Dr Alice Martin"]),
    ("jean mart", ["Jean-Pierre Martin"]),
    ("pierre", ["Jean-Pierre Martin"]),
    ("martin zoe", []),
    ("ubois", []),
    ("_elene", []),
    ("h%", []),
])
def test_search_by_name_prefix_ignores_case_and_accents(served, q, expected):
    _, dev = served
    assert names(dev, q=q) == expected


@pytest.mark.parametrize(("params", "expected"), [
    ({"profession": "nurse"}, ["Benoît Lemaître", "Hélène Dubois"]),
    ({"profession": "physician"}, ["Dr Alice Martin", "Élodie Lefèvre", "Jean-Pierre Martin"]),
    ({"profession": "midwife"}, ["Camille Rousseau", "Zoé Moreau"]),
    ({"profession": "other"}, ["Inès Da Silva"]),
    ({"service": "reanimation"}, ["Jean-Pierre Martin", "Noël Garçon"]),
    ({"service": "URGENCES"},
     ["Benoît Lemaître", "Camille Rousseau", "Chloé Bernard", "Élodie Lefèvre",
      "Inès Da Silva"]),
    ({"service": "Réa"}, []),
    ({"q": "m", "profession": "physician"}, ["Dr Alice Martin", "Jean-Pierre Martin"]),
    ({"q": "e", "service": "cardiologie"}, ["Élodie Lefèvre"]),
    ({"rpps": "10100000001"}, ["Dr Alice Martin"]),  # as the admission feed names physicians
    ({"rpps": "10100000009"}, []),
    ({"rpps": "10100000002", "profession": "physician"}, []),
])
def test_filters_by_profession_service_and_rpps(served, params, expected):
    _, dev = served
    assert names(dev, **params) == expected


def test_empty_query_lists_everyone_in_folded_name_order(served):
    _, dev = served
    assert names(dev) == EVERYONE


def test_imported_entries_carry_every_field_and_never_a_phone(served):
    _, dev = served
    (elodie,) = page(dev, q="elodie")["users"]
    assert elodie == {"id": elodie["id"], "display_name": "Élodie Lefèvre",
                      "profession": "physician", "specialty": "cardiologie",
                      "services": ["Cardiologie", "Urgences"],
                      "sites": ["Site Nord", "Site Sud"], "rpps": "10000000029",
                      "roles": ["admin"], "status": "active"}
    (alice,) = page(dev, q="alice")["users"]
    (benoit,) = page(dev, q="benoit")["users"]
    with dev.http() as c:
        r = c.get(f"/v1/users/{alice['id']}")
    assert r.status_code == 200 and r.json() == alice
    assert alice == {"id": alice["id"], "display_name": "Dr Alice Martin",
                     "profession": "physician", "specialty": "Cardiologie",
                     "services": ["Cardiologie"], "sites": ["Site Nord"],
                     "rpps": "10100000001", "roles": [], "status": "active"}
    # RPPS from the idNatPs identifier ("8" + RPPS), profession from the display text
    assert (benoit["rpps"], benoit["profession"], benoit["services"], benoit["sites"]) == \
        ("10100000002", "nurse", ["Urgences"], ["Site Sud"])
    for user in page(dev, limit=100)["users"]:
        assert set(user) == USER_FIELDS


def test_pagination_walks_every_user_once(served):
    _, dev = served
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, str | int] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = page(dev, **params)
        assert len(body["users"]) == 2 or body["next_cursor"] is None
        seen += [u["display_name"] for u in body["users"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == EVERYONE and pages == 6
    # a filtered walk pages too
    first = page(dev, service="urgences", limit=3)
    rest = page(dev, service="urgences", limit=3, cursor=first["next_cursor"])
    assert [u["display_name"] for u in first["users"] + rest["users"]] == \
        names(dev, service="urgences") and rest["next_cursor"] is None


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"limit": 0}, 422, "validation_failed"),
    ({"limit": 101}, 422, "validation_failed"),
    ({"profession": "astronaut"}, 422, "validation_failed"),
    ({"rpps": "1010000000"}, 422, "validation_failed"),
    ({"rpps": "1010000000%"}, 422, "validation_failed"),
    ({"cursor": "not-a-cursor"}, 400, "bad_request"),
    ({"include_disabled": "true"}, 403, "forbidden"),
])
def test_bad_requests_are_problems(served, params, status, code):
    _, dev = served
    with dev.http() as c:
        r = c.get("/v1/directory", params=params)
    assert r.status_code == status and r.json()["code"] == code
    assert r.headers["content-type"].startswith("application/problem+json")


def test_unknown_user_is_404_and_anonymous_callers_401(served):
    relay, dev = served
    with dev.http() as c:
        r = c.get("/v1/users/u_nobody")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    known = user_id(dev, "Hélène Dubois")
    for path in ("/v1/directory", "/v1/directory?q=helene", f"/v1/users/{known}"):
        r = httpx.get(relay.url + path)
        assert r.status_code == 401, path
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "unauthenticated"


def test_disabled_users_are_hidden_except_to_admins(relay):
    import_file(relay, CSV)
    dev = new_device(relay, name=SEARCHER, profession="secretary")
    admin = new_device(relay, relay.add_user("Admin Système", "administrative",
                                             "--role", "admin"))
    helene = user_id(dev, "Hélène Dubois")
    cli(relay.data, "user disable", helene)
    assert names(dev, q="helene") == []
    assert names(dev, service="cardiologie") == ["Élodie Lefèvre", "Noël Garçon"]
    assert names(admin, q="helene") == []
    (entry,) = page(admin, q="helene", include_disabled="true")["users"]
    assert (entry["id"], entry["status"]) == (helene, "disabled")
    with dev.http() as c:  # a known id still resolves (an old conversation shows who)
        assert c.get(f"/v1/users/{helene}").json()["status"] == "disabled"


def test_reimport_updates_by_rpps_or_name_and_keeps_status(relay, tmp_path):
    import_file(relay, CSV)
    dev = new_device(relay, name=SEARCHER, profession="secretary")
    zoe = user_id(dev, "Zoé Moreau")
    cli(relay.data, "user disable", zoe)
    assert import_file(relay, CSV) == f"Imported {CSV}: 0 added, 0 updated"
    lines = CSV.read_text("utf-8").splitlines()
    changed = tmp_path / "directory-v2.csv"
    changed.write_text("\n".join(
        [line.replace("Hélène Dubois,Infirmière,,Cardiologie",  # RPPS 10000000011
                      "Hélène Dubois-Petit,Infirmière,,Urgences")
         .replace("Chloé Bernard,aide-soignante,,Urgences,Site Sud",  # no RPPS: by name
                  "Chloé Bernard,aide-soignante,,Urgences,Site Nord")
         for line in lines] + ["Agnès Roux,infirmière,,Urgences,Site Sud,10000000060,"]),
        "utf-8")
    assert import_file(relay, changed) == f"Imported {changed}: 1 added, 2 updated"
    everyone = [u["display_name"] for u in page(dev, limit=100)["users"]]
    assert len(everyone) == len(set(everyone)) == 9  # 8 + 1 - Zoé + the searcher
    assert "Zoé Moreau" not in everyone  # re-import does not re-enable a disabled user
    assert names(dev, q="helene") == names(dev, q="petit") == ["Hélène Dubois-Petit"]
    assert names(dev, service="cardiologie") == ["Élodie Lefèvre", "Noël Garçon"]
    (chloe,) = page(dev, q="chloe")["users"]
    assert chloe["sites"] == ["Site Nord"] and chloe["rpps"] is None


def _bundle_with(*entries: dict) -> dict:
    bundle = json.loads(BUNDLE.read_text("utf-8"))
    bundle["entry"] += [{"resource": e} for e in entries]
    return bundle


NEW_PRACTITIONER = {"resourceType": "Practitioner", "id": "pr-new",
                    "name": [{"given": ["Nouvelle"], "family": "Arrivée"}]}
BAD_IMPORTS = [
    ("no-name.csv", "name,profession,services\nNouvelle Arrivée,infirmière,Urgences\n"
                    ",médecin,Cardiologie\n", "no-name.csv line 3: no name"),
    ("bad-rpps.csv", "name,profession,rpps\nNouvelle Arrivée,infirmière,12AB\n",
     "bad-rpps.csv line 2: RPPS '12AB' is not an 11-digit number"),
    ("twice.csv", "name,profession,rpps\nNouvelle Arrivée,infirmière,10000000099\n"
                  "Autre Nom,médecin,10000000099\n",
     "twice.csv line 3: the same person as twice.csv line 2"),
    ("bad-header.csv", "name,profession,telephone\nNouvelle Arrivée,infirmière,0600\n",
     "unknown: ['telephone']"),
    ("invalid-field.json", _bundle_with(
        NEW_PRACTITIONER, {"resourceType": "Practitioner", "id": "pr-bad", "name": "Dr X"}),
     "Practitioner/pr-bad (entry 9): invalid name: "),
    ("unknown-type.json", _bundle_with(NEW_PRACTITIONER, {"resourceType": "Praticien"}),
     "Praticien/? (entry 9): unknown resourceType"),
    ("dangling.json", _bundle_with(NEW_PRACTITIONER, {
        "resourceType": "PractitionerRole", "id": "role-new",
        "practitioner": {"reference": "Practitioner/pr-new"},
        "organization": {"reference": "Organization/org-absente"}}),
     "PractitionerRole/role-new: the Organization Organization/org-absente is not in"),
    ("not-a-bundle.json", {"resourceType": "Practitioner", "id": "pr-x"},
     'not a FHIR Bundle (resourceType must be "Bundle")'),
    ("directory.txt", "name,profession\nNouvelle Arrivée,nurse\n",
     "expected a .csv file or a .json FHIR Bundle"),
]


def write_case(tmp_path: Path, name: str, content: str | dict) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """An initialised relay data directory (not served) holding the CSV fixture."""
    relay = RelayProcess(tmp_path_factory.mktemp("data") / "relay")
    relay.init()
    data = DataDir(relay.data)
    assert asyncio.run(directory.import_file(data, CSV)) == (8, 0)
    return data


@pytest.mark.parametrize(("name", "content", "message"), BAD_IMPORTS,
                         ids=[case[0] for case in BAD_IMPORTS])
def test_malformed_imports_are_refused_whole(data_dir, tmp_path, name, content, message):
    before = asyncio.run(list_users(data_dir))
    path = write_case(tmp_path, name, content)
    with pytest.raises(ValueError, match=re.escape(message)):
        asyncio.run(directory.import_file(data_dir, path))
    assert asyncio.run(list_users(data_dir)) == before


def test_cli_refuses_a_bad_row_or_resource_and_writes_nothing(relay, tmp_path):
    import_file(relay, CSV)
    before = cli(relay.data, "user list", "--json")
    for name, content, message in (BAD_IMPORTS[0], BAD_IMPORTS[4]):
        path = write_case(tmp_path, name, content)
        out = run_cli(relay, "directory import", str(path))
        assert out.returncode != 0 and out.stdout == "", name
        assert message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert cli(relay.data, "user list", "--json") == before
    assert "Nouvelle" not in before and len(json.loads(before)) == 8
