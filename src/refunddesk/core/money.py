"""Money as integer minor units plus an ISO 4217 currency code."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import iso4217

from refunddesk.core.errors import CurrencyMismatch, InvalidCurrency


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """Return the number of minor-unit digits of an ISO 4217 currency; raise if unknown."""
    try:
        currency = iso4217.Currency(code)
    except (ValueError, KeyError) as exc:
        raise InvalidCurrency(f"{code!r} is not an ISO 4217 currency code") from exc
    exponent = currency.exponent
    if exponent is None:
        # Funds, metals and testing codes (XAU, XTS, ...) have no minor unit: no refunds in them.
        raise InvalidCurrency(f"{code} has no minor unit and cannot carry refunds")
    return int(exponent)


def normalize_currency(code: str) -> str:
    """Upper-case and check a currency code, returning it."""
    upper = code.strip().upper()
    currency_exponent(upper)
    return upper


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of one currency; never a float."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError("Money.minor must be an int of minor units")
        currency_exponent(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._check(other)
        return self.minor <= other.minor

    def times(self, quantity: int) -> Money:
        return Money(self.minor * quantity, self.currency)

    @property
    def exponent(self) -> int:
        return currency_exponent(self.currency)

    def as_decimal(self) -> Decimal:
        """The amount in major units, exactly."""
        return Decimal(self.minor).scaleb(-self.exponent)

    def format(self) -> str:
        """Plain, locale-neutral rendering such as ``12.50 EUR`` or ``1200 JPY``."""
        return f"{self.as_decimal():.{self.exponent}f} {self.currency}"

    def __str__(self) -> str:
        return self.format()
