"""The composition root: the one place that wires real (or fake) adapters together."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from refunddesk.auth.service import KeyAuthenticator
from refunddesk.core.clock import Clock, SystemClock
from refunddesk.db.engine import make_engine
from refunddesk.db.uow import Database
from refunddesk.escalation import wiring as escalation_wiring
from refunddesk.jobs.worker import Handler, Periodic, Worker, WorkerConfig
from refunddesk.notifications import wiring as notifications
from refunddesk.payouts.bank import WriteReport, WrittenFile, write_files
from refunddesk.payouts.gateways import adyen, bank_transfer, paypal, sandbox, stripe
from refunddesk.payouts.gateways.base import Gateway, GatewayFactory, GatewayRegistry
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.payouts.service import PayoutHandler
from refunddesk.payouts.settle import bank_file_sent
from refunddesk.payouts.store_credit import build as store_credit_gateway
from refunddesk.payouts.sync import sync_payouts
from refunddesk.payouts.webhooks import WebhookHandler
from refunddesk.refunds.service import IntakeConfig
from refunddesk.returns.jobs import EXPIRY_INTERVAL_SECONDS, expire_overdue
from refunddesk.settings import Settings, get_settings
from refunddesk.webhooks_out.sender import DeliveryHandler

# SQLite's planner statistics age as tables grow; ANALYZE is sampled, so this is cheap.
STATISTICS_INTERVAL_SECONDS = 600.0


@dataclass
class Container:
    settings: Settings
    db: Database
    clock: Clock
    gateways: GatewayRegistry
    authenticator: KeyAuthenticator
    intake: IntakeConfig
    secret_key: str
    # Each provider's account settings model, to check a tenant's config before it is saved.
    gateway_configs: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    handlers: list[Handler] = field(default_factory=list)
    periodic: list[Periodic] = field(default_factory=list)

    def worker(self, name: str | None = None) -> Worker:
        s = self.settings
        return Worker(
            db=self.db,
            clock=self.clock,
            handlers=self.handlers,
            name=name,
            periodic=self.periodic,
            config=WorkerConfig(
                batch_size=s.worker_batch_size,
                poll_seconds=s.worker_poll_seconds,
                lease_seconds=s.worker_lease_seconds,
                backoff_base_seconds=s.job_backoff_base_seconds,
                backoff_max_seconds=s.job_backoff_max_seconds,
                batches_in_flight=s.worker_batches_in_flight,
            ),
        )

    def close(self) -> None:
        self.gateways.close()
        for handler in self.handlers:
            close = getattr(handler, "close", None)
            if close is not None:
                close()
        self.db.dispose()


def write_bank_files(db: Database, clock: Clock, outbox_dir: Path) -> WriteReport:
    """Write the SEPA files for queued bank transfers; their payouts learn when they arrive."""

    def sent(file: WrittenFile) -> None:
        bank_file_sent(
            db,
            tenant_id=file.tenant_id,
            idempotency_keys=file.idempotency_keys,
            sent_at=file.sent_at,
        )

    return write_files(db=db, clock=clock, outbox_dir=outbox_dir, on_file=sent)


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    gateways: list[Gateway] | None = None,
) -> Container:
    """Build the application's object graph from settings; tests pass fakes for the ports."""
    settings = settings or get_settings()
    clock = clock or SystemClock()
    db = Database(make_engine(settings))
    desk_wide: list[Gateway] = [
        SandboxGateway(
            latency_ms=settings.sandbox_latency_ms,
            failure_rate=settings.sandbox_failure_rate,
            error_rate=settings.sandbox_error_rate,
        )
    ]
    if gateways is not None:  # tests and demos bring their own desk-wide gateways
        desk_wide = list(gateways)
    if not any(g.name == "store_credit" for g in desk_wide):
        desk_wide.append(store_credit_gateway(db=db, clock=clock))
    factories: dict[str, GatewayFactory] = {
        "stripe": stripe.build,
        "adyen": adyen.build,
        "paypal": paypal.build,
        "sandbox": sandbox.build,
        "bank_transfer": bank_transfer.factory(
            db=db, clock=clock, outbox_dir=Path(settings.bank_outbox_dir)
        ),
    }
    registry = GatewayRegistry(desk_wide, factories=factories)
    container = Container(
        settings=settings,
        db=db,
        clock=clock,
        gateways=registry,
        authenticator=KeyAuthenticator(cache_seconds=settings.api_key_cache_seconds),
        intake=IntakeConfig(
            job_max_attempts=settings.job_max_attempts, fraud_scoring=settings.fraud_scoring
        ),
        secret_key=settings.secret_key or secrets.token_urlsafe(32),
        gateway_configs={
            "stripe": stripe.StripeConfig,
            "adyen": adyen.AdyenConfig,
            "paypal": paypal.PayPalConfig,
            "sandbox": sandbox.SandboxConfig,
            "bank_transfer": bank_transfer.BankTransferConfig,
        },
    )
    container.handlers.append(
        PayoutHandler(
            db=db, clock=clock, gateways=registry, concurrency=settings.worker_concurrency
        )
    )
    container.handlers.append(
        WebhookHandler(db=db, clock=clock, max_attempts=settings.job_max_attempts)
    )
    container.handlers.append(
        DeliveryHandler(
            db=db,
            clock=clock,
            timeout_seconds=settings.webhook_timeout_seconds,
            disable_after=timedelta(hours=settings.webhook_disable_after_hours),
            allow_private=settings.webhook_allow_private_urls,
            concurrency=settings.worker_concurrency,
            max_attempts=settings.job_max_attempts,
        )
    )
    container.periodic.append(
        Periodic(
            settings.bank_file_interval_seconds,
            lambda: write_bank_files(db, clock, Path(settings.bank_outbox_dir)),
            "write SEPA files for queued bank transfers",
        )
    )
    container.periodic.append(
        Periodic(
            settings.payout_sync_interval_seconds,
            lambda: sync_payouts(
                db=db,
                clock=clock,
                gateways=registry,
                pending_after=timedelta(seconds=settings.payout_sync_pending_after_seconds),
                sent_after=timedelta(seconds=settings.payout_sync_sent_after_seconds),
            ),
            "ask gateways about unanswered payouts",
        )
    )
    container.periodic.append(
        Periodic(
            EXPIRY_INTERVAL_SECONDS,
            lambda: expire_overdue(db=db, clock=clock),
            "expire overdue returns",
        )
    )
    if db.is_sqlite:
        container.periodic.append(
            Periodic(
                STATISTICS_INTERVAL_SECONDS,
                db.refresh_statistics,
                "refresh SQLite's query planner statistics",
            )
        )
    notifications.install(container)
    escalation_wiring.install(container)
    return container
