"""SEPA credit transfers: queued per refund, batched into pain.001 files, settled by the bank.

A transfer is queued by the bank_transfer gateway (status ``queued``). ``write_files`` batches
each account's queued transfers into one ISO 20022 pain.001 file in the outbox folder
(``sent``), and ``import_status`` reads the bank's answer, a pain.002 status report or an
operator's CSV, and marks them ``confirmed`` or ``rejected``.

Crash safety of the outbox: the file's bytes are decided (message id included), stored in
``bank_files.content`` and the transfers marked ``sent`` in one transaction; only after the
commit is the file written (temp file, fsync, rename) under its final name. A crash before
the commit leaves the transfers queued and no file; a crash after it leaves a row whose
``written_at`` is empty, and every later ``write_files`` first writes such rows' stored
bytes again under the same message id. So a transfer is in exactly one file, and every
file that was decided reaches the outbox.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sepaxml import SepaTransfer  # type: ignore[import-untyped]
from sqlalchemy import (
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)
from text_unidecode import unidecode  # type: ignore[import-untyped]

from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.base import Base
from refunddesk.db.uow import Database
from refunddesk.payouts.gateways.base import (
    BankAccount,
    FailureReason,
    GatewayNotification,
    NotificationKind,
    PayoutOutcome,
    PayoutResult,
)

log = logging.getLogger(__name__)

PROVIDER = "bank_transfer"
SEPA_CURRENCY = "EUR"
MAX_AMOUNT_MINOR = 99_999_999_999  # 999,999,999.99 EUR: the SEPA credit transfer ceiling
MAX_TRANSFERS_PER_FILE = 5_000
PainVersion = Literal["pain.001.001.03", "pain.001.001.09"]

# Countries (IBAN prefixes) in the SEPA credit transfer scheme (EPC list, 2025).
_SEPA_COUNTRY_LIST = (
    "AD AL AT BE BG CH CY CZ DE DK EE ES FI FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU "
    "LV MC MD ME MK MT NL NO PL PT RO RS SE SI SK SM VA"
)
SEPA_COUNTRIES = frozenset(_SEPA_COUNTRY_LIST.split())
# What SEPA lets through in names and texts (EPC "Latin character set").
_SEPA_TEXT = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")
_TWO_DECIMALS = re.compile(r"^\d{1,12}\.\d{2}$")


class TransferStatus(StrEnum):
    QUEUED = "queued"  # waiting for the next file
    SENT = "sent"  # in a file in the outbox; the bank's answer is to come
    CONFIRMED = "confirmed"  # the bank accepted or settled it
    REJECTED = "rejected"  # the bank refused it; failure_reason says why


# ---------------------------------------------------------------------------------------------
# Configuration and checks


def compact_iban(value: str) -> str:
    """The IBAN without spaces, upper case."""
    return str(stdnum_iban.compact(value))


def compact_bic(value: str) -> str:
    """The BIC without spaces, upper case."""
    return str(stdnum_bic.compact(value))


def iban_problem(value: str) -> str | None:
    """Why an IBAN cannot receive a SEPA transfer, in words, or None if it can."""
    try:
        number = stdnum_iban.validate(value)
    except InvalidChecksum:
        return f"IBAN {value.strip()} is not valid: its check digits do not match (a typo?)"
    except InvalidLength:
        return f"IBAN {value.strip()} has the wrong length for its country"
    except InvalidComponent:
        return f"IBAN {value.strip()} has an unknown country or bank code"
    except InvalidFormat:
        return f"IBAN {value.strip()} is not in the IBAN format (country, check digits, account)"
    except ValidationError as exc:
        return f"IBAN {value.strip()} is not valid: {exc}"
    if number[:2] not in SEPA_COUNTRIES:
        return f"IBAN {number} is from {number[:2]}, which is not in the SEPA scheme"
    return None


def bic_problem(value: str) -> str | None:
    """Why a BIC is not valid, in words, or None if it is."""
    try:
        stdnum_bic.validate(value)
    except InvalidLength:
        return f"BIC {value.strip()} must have 8 or 11 characters"
    except InvalidComponent:
        return f"BIC {value.strip()} has an unknown country code"
    except InvalidFormat:
        return f"BIC {value.strip()} is not in the BIC format (bank, country, location, branch)"
    except ValidationError as exc:
        return f"BIC {value.strip()} is not valid: {exc}"
    return None


def sepa_text(value: str, limit: int) -> str:
    """Text a SEPA bank accepts: transliterated to Latin letters, other characters dropped."""
    cleaned = _SEPA_TEXT.sub(" ", unidecode(value))
    return " ".join(cleaned.split())[:limit].strip()


class BankTransferConfig(BaseModel):
    """A tenant's SEPA debtor account, from which refunds are paid by credit transfer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    debtor_name: str = Field(min_length=1, max_length=70)
    debtor_iban: str = Field(min_length=15, max_length=42)
    debtor_bic: str | None = Field(default=None, min_length=8, max_length=14)
    initiating_party_id: str | None = Field(default=None, min_length=1, max_length=35)
    batch_booking: bool = True  # one debit on the statement per file, not one per refund
    pain_version: PainVersion = "pain.001.001.03"

    @field_validator("debtor_name")
    @classmethod
    def _name(cls, value: str) -> str:
        cleaned = sepa_text(value, 70)
        if not cleaned:
            raise ValueError("needs letters or digits SEPA accepts")
        return cleaned

    @field_validator("debtor_iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        problem = iban_problem(value)
        if problem:
            raise ValueError(problem)
        return compact_iban(value)

    @field_validator("debtor_bic")
    @classmethod
    def _bic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = bic_problem(value)
        if problem:
            raise ValueError(problem)
        return compact_bic(value)

    @field_validator("initiating_party_id")
    @classmethod
    def _party(cls, value: str | None) -> str | None:
        if value is not None and sepa_text(value, 35) != value:
            raise ValueError("only letters, digits and / - ? : ( ) . , ' + and spaces")
        return value


def destination_problem(
    account: BankAccount | None, currency: str, amount_minor: int
) -> PayoutResult | None:
    """The final answer for a transfer SEPA cannot carry, or None if it can."""
    if account is None:
        return PayoutResult.failed(FailureReason.INVALID_ACCOUNT, "no bank account")
    if currency != SEPA_CURRENCY:
        return PayoutResult.failed(
            FailureReason.CURRENCY_NOT_SUPPORTED,
            f"SEPA credit transfers are in EUR only, not {currency}",
        )
    if not 0 < amount_minor <= MAX_AMOUNT_MINOR:
        return PayoutResult.failed(
            FailureReason.DECLINED, "a SEPA transfer is between 0.01 and 999,999,999.99 EUR"
        )
    problem = iban_problem(account.iban)
    if problem is None and account.bic:
        problem = bic_problem(account.bic)
    if problem is None and not sepa_text(account.holder, 70):
        problem = "no account holder name"
    if problem is not None:
        return PayoutResult.failed(FailureReason.INVALID_ACCOUNT, problem)
    return None


# ---------------------------------------------------------------------------------------------
# Tables


class BankFile(Base):
    """A pain.001 file: its bytes are kept, so it can be written again after a crash."""

    __tablename__ = "bank_files"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        Index("uq_bank_files_tenant_message", "tenant_id", "message_id", unique=True),
        Index("ix_bank_files_tenant_created", "tenant_id", "created_at"),
        Index("ix_bank_files_written", "written_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    account: Mapped[str] = mapped_column(String(32))  # the gateway account (debtor)
    message_id: Mapped[str] = mapped_column(String(35))
    pain_version: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer)
    control_sum_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]  # decided, and its transfers sent
    written_at: Mapped[datetime | None]  # in the outbox under its final name


