"""Identity linking: emails and addresses normalise so one person's variants share a key."""

from __future__ import annotations

from refunddesk.fraud.linking import (
    LinkKind,
    OrderIdentity,
    canonical_address,
    customer_key,
    identity_keys,
    key_hash,
    normalise_email,
)


def test_email_dots_plus_tags_case_and_googlemail_normalise_to_one_mailbox() -> None:
    same = [
        "John.Smith@gmail.com",
        "johnsmith+refunds@gmail.com",
        "j.o.h.n.s.m.i.t.h@GoogleMail.com",
        "  JOHNSMITH@gmail.com ",
    ]
    assert {normalise_email(e) for e in same} == {"johnsmith@gmail.com"}


def test_different_mailboxes_stay_apart() -> None:
    assert normalise_email("john@example.com") != normalise_email("jane@example.com")
    assert normalise_email("john@example.com") != normalise_email("john@example.org")


def test_address_spelling_variants_canonicalise_to_one_place() -> None:
    a = {"line1": "12 Main Street", "line2": "Apt. 4", "postal_code": "10115", "country": "DE"}
    b = {"line1": "12, MAIN ST", "line2": "#4", "postal_code": "10 115", "country": "de"}
    c = {"line1": "12 main st unit 4", "postal_code": "10115", "country": "DE", "city": "Berlin"}
    assert canonical_address(a) == canonical_address(b) == canonical_address(c)


def test_accents_and_eszett_fold_in_addresses() -> None:
    a = {"line1": "Müllerstraße 5", "postal_code": "80331", "country": "DE"}
    b = {"line1": "Mullerstrasse 5", "postal_code": "80331", "country": "DE"}
    assert canonical_address(a) == canonical_address(b)


def test_other_houses_postcodes_or_countries_are_other_places() -> None:
    base = {"line1": "12 Main Street", "postal_code": "10115", "country": "DE"}
    assert canonical_address(base) != canonical_address({**base, "line1": "14 Main Street"})
    assert canonical_address(base) != canonical_address({**base, "postal_code": "10117"})
    assert canonical_address(base) != canonical_address({**base, "country": "AT"})


def test_an_address_without_a_street_line_is_no_key() -> None:
    assert canonical_address(None) is None
    assert canonical_address({"line1": " ,. ", "country": "DE"}) is None


def test_identity_keys_cover_every_signal_given_and_only_those() -> None:
    full = OrderIdentity(
        email="a.b+x@example.com",
        customer_ref="C-1",
        shipping_address={"line1": "1 High St", "postal_code": "N1", "country": "GB"},
        billing_address={"line1": "9 Low Rd", "postal_code": "N2", "country": "GB"},
        device_id="dev-1",
        payment_fingerprint="fp-1",
    )
    kinds = sorted(identity_keys(full).values())
    assert kinds == sorted(
        [
            LinkKind.EMAIL,
            LinkKind.ACCOUNT,
            LinkKind.ADDRESS,
            LinkKind.ADDRESS,
            LinkKind.DEVICE,
            LinkKind.PAYMENT,
        ]
    )
    bare = identity_keys(OrderIdentity(email="a@example.com"))
    assert list(bare.values()) == [LinkKind.EMAIL]


def test_same_shipping_and_billing_address_is_one_key() -> None:
    address = {"line1": "1 High St", "postal_code": "N1", "country": "GB"}
    keys = identity_keys(
        OrderIdentity(email="a@example.com", shipping_address=address, billing_address=address)
    )
    assert list(keys.values()).count(LinkKind.ADDRESS) == 1


def test_keys_of_different_kinds_never_collide_and_store_no_plain_values() -> None:
    assert key_hash(LinkKind.DEVICE, "x") != key_hash(LinkKind.PAYMENT, "x")
    digest = key_hash(LinkKind.EMAIL, "john@example.com")
    assert "john" not in digest
    assert len(digest) == 32


def test_customer_key_ignores_case_but_not_dots() -> None:
    assert customer_key("A@Example.com") == customer_key("a@example.com")
    assert customer_key("a.b@example.com") != customer_key("ab@example.com")
