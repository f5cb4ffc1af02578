"""A Twilio-compatible SMS API on loopback: records what it is sent, can be told to fail."""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "secret-token"


@dataclass
class FakeTwilio:
    sent: list[dict[str, str]] = field(default_factory=list)
    fail_with: int | None = None  # answer this status instead of sending
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> Starlette:
        async def messages(request: Request) -> JSONResponse:
            sid = request.path_params["sid"]
            expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
            if sid != SID or request.headers.get("authorization") != expected:
                return JSONResponse({"code": 20003, "message": "Authenticate"}, status_code=401)
            if self.fail_with is not None:
                return JSONResponse(
                    {"code": 20500, "message": "Internal error"}, status_code=self.fail_with
                )
            form = await request.form()
            body = {k: str(v) for k, v in form.items()}
            if not body.get("To", "").startswith("+") or not body.get("Body"):
                return JSONResponse(
                    {"code": 21211, "message": "The 'To' number is not valid."}, status_code=400
                )
            self.sent.append(body)
            return JSONResponse(
                {"sid": f"SM{next(self._ids):032d}", "status": "queued", **body}, status_code=201
            )

        return Starlette(
            routes=[Route("/2010-04-01/Accounts/{sid}/Messages.json", messages, methods=["POST"])]
        )
