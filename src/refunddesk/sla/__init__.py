"""SLA and legal clocks per refund, in the tenant's business hours."""
