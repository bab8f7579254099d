"""The calls file: what is replayed against the service, and what a correct answer is.

JSONL, one call per line (a first line {"_meta": {...}} is allowed and returned as meta):

    {"id": "c1", "method": "GET", "path": "/orders?customer=7"}
    {"id": "c2", "method": "POST", "path": "/orders/9/status", "body": {"status": "shipped"}}
    {"id": "c3", "path": "/report", "headers": {"Authorization": "Bearer test"}, "volatile": true}

    id             unique; default "line<N>"
    method         GET (default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS
    path           starts with "/": path and query string
    body           JSON sent with Content-Type: application/json (a string body with another
                   Content-Type in "headers" is sent as is)
    headers        {"Name": "value"}
    barrier        runs alone, after everything before it (default: true for every non-GET); only
                   matters when calls run concurrently
    expect         sha256 of the answer (see response_hash); without it the answer the unchanged
                   config gave at the start of the run is the expected one
    expect_status  with "volatile": the status a correct answer has (default: any 2xx)
    volatile       the answer changes by design (a timestamp, a request id): only its status is checked
    note           free text

An answer is the response status and its body, parsed as JSON when it is JSON (else the text), so
formatting and key order never matter; `ignore` names keys removed at any depth before comparing.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

from autoloop.target import TargetError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
KEYS = {"id", "method", "path", "body", "headers", "barrier", "expect", "expect_status", "volatile", "note"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def load_calls(path: Path | str) -> tuple[dict, list[dict]]:
    """(meta, calls) from a calls file; TargetError names the file, the line and the fix on any fault.

    Each call gets "_line" (its line number in the file) for messages."""
    meta: dict = {}
    calls: list[dict] = []
    seen: dict[str, int] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise TargetError(f"{path}: cannot read the calls file ({e.strerror}); pass an existing JSONL file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TargetError(f"{where}: invalid JSON ({e.msg}); one JSON object per line") from None
        if not isinstance(obj, dict):
            raise TargetError(f"{where}: a call is a JSON object such as {{\"path\": \"/health\"}}")
        if "_meta" in obj:
            meta = obj["_meta"]
            continue
        unknown = sorted(k for k in obj if k not in KEYS and not k.startswith("_"))
        if unknown:
            raise TargetError(f"{where}: unknown key {unknown[0]!r}; a call may have {', '.join(sorted(KEYS))}")
        if not isinstance(obj.get("path"), str) or not obj["path"].startswith("/"):
            raise TargetError(f'{where}: each call needs "path" starting with "/", e.g. {{"path": "/health"}}')
        obj.setdefault("method", "GET")
        if not isinstance(obj["method"], str) or obj["method"].upper() not in METHODS:
            raise TargetError(f"{where}: method {obj['method']!r}; use one of {', '.join(METHODS)}")
        obj["method"] = obj["method"].upper()
        obj.setdefault("id", f"line{n}")
        cid = obj["id"]
        if not isinstance(cid, str) or not cid:
            raise TargetError(f'{where}: "id" must be a non-empty string (or leave it out)')
        if cid in seen:
            raise TargetError(f"{where}: id {cid!r} repeats line {seen[cid]}; ids must be unique (or leave them out)")
        seen[cid] = n
        if "expect" in obj and obj["expect"] is not None and not (isinstance(obj["expect"], str)
                                                                   and _HEX64.match(obj["expect"])):
            raise TargetError(f'{where}: "expect" must be the 64-hex sha256 of the answer; record it with '
                              "autoloop.services.record_expectations (or leave it out)")
        if "expect_status" in obj and (isinstance(obj["expect_status"], bool) or not isinstance(obj["expect_status"], int)):
            raise TargetError(f'{where}: "expect_status" must be an HTTP status number such as 200')
        for flag in ("barrier", "volatile"):
            if flag in obj and not isinstance(obj[flag], bool):
                raise TargetError(f'{where}: "{flag}" must be true or false')
        hdr = obj.get("headers")
        if hdr is not None and not (isinstance(hdr, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                   for k, v in hdr.items())):
            raise TargetError(f'{where}: "headers" must be an object of strings, e.g. {{"Accept": "application/json"}}')
        obj.setdefault("barrier", obj["method"] != "GET")
        obj["_line"] = n
        calls.append(obj)
    if not calls:
        raise TargetError(f"{path}: holds no calls; add one JSON object per line with at least a path")
    return meta, calls


def write_calls(path: Path, calls: Iterable[dict], meta: dict | None = None) -> Path:
    """Write calls as JSONL (the "_line" bookkeeping left out), atomically."""
    rows = ([{"_meta": meta}] if meta else []) + [{k: v for k, v in c.items() if k != "_line"} for c in calls]
    tmp = Path(path).with_suffix(Path(path).suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    tmp.replace(path)
    return Path(path)


def strip_keys(obj: Any, keys: frozenset[str] | set[str]) -> Any:
    if not keys:
        return obj
    if isinstance(obj, dict):
        return {k: strip_keys(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [strip_keys(v, keys) for v in obj]
    return obj


def canonical(status: int | None, body: object, ignore: Iterable[str] = ()) -> str:
    """The canonical JSON text of an answer: sorted keys, no spaces, `ignore` keys removed at any depth."""
    return json.dumps({"status": status, "body": strip_keys(body, frozenset(ignore))}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def response_hash(status: int | None, body: object, ignore: Iterable[str] = ()) -> str:
    """sha256 of the canonical answer: formatting and key order never matter."""
    return hashlib.sha256(canonical(status, body, ignore).encode()).hexdigest()


def parse_body(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


# -- converters: turn what you already have into a calls file ------------------------------------------------

def calls_from_har(har: Path | str, host: str | None = None) -> list[dict]:
    """Calls from a HAR file (browser devtools "Save all as HAR", or a proxy's export), in order.

    Keeps requests to `host` (default: the host of the first request); path + query, method, JSON bodies
    and Authorization/Cookie/Accept headers. Static assets (.js, .css, images, fonts) are left out."""
    from urllib.parse import urlsplit

    entries = json.loads(Path(har).read_text())["log"]["entries"]
    out = []
    for e in entries:
        req = e["request"]
        u = urlsplit(req["url"])
        host = host or u.netloc
        if u.netloc != host or re.search(r"\.(js|css|png|jpe?g|gif|svg|ico|woff2?|map)$", u.path):
            continue
        call: dict[str, Any] = {"id": f"h{len(out) + 1:04d}", "method": req["method"].upper(),
                                "path": (u.path or "/") + (f"?{u.query}" if u.query else "")}
        text = (req.get("postData") or {}).get("text")
        if text:
            try:
                call["body"] = json.loads(text)
            except ValueError:
                call["body"] = text
                mime = (req.get("postData") or {}).get("mimeType")
                call["headers"] = {"Content-Type": mime} if mime else {}
        keep = {h["name"]: h["value"] for h in req.get("headers", [])
                if h["name"].lower() in ("authorization", "cookie", "accept")}
        if keep:
            call["headers"] = {**call.get("headers", {}), **keep}
        out.append(call)
    return out


_LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/\S*) HTTP/[\d.]+" (?P<status>\d{3})')


def calls_from_access_log(log: Path | str, limit: int | None = None) -> list[dict]:
    """Calls from an access log in the common/combined format (nginx, Apache, gunicorn, uvicorn --access-log):
    `... "GET /orders?customer=7 HTTP/1.1" 200 ...`. Only requests that succeeded (2xx) are kept; a log holds
    no request bodies, so writes come out without one: add "body" to them by hand."""
    out = []
    for line in Path(log).read_text(errors="replace").splitlines():
        m = _LOG_LINE.search(line)
        if not m or not m.group("status").startswith("2"):
            continue
        out.append({"id": f"a{len(out) + 1:04d}", "method": m.group("method"), "path": m.group("path")})
        if limit and len(out) >= limit:
            break
    return out