class BankTransfer(Base):
    """One refund paid by SEPA credit transfer, queued once per idempotency key."""

    __tablename__ = "bank_transfers"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        ForeignKeyConstraint(["tenant_id", "file_id"], ["bank_files.tenant_id", "bank_files.id"]),
        Index("uq_bank_transfers_tenant_idempotency", "tenant_id", "idempotency_key", unique=True),
        Index("uq_bank_transfers_tenant_end_to_end", "tenant_id", "end_to_end_id", unique=True),
        Index("ix_bank_transfers_tenant_account_status", "tenant_id", "account", "status"),
        Index("ix_bank_transfers_tenant_file", "tenant_id", "file_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    refund_id: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(64))
    end_to_end_id: Mapped[str] = mapped_column(String(35))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    creditor_name: Mapped[str] = mapped_column(String(70))
    creditor_iban: Mapped[str] = mapped_column(String(34))
    creditor_bic: Mapped[str | None] = mapped_column(String(11))
    remittance: Mapped[str] = mapped_column(String(140))
    status: Mapped[str] = mapped_column(String(16))
    file_id: Mapped[str | None] = mapped_column(String(26))
    # When its file was made: the bank pays 1-2 business days later.
    sent_at: Mapped[datetime | None]
    bank_status: Mapped[str | None] = mapped_column(String(8))  # the bank's code: ACSC, RJCT
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]  # confirmed or rejected
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def result_of(transfer: BankTransfer) -> PayoutResult:
    """The gateway's answer for a transfer as it stands."""
    ref = transfer.end_to_end_id
    if transfer.status == TransferStatus.CONFIRMED:
        return PayoutResult(PayoutOutcome.SUCCEEDED, gateway_reference=ref)
    if transfer.status == TransferStatus.REJECTED:
        return PayoutResult.failed(
            FailureReason(transfer.failure_reason or FailureReason.UNKNOWN),
            transfer.failure_message or "rejected by the bank",
            gateway_reference=ref,
        )
    return PayoutResult(PayoutOutcome.PENDING, gateway_reference=ref)


