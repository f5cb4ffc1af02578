"""The composition root: the one place that wires real (or fake) adapters together."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from refunddesk.auth.service import KeyAuthenticator
from refunddesk.core.clock import Clock, SystemClock
from refunddesk.db.engine import make_engine
from refunddesk.db.uow import Database
from refunddesk.jobs.worker import Handler, Periodic, Worker, WorkerConfig
from refunddesk.payouts.gateways.base import Gateway, GatewayRegistry
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.payouts.service import PayoutHandler
from refunddesk.refunds.service import IntakeConfig
from refunddesk.returns.jobs import EXPIRY_INTERVAL_SECONDS, expire_overdue
from refunddesk.settings import Settings, get_settings


@dataclass
class Container:
    settings: Settings
    db: Database
    clock: Clock
    gateways: GatewayRegistry
    authenticator: KeyAuthenticator
    intake: IntakeConfig
    secret_key: str
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
            ),
        )

    def close(self) -> None:
        for handler in self.handlers:
            close = getattr(handler, "close", None)
            if close is not None:
                close()
        self.db.dispose()


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
    registry = GatewayRegistry(
        gateways
        or [
            SandboxGateway(
                latency_ms=settings.sandbox_latency_ms,
                failure_rate=settings.sandbox_failure_rate,
                error_rate=settings.sandbox_error_rate,
            )
        ],
        default="sandbox",
    )
    container = Container(
        settings=settings,
        db=db,
        clock=clock,
        gateways=registry,
        authenticator=KeyAuthenticator(cache_seconds=settings.api_key_cache_seconds),
        intake=IntakeConfig(job_max_attempts=settings.job_max_attempts),
        secret_key=settings.secret_key or secrets.token_urlsafe(32),
    )
    container.handlers.append(
        PayoutHandler(
            db=db, clock=clock, gateways=registry, concurrency=settings.worker_concurrency
        )
    )
    container.periodic.append(
        Periodic(
            EXPIRY_INTERVAL_SECONDS,
            lambda: expire_overdue(db=db, clock=clock),
            "expire overdue returns",
        )
    )
    return container
