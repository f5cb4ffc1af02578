"""SEPA bank transfers: checks, queueing once per key, pain.001 files, the bank's status."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sepaxml
from lxml import etree
from sqlalchemy import func, select
from typer.testing import CliRunner

from refunddesk.bootstrap import Container
from refunddesk.payouts import bank, bank_cli
from refunddesk.payouts.bank import BankFile, BankTransfer, BankTransferConfig, write_files
from refunddesk.payouts.gateways.bank_transfer import BankTransferGateway, factory
from refunddesk.payouts.gateways.base import (
    BankAccount,
    FailureReason,
    GatewayNotification,
    NotificationKind,
    PayoutOutcome,
    PayoutRequest,
)
from refunddesk.payouts.orm import GatewayAccount
from tests.factories import Factory

DEBTOR = {
    "debtor_name": "Northwind Outfitters GmbH",
    "debtor_iban": "DE89 3704 0044 0532 0130 00",
    "debtor_bic": "COBADEFFXXX",
    "initiating_party_id": "DE98ZZZ09999999999",
}
ADA = BankAccount(iban="NL91 ABNA 0417 1643 00", holder="Ada Lovelace", bic="ABNANL2A")
BOB = BankAccount(iban="FR1420041010050500013M02606", holder="Bøb Müller & Söhne")
CAROL = BankAccount(iban="GB29NWBK60161331926819", holder="Carol O'Neil")
XSD_DIR = Path(sepaxml.__file__).parent / "schemas"
NS = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"


def _request(
    tenant_id: str,
    key: str,
    *,
    amount: int = 1234,
    currency: str = "EUR",
    account: BankAccount | None = ADA,
) -> PayoutRequest:
    return PayoutRequest(
        idempotency_key=key,
        tenant_id=tenant_id,
        refund_id=f"refund-{key}",
        reference=f"RF-{key.upper()[:8]}",
        amount_minor=amount,
        currency=currency,
        method="bank_transfer",
        payment_reference="",
        customer_email="ada@example.com",
        bank_account=account,
    )


def _gateway(container: Container, outbox: Path, **config: Any) -> BankTransferGateway:
    return BankTransferGateway(
        "sepa",
        {**DEBTOR, **config},
        db=container.db,
        clock=container.clock,
        outbox_dir=outbox,
    )


def _transfers(container: Container, tenant_id: str) -> list[BankTransfer]:
    with container.db.read() as session:
        return list(
            session.scalars(
                select(BankTransfer)
                .where(BankTransfer.tenant_id == tenant_id)
                .order_by(BankTransfer.id)
            )
        )


def _write(container: Container, outbox: Path, tenant_id: str, **config: Any) -> bank.WriteReport:
    accounts = {(tenant_id, "sepa"): BankTransferConfig.model_validate({**DEBTOR, **config})}
    return write_files(db=container.db, clock=container.clock, outbox_dir=outbox, accounts=accounts)


def _xsd(version: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"{version}.xsd")))


def _pain002(
    original_message_id: str,
    transactions: list[tuple[str, str, str | None]],
    *,
    group_status: str | None = None,
    group_reason: str | None = None,
) -> bytes:
    """A bank's pain.002.001.03 status report on one of our files."""
    txs = "".join(
        f"<TxInfAndSts><StsId>S{i}</StsId><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId>"
        f"<TxSts>{status}</TxSts>"
        + (
            f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn><AddtlInf>bank says {reason}</AddtlInf>"
            "</StsRsnInf>"
            if reason
            else ""
        )
        + "</TxInfAndSts>"
        for i, (e2e, status, reason) in enumerate(transactions)
    )
    payment = (
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>P1</OrgnlPmtInfId>{txs}</OrgnlPmtInfAndSts>"
        if txs
        else ""
    )
    group = f"<GrpSts>{group_status}</GrpSts>" if group_status else ""
    if group_reason:
        group += f"<StsRsnInf><Rsn><Cd>{group_reason}</Cd></Rsn></StsRsnInf>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{NS}"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>BANK-REPORT-1</MsgId><CreDtTm>2026-11-21T08:00:00</CreDtTm></GrpHdr>"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{original_message_id}</OrgnlMsgId>"
        f"<OrgnlMsgNmId>pain.001.001.03</OrgnlMsgNmId>{group}</OrgnlGrpInfAndSts>"
        f"{payment}</CstmrPmtStsRpt></Document>"
    ).encode()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def tenant_id(factory: Factory) -> str:
    return factory.tenant().id


