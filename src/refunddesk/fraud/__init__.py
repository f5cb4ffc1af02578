"""Fraud and abuse detection: signals, features, rules, a learned model, risk on refunds."""
