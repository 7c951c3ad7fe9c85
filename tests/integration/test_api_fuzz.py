"""Schemathesis against the live shop's OpenAPI document (``/schema/openapi.json``).

Every operation the document lists is fuzzed, stateless, as a real customer with a bearer
token: valid (positive) and invalid (negative) inputs, ``MAX_EXAMPLES`` of each per
operation, plus schemathesis' deterministic coverage cases (boundary values, missing
fields, wrong types, unexpected methods). What must hold:

- never a 5xx (``not_a_server_error``);
- a response whose status code the document lists matches the documented body, media type
  and headers (``response_schema_conformance``, ``content_type_conformance``,
  ``response_headers_conformance``);
- every status code is one the document lists for that operation
  (``status_code_conformance``, for every operation: the document lists 401, 403, 404,
  409, 413, 422, 429 and 503 where an operation can answer them), and every error carries
  the documented error body with a ``detail``.

A second test calls every operation without a valid token (none, garbage, tampered, no
scheme, Basic): 401 with ``WWW-Authenticate: Bearer`` for all of them, except sign-up,
token and the partner webhooks, which are public by design. A third: staff operations
answer a customer's token with 403. A fourth puts a NUL character (which PostgreSQL cannot
store in text) in every query parameter and top-level string field of a valid body.

Hypothesis runs derandomized, without its example database, with a bounded number of
examples per operation, so CI sees the same requests every time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import new_customer_sync
from tests.support.processes import Shop

MAX_EXAMPLES = 15
AUTH_EXAMPLES = 3
REQUEST_TIMEOUT = 10
PUBLIC = {"POST /api/auth/signup", "POST /api/auth/token"}
PUBLIC_PREFIXES = ("/webhooks/",)
ANSWER_401 = {"POST /api/auth/token", "POST /webhooks/courier"}  # wrong password, bad signature
SHOP_ERRORS = {404, 409, 422, 429}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def schema(shop: Shop) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{shop.url}/schema/openapi.json", timeout=10)


@pytest.fixture(scope="module")
def operations(schema: schemathesis.BaseSchema) -> list[APIOperation]:
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation the document cannot describe
            pytest.fail(f"unusable operation in /schema/openapi.json: {result.err()}")
        found.append(result.ok())
    labels = {op.label for op in found}
    # Not vacuous: the document really lists the shop's API.
    assert {"POST /api/orders", "POST /api/refunds", "GET /api/deliveries"} <= labels, labels
    return found


@pytest.fixture(scope="module")
def customer(shop: Shop) -> dict[str, str]:
    with httpx.Client(base_url=shop.url, timeout=20) as client:
        return new_customer_sync(client, name="Fuzz Customer")


def is_public(op: APIOperation) -> bool:
    return op.label in PUBLIC or op.path.startswith(PUBLIC_PREFIXES)


def is_staff(op: APIOperation) -> bool:
    return any("(staff)" in tag for tag in op.definition.raw.get("tags", []))


def takes_no_input(op: APIOperation) -> bool:
    raw = op.definition.raw
    return not raw.get("parameters") and "requestBody" not in raw


def documented(op: APIOperation) -> set[int]:
    return {int(code) for code in op.responses.status_codes if code.isdigit()}


def positive(op: APIOperation) -> st.SearchStrategy[Case]:
    return op.as_strategy(generation_mode=GenerationMode.POSITIVE)


def negative(op: APIOperation) -> st.SearchStrategy[Case]:
    return op.as_strategy(generation_mode=GenerationMode.NEGATIVE)


def coverage_cases(op: APIOperation) -> Iterator[Case]:
    """Schemathesis' deterministic coverage phase: boundary values (min/max lengths and
    bounds), each field missing or of the wrong type, unexpected methods."""
    schema = op.schema
    return schema.iter_coverage_cases(
        op,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=schema.config.generation_for(operation=op, phase="coverage"),
    )


def error_contract(op: APIOperation, response: Response) -> str | None:
    """Why an error answer is not one of the shop's clean error answers (or None)."""
    status = response.status_code
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"{status} without a JSON body: {response.content[:200]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str) or not body["detail"]:
        return f"{status} without a `detail`: {body!r}"[:300]
    return None


def examples_of(
    op: APIOperation,
    strategy: st.SearchStrategy[Case],
    check: Callable[[APIOperation, Case], None],
    max_examples: int,
) -> Callable[[], None]:
    @fuzz_settings(max_examples)
    @given(case=strategy)
    def examples(case: Case) -> None:
        check(op, case)

    return examples


def failure_of(run: Callable[[], None]) -> str | None:
    try:
        run()
    except InvalidArgument:
        raise  # our mistake, not the shop's
    except (Exception, BaseExceptionGroup) as exc:
        notes = "\n".join(getattr(exc, "__notes__", []))
        return f"{type(exc).__name__}: {exc}\n{notes}".strip()[:2500]
    return None


