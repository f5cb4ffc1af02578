"""The customer portal: identify with order number and email, preview, confirm, upload photos."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from refunddesk.api.app import create_app
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.refunds import service as refunds
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.refunds.schemas import RefundCreate
from tests.conftest import make_settings
from tests.factories import Factory

PHOTO_FOR_DAMAGE = """
format: 1
name: photos for damage
requirements:
  default: {condition: any, evidence: []}
  reasons:
    damaged: {evidence: [photo]}
"""
EMAIL = "grace@example.com"
MAX_UPLOAD = 64 * 1024


@pytest.fixture
def portal(
    database_url: str, clock: FrozenClock, sandbox: SandboxGateway, tmp_path: Path
) -> Iterator[Container]:
    settings = make_settings(
        database_url,
        upload_dir=str(tmp_path / "uploads"),
        upload_max_bytes=MAX_UPLOAD,
        portal_lookup_limit="5/minute",
        portal_request_limit="8/minute",
    )
    c = bootstrap(settings, clock=clock, gateways=[sandbox])
    yield c
    c.close()


@pytest.fixture
def web(portal: Container) -> Iterator[TestClient]:
    with TestClient(create_app(portal), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def shop(portal: Container) -> dict[str, str]:
    f = Factory(portal)
    tenant = f.tenant("Northwind Outfitters")
    f.policy(tenant.id, PHOTO_FOR_DAMAGE)
    number = f.order(tenant.id, customer={"email": EMAIL, "name": "Grace Hopper", "phone": None})
    return {"tenant": tenant.id, "number": number}


def token_of(page: httpx.Response, name: str = "csrf_token") -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def identify(client: TestClient, number: str, email: str = EMAIL) -> httpx.Response:
    token = token_of(client.get("/portal"))
    return client.post(
        "/portal",
        data={"csrf_token": token, "order_number": number, "email": email},
        follow_redirects=False,
    )


def png(size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def request_form(client: TestClient, **fields: Any) -> dict[str, Any]:
    page = client.get("/portal/order")
    assert page.status_code == 200, page.text
    data = {"csrf_token": token_of(page), "qty-1": "1", "reason": "damaged"}
    data.update(fields)
    return data


def preview(
    client: TestClient, files: list[tuple[str, tuple[str, bytes, str]]] | None = None, **fields: Any
) -> httpx.Response:
    data = request_form(client, **fields)
    return client.post("/portal/request", data=data, files=files or [])


def confirm(client: TestClient, page: httpx.Response) -> httpx.Response:
    return client.post(
        "/portal/confirm",
        data={"csrf_token": token_of(page), "draft": token_of(page, "draft")},
        follow_redirects=False,
    )


def refunds_in_db(c: Container) -> list[Refund]:
    with c.db.read() as session:
        rows = list(session.scalars(select(Refund)))
        for row in rows:
            session.expunge(row)
        return rows


def stored_files(c: Container) -> list[Path]:
    root = Path(c.settings.upload_dir)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ----- identification ---------------------------------------------------------------------


def test_order_number_and_email_open_the_order_with_what_is_left_to_refund(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    with portal.db.write() as session:
        refunds.request_refund(
            session,
            clock=portal.clock,
            config=portal.intake,
            tenant_id=shop["tenant"],
            data=RefundCreate.model_validate(
                {
                    "order_id": shop["number"],
                    "lines": [{"sku": "SKU-A", "quantity": 1}],
                    "reason": "changed_mind",
                }
            ),
            actor="agent:test",
        )
    answer = identify(web, shop["number"], "  GRACE@example.com ")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/order"
    page = web.get("/portal/order")
    assert page.status_code == 200
    assert "Northwind Outfitters" in page.text
    assert "Thing A" in page.text
    assert "Thing B" in page.text
    assert "1 already refunded" in page.text
    assert 'max="1"' in page.text  # SKU-A: 2 ordered, 1 refunded
    assert "Refunds of this order" in page.text
    assert 'name="reference" value="RF-' in page.text  # a form to track the existing refund
    assert 'enctype="multipart/form-data"' in page.text
    assert "asks for a photo when it arrived damaged" in page.text


def test_wrong_email_and_unknown_order_get_the_same_answer(
    web: TestClient, shop: dict[str, str]
) -> None:
    wrong_email = identify(web, shop["number"], "someone.else@example.com")
    unknown = identify(web, "NO-SUCH-ORDER", "someone.else@example.com")
    assert wrong_email.status_code == unknown.status_code == 404
    assert "could not find an order" in wrong_email.text
    assert wrong_email.text.replace(shop["number"], "N") == unknown.text.replace(
        "NO-SUCH-ORDER", "N"
    )
    assert web.get("/portal/order", follow_redirects=False).headers["location"] == "/portal"


def test_one_order_number_at_two_retailers_is_told_apart_by_the_email(
    web: TestClient, portal: Container
) -> None:
    f = Factory(portal)
    north, maple = f.tenant("Northwind Outfitters"), f.tenant("Maple Home Goods", "USD")
    f.order(north.id, external_id="SHARED-1", customer={"email": "a@example.com", "name": "A"})
    f.order(
        maple.id,
        external_id="SHARED-1",
        currency="USD",
        customer={"email": "b@example.com", "name": "B"},
    )
    assert identify(web, "SHARED-1", "b@example.com").status_code == 303
    page = web.get("/portal/order")
    assert "Maple Home Goods" in page.text
    assert "Northwind" not in page.text.split("<main")[1]


def test_the_same_customer_at_two_retailers_chooses_one(web: TestClient, portal: Container) -> None:
    f = Factory(portal)
    north, maple = f.tenant("Northwind Outfitters"), f.tenant("Maple Home Goods", "USD")
    for tenant, currency in ((north, "EUR"), (maple, "USD")):
        f.order(
            tenant.id,
            external_id="SAME-9",
            currency=currency,
            customer={"email": EMAIL, "name": "G"},
        )
    answer = identify(web, "SAME-9")
    assert answer.headers["location"] == "/portal/choose"
    page = web.get("/portal/choose")
    assert "Maple Home Goods" in page.text
    assert "Northwind Outfitters" in page.text
    chosen = web.post(
        "/portal/choose", data={"csrf_token": token_of(page), "choice": "1"}, follow_redirects=True
    )
    assert "Northwind Outfitters" in chosen.text.split("<main")[1]


def test_identification_attempts_are_rate_limited_per_ip(
    web: TestClient, shop: dict[str, str]
) -> None:
    for n in range(5):
        assert identify(web, f"GUESS-{n}", "x@example.com").status_code == 404
    limited = identify(web, shop["number"])  # even the right answer waits now
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many attempts" in limited.text
    assert limited.headers["content-type"].startswith("text/html")


def test_identification_attempts_are_rate_limited_per_order_number(
    portal: Container, shop: dict[str, str]
) -> None:
    app = create_app(portal)
    statuses = []
    for n in range(6):
        with TestClient(app, client=(f"198.51.100.{n}", 4000)) as client:
            statuses.append(identify(client, shop["number"], f"guess{n}@example.com").status_code)
    assert statuses == [404] * 5 + [429]


def test_portal_session_is_short_lived(
    web: TestClient, portal: Container, shop: dict[str, str], clock: FrozenClock
) -> None:
    identify(web, shop["number"])
    assert web.get("/portal/order").status_code == 200
    clock.advance(timedelta(minutes=31))
    assert web.get("/portal/order", follow_redirects=False).headers["location"] == "/portal"


# ----- preview and confirm ----------------------------------------------------------------


def test_preview_then_confirm_creates_one_portal_refund_even_on_double_submit(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    identify(web, shop["number"])
    page = preview(web, reason="changed_mind", note="Too small.")
    assert page.status_code == 200, page.text
    assert 'data-decision="approved"' in page.text
    assert "10.00" in page.text
    assert refunds_in_db(portal) == []  # a preview stores nothing
    first, second = confirm(web, page), confirm(web, page)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    (refund,) = refunds_in_db(portal)
    assert refund.channel == "portal"
    assert refund.note == "Too small."
    assert refund.idempotency_key
    assert refund.idempotency_key.startswith("portal-")
    done = web.get(first.headers["location"])
    assert refund.reference in done.text
    assert 'action="/track"' in done.text
    assert f'value="{EMAIL}"' in done.text
    tracked = web.post(
        "/track",
        data={"csrf_token": token_of(done), "reference": refund.reference, "email": EMAIL},
    )
    assert tracked.status_code == 200
    assert "We received your refund request" in tracked.text


def test_a_photo_the_policy_asks_for_is_stored_and_counted_as_evidence(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    identify(web, shop["number"])
    without = preview(web)
    assert 'data-decision="pending_review"' in without.text
    assert "asks for evidence" in without.text
    page = preview(web, files=[("photos", ("../../etc/passwd.png", png(), "image/png"))])
    assert 'data-decision="approved"' in page.text, page.text
    assert confirm(web, page).status_code == 303
    (refund,) = refunds_in_db(portal)
    assert refund.evidence == ["photo"]
    assert refund.status in ("approved", "processing", "succeeded")
    (photo,) = stored_files(portal)
    assert photo.parent.name == shop["tenant"]
    assert re.fullmatch(r"[0-9a-f]{32}\.png", photo.name)
    assert photo.read_bytes() == png()
    with portal.db.read() as session:
        note = session.scalars(
            select(RefundEvent).where(
                RefundEvent.refund_id == refund.id, RefundEvent.type == "refund.note"
            )
        ).one()
    assert note.data["photos"] == [f"{shop['tenant']}/{photo.name}"]


def test_uploads_of_the_wrong_type_size_or_number_are_refused_with_a_message(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    identify(web, shop["number"])
    not_image = preview(web, files=[("photos", ("cat.png", b"GIF89a not really", "image/png"))])
    assert not_image.status_code == 400
    assert "cat.png is not a JPEG, PNG or WebP photo." in not_image.text
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    as_gif = preview(web, files=[("photos", ("p.gif", gif.getvalue(), "image/gif"))])
    assert "p.gif is not a JPEG, PNG or WebP photo." in as_gif.text
    big = preview(web, files=[("photos", ("big.png", b"\x89PNG" + b"0" * MAX_UPLOAD, "image/png"))])
    assert big.status_code == 400
    assert "big.png is larger than 64 KB." in big.text
    many = preview(web, files=[("photos", (f"{n}.png", png(), "image/png")) for n in range(6)])
    assert "Attach at most 5 photos." in many.text
    assert 'href="#photos"' in many.text  # the error summary links to the field
    assert stored_files(portal) == []
    assert refunds_in_db(portal) == []


def test_refund_requests_are_rate_limited(web: TestClient, shop: dict[str, str]) -> None:
    identify(web, shop["number"])
    statuses = [preview(web, reason="changed_mind").status_code for _ in range(9)]
    assert statuses[:8] == [200] * 8
    assert statuses[8] == 429


def test_a_draft_from_another_session_or_tampered_is_refused(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    identify(web, shop["number"])
    page = preview(web, reason="changed_mind")
    draft = token_of(page, "draft")
    tampered = web.post(
        "/portal/confirm", data={"csrf_token": token_of(page), "draft": draft[:-3] + "abc"}
    )
    assert tampered.status_code == 403
    identify(web, shop["number"])  # a new portal session: the old draft is not its own
    again = web.post("/portal/confirm", data={"csrf_token": token_of(page), "draft": draft})
    assert again.status_code == 403
    no_csrf = web.post("/portal/confirm", data={"draft": draft})
    assert no_csrf.status_code == 403
    assert refunds_in_db(portal) == []


def test_form_errors_are_summarised_and_linked_to_their_fields(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    identify(web, shop["number"])
    page = preview(web, **{"qty-1": "7", "qty-2": "0", "reason": "", "condition": "shiny"})
    assert page.status_code == 400
    for anchor in ("#qty-1", "#reason", "#condition"):
        assert f'href="{anchor}"' in page.text
    assert "Thing A: enter a whole number from 0 to 2." in page.text
    assert 'aria-invalid="true"' in page.text
    nothing = preview(web, **{"qty-1": "0"})
    assert "Choose at least one item" in nothing.text
    kept = preview(web, files=[("photos", ("ok.png", png(), "image/png"))], reason="")
    assert "Please choose your photos again." in kept.text
    assert stored_files(portal) == []


JUNK: list[dict[str, Any]] = [
    {"qty-1": "99999999999999999999999"},
    {"qty-1": "-1"},
    {"qty-1": "1e3"},
    {"qty-1": "٣"},  # an Arabic-Indic digit: isdigit() but not ASCII
    {"qty-1": "\x00"},
    {"reason": "\x00" * 50},
    {"reason": "damaged" * 1000},
    {"condition": "é" * 5000},
    {"method": "bitcoin"},
    {"note": "\x00\x01 note " * 400},
    {"qty-999": "3", "qty-1": ""},
    {"photos": "not a file"},
]


@pytest.mark.parametrize("junk", JUNK)
def test_junk_request_fields_never_give_a_500(
    web: TestClient, shop: dict[str, str], junk: dict[str, Any]
) -> None:
    identify(web, shop["number"])
    answer = preview(web, **junk)
    assert answer.status_code in (200, 400), answer.text


def test_junk_anywhere_in_the_portal_never_gives_a_500(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    token = token_of(web.get("/portal"))
    answers = [
        web.post("/portal", data={"csrf_token": token, "order_number": "\x00", "email": "a"}),
        web.post("/portal", data={"csrf_token": token, "order_number": "x" * 5000, "email": "a"}),
        web.post("/portal", data={"csrf_token": token}),
        web.post(
            "/portal",
            content=b"--x\r\ngarbage",
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        web.post("/portal", files=[("order_number", ("f.txt", b"x", "text/plain"))]),
        web.post("/portal/choose", data={"csrf_token": token, "choice": "99"}),
        web.post("/portal/request", data={"csrf_token": token}),
        web.post("/portal/confirm", data={"csrf_token": token, "draft": "x"}),
        web.get("/portal/refunds/" + "A" * 300),
        web.get("/portal/order"),
    ]
    identify(web, shop["number"])
    answers += [
        web.post("/portal/confirm", data={"csrf_token": token, "draft": ""}),
        web.post("/portal/confirm", data={"csrf_token": token, "draft": "e30.bad"}),
        web.get("/portal/refunds/RF-00000000"),
        web.get("/portal/refunds/%00"),
        web.post(
            "/portal/request",
            data={"csrf_token": token},
            files=[("photos", ("", b"", "application/octet-stream"))],
        ),
    ]
    assert [a.status_code for a in answers if a.status_code >= 500] == []
    assert refunds_in_db(portal) == []


def test_a_request_over_what_is_left_is_refused_in_words(
    web: TestClient, portal: Container, shop: dict[str, str]
) -> None:
    identify(web, shop["number"])
    page = preview(web, reason="changed_mind", **{"qty-1": "2"})
    # Meanwhile an agent refunds one of the two items.
    with portal.db.write() as session:
        refunds.request_refund(
            session,
            clock=portal.clock,
            config=portal.intake,
            tenant_id=shop["tenant"],
            data=RefundCreate.model_validate(
                {
                    "order_id": shop["number"],
                    "lines": [{"sku": "SKU-A", "quantity": 1}],
                    "reason": "changed_mind",
                }
            ),
            actor="agent:test",
        )
    answer = confirm(web, page)
    assert answer.status_code == 409
    assert "We could not take this request" in answer.text
    with portal.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 1
