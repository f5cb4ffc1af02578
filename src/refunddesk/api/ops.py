"""Health and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from refunddesk.api.deps import ContainerDep
from refunddesk.bootstrap import Container
from refunddesk.jobs import queue

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="healthz")
def healthz(container: ContainerDep) -> JSONResponse:
    """ok when the database answers."""
    try:
        with container.db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "detail": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ok"})


class QueueCollector(Collector):
    """Queue depth and oldest job age, read from the database at scrape time."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.container.db.read() as session:
            s = queue.stats(session)
        depth = GaugeMetricFamily("refunddesk_job_queue_depth", "Jobs by status", labels=["status"])
        for status, count in (("queued", s.queued), ("running", s.running), ("dead", s.dead)):
            depth.add_metric([status], count)
        yield depth
        age = 0.0
        if s.oldest_queued_at is not None:
            age = max((self.container.clock.now() - s.oldest_queued_at).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            "refunddesk_job_oldest_age_seconds", "Age of the oldest job not yet done", value=age
        )


_collectors: dict[int, QueueCollector] = {}


def register_queue_metrics(container: Container) -> None:
    """One queue collector per process (the newest container wins)."""
    for old in list(_collectors.values()):
        REGISTRY.unregister(old)
    _collectors.clear()
    collector = QueueCollector(container)
    REGISTRY.register(collector)
    _collectors[id(container)] = collector


@router.get("/metrics", operation_id="metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
