"""A trivial FastAPI app, served like refunddesk, as the ceiling the real endpoints are held to."""

from __future__ import annotations

import argparse

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    order_id: str
    amount_minor: int
    reason: str


class Echo(BaseModel):
    id: str
    amount_minor: int


@app.post("/items", status_code=201)
def create_item(body: Item) -> Echo:
    """Parse a small JSON body, answer a small one (a plain def, like refunddesk's routes)."""
    return Echo(id=body.order_id, amount_minor=body.amount_minor)


@app.get("/items/{item_id}")
def get_item(item_id: str) -> Echo:
    return Echo(id=item_id, amount_minor=1)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    """Serve with the uvicorn settings `refunddesk serve` uses."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "benchmarks.trivial_app:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.processes if args.processes > 1 else None,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