def find_transfer(
    session: Session,
    *,
    tenant_id: str,
    idempotency_key: str | None = None,
    end_to_end_id: str | None = None,
) -> BankTransfer | None:
    """A tenant's transfer by our idempotency key, else by its end-to-end id."""
    if idempotency_key is not None:
        found = session.scalar(
            select(BankTransfer).where(
                BankTransfer.tenant_id == tenant_id,
                BankTransfer.idempotency_key == idempotency_key,
            )
        )
        if found is not None:
            return found
    if end_to_end_id is not None:
        return session.scalar(
            select(BankTransfer).where(
                BankTransfer.tenant_id == tenant_id,
                BankTransfer.end_to_end_id == end_to_end_id,
            )
        )
    return None


def list_files(
    session: Session, *, tenant_id: str | None = None, limit: int = 100
) -> list[BankFile]:
    """The newest files first, of one tenant or all."""
    query = select(BankFile).order_by(BankFile.created_at.desc(), BankFile.id.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(BankFile.tenant_id == tenant_id)
    return list(session.scalars(query))


# ---------------------------------------------------------------------------------------------
# pain.001 files


class _Pain001(SepaTransfer):  # type: ignore[misc]
    """sepaxml's transfer file with our message id, clock and initiating party id.

    sepaxml picks a random MsgId and the local time for CreDtTm when it builds the group
    header, and has no option for an initiating party id; this hook sets all three in the
    header it just built (sepaxml's ``_xml`` tree), before export validates the whole file.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        schema: str,
        message_id: str,
        created_at: datetime,
        party_id: str | None,
    ) -> None:
        self._message_id = message_id
        self._created_at = created_at
        self._party_id = party_id
        super().__init__(config, schema=schema)

    def _create_header(self) -> None:
        super()._create_header()
        self.msg_id = self._message_id
        header = self._xml.find("CstmrCdtTrfInitn/GrpHdr")
        header.find("MsgId").text = self._message_id
        header.find("CreDtTm").text = self._created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self._party_id:
            party = header.find("InitgPty")
            ident = Element("Id")
            org = Element("OrgId")
            other = Element("Othr")
            other_id = Element("Id")
            other_id.text = self._party_id
            other.append(other_id)
            org.append(other)
            ident.append(org)
            party.append(ident)


def render_pain001(
    config: BankTransferConfig,
    transfers: Sequence[BankTransfer],
    *,
    message_id: str,
    created_at: datetime,
    execution_date: date,
) -> bytes:
    """A pain.001 file for these transfers, validated against the XSD sepaxml ships."""
    debtor: dict[str, Any] = {
        "name": config.debtor_name,
        "IBAN": config.debtor_iban,
        "batch": config.batch_booking,
        "currency": SEPA_CURRENCY,
    }
    if config.debtor_bic:
        debtor["BIC"] = config.debtor_bic
    document = _Pain001(
        debtor,
        schema=config.pain_version,
        message_id=message_id,
        created_at=created_at,
        party_id=config.initiating_party_id,
    )
    for transfer in transfers:
        payment: dict[str, Any] = {
            "name": transfer.creditor_name,
            "IBAN": transfer.creditor_iban,
            "amount": transfer.amount_minor,  # sepaxml takes cents and writes 12.34
            "execution_date": execution_date,
            "description": transfer.remittance,
            "endtoend_id": transfer.end_to_end_id,
        }
        if transfer.creditor_bic:
            payment["BIC"] = transfer.creditor_bic
        document.add_payment(payment)
    content: bytes = document.export(validate=True)  # raises if the XSD refuses it
    check_amounts(content)
    return content


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def check_amounts(content: bytes) -> None:
    """SEPA's rule the XSD does not enforce: every amount has exactly two decimals."""
    root = SafeET.fromstring(content)
    for element in root.iter():
        if _local(element.tag) in ("InstdAmt", "CtrlSum"):
            text = (element.text or "").strip()
            if not _TWO_DECIMALS.match(text):
                raise ValueError(f"{_local(element.tag)} {text!r} does not have two decimals")


@dataclass(frozen=True, slots=True)
class WrittenFile:
    tenant_id: str
    account: str
    message_id: str
    path: Path
    count: int
    control_sum_minor: int
    currency: str
    sent_at: datetime  # when its transfers were sent: the bank pays 1-2 business days later
    idempotency_keys: tuple[str, ...]  # of its transfers, to find their payouts
    recovered: bool = False  # decided by an earlier run that stopped before writing it


@dataclass
class WriteReport:
    files: list[WrittenFile] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # tenant, account, why


def _atomic_write(path: Path, content: bytes) -> None:
    """Write content under path so that readers see either nothing or all of it."""
    if path.exists() and path.read_bytes() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def _materialize(db: Database, clock: Clock, file: BankFile, *, recovered: bool) -> WrittenFile:
    path = Path(file.path)
    _atomic_write(path, file.content)
    with db.write() as session:
        session.execute(
            update(BankFile)
            .where(BankFile.tenant_id == file.tenant_id, BankFile.id == file.id)
            .values(written_at=clock.now())
        )
        keys = session.scalars(
            select(BankTransfer.idempotency_key)
            .where(BankTransfer.tenant_id == file.tenant_id, BankTransfer.file_id == file.id)
            .order_by(BankTransfer.id)
        )
        return WrittenFile(
            tenant_id=file.tenant_id,
            account=file.account,
            message_id=file.message_id,
            path=path,
            count=file.count,
            control_sum_minor=file.control_sum_minor,
            currency=file.currency,
            sent_at=file.created_at,
            idempotency_keys=tuple(keys),
            recovered=recovered,
        )


def _decide_file(
    db: Database,
    clock: Clock,
    outbox_dir: Path,
    tenant_id: str,
    account: str,
    config: BankTransferConfig,
) -> BankFile | None:
    """Put the account's queued transfers in a new file row and mark them sent: one commit."""
    with db.write() as session:
        transfers = list(
            session.scalars(
                select(BankTransfer)
                .where(
                    BankTransfer.tenant_id == tenant_id,
                    BankTransfer.account == account,
                    BankTransfer.status == TransferStatus.QUEUED,
                )
                .order_by(BankTransfer.created_at, BankTransfer.id)
                .limit(MAX_TRANSFERS_PER_FILE)
                .with_for_update(skip_locked=True)
            )
        )
        if not transfers:
            return None
        now = clock.now()
        message_id = f"RD{new_id()}"  # 28 characters of the SEPA set, unique per debtor
        content = render_pain001(
            config, transfers, message_id=message_id, created_at=now, execution_date=now.date()
        )
        file = BankFile(
            tenant_id=tenant_id,
            id=new_id(),
            account=account,
            message_id=message_id,
            pain_version=config.pain_version,
            path=str(outbox_dir / tenant_id / f"{message_id}.xml"),
            count=len(transfers),
            control_sum_minor=sum(t.amount_minor for t in transfers),
            currency=SEPA_CURRENCY,
            content=content,
            created_at=now,
            written_at=None,
        )
        session.add(file)
        session.flush()
        for transfer in transfers:
            transfer.status = TransferStatus.SENT
            transfer.file_id = file.id
            transfer.sent_at = now
            transfer.updated_at = now
        return file


def bank_accounts(
    session: Session, *, tenant_id: str | None = None
) -> dict[tuple[str, str], BankTransferConfig]:
    """Every tenant's bank_transfer gateway account and its config, by (tenant, account)."""
    from refunddesk.payouts.orm import GatewayAccount

    query = select(GatewayAccount).where(GatewayAccount.provider == PROVIDER)
    if tenant_id is not None:
        query = query.where(GatewayAccount.tenant_id == tenant_id)
    return {
        (a.tenant_id, a.name): BankTransferConfig.model_validate(a.config)
        for a in session.scalars(query.order_by(GatewayAccount.tenant_id, GatewayAccount.name))
    }


def write_files(
    *,
    db: Database,
    clock: Clock,
    outbox_dir: Path,
    accounts: Mapping[tuple[str, str], BankTransferConfig] | None = None,
    tenant_id: str | None = None,
    on_file: Callable[[WrittenFile], None] | None = None,
) -> WriteReport:
    """Write one pain.001 file per account with queued transfers to outbox_dir/<tenant>/.

    accounts: the debtor configs by (tenant id, gateway account name); None reads every
    bank_transfer account from gateway_accounts (of tenant_id only, if given). Files that an
    earlier run decided but did not write are written first. One account's error is
    reported in the report's errors and does not stop the others.
    """
    report = WriteReport()
    with db.read() as session:
        unwritten = select(BankFile).where(BankFile.written_at.is_(None))
        if tenant_id is not None:
            unwritten = unwritten.where(BankFile.tenant_id == tenant_id)
        pending = list(session.scalars(unwritten.order_by(BankFile.created_at)))
        if accounts is None:
            accounts = bank_accounts(session, tenant_id=tenant_id)
    for file in pending:
        _collect(report, on_file, file.tenant_id, file.account, db, clock, file, recovered=True)
    for (tenant, account), config in accounts.items():
        if tenant_id is not None and tenant != tenant_id:
            continue
        while True:
            try:
                decided = _decide_file(db, clock, outbox_dir, tenant, account, config)
            except Exception as exc:
                log.exception("bank file for %s/%s could not be made", tenant, account)
                report.errors.append((tenant, account, str(exc) or repr(exc)))
                break
            if decided is None:
                break
            _collect(report, on_file, tenant, account, db, clock, decided, recovered=False)
            if decided.count < MAX_TRANSFERS_PER_FILE:
                break
    return report


def _collect(
    report: WriteReport,
    on_file: Callable[[WrittenFile], None] | None,
    tenant: str,
    account: str,
    db: Database,
    clock: Clock,
    file: BankFile,
    *,
    recovered: bool,
) -> None:
    try:
        written = _materialize(db, clock, file, recovered=recovered)
    except OSError as exc:  # the next run writes it again: the row keeps its bytes
        log.exception("bank file %s could not be written", file.message_id)
        report.errors.append((tenant, account, f"{file.message_id}: {exc}"))
        return
    report.files.append(written)
    if on_file is not None:
        on_file(written)


# ---------------------------------------------------------------------------------------------
# The bank's answer: pain.002 status reports and operators' CSV files

ACCEPTED_CODES = frozenset({"ACCP", "ACSC", "ACSP", "ACWC", "ACCC", "ACWP"})
PENDING_CODES = frozenset({"PDNG", "ACTC", "RCVD", "PART"})
REJECTED_CODES = frozenset({"RJCT"})
_CSV_WORDS = {
    "accepted": "ACCP",
    "confirmed": "ACSC",
    "settled": "ACSC",
    "paid": "ACSC",
    "rejected": "RJCT",
    "returned": "RJCT",
    "pending": "PDNG",
}

# ISO 20022 ExternalStatusReason1Code values banks use for SEPA credit transfers.
REASON_CODES: dict[str, tuple[FailureReason, str]] = {
    "AC01": (FailureReason.INVALID_ACCOUNT, "incorrect account number"),
    "AC03": (FailureReason.INVALID_ACCOUNT, "invalid creditor account number"),
    "AC04": (FailureReason.INVALID_ACCOUNT, "account closed"),
    "AC06": (FailureReason.INVALID_ACCOUNT, "account blocked"),
    "AC13": (FailureReason.DECLINED, "invalid debtor account type"),
    "AG01": (FailureReason.DECLINED, "transaction forbidden on this account"),
    "AG02": (FailureReason.DECLINED, "invalid bank operation code"),
    "AM01": (FailureReason.DECLINED, "zero amount"),
    "AM02": (FailureReason.DECLINED, "amount not allowed"),
    "AM04": (FailureReason.INSUFFICIENT_FUNDS, "insufficient funds on the debtor account"),
    "AM05": (FailureReason.ALREADY_REFUNDED, "duplicate payment"),
    "AM09": (FailureReason.DECLINED, "wrong amount"),
    "BE04": (FailureReason.INVALID_ACCOUNT, "creditor address missing"),
    "BE05": (FailureReason.DECLINED, "initiating party not recognised"),
    "CNOR": (FailureReason.INVALID_ACCOUNT, "the creditor's bank is not reachable for SEPA"),
    "CURR": (FailureReason.CURRENCY_NOT_SUPPORTED, "incorrect currency"),
    "DNOR": (FailureReason.DECLINED, "the debtor's bank is not registered"),
    "DUPL": (FailureReason.ALREADY_REFUNDED, "duplicate payment"),
    "FF01": (FailureReason.DECLINED, "invalid file format"),
    "MD07": (FailureReason.INVALID_ACCOUNT, "account holder deceased"),
    "MS02": (FailureReason.DECLINED, "refused by the creditor"),
    "MS03": (FailureReason.DECLINED, "refused by the bank, no reason given"),
    "RC01": (FailureReason.INVALID_ACCOUNT, "bank identifier (BIC) incorrect"),
    "RR01": (FailureReason.DECLINED, "regulatory: debtor account or identification missing"),
    "RR02": (FailureReason.DECLINED, "regulatory: debtor name or address missing"),
    "RR03": (FailureReason.DECLINED, "regulatory: creditor name or address missing"),
    "RR04": (FailureReason.DECLINED, "regulatory reason"),
    "TM01": (FailureReason.DECLINED, "received after the bank's cut-off time"),
}


def failure_for(code: str | None, text: str | None) -> tuple[FailureReason, str]:
    """Our failure reason and an agent's message for a bank's reason code (and its words)."""
    known = REASON_CODES.get((code or "").upper())
    extra = f" ({text})" if text else ""
    if known is not None:
        return known[0], f"{(code or '').upper()}: {known[1]}{extra}"
    if code:
        return FailureReason.UNKNOWN, f"{code}: rejected by the bank{extra}"
    return FailureReason.UNKNOWN, f"rejected by the bank{extra}" if text else "rejected by the bank"


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One status a report gives: for a transaction, or (end_to_end_id None) a whole file."""

    status: str  # the bank's code, upper case: ACSC, RJCT, ...
    end_to_end_id: str | None = None
    original_message_id: str | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    line: int | None = None  # CSV line number


@dataclass(frozen=True, slots=True)
class StatusReport:
    source: Literal["pain.002", "csv"]
    message_id: str | None  # the report's own id (pain.002 only)
    lines: list[StatusLine]
    bad_rows: list[str]  # what could not be read, with where


def _children(element: Element, name: str) -> list[Element]:
    return [c for c in element if _local(c.tag) == name]


def _child_text(element: Element, *path: str) -> str | None:
    current: Element | None = element
    for name in path:
        if current is None:
            return None
        current = next(iter(_children(current, name)), None)
    if current is None or current.text is None:
        return None
    return current.text.strip() or None


def _reason(element: Element) -> tuple[str | None, str | None]:
    info = next(iter(_children(element, "StsRsnInf")), None)
    if info is None:
        return None, None
    code = _child_text(info, "Rsn", "Cd") or _child_text(info, "Rsn", "Prtry")
    texts = [(c.text or "").strip() for c in _children(info, "AddtlInf") if (c.text or "").strip()]
    return code, " ".join(texts) or None


def parse_pain002(data: bytes) -> StatusReport:
    """Read a pain.002 customer payment status report (any version; untrusted XML)."""
    try:
        root = SafeET.fromstring(data)
    except SafeET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    report = root if _local(root.tag) == "CstmrPmtStsRpt" else next(iter(root), None)
    if report is None or _local(report.tag) != "CstmrPmtStsRpt":
        raise ValueError("not a pain.002 status report (no CstmrPmtStsRpt)")
    message_id = _child_text(report, "GrpHdr", "MsgId")
    group = next(iter(_children(report, "OrgnlGrpInfAndSts")), None)
    original = _child_text(group, "OrgnlMsgId") if group is not None else None
    lines: list[StatusLine] = []
    bad: list[str] = []
    for payment in _children(report, "OrgnlPmtInfAndSts"):
        for tx in _children(payment, "TxInfAndSts"):
            e2e = _child_text(tx, "OrgnlEndToEndId")
            status = (_child_text(tx, "TxSts") or "").upper()
            if not e2e or not status:
                bad.append(f"a transaction status without OrgnlEndToEndId or TxSts: {e2e!r}")
                continue
            code, text = _reason(tx)
            # Reports may give the reason on the payment information rather than per transaction.
            if code is None and text is None:
                code, text = _reason(payment)
            lines.append(StatusLine(status, e2e, original, code, text))
        if not _children(payment, "TxInfAndSts") and _child_text(payment, "PmtInfSts"):
            bad.append(
                f"payment information {_child_text(payment, 'OrgnlPmtInfId')!r} has status "
                f"{_child_text(payment, 'PmtInfSts')} without transactions; not applied"
            )
    group_status = (_child_text(group, "GrpSts") or "").upper() if group is not None else ""
    if not lines and group_status and group_status != "PART":
        if original is None:
            bad.append("a group status without OrgnlMsgId")
        else:
            code, text = _reason(group) if group is not None else (None, None)
            lines.append(StatusLine(group_status, None, original, code, text))
    return StatusReport("pain.002", message_id, lines, bad)


def parse_status_csv(text: str) -> StatusReport:
    """Read an operator's CSV: end_to_end_id,status,reason (status: a code or a word)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = {(f or "").strip().lower() for f in reader.fieldnames or []}
    if not {"end_to_end_id", "status"} <= fields:
        raise ValueError("the CSV needs a header row with end_to_end_id,status[,reason]")
    lines: list[StatusLine] = []
    bad: list[str] = []
    for row in reader:
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
        where = reader.line_num
        e2e, raw = values.get("end_to_end_id", ""), values.get("status", "")
        status = _CSV_WORDS.get(raw.lower(), raw.upper())
        if not e2e:
            bad.append(f"line {where}: no end_to_end_id")
            continue
        if status not in ACCEPTED_CODES | PENDING_CODES | REJECTED_CODES:
            bad.append(f"line {where}: unknown status {raw!r} for {e2e}")
            continue
        reason = values.get("reason") or None
        code = reason.upper() if reason and reason.upper() in REASON_CODES else None
        lines.append(StatusLine(status, e2e, None, code, None if code else reason, where))
    return StatusReport("csv", None, lines, bad)


def parse_status(data: bytes) -> StatusReport:
    """A pain.002 report if the data is XML, else an operator's CSV."""
    text = data.decode("utf-8-sig")
    if text.lstrip().startswith("<"):
        return parse_pain002(data)
    return parse_status_csv(text)


@dataclass
class ImportReport:
    """What an import did, transaction by transaction."""

    message_id: str | None = None
    confirmed: list[str] = field(default_factory=list)  # end-to-end ids newly confirmed
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (e2e id, message)
    unchanged: list[str] = field(default_factory=list)  # already so: reported again
    pending: list[str] = field(default_factory=list)  # an intermediate status: nothing to do
    unknown: list[str] = field(default_factory=list)  # no transfer of this tenant has it
    errors: list[str] = field(default_factory=list)  # rows not read, conflicting statuses
    notifications: list[GatewayNotification] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "confirmed": self.confirmed,
            "rejected": [{"end_to_end_id": e, "reason": m} for e, m in self.rejected],
            "unchanged": self.unchanged,
            "pending": self.pending,
            "unknown": self.unknown,
            "errors": self.errors,
            "notifications": [
                {
                    "event_id": n.event_id,
                    "kind": str(n.kind),
                    "gateway_reference": n.gateway_reference,
                    "idempotency_key": n.idempotency_key,
                    "failure_reason": n.failure_reason and str(n.failure_reason),
                    "failure_message": n.failure_message,
                }
                for n in self.notifications
            ],
        }