# --- checks before anything is queued ---------------------------------------------------------


def test_a_refund_without_a_bank_account_fails_as_invalid_account(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    result = _gateway(container, outbox).refund(_request(tenant_id, "k1", account=None))
    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.INVALID_ACCOUNT
    assert result.failure_message == "no bank account"


@pytest.mark.parametrize(
    ("account", "words"),
    [
        (BankAccount("DE89370400440532013001", "Ada"), "check digits do not match"),
        (BankAccount("DE8937040044053201300", "Ada"), "IBAN DE8937040044053201300"),
        (BankAccount("BR1800360305000010009795493C1", "Ada"), "not in the SEPA scheme"),
        (BankAccount("not an iban", "Ada"), "IBAN not an iban"),
        (BankAccount("NL91ABNA0417164300", "Ada", bic="ABNA1L2A"), "BIC ABNA1L2A"),
        (BankAccount("NL91ABNA0417164300", "Ada", bic="ABNAXXL2"), "unknown country"),
        (BankAccount("NL91ABNA0417164300", "Ada", bic="ABNANL2"), "8 or 11 characters"),
        (BankAccount("NL91ABNA0417164300", "  &&  "), "no account holder name"),
    ],
)
def test_a_wrong_iban_or_bic_fails_as_invalid_account_with_a_readable_reason(
    container: Container, outbox: Path, tenant_id: str, account: BankAccount, words: str
) -> None:
    result = _gateway(container, outbox).refund(_request(tenant_id, "k1", account=account))
    assert result.outcome is PayoutOutcome.FAILED
    assert result.failure_reason is FailureReason.INVALID_ACCOUNT
    assert words in (result.failure_message or "")
    assert _transfers(container, tenant_id) == []


def test_only_euros_go_by_sepa(container: Container, outbox: Path, tenant_id: str) -> None:
    result = _gateway(container, outbox).refund(_request(tenant_id, "k1", currency="USD"))
    assert result.failure_reason is FailureReason.CURRENCY_NOT_SUPPORTED
    assert "EUR" in (result.failure_message or "")


def test_a_debtor_config_with_a_wrong_iban_is_refused() -> None:
    with pytest.raises(ValueError, match="check digits"):
        BankTransferConfig.model_validate({**DEBTOR, "debtor_iban": "DE89370400440532013001"})
    config = BankTransferConfig.model_validate(DEBTOR)
    assert config.debtor_iban == "DE89370400440532013000"


# --- queueing exactly once ----------------------------------------------------------------------


def test_a_refund_queues_a_transfer_and_a_repeat_returns_the_same_one(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    gateway = _gateway(container, outbox)
    request = _request(tenant_id, "refund-1-attempt-1")
    assert gateway.lookup(request, None) is None

    first = gateway.refund(request)
    again = gateway.refund(request)

    assert first.outcome is PayoutOutcome.PENDING
    assert first == again
    ref = first.gateway_reference or ""
    assert 0 < len(ref) <= 35
    assert ref.isalnum()
    (transfer,) = _transfers(container, tenant_id)
    assert (transfer.status, transfer.end_to_end_id) == ("queued", ref)
    assert transfer.creditor_iban == "NL91ABNA0417164300"
    assert gateway.lookup(request, None) == first
    assert gateway.lookup(request, ref) == first


def test_concurrent_refunds_with_one_key_queue_one_transfer(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    gateway = _gateway(container, outbox)
    request = _request(tenant_id, "same-key")
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def call() -> None:
        barrier.wait()
        results.append(gateway.refund(request))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.gateway_reference for r in results}) == 1
    assert len(_transfers(container, tenant_id)) == 1


# --- pain.001 files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "batch"),
    [("pain.001.001.03", True), ("pain.001.001.03", False), ("pain.001.001.09", True)],
)
def test_queued_transfers_make_one_file_the_xsd_accepts_with_two_decimal_amounts(
    container: Container, outbox: Path, tenant_id: str, version: str, batch: bool
) -> None:
    # given three queued transfers, one with a name SEPA cannot carry as is
    gateway = _gateway(container, outbox)
    for key, amount, account in [("a", 1234, ADA), ("b", 5, BOB), ("c", 100000, CAROL)]:
        gateway.refund(_request(tenant_id, key, amount=amount, account=account))

    # when the files are written
    report = _write(container, outbox, tenant_id, pain_version=version, batch_booking=batch)

    # then one file, at outbox/<tenant>/<message id>.xml, valid against the official XSD
    (written,) = report.files
    assert report.errors == []
    assert written.path == outbox / tenant_id / f"{written.message_id}.xml"
    assert sorted(p.name for p in written.path.parent.iterdir()) == [written.path.name]
    document = etree.parse(str(written.path))
    _xsd(version).assertValid(document)
    ns = {"p": f"urn:iso:std:iso:20022:tech:xsd:{version}"}
    header = document.find("p:CstmrCdtTrfInitn/p:GrpHdr", ns)
    assert header is not None
    assert header.findtext("p:MsgId", namespaces=ns) == written.message_id
    assert header.findtext("p:NbOfTxs", namespaces=ns) == "3"
    assert header.findtext("p:CtrlSum", namespaces=ns) == "1012.39"
    assert header.findtext("p:InitgPty/p:Id/p:OrgId/p:Othr/p:Id", namespaces=ns) == (
        "DE98ZZZ09999999999"
    )
    amounts = [e.text or "" for e in document.iterfind(".//p:InstdAmt", ns)]
    assert sorted(amounts) == ["0.05", "1000.00", "12.34"]
    assert all(len(a.split(".")[1]) == 2 for a in amounts)
    assert sum(Decimal(a) for a in amounts) == Decimal("1012.39")
    names = [e.text for e in document.iterfind(".//p:Cdtr/p:Nm", ns)]
    assert "Bob Muller Sohne" in names  # transliterated to the SEPA character set
    e2e = {e.text for e in document.iterfind(".//p:EndToEndId", ns)}
    transfers = _transfers(container, tenant_id)
    assert e2e == {t.end_to_end_id for t in transfers}

    # and the file row and the transfers say so
    with container.db.read() as session:
        (row,) = session.scalars(select(BankFile))
    assert (row.count, row.control_sum_minor, row.message_id) == (3, 101239, written.message_id)
    assert row.written_at is not None
    assert row.content == written.path.read_bytes()
    assert {(t.status, t.file_id, t.sent_at) for t in transfers} == {
        ("sent", row.id, container.clock.now())
    }
    assert written.sent_at == container.clock.now()
    assert sorted(written.idempotency_keys) == ["a", "b", "c"]


