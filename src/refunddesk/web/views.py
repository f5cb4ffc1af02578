"""Web pages (placeholder until the web capability lands)."""

from __future__ import annotations

from fastapi import FastAPI

from refunddesk.bootstrap import Container


def install(app: FastAPI, container: Container) -> None:
    """Mount the web pages on app."""
