"""refunddesk: refund processing and refund status tracking for BPO refund desks."""

__version__ = "0.1.0"