def test_a_second_write_with_nothing_queued_writes_nothing(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    _gateway(container, outbox).refund(_request(tenant_id, "a"))
    assert len(_write(container, outbox, tenant_id).files) == 1

    again = _write(container, outbox, tenant_id)

    assert again.files == []
    assert again.errors == []
    assert len(list((outbox / tenant_id).iterdir())) == 1


def test_a_file_decided_but_not_written_is_written_on_the_next_run_under_the_same_id(
    container: Container, outbox: Path, tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the disk fails after the file was decided and its transfers marked sent
    gateway = _gateway(container, outbox)
    gateway.refund(_request(tenant_id, "a"))

    def disk_full(path: Path, content: bytes) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(bank, "_atomic_write", disk_full)
        failed = _write(container, outbox, tenant_id)
    assert failed.files == []
    assert len(failed.errors) == 1
    assert not (outbox / tenant_id).exists()
    (transfer,) = _transfers(container, tenant_id)
    assert transfer.status == "sent"

    # when a transfer is queued and the files are written again
    gateway.refund(_request(tenant_id, "b"))
    report = _write(container, outbox, tenant_id)

    # then the first file is written with its own message id and the new transfer gets its own
    assert [f.recovered for f in report.files] == [True, False]
    with container.db.read() as session:
        rows = list(session.scalars(select(BankFile).order_by(BankFile.created_at, BankFile.id)))
    assert [r.message_id for r in rows] == [f.message_id for f in report.files]
    assert all(r.written_at is not None for r in rows)
    assert all(f.path.read_bytes() for f in report.files)
    by_file = {t.file_id for t in _transfers(container, tenant_id)}
    assert by_file == {r.id for r in rows}


def test_write_files_reads_the_bank_transfer_accounts_from_the_gateway_accounts(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    now = container.clock.now()
    with container.db.write() as session:
        session.add(
            GatewayAccount(
                tenant_id=tenant_id,
                name="sepa",
                provider="bank_transfer",
                config=dict(DEBTOR),
                methods=["bank_transfer"],
                created_at=now,
                updated_at=now,
            )
        )
    build = factory(db=container.db, clock=container.clock, outbox_dir=outbox)
    build("sepa", DEBTOR).refund(_request(tenant_id, "a"))

    report = write_files(db=container.db, clock=container.clock, outbox_dir=outbox)

    assert [(f.tenant_id, f.account, f.count) for f in report.files] == [(tenant_id, "sepa", 1)]


# --- the bank's answer ----------------------------------------------------------------------------


def _sent(
    container: Container, outbox: Path, tenant_id: str, keys: list[str]
) -> tuple[str, dict[str, str]]:
    gateway = _gateway(container, outbox)
    refs = {k: gateway.refund(_request(tenant_id, k)).gateway_reference or "" for k in keys}
    (written,) = _write(container, outbox, tenant_id).files
    return written.message_id, refs


def test_a_pain002_report_confirms_and_rejects_with_mapped_reasons(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    message_id, refs = _sent(container, outbox, tenant_id, ["ok", "closed", "wrong", "broke"])
    report_xml = _pain002(
        message_id,
        [
            (refs["ok"], "ACSC", None),
            (refs["closed"], "RJCT", "AC04"),
            (refs["wrong"], "RJCT", "AC01"),
            (refs["broke"], "RJCT", "AM04"),
            ("NOT-OURS-1", "ACSC", None),
        ],
    )
    applied: list[tuple[str, list[GatewayNotification]]] = []

    report = bank.import_status(
        db=container.db,
        clock=container.clock,
        tenant_id=tenant_id,
        data=report_xml,
        apply=lambda t, ns: applied.append((t, ns)),
    )

    assert report.message_id == "BANK-REPORT-1"
    assert report.confirmed == [refs["ok"]]
    rejected = dict(report.rejected)
    assert rejected[refs["closed"]].startswith("AC04: account closed")
    assert report.unknown == ["NOT-OURS-1"]
    by_ref = {n.gateway_reference: n for n in report.notifications}
    assert by_ref[refs["ok"]].kind is NotificationKind.SUCCEEDED
    assert by_ref[refs["ok"]].event_id == f"{message_id}:{refs['ok']}:confirmed"
    assert by_ref[refs["ok"]].idempotency_key == "ok"
    reasons = {k: by_ref[refs[k]].failure_reason for k in ("closed", "wrong", "broke")}
    assert reasons == {
        "closed": FailureReason.INVALID_ACCOUNT,
        "wrong": FailureReason.INVALID_ACCOUNT,
        "broke": FailureReason.INSUFFICIENT_FUNDS,
    }
    assert {by_ref[refs[k]].kind for k in ("closed", "wrong", "broke")} == {NotificationKind.FAILED}
    assert applied == [(tenant_id, report.notifications)]

    # and the gateway now answers with the bank's verdict
    gateway = _gateway(container, outbox)
    ok = gateway.lookup(_request(tenant_id, "ok"), None)
    assert ok is not None
    assert ok.outcome is PayoutOutcome.SUCCEEDED
    broke = gateway.lookup(_request(tenant_id, "broke"), None)
    assert broke is not None
    assert broke.failure_reason is FailureReason.INSUFFICIENT_FUNDS
    assert "AM04" in (broke.failure_message or "")
    assert gateway.refund(_request(tenant_id, "broke")) == broke


def test_importing_a_report_again_changes_nothing_and_repeats_the_same_events(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    message_id, refs = _sent(container, outbox, tenant_id, ["ok", "no"])
    data = _pain002(message_id, [(refs["ok"], "ACCP", None), (refs["no"], "RJCT", "MS03")])
    first = bank.import_status(
        db=container.db, clock=container.clock, tenant_id=tenant_id, data=data
    )

    second = bank.import_status(
        db=container.db, clock=container.clock, tenant_id=tenant_id, data=data
    )

    assert (second.confirmed, second.rejected) == ([], [])
    assert sorted(second.unchanged) == sorted(refs.values())
    assert [n.event_id for n in second.notifications] == [n.event_id for n in first.notifications]


def test_a_rejected_group_rejects_every_transfer_of_the_file(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    message_id, refs = _sent(container, outbox, tenant_id, ["a", "b"])
    data = _pain002(message_id, [], group_status="RJCT", group_reason="FF01")

    report = bank.import_status(
        db=container.db, clock=container.clock, tenant_id=tenant_id, data=data
    )

    assert sorted(e for e, _ in report.rejected) == sorted(refs.values())
    assert {t.status for t in _transfers(container, tenant_id)} == {"rejected"}


def test_an_acceptance_then_a_rejection_is_reported_as_a_reversal(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    message_id, refs = _sent(container, outbox, tenant_id, ["a"])
    accept = _pain002(message_id, [(refs["a"], "ACCP", None)])
    reject = _pain002(message_id, [(refs["a"], "RJCT", "AC06")])
    bank.import_status(db=container.db, clock=container.clock, tenant_id=tenant_id, data=accept)

    report = bank.import_status(
        db=container.db, clock=container.clock, tenant_id=tenant_id, data=reject
    )

    (notification,) = report.notifications
    assert notification.kind is NotificationKind.REVERSED
    assert notification.failure_reason is FailureReason.INVALID_ACCOUNT


def test_another_tenants_report_knows_none_of_our_transfers(
    container: Container, outbox: Path, tenant_id: str, factory: Factory
) -> None:
    message_id, refs = _sent(container, outbox, tenant_id, ["a"])
    other = factory.tenant(name="Other").id

    report = bank.import_status(
        db=container.db,
        clock=container.clock,
        tenant_id=other,
        data=_pain002(message_id, [(refs["a"], "ACSC", None)]),
    )

    assert report.unknown == [refs["a"]]
    assert report.notifications == []
    assert _transfers(container, tenant_id)[0].status == "sent"


def test_an_operators_csv_confirms_rejects_and_reports_what_it_cannot_use(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    _, refs = _sent(container, outbox, tenant_id, ["ok", "closed", "other"])
    csv_text = (
        "end_to_end_id,status,reason\n"
        f"{refs['ok']},settled,\n"
        f"{refs['closed']},RJCT,AC04\n"
        f"{refs['other']},rejected,customer moved abroad\n"
        "UNKNOWN-E2E,ACSC,\n"
        ",ACSC,\n"
        f"{refs['ok']},maybe,\n"
    )

    report = bank.import_status(
        db=container.db, clock=container.clock, tenant_id=tenant_id, data=csv_text.encode()
    )

    assert report.confirmed == [refs["ok"]]
    rejected = dict(report.rejected)
    assert rejected[refs["closed"]].startswith("AC04")
    assert "customer moved abroad" in rejected[refs["other"]]
    assert report.unknown == ["UNKNOWN-E2E"]
    assert len(report.errors) == 2  # no id; unknown status
    kinds = {n.gateway_reference: n.failure_reason for n in report.notifications}
    assert kinds[refs["closed"]] is FailureReason.INVALID_ACCOUNT
    assert kinds[refs["other"]] is FailureReason.UNKNOWN


def test_xml_with_entities_is_refused(container: Container, tenant_id: str) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><Document>&b;</Document>'
    )
    with pytest.raises(Exception, match=r"(?i)entit"):
        bank.import_status(db=container.db, clock=container.clock, tenant_id=tenant_id, data=bomb)


# --- the command line -----------------------------------------------------------------------------


def test_the_cli_writes_lists_and_imports(
    container: Container,
    outbox: Path,
    tenant_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = container.clock.now()
    with container.db.write() as session:
        session.add(
            GatewayAccount(
                tenant_id=tenant_id,
                name="sepa",
                provider="bank_transfer",
                config=dict(DEBTOR),
                methods=[],
                created_at=now,
                updated_at=now,
            )
        )
    ref = _gateway(container, outbox).refund(_request(tenant_id, "a")).gateway_reference
    monkeypatch.setattr(bank_cli, "_container", lambda: container)
    monkeypatch.setattr(bank_cli, "_outbox", lambda _: outbox)
    runner = CliRunner()

    wrote = runner.invoke(bank_cli.app, ["write", "--json"])
    assert wrote.exit_code == 0, wrote.output
    (file,) = json.loads(wrote.output)["files"]
    listed = runner.invoke(bank_cli.app, ["files", "--tenant", tenant_id, "--json"])
    assert [f["message_id"] for f in json.loads(listed.output)] == [file["message_id"]]
    status = Path(file["path"]).with_name("status.csv")
    status.write_text(f"end_to_end_id,status,reason\n{ref},ACSC,\n", encoding="utf-8")
    imported = runner.invoke(bank_cli.app, ["import", str(status), "--tenant", tenant_id, "--json"])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["confirmed"] == [ref]


def test_sent_time_is_on_the_transfer_for_the_arrival_window(
    container: Container, outbox: Path, tenant_id: str
) -> None:
    _gateway(container, outbox).refund(_request(tenant_id, "a"))
    _write(container, outbox, tenant_id)
    with container.db.read() as session:
        transfer = bank.find_transfer(session, tenant_id=tenant_id, idempotency_key="a")
        count = session.scalar(select(func.count()).select_from(BankTransfer))
    assert transfer is not None
    assert count == 1
    assert transfer.sent_at == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
