"""Schemathesis against the real relay's /openapi.json, as an enrolled device: no 5xx, ever,
and every 4xx is an RFC 9457 problem with a stable ``code``.

Each operation of the served document gets its explicit examples plus schema-conforming
(positive) and schema-violating (negative) cases from Schemathesis, driven by Hypothesis
with a small example budget, so the whole run stays around a minute. The delivery WebSocket
is not in the OpenAPI document; tests/test_relay_robustness.py sends it malformed frames.

(Schemathesis 4.32's ``pytest.from_fixture`` loader cannot run under pytest 9.2, which
dropped ``Node._nodeid``; its documented strategy API is used instead.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.schemas import OpenApiSchema

from protocol.problems import Code
from tests.relay_harness import Device, RelayProcess, new_device, running_relay

MAX_EXAMPLES = 100
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzzed_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    # failed logins must not lock the fuzzer out of the authentication code behind the limiter
    with running_relay(Path(tmp_path_factory.mktemp("fuzz")),
                       auth_failures_per_window=1_000_000) as relay:
        yield relay


def problem_details(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                    case: schemathesis.Case) -> None:
    """A 4xx is application/problem+json with its own status and a known stable code."""
    if not 400 <= response.status_code < 500:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), \
        f"{response.status_code} with content type {content_type!r}"
    body = response.json()
    assert body["status"] == response.status_code, body
    assert body["code"] in set(Code), body


def fuzz_operation(schema: OpenApiSchema, operation: schemathesis.APIOperation,
                   device: Device) -> None:
    headers = {"Authorization": f"Bearer {device.token}"}
    cases = st.one_of(*schema.get_strategies_from_examples(operation),
                      operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
                      operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))

    @FUZZ_SETTINGS
    @given(case=cases)
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, timeout=10,
                               checks=[not_a_server_error, problem_details])

    run()


def test_no_server_error_and_every_refusal_is_a_problem(
        fuzzed_relay: RelayProcess, subtests: pytest.Subtests) -> None:
    device = new_device(fuzzed_relay)
    schema = schemathesis.openapi.from_url(fuzzed_relay.url + "/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    labels = {op.label for op in operations}
    assert {"POST /v1/enroll", "GET /v1/me", "POST /v1/groups",
            "PUT /v1/blobs/{blob_id}/content", "GET /v1/directory"} <= labels, labels
    for operation in operations:
        with subtests.test(operation.label):
            fuzz_operation(schema, operation, device)
