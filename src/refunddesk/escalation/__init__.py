"""Escalations: rules that raise a refund to an agent, a supervisor or the retailer's finance."""
