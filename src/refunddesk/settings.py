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
    # Fraud risk scoring at intake (refunddesk.fraud); off only to measure what it costs.
    fraud_scoring: bool = True

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

    # Retailer webhooks: per-attempt timeout, auto-disable after failing every delivery this
    # long, and (tests, trusted networks) allowing endpoints on private/loopback addresses.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_disable_after_hours: float = Field(default=72.0, gt=0)
    webhook_allow_private_urls: bool = False

    # The customer portal: photo uploads (JPEG, PNG, WebP; at most 5 per request) and the
    # rate limits on identification and refund requests, per client IP and per order number.
    # Rate-limit counters live in one process's memory unless a shared store is given
    # (redis://host:6379, memcached://host:11211): several processes need one.
    upload_dir: str = "./uploads"
    upload_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    rate_limit_storage: str = "memory://"
    portal_lookup_limit: str = "10/minute;50/hour"
    portal_request_limit: str = "20/hour"
    # Console sign-in: failed attempts allowed per account and per client IP (then refused
    # until the window moves on); successful sign-ins do not count.
    login_failure_limit: str = "5/minute;20/hour"
    login_failure_ip_limit: str = "30/minute;200/hour"
    # Session cookies only over HTTPS (set it behind TLS; off for plain-HTTP local runs).
    session_https_only: bool = False

    # Customer notifications: the dispatcher turns new refund events into messages every
    # interval; a delay alert is sent once for a refund past its expected date.
    dispatch_interval_seconds: float = Field(default=1.0, gt=0)
    dispatch_batch_size: int = Field(default=500, ge=1, le=5000)
    delay_alert_interval_seconds: float = Field(default=3600.0, gt=0)
    # How often the worker runs the escalation scan (SLA near-breach, breach, rules).
    escalation_scan_interval_seconds: float = Field(default=60.0, gt=0)
    # Email over SMTP; no host: email is off and email messages are stored as skipped.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "refunds@refunddesk.invalid"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # SMTP sessions one batch of emails is spread over, side by side.
    smtp_connections: int = Field(default=4, ge=1, le=32)
    # SMS through a Twilio-compatible API; no base URL or account: SMS is off (skipped).
    sms_base_url: str | None = None
    sms_account_sid: str | None = None
    sms_auth_token: str | None = None
    sms_from: str | None = None
    sms_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

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
