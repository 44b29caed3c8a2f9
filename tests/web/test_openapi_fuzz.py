"""schemathesis against the published OpenAPI spec, on a real server: nothing it sends gets a 5xx, and
answers conform to the spec (status codes, content types, bodies). Bounded: a few examples per operation.

Not checked: that every schema-valid body is accepted. Some rules are beyond JSON Schema and answered with a
400 on purpose (tool_choice needs tools; tool and response schemas must be in the grammar's subset)."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

MAX_EXAMPLES = 15


def _fuzz(url: str, max_examples: int) -> list[str]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # noqa: BLE001 — collect every operation's failure, then report them all
            failures.append(f"{op.label}: {exc}")
    return failures


def test_no_server_errors_and_answers_match_the_spec(start_server):
    srv = start_server(max_tokens=4, max_body_bytes=1 << 20)
    failures = _fuzz(srv.url, MAX_EXAMPLES)
    assert failures == []


@pytest.mark.slow
def test_fuzz_harder(start_server):
    srv = start_server(max_tokens=4, max_body_bytes=1 << 20)
    assert _fuzz(srv.url, 150) == []