def run_per_operation(
    ops: list[APIOperation],
    strategy: Callable[[APIOperation], st.SearchStrategy[Case]],
    check: Callable[[APIOperation, Case], None],
    max_examples: int,
) -> Iterator[str]:
    """Run Hypothesis once per operation; yield one report per failing operation, so one
    broken route does not hide the others."""
    for op in ops:
        if failure := failure_of(examples_of(op, strategy(op), check, max_examples)):
            yield f"=== {op.label}\n{failure}"


def conformance(shop: Shop, headers: dict[str, str]) -> Callable[[APIOperation, Case], None]:
    """Call the shop with ``case`` and check the answer as described at the top."""

    def check(op: APIOperation, case: Case) -> None:
        response = case.call(base_url=shop.url, headers=headers, timeout=REQUEST_TIMEOUT)
        if case.method.upper() != op.method.upper():  # coverage: an unexpected method
            # 405, or the guard's 403 first on staff routes; OPTIONS answers 204
            assert response.status_code in (204, 403, 405), case.as_curl_command()
            return
        case.validate_response(response, checks=CHECKS, headers=headers)
        if response.status_code >= 400:  # the documented error body, with a detail
            problem = error_contract(op, response)
            assert problem is None, f"{problem}\nReproduce with:\n    {case.as_curl_command()}"

    return check


def test_every_operation_survives_fuzzing_as_a_customer(
    shop: Shop, operations: list[APIOperation], customer: dict[str, str]
) -> None:
    check = conformance(shop, {"Authorization": f"Bearer {customer['token']}"})

    def coverage(op: APIOperation) -> None:
        for case in coverage_cases(op):
            check(op, case)

    failures = [
        *(f"[positive] {f}" for f in run_per_operation(operations, positive, check, MAX_EXAMPLES)),
        *(
            f"[negative] {f}"
            for f in run_per_operation(
                [op for op in operations if not takes_no_input(op)], negative, check, MAX_EXAMPLES
            )
        ),
        *(
            f"[coverage] === {op.label}\n{failure}"
            for op in operations
            if (failure := failure_of(lambda op=op: coverage(op)))
        ),
    ]
    assert not failures, "\n\n".join(failures)


def test_every_private_operation_requires_a_bearer_token(
    shop: Shop, operations: list[APIOperation], customer: dict[str, str]
) -> None:
    private = [op for op in operations if not is_public(op)]
    assert len(private) >= 15, [op.label for op in private]
    wrong_credentials: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {customer['token']}x"},  # tampered signature
        {"Authorization": customer["token"]},  # no scheme
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ]

    def check(op: APIOperation, case: Case) -> None:
        for credentials in wrong_credentials:
            response = case.call(base_url=shop.url, headers=credentials, timeout=REQUEST_TIMEOUT)
            shown = credentials.get("Authorization", "no Authorization header")[:30]
            assert response.status_code == 401, (
                f"{op.label} with {shown}: {response.status_code} {response.text[:200]}\n"
                f"    {case.as_curl_command(headers=credentials)}"
            )
            assert response.headers.get("www-authenticate") == ["Bearer"], response.headers
            assert response.json()["detail"], response.text

    failures = list(run_per_operation(private, positive, check, AUTH_EXAMPLES))
    assert not failures, "\n\n".join(failures)


def test_staff_operations_refuse_a_customer(
    shop: Shop, operations: list[APIOperation], customer: dict[str, str]
) -> None:
    staff = [op for op in operations if is_staff(op)]
    assert {op.path for op in staff} >= {"/api/deliveries", "/api/admin/partners"}
    headers = {"Authorization": f"Bearer {customer['token']}"}

    def check(op: APIOperation, case: Case) -> None:
        response = case.call(base_url=shop.url, headers=headers, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 403, (
            f"{response.status_code} {response.text[:200]}\n    {case.as_curl_command()}"
        )
        assert response.json()["detail"], response.text

    failures = list(run_per_operation(staff, positive, check, AUTH_EXAMPLES))
    assert not failures, "\n\n".join(failures)


def test_nul_in_any_string_input_gets_a_clean_answer(
    shop: Shop, operations: list[APIOperation], customer: dict[str, str]
) -> None:
    """PostgreSQL cannot store NUL in text, and schemathesis rarely generates it: put one in
    each query parameter, then in each top-level string field of a valid body, in turn."""
    check = conformance(shop, {"Authorization": f"Bearer {customer['token']}"})

    def with_nul(op: APIOperation, case: Case) -> None:
        query, body = dict(case.query or {}), case.body
        for p in op.definition.raw.get("parameters", []):
            if p["in"] == "query":
                case.query = {**query, p["name"]: "nul\x00here"}
                check(op, case)
        case.query = query
        if isinstance(body, dict):
            for name, value in body.items():
                if isinstance(value, str):
                    case.body = {**body, name: value + "\x00"}
                    check(op, case)

    failures = list(run_per_operation(operations, positive, with_nul, 1))
    assert not failures, "\n\n".join(failures)
