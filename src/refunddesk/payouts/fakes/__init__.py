"""Local stand-ins for payment gateways' APIs, for demos, tests and the crash test.

Each fake is a small stateful ASGI app that answers like the real API for the endpoints
the adapters use (idempotency, refundable amounts, declines, pending refunds, signed
webhooks) and records every call and every refund. Run one in a thread with its
``serve()`` context manager, or as a process: ``python -m refunddesk.payouts.fakes.adyen``.
They listen on 127.0.0.1 only.
"""
