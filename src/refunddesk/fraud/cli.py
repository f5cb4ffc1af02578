"""`refunddesk fraud ...`: simulate, train, evaluate and score."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Fraud detection: simulator, model training, evaluation, scoring.", no_args_is_help=True
)

# The learned model's commands (refunddesk.fraud.model_cli): simulate, train, evaluate, models.
from refunddesk.fraud import model_cli  # noqa: E402

app.command("simulate")(model_cli.simulate)
app.command("train")(model_cli.train)
app.command("evaluate")(model_cli.evaluate)
app.command("models")(model_cli.models)

# Batch rescoring of open refunds (refunddesk.fraud.score_cli).
from refunddesk.fraud import score_cli  # noqa: E402

app.command("score")(score_cli.score)
