"""Versioned fraud models per tenant, and the shipped cold-start model behind them.

`active_model` is on the intake path: one indexed lookup of the active version, then the
booster from an in-process cache (parsed once per tenant and version).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, true, update
from sqlalchemy.orm import Session

from refunddesk.core.errors import NotFound
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.fraud.model_orm import FraudModel

if TYPE_CHECKING:
    from refunddesk.fraud.model import LoadedModel

log = logging.getLogger(__name__)

COLD_START_TEXT = "cold_start_model.txt"
COLD_START_META = "cold_start_model.json"
_CACHE_SIZE = 256
_cache: dict[tuple[str, int], LoadedModel] = {}
_lock = threading.Lock()


# On the intake path: a prepared statement skips SQLAlchemy's per-statement cost (db/prepared).
_ACTIVE_VERSION = Prepared(
    select(FraudModel.version).where(
        FraudModel.tenant_id == bindparam("tenant_id"), FraudModel.active == true()
    )
)


def tenant_version(tenant_version_number: int) -> str:
    """How a tenant's model version is named on scores (risk_model_version)."""
    return f"tenant-v{tenant_version_number}"


@cache
def cold_start_model() -> LoadedModel:
    """The desk-wide model trained on the simulator, shipped with the package."""
    from refunddesk.fraud.model import LoadedModel, Thresholds, booster_from_text, fingerprint

    folder = resources.files("refunddesk.fraud")
    text = folder.joinpath(COLD_START_TEXT).read_text(encoding="utf-8")
    meta = json.loads(folder.joinpath(COLD_START_META).read_text(encoding="utf-8"))
    return LoadedModel(
        version=f"cold-start-{fingerprint(text)}",
        feature_names=tuple(meta["feature_names"]),
        booster=booster_from_text(text),
        thresholds=Thresholds(**meta["thresholds"]),
        source="simulator",
        metrics=meta.get("metrics", {}),
    )


def current_feature_names() -> tuple[str, ...]:
    from refunddesk.fraud.features import FEATURE_NAMES

    return tuple(FEATURE_NAMES)


def active_model(session: Session, *, tenant_id: str) -> LoadedModel:
    """The model that scores this tenant's refunds now: its active version, else cold start.

    A stored model whose features are not today's (trained before the features changed)
    is passed over for the cold-start model, which always matches them.
    """
    found = Driver.of(session).first(_ACTIVE_VERSION, {"tenant_id": tenant_id})
    if found is None:
        return cold_start_model()
    version = int(found[0])
    key = (tenant_id, version)
    loaded = _cache.get(key)
    if loaded is None:
        row = session.get(FraudModel, (tenant_id, version))
        if row is None:  # deleted between the two statements
            return cold_start_model()
        loaded = _load(row)
        with _lock:
            if len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[key] = loaded
    if loaded.feature_names != current_feature_names():
        log.warning(
            "fraud model %s of tenant %s has other features than today's; using cold start",
            loaded.version,
            tenant_id,
        )
        return cold_start_model()
    return loaded


def _load(row: FraudModel) -> LoadedModel:
    from refunddesk.fraud.model import LoadedModel, Thresholds, booster_from_text

    return LoadedModel(
        version=tenant_version(row.version),
        feature_names=tuple(row.feature_names),
        booster=booster_from_text(row.model),
        thresholds=Thresholds(**row.thresholds),
        source=row.source,
        metrics=dict(row.metrics),
    )


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def active_record(session: Session, *, tenant_id: str) -> FraudModel | None:
    return session.execute(
        select(FraudModel).where(FraudModel.tenant_id == tenant_id, FraudModel.active.is_(True))
    ).scalar_one_or_none()


def list_models(session: Session, *, tenant_id: str) -> list[FraudModel]:
    """A tenant's stored models, newest first (the model text is not needed for a list)."""
    return list(
        session.execute(
            select(FraudModel)
            .where(FraudModel.tenant_id == tenant_id)
            .order_by(FraudModel.version.desc())
        ).scalars()
    )


def save_model(
    session: Session,
    *,
    tenant_id: str,
    model: LoadedModel,
    source: str,
    actor: str,
    now: datetime,
    activate: bool,
) -> FraudModel:
    """Store a trained model as the tenant's next version; activate it if asked."""
    from refunddesk.fraud.model import fingerprint

    latest = session.execute(
        select(func.max(FraudModel.version)).where(FraudModel.tenant_id == tenant_id)
    ).scalar_one()
    text = model.to_text()
    row = FraudModel(
        tenant_id=tenant_id,
        version=(latest or 0) + 1,
        created_at=now,
        source=source,
        actor=actor,
        fingerprint=fingerprint(text),
        feature_names=list(model.feature_names),
        thresholds=model.thresholds.as_dict(),
        metrics=_jsonable(model.metrics),
        model=text,
        active=False,
    )
    session.add(row)
    session.flush()
    if activate:
        activate_version(session, tenant_id=tenant_id, version=row.version)
    return row


def activate_version(session: Session, *, tenant_id: str, version: int) -> FraudModel:
    """Make one stored version the tenant's active model (the others inactive)."""
    row = session.get(FraudModel, (tenant_id, version))
    if row is None:
        raise NotFound(f"no fraud model version {version}", field="version")
    # Deactivate first: the partial unique index allows one active row per tenant.
    session.execute(
        update(FraudModel)
        .where(FraudModel.tenant_id == tenant_id, FraudModel.active.is_(True))
        .values(active=False)
    )
    session.flush()
    row.active = True
    session.flush()
    return row


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))
