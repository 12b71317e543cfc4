"""Reading the hospital's staff directory (Practitioner, PractitionerRole, Organization) into
one FHIR ``collection`` Bundle, the input the relay's directory import already understands
(relay/directory.py). Everything is fetched before anything is returned, so an import built
on it is all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.resource import Resource

from record.client import FhirClient
from record.config import FINESS_SYSTEM
from record.errors import FhirError
from record.wire import reference_id

_IDS_PER_SEARCH = 50  # ids per "_id=a,b,..." search, to keep URLs short


async def staff_bundle(fhir: FhirClient, finess: str | None = None) -> Bundle:
    """The whole directory, or, given a FINESS number, the staff of that establishment:
    the Organization with that FINESS, the organisations under it (``partOf``, at any depth),
    the PractitionerRoles in them and their Practitioners."""
    if finess is None:
        return collection(fhir.config.base, [
            *await fhir.search(Organization, {}),
            *await fhir.search(PractitionerRole, {}),
            *await fhir.search(Practitioner, {})])
    organizations = await _establishment(fhir, finess)
    roles = await fhir.search(PractitionerRole, {
        "organization": ",".join(f"Organization/{o.id}" for o in organizations)})
    wanted = list(dict.fromkeys(
        pid for r in roles if r.practitioner
        and (pid := reference_id(r.practitioner.reference, "Practitioner"))))
    practitioners = [p for chunk in _chunks(wanted)
                     for p in await fhir.search(Practitioner, {"_id": ",".join(chunk)})]
    return collection(fhir.config.base, [*organizations, *roles, *practitioners])


async def _establishment(fhir: FhirClient, finess: str) -> list[Organization]:
    top = await fhir.search(Organization, {"identifier": f"{FINESS_SYSTEM}|{finess.strip()}"})
    if not top:
        raise FhirError(f"no Organization with FINESS {finess} on {fhir.config.base}")
    found = {o.id: o for o in top if o.id}
    frontier = list(found)
    while frontier:  # breadth first down the partOf tree; a cycle ends at known ids
        children = await fhir.search(Organization, {
            "partof": ",".join(f"Organization/{oid}" for oid in frontier)})
        frontier = [o.id for o in children if o.id and o.id not in found]
        found.update((o.id, o) for o in children if o.id)
    return list(found.values())


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    return (ids[i:i + _IDS_PER_SEARCH] for i in range(0, len(ids), _IDS_PER_SEARCH))


def collection(base: str, resources: Iterable[Resource]) -> Bundle:
    """A collection Bundle of the resources, each once (a page boundary can repeat one)."""
    unique = {f"{r.get_resource_type()}/{r.id}": r for r in resources if r.id}
    return Bundle(type="collection", entry=[
        BundleEntry(fullUrl=f"{base}/{label}", resource=r) for label, r in unique.items()])
