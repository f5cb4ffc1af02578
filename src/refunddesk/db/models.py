"""Import every ORM module so Base.metadata is complete (for Alembic and tests)."""

from refunddesk.auth import orm as auth_orm
from refunddesk.console import orm as console_orm
from refunddesk.db.base import Base
from refunddesk.escalation import orm as escalation_orm
from refunddesk.fraud import model_orm as fraud_model_orm
from refunddesk.fraud import orm as fraud_orm
from refunddesk.jobs import orm as jobs_orm
from refunddesk.notifications import orm as notifications_orm
from refunddesk.orders import orm as orders_orm
from refunddesk.payouts import bank as bank_orm
from refunddesk.payouts import disputes as disputes_orm
from refunddesk.payouts import orm as payouts_orm
from refunddesk.payouts import store_credit as store_credit_orm
from refunddesk.policy import orm as policy_orm
from refunddesk.refunds import approvals as approvals_orm
from refunddesk.refunds import orm as refunds_orm
from refunddesk.returns import orm as returns_orm
from refunddesk.sla import orm as sla_orm
from refunddesk.tenants import orm as tenants_orm
from refunddesk.webhooks_out import orm as webhooks_out_orm

__all__ = [
    "Base",
    "approvals_orm",
    "auth_orm",
    "bank_orm",
    "console_orm",
    "disputes_orm",
    "escalation_orm",
    "fraud_model_orm",
    "fraud_orm",
    "jobs_orm",
    "notifications_orm",
    "orders_orm",
    "payouts_orm",
    "policy_orm",
    "refunds_orm",
    "returns_orm",
    "sla_orm",
    "store_credit_orm",
    "tenants_orm",
    "webhooks_out_orm",
]
