"""`refunddesk fraud simulate | train | evaluate | models`, run as the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.test_cli import count_rows, make_tenant, run, run_json

pytestmark = pytest.mark.slow


def test_simulate_train_evaluate_and_list_models_as_json(sqlite_url: str, tmp_path: Path) -> None:
    # given a dedicated simulator tenant with months of simulated refunds and labels
    sim = run_json(sqlite_url, "fraud", "simulate", "--new-tenant", "Sim", "--orders", "9000")
    tenant = sim["tenant_id"]
    assert sim["refunds"] == count_rows(sqlite_url, "refunds") > 1000
    assert sim["labels"] == count_rows(sqlite_url, "fraud_labels")
    assert set(sim["refunds_by_pattern"]) > {"legit", "empty_box", "linked_account_ring"}
    assert count_rows(sqlite_url, "jobs") == 0  # nothing will be paid out

    # when the active (cold-start) model is evaluated
    picture = tmp_path / "eval.png"
    ev = run_json(sqlite_url, "fraud", "evaluate", "--tenant", tenant, "--picture", str(picture))
    # then its metrics come as JSON and the picture is a PNG
    assert ev["model_version"].startswith("cold-start-")
    for key in ("roc_auc", "value_caught_at_review_rate", "honest_customer_fpr_at_review_rate"):
        assert 0 <= ev["metrics"][key] <= 1
    with Image.open(picture) as image:
        assert image.format == "PNG"

    # when a model is trained from the tenant's labels
    trained = run_json(sqlite_url, "fraud", "train", "--tenant", tenant)
    # then both models were measured on the same hold-out, and stored only if better
    assert trained["incumbent_version"] == ev["model_version"]
    assert trained["holdout_rows"] > 0
    assert trained["incumbent"]["refunds"] == trained["candidate"]["refunds"]
    listed = run_json(sqlite_url, "fraud", "models", "--tenant", tenant)
    assert len(listed["models"]) == (1 if trained["promoted"] else 0)
    if trained["promoted"]:
        assert listed["models"][0]["active"] is True
        assert listed["models"][0]["name"] == trained["model_version"]


def test_human_output_and_refusals(sqlite_url: str, tmp_path: Path) -> None:
    tenant = make_tenant(sqlite_url)
    # A tenant with nothing labelled: training refuses, evaluating has nothing to measure.
    refused = run(sqlite_url, "fraud", "train", "--tenant", tenant.id, "--json", expect=2)
    assert json.loads(refused.stdout)["field"] == "tenant"
    run(sqlite_url, "fraud", "evaluate", "--tenant", tenant.id, expect=2)
    # Simulating into a tenant that has orders needs --force (its reports would mix).
    run(sqlite_url, "fraud", "simulate", "--tenant", tenant.id, "--orders", "1500")
    again = run(
        sqlite_url, "fraud", "simulate", "--tenant", tenant.id, "--orders", "1500", expect=2
    )
    assert "--new-tenant" in again.stderr
    shown = run(sqlite_url, "fraud", "models", "--tenant", tenant.id)
    assert "cold-start" in shown.stdout
    run(sqlite_url, "fraud", "simulate", "--orders", "10", expect=2)  # no tenant named
