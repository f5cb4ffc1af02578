"""create_app(): the FastAPI application, API and web pages."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI

from refunddesk import __version__
from refunddesk.api import errors
from refunddesk.api.middleware import BodyLimit, Metrics, RefuseNul
from refunddesk.api.ops import register_queue_metrics
from refunddesk.api.ops import router as ops_router
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.escalation.views import router as escalations_router
from refunddesk.fraud.store import cold_start_model
from refunddesk.fraud.views import router as fraud_router
from refunddesk.jobs.views import router as jobs_router
from refunddesk.notifications.views import router as notifications_router
from refunddesk.orders.views import router as orders_router
from refunddesk.payouts.store_credit_views import router as store_credit_router
from refunddesk.payouts.views import router as payouts_router
from refunddesk.policy.views import router as policies_router
from refunddesk.refunds.views import approvals_router
from refunddesk.refunds.views import router as refunds_router
from refunddesk.returns.views import router as returns_router
from refunddesk.tracking.views import router as tracking_router
from refunddesk.web.portal import MAX_PHOTOS, PORTAL_REQUEST_PATH
from refunddesk.web.views import install as install_web
from refunddesk.webhooks_out.views import router as webhook_endpoints_router

log = logging.getLogger(__name__)


def create_app(container: Container | None = None, *, inline_worker: bool = False) -> FastAPI:
    """Build the app around a container; with inline_worker, run a worker thread beside it."""
    container = container or bootstrap()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync endpoints run in anyio's thread pool. On a few cores, dozens of threads that
        # all hop in and out of SQLite (which releases the GIL per call) mostly queue for the
        # GIL; a pool sized to the cores does the same work with less of that convoy.
        anyio.to_thread.current_default_thread_limiter().total_tokens = (
            container.settings.request_threads
        )
        if container.settings.fraud_scoring:
            # Load the fraud model (LightGBM, a second or two) now, not in the first
            # refund request the server takes.
            threading.Thread(
                target=cold_start_model, name="fraud-model-warm-up", daemon=True
            ).start()
        stop = threading.Event()
        thread = None
        if inline_worker:
            worker = container.worker()
            thread = threading.Thread(
                target=worker.run, args=(stop,), name="inline-worker", daemon=True
            )
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=10)

    app = FastAPI(
        title="refunddesk",
        version=__version__,
        lifespan=lifespan,
        description="Refund processing and refund status tracking for BPO refund desks. "
        "Errors are application/problem+json (RFC 9457).",
    )
    app.state.container = container
    errors.install(app)
    for router in (
        ops_router,
        orders_router,
        refunds_router,
        approvals_router,
        tracking_router,
        jobs_router,
    ):
        app.include_router(router)
    app.include_router(policies_router)
    app.include_router(returns_router)
    app.include_router(payouts_router)
    app.include_router(store_credit_router)
    app.include_router(notifications_router)
    app.include_router(webhook_endpoints_router)
    app.include_router(escalations_router)
    app.include_router(fraud_router)
    install_web(app, container)
    register_queue_metrics(container)
    app.add_middleware(RefuseNul)
    settings = container.settings
    # The portal's request form carries up to MAX_PHOTOS photos of upload_max_bytes each.
    photos = MAX_PHOTOS * settings.upload_max_bytes + settings.max_body_bytes
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        larger={PORTAL_REQUEST_PATH: max(photos, settings.max_body_bytes)},
    )
    app.add_middleware(Metrics)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-process serving: settings from the environment."""
    import os

    from refunddesk.logs import configure
    from refunddesk.settings import get_settings

    settings = get_settings()
    configure(settings.log_level, settings.log_format)
    inline = os.environ.get("REFUNDDESK_INLINE_WORKER", "1") not in ("0", "false", "no")
    return create_app(bootstrap(settings), inline_worker=inline)
