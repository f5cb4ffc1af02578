"""Drive wrk with generated Lua scripts; the script's done() prints a JSON summary we parse."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARK = "WRKJSON "

# Shared by every script: count non-2xx per thread, sum them in done() with the latencies.
_COMMON = r"""
local threads = {}
tid = 0
non2xx = 0
bad_sample = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if non2xx <= 3 then
      bad_sample = bad_sample .. status .. " " .. string.sub(body or "", 1, 160) .. " | "
    end
  end
end

function done(summary, latency, requests)
  local bad, sample = 0, ""
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
    sample = sample .. (t:get("bad_sample") or "")
  end
  sample = string.gsub(sample, '[%c"\\]', " ")
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"non2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%d,"bad_sample":"%s"}\n',
    "WRKJSON ", summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, bad,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, sample))
end
"""

_POST = r"""
math.randomseed(os.time())
local run = "@RUN@"
local key = "@KEY@"
local path = "@PATH@"
local order_prefix = "@ORDER_PREFIX@"
local orders = @ORDERS@
local counter = 0

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"order_id":"%s%d","amount_minor":1,"reason":"damaged"}',
    order_prefix, math.random(1, orders))
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = string.format("%s-%d-%d", run, tid, counter),
  }
  return wrk.format("POST", path, headers, body)
end
"""

_GET = r"""
local key = "@KEY@"
local prefix = "@PATH@"
local ids = {@IDS@}

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  local headers = {["Authorization"] = "Bearer " .. key}
  return wrk.format("GET", prefix .. ids[math.random(1, #ids)], headers)
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    bad_sample: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "non2xx": self.non2xx,
            "socket_errors": self.socket_errors,
        }


def post_script(
    path: Path, *, run: str, key: str, url_path: str, order_prefix: str, orders: int
) -> Path:
    """A script whose every POST is unique: its own Idempotency-Key, a random order, 1 cent."""
    body = (
        _POST.replace("@RUN@", run)
        .replace("@KEY@", key)
        .replace("@ORDER_PREFIX@", order_prefix)
        .replace("@ORDERS@", str(orders))
        .replace("@PATH@", url_path)
    )
    path.write_text(_COMMON + body)
    return path


def get_script(path: Path, *, key: str, url_prefix: str, ids: list[str]) -> Path:
    """A script that GETs url_prefix + a random id from ids."""
    table = ",".join(json.dumps(i) for i in ids)
    path.write_text(
        _COMMON + _GET.replace("@KEY@", key).replace("@PATH@", url_prefix).replace("@IDS@", table)
    )
    return path


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, script: Path, *, seconds: float, connections: int, threads: int) -> WrkResult:
    """Run wrk once against url (127.0.0.1 only) and parse the script's summary."""
    assert url.startswith("http://127.0.0.1:"), url
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line[len(MARK) :])
    secs = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non2xx=data["non2xx"],
        socket_errors=data["connect_errors"]
        + data["read_errors"]
        + data["write_errors"]
        + data["timeouts"],
        bad_sample=data["bad_sample"],
    )
