"""Money: integer minor units of an ISO 4217 currency."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from refunddesk.core.errors import CurrencyMismatch, InvalidCurrency
from refunddesk.core.money import Money, currency_exponent, normalize_currency


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("TND", 3)],
)
def test_the_exponent_comes_from_iso4217(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize("code", ["ZZZ", "EURO", "", "eur ", "123"])
def test_an_unknown_currency_code_is_refused(code: str) -> None:
    with pytest.raises(InvalidCurrency):
        currency_exponent(code)


@pytest.mark.parametrize("code", ["XAU", "XTS", "XXX", "XDR"])
def test_a_currency_without_a_minor_unit_cannot_carry_refunds(code: str) -> None:
    with pytest.raises(InvalidCurrency, match="no minor unit"):
        Money(100, code)


def test_normalize_currency_upper_cases_and_checks_the_code() -> None:
    assert normalize_currency(" jpy ") == "JPY"
    with pytest.raises(InvalidCurrency):
        normalize_currency("xau")


@pytest.mark.parametrize("minor", [1.0, 12.5, True, False, Decimal("1"), "100", None])
def test_money_refuses_anything_but_an_int_of_minor_units(minor: object) -> None:
    with pytest.raises(TypeError, match="minor units"):
        Money(minor, "EUR")  # type: ignore[arg-type]


def test_money_in_an_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidCurrency):
        Money(100, "ZZZ")


def test_adding_and_subtracting_in_one_currency_keeps_it() -> None:
    assert Money(1050, "EUR") + Money(250, "EUR") == Money(1300, "EUR")
    assert Money(1050, "EUR") - Money(1100, "EUR") == Money(-50, "EUR")
    assert Money(333, "KWD").times(3) == Money(999, "KWD")
    assert Money.zero("JPY") == Money(0, "JPY")


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
    ],
    ids=["add", "sub", "lt", "le"],
)
def test_combining_two_currencies_is_a_currency_mismatch(
    combine: Callable[[Money, Money], object],
) -> None:
    with pytest.raises(CurrencyMismatch, match="EUR with USD"):
        combine(Money(100, "EUR"), Money(100, "USD"))


def test_comparisons_in_one_currency_compare_amounts() -> None:
    assert Money(99, "EUR") < Money(100, "EUR")
    assert Money(100, "EUR") <= Money(100, "EUR")
    assert not Money(101, "EUR") <= Money(100, "EUR")


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1250, "EUR"), "12.50 EUR"),
        (Money(5, "EUR"), "0.05 EUR"),
        (Money(0, "EUR"), "0.00 EUR"),
        (Money(-1999, "USD"), "-19.99 USD"),
        (Money(1200, "JPY"), "1200 JPY"),
        (Money(1234, "BHD"), "1.234 BHD"),
        (Money(10**13 + 1, "EUR"), "100000000000.01 EUR"),
    ],
)
def test_money_formats_with_exactly_the_currencys_minor_digits(money: Money, text: str) -> None:
    assert money.format() == text
    assert str(money) == text


def test_as_decimal_is_exact() -> None:
    assert Money(1, "KWD").as_decimal() == Decimal("0.001")
    assert Money(10**15 + 1, "EUR").as_decimal() == Decimal("10000000000000.01")
