"""`refunddesk fraud ...`: simulate, train, evaluate and score."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Fraud detection: simulator, model training, evaluation, scoring.", no_args_is_help=True
)
