"""One typed Settings object, read from REFUNDDESK_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of refunddesk; the README lists each with its default."""

    model_config = SettingsConfigDict(env_prefix="REFUNDDESK_", extra="ignore")

    database_url: str = "sqlite:///./refunddesk.db"
    # FULL makes every acknowledged SQLite commit survive power loss; NORMAL survives crashes only.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    db_pool_size: int = Field(default=20, ge=1)

    secret_key: str | None = None  # signs session cookies; a random one per process if unset
    # The address customers reach this desk at, for links sent to them.
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_threads: int = Field(default=40, ge=1, le=1000)

    api_key_cache_seconds: float = Field(default=10.0, ge=0)

    worker_batch_size: int = Field(default=200, ge=1, le=5000)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    worker_lease_seconds: float = Field(default=60.0, gt=0)
    # Batches a worker keeps under way at once: one at the gateway while the next is prepared.
    worker_batches_in_flight: int = Field(default=2, ge=1, le=16)
    worker_concurrency: int = Field(default=128, ge=1, le=512)
    job_max_attempts: int = Field(default=8, ge=1)
    job_backoff_base_seconds: float = Field(default=2.0, gt=0)
    job_backoff_max_seconds: float = Field(default=3600.0, gt=0)

    # Payouts without a final answer: the sync job asks the gateway after these many seconds
    # (pending: accepted, answer to come; sent: no answer at all), every interval; the desk
    # page calls a payout stuck after payout_stuck_after_seconds.
    payout_sync_interval_seconds: float = Field(default=300.0, gt=0)
    payout_sync_pending_after_seconds: float = Field(default=900.0, ge=0)
    payout_sync_sent_after_seconds: float = Field(default=7200.0, ge=0)
    payout_stuck_after_seconds: float = Field(default=86400.0, ge=0)
    # Where SEPA credit transfer files (pain.001) are written for the bank to pick up.
    bank_outbox_dir: str = "./outbox/bank"
    bank_file_interval_seconds: float = Field(default=3600.0, gt=0)

    sandbox_latency_ms: float = Field(default=0.0, ge=0)
    sandbox_failure_rate: float = Field(default=0.0, ge=0, le=1)
    sandbox_error_rate: float = Field(default=0.0, ge=0, le=1)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
