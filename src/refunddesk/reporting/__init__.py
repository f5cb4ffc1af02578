"""Reporting: the desk's read-only figures (counts, totals, recent activity)."""