def _notification(
    transfer: BankTransfer, message_id: str, kind: NotificationKind, type_: str, now: datetime
) -> GatewayNotification:
    state = transfer.status
    return GatewayNotification(
        event_id=f"{message_id}:{transfer.end_to_end_id}:{state}",
        type=type_,
        kind=kind,
        gateway_reference=transfer.end_to_end_id,
        idempotency_key=transfer.idempotency_key,
        failure_reason=(
            FailureReason(transfer.failure_reason) if transfer.failure_reason else None
        ),
        failure_message=transfer.failure_message,
        occurred_at=transfer.decided_at or now,
    )


def _apply_line(
    report: ImportReport,
    transfer: BankTransfer,
    file: BankFile,
    line: StatusLine,
    source: str,
    now: datetime,
) -> None:
    e2e = transfer.end_to_end_id
    if transfer.status == TransferStatus.QUEUED:
        report.errors.append(f"{e2e} has a status ({line.status}) but was never sent")
        return
    if line.status in PENDING_CODES:
        report.pending.append(e2e)
        return
    type_ = f"{source}:{line.status}"
    if line.status in ACCEPTED_CODES:
        if transfer.status == TransferStatus.REJECTED:
            report.errors.append(f"{e2e} was rejected before; {line.status} changes nothing")
            return
        if transfer.status == TransferStatus.CONFIRMED:
            report.unchanged.append(e2e)
        else:
            transfer.status = TransferStatus.CONFIRMED
            transfer.bank_status = line.status
            transfer.decided_at = transfer.updated_at = now
            report.confirmed.append(e2e)
        kind = NotificationKind.SUCCEEDED
    else:
        was_confirmed = transfer.status == TransferStatus.CONFIRMED
        if transfer.status == TransferStatus.REJECTED:
            report.unchanged.append(e2e)
        else:
            reason, message = failure_for(line.reason_code, line.reason_text)
            transfer.status = TransferStatus.REJECTED
            transfer.bank_status = line.status
            transfer.failure_reason = str(reason)
            transfer.failure_message = message
            transfer.decided_at = transfer.updated_at = now
            report.rejected.append((e2e, message))
        # A rejection after an acceptance takes back what was counted as paid.
        kind = NotificationKind.REVERSED if was_confirmed else NotificationKind.FAILED
    report.notifications.append(_notification(transfer, file.message_id, kind, type_, now))


