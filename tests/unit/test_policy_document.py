"""The policy document: parsing, defaults, and errors that name the line and the field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from refunddesk.core.errors import Invalid
from refunddesk.policy import (
    PolicyError,
    default_policy,
    example_policy,
    load_policy,
    parse_policy,
    policy_from_data,
)
from refunddesk.policy.document import EXAMPLES, Counting, ReturnMode
from refunddesk.refunds.domain import Reason


def problems_of(text: str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, fmt=fmt)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_bundled_example_policy_loads(name: str) -> None:
    policy = example_policy(name)
    assert policy.currency in {"EUR", "JPY", "USD"}


def test_the_examples_visibly_differ() -> None:
    northwind, sakura = example_policy("northwind"), example_policy("sakura")
    assert northwind.window.days == 60
    assert sakura.window.days == 14
    assert sakura.fees.restocking[0].percent == Decimal(15)
    assert northwind.fees.restocking == []
    assert northwind.fees.return_shipping == []
    assert sakura.authorization.four_eyes_above == Decimal(100000)
    assert sakura.returns.default is ReturnMode.RETURN


def test_an_empty_document_is_the_default_policy() -> None:
    assert parse_policy("").model_dump() == {**default_policy().model_dump(), "name": "policy"}


def test_the_default_policy_is_thirty_calendar_days_auto_approve_and_no_fees() -> None:
    policy = default_policy()
    assert policy.window.days == 30
    assert policy.window.counting is Counting.CALENDAR
    assert policy.authorization.auto_approve_below is None
    assert policy.fees.restocking == []
    assert policy.fees.return_shipping == []
    assert policy.returns.default is ReturnMode.INSTANT


def test_yaml_dates_become_holidays_and_all_means_every_reason() -> None:
    policy = parse_policy("window:\n  holidays: [2026-12-25]\nrefund:\n  tax_for: all\n")
    assert policy.window.holidays == frozenset({date(2026, 12, 25)})
    assert policy.refund.tax_for == frozenset(Reason)


def test_amounts_are_read_in_major_units_and_converted_with_the_currency_exponent() -> None:
    text = "currency: {cur}\nauthorization:\n  auto_approve_below: {amount}\n"
    cases = [("EUR", "12.50", 1250), ("JPY", "1000", 1000), ("BHD", "1.250", 1250)]
    for currency, amount, minor in cases:
        policy = parse_policy(text.format(cur=currency, amount=amount))
        assert policy.authorization.auto_approve_below is not None
        assert policy.minor(policy.authorization.auto_approve_below) == minor


BAD = """\
format: 1
name: broken
currency: EUR
window:
  days: 30
  counting: weekly
  colour: red
fees:
  restocking:
    - percent: 15
      categories: [electronics]
    - percent: 150
      reasons: [changed_mind, bored]
"""


@pytest.mark.parametrize(
    "expected",
    [
        "line 6: window.counting: input should be 'calendar' or 'business'",
        "line 7: window.colour: unknown field",
        "line 12: fees.restocking[1].percent: must be between 0 and 100",
        "line 13: fees.restocking[1].reasons[1]: input should be",
    ],
)
def test_a_bad_document_names_each_problem_with_its_line_and_field(expected: str) -> None:
    found = problems_of(BAD)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_are_reported_at_once() -> None:
    assert len(problems_of(BAD)) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("window:\n  days: [1\nname: x\n", "line 3: malformed YAML"),
        ("window:\n\tdays: 3\n", "line 2: malformed YAML"),
        ("- a\n- b\n", "line 1: the document must be a mapping"),
        ("surprise: 1\n", "line 1: surprise: unknown field"),
        ("window:\n  days: -1\n", "line 2: window.days: must be a whole number of days"),
        ("window:\n  days: '30'\n", "line 2: window.days: input should be a valid integer"),
        ("fees:\n  restocking:\n    - per_unit: 1\n", "line 1: currency: is required"),
        ("currency: XYZ\n", "line 1: currency: 'XYZ' is not an ISO 4217 currency code"),
        (
            "currency: JPY\nfees:\n  return_shipping:\n    - amount: 8.5\n",
            "line 4: fees.return_shipping[0].amount: 8.5 has more decimals than JPY allows",
        ),
        (
            "currency: KWD\nauthorization:\n  auto_approve_below: 1.2345\n",
            "line 3: authorization.auto_approve_below: 1.2345 has more decimals than KWD",
        ),
        (
            "currency: EUR\nauthorization:\n  auto_approve_below: 100\n  four_eyes_above: 50\n",
            "line 4: authorization.four_eyes_above: must not be below auto_approve_below",
        ),
        (
            "fees:\n  restocking:\n    - percent: 5\n      per_unit: 1\n",
            "line 3: fees.restocking[0]: give either percent or per_unit",
        ),
        (
            "window:\n  weekend: [mon, tue, wed, thu, fri, sat, sun]\n",
            "line 2: window.weekend: a week needs at least one business day",
        ),
        ("requirements:\n  reasons:\n    bored: {}\n", "line 3: requirements.reasons.bored"),
        (
            "refund:\n  store_credit_bonus_percent: -5\n",
            "line 2: refund.store_credit_bonus_percent: must be between 0 and 100",
        ),
    ],
)
def test_each_kind_of_bad_input_points_at_its_line(text: str, expected: str) -> None:
    found = problems_of(text)
    assert any(p.startswith(expected) for p in found), found


def test_a_policy_error_is_an_invalid_request_carrying_the_problems() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("window:\n  days: -1\n")
    error = caught.value
    assert isinstance(error, Invalid)
    assert error.code == "invalid_policy"
    assert error.status == 422
    assert error.extra["problems"] == [
        {"line": 2, "path": "window.days", "message": error.problems[0].message}
    ]
    assert "line 2: window.days" in error.detail


def test_toml_documents_are_accepted_too() -> None:
    policy = parse_policy(
        'currency = "EUR"\n[window]\ndays = 14\ncounting = "business"\n', fmt="toml"
    )
    assert policy.window.days == 14
    assert policy.window.counting is Counting.BUSINESS


def test_malformed_toml_is_refused_with_the_parser_message() -> None:
    assert problems_of("[window\n", fmt="toml")[0].startswith("malformed TOML")


def test_a_json_body_is_validated_with_paths_but_no_lines() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_data({"window": {"days": -1}})
    assert str(caught.value.problems[0]).startswith("window.days: must be")


def test_load_policy_reads_yaml_and_toml_files(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("window: {days: 9}\n")
    (tmp_path / "p.toml").write_text("[window]\ndays = 8\n")
    assert load_policy(tmp_path / "p.yaml").window.days == 9
    assert load_policy(tmp_path / "p.toml").window.days == 8


def test_yaml_loading_is_safe_and_refuses_python_objects() -> None:
    found = problems_of("name: !!python/object/apply:os.system ['true']\n")
    assert found[0].startswith("line 1: malformed YAML")


def test_a_document_with_an_unprintable_character_is_refused_as_malformed() -> None:
    from refunddesk.policy.document import PolicyError, parse_policy

    with pytest.raises(PolicyError) as caught:
        parse_policy("name: x\u0082\n")
    assert "malformed YAML" in caught.value.problems[0].message
