"""Import every ORM module so Base.metadata is complete (for Alembic and tests)."""

from refunddesk.auth import orm as auth_orm
from refunddesk.db.base import Base
from refunddesk.jobs import orm as jobs_orm
from refunddesk.orders import orm as orders_orm
from refunddesk.payouts import orm as payouts_orm
from refunddesk.refunds import orm as refunds_orm
from refunddesk.tenants import orm as tenants_orm

__all__ = [
    "Base",
    "auth_orm",
    "jobs_orm",
    "orders_orm",
    "payouts_orm",
    "refunds_orm",
    "tenants_orm",
]