def import_status(
    *,
    db: Database,
    clock: Clock,
    tenant_id: str,
    data: bytes,
    apply: Callable[[str, list[GatewayNotification]], object] | None = None,
) -> ImportReport:
    """Mark a tenant's transfers confirmed or rejected from a bank status report or CSV.

    Returns what changed and one GatewayNotification per transaction the report settles
    (also for ones settled by an earlier import: applying them is idempotent by event id).
    The transfers are committed first; then apply(tenant_id, notifications) is called, so
    that if it fails, importing the same report again delivers the same notifications.
    Raises ValueError if the data is neither a pain.002 report nor a status CSV.
    """
    parsed = parse_status(data)
    source = parsed.source
    report = ImportReport(message_id=parsed.message_id, errors=list(parsed.bad_rows))
    now = clock.now()
    with db.write() as session:
        by_e2e, files = _load(session, tenant_id, parsed.lines)
        for line in parsed.lines:
            if line.end_to_end_id is None:
                file = _file_by_message(session, tenant_id, line.original_message_id)
                if file is None:
                    report.unknown.append(f"file {line.original_message_id}")
                    continue
                for transfer in session.scalars(
                    select(BankTransfer)
                    .where(BankTransfer.tenant_id == tenant_id, BankTransfer.file_id == file.id)
                    .order_by(BankTransfer.id)
                    .with_for_update()
                ):
                    _apply_line(report, transfer, file, line, source, now)
                continue
            found = by_e2e.get(line.end_to_end_id)
            if found is None:
                report.unknown.append(line.end_to_end_id)
                continue
            if found.file_id is None:
                report.errors.append(f"{line.end_to_end_id} has a status but was never sent")
                continue
            sent_in = files[found.file_id]
            if line.original_message_id and line.original_message_id != sent_in.message_id:
                report.errors.append(
                    f"{line.end_to_end_id} was sent in {sent_in.message_id}, "
                    f"not {line.original_message_id}"
                )
                continue
            _apply_line(report, found, sent_in, line, source, now)
    if apply is not None and report.notifications:
        apply(tenant_id, list(report.notifications))
    return report


def _load(
    session: Session, tenant_id: str, lines: Iterable[StatusLine]
) -> tuple[dict[str, BankTransfer], dict[str, BankFile]]:
    ids = sorted({line.end_to_end_id for line in lines if line.end_to_end_id})
    transfers: dict[str, BankTransfer] = {}
    for start in range(0, len(ids), 500):
        for transfer in session.scalars(
            select(BankTransfer)
            .where(
                BankTransfer.tenant_id == tenant_id,
                BankTransfer.end_to_end_id.in_(ids[start : start + 500]),
            )
            .order_by(BankTransfer.id)
            .with_for_update()
        ):
            transfers[transfer.end_to_end_id] = transfer
    file_ids = sorted({t.file_id for t in transfers.values() if t.file_id})
    files = {
        f.id: f
        for f in session.scalars(
            select(BankFile).where(BankFile.tenant_id == tenant_id, BankFile.id.in_(file_ids))
        )
    }
    return transfers, files


def _file_by_message(session: Session, tenant_id: str, message_id: str | None) -> BankFile | None:
    if message_id is None:
        return None
    return session.scalar(
        select(BankFile).where(BankFile.tenant_id == tenant_id, BankFile.message_id == message_id)
    )
