"""A local HTTP server that speaks enough of the Anthropic Messages API (and Message Batches) for tests.

Real TCP on 127.0.0.1, driven by the real `anthropic` SDK via base_url. Faults are injected per request
from a FIFO list: {"status": 429, "retry_after": "1"}, {"status": 529}, {"status": 500}, {"drop": True}
(close the socket without answering). Counters let tests assert how many HTTP requests were made.
The answer is `responder(body) -> str`; by default it echoes the last user message upper-cased.

    python tests/fake_anthropic.py --port 8123 --key test-key   # standalone, for child processes
"""
from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def default_responder(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return _text_of(users[-1]["content"]).upper() if users else ""


class FakeAnthropic:
    def __init__(self, api_key: str = "sk-" + "ant-test-0000000000", port: int = 0,
                 responder: Callable[[dict[str, Any]], str] = default_responder):
        self.api_key = api_key
        self.responder = responder
        self.faults: list[dict[str, Any]] = []
        self.requests = 0  # every HTTP request received
        self.message_requests = 0  # POST /v1/messages received (incl. failed ones)
        self.bodies: list[dict[str, Any]] = []
        self.seen_systems: set[str] = set()
        self.batches: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> "FakeAnthropic":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *a: object) -> None:
        self.stop()

    # -- the model ------------------------------------------------------------------------------
    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.responder(body)
        system = body.get("system") or ""
        cached = isinstance(system, list) and any("cache_control" in b for b in system)
        sys_text = _text_of(system) if isinstance(system, list) else system
        sys_tokens = len(sys_text) // 4
        msg_tokens = sum(len(_text_of(m["content"])) for m in body.get("messages", [])) // 4 + 5
        usage = {"input_tokens": msg_tokens + (0 if cached else sys_tokens), "output_tokens": max(len(text) // 4, 1),
                 "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        if cached:
            with self.lock:
                hit = sys_text in self.seen_systems
                self.seen_systems.add(sys_text)
            usage["cache_read_input_tokens" if hit else "cache_creation_input_tokens"] = sys_tokens
        return {"id": "msg_" + uuid.uuid4().hex[:12], "type": "message", "role": "assistant",
                "model": body.get("model"), "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}

    def _batch_view(self, b: dict[str, Any]) -> dict[str, Any]:
        n = len(b["requests"])
        return {"id": b["id"], "type": "message_batch", "processing_status": "ended",
                "request_counts": {"processing": 0, "succeeded": n, "errored": 0, "canceled": 0, "expired": 0},
                "created_at": "2025-01-01T00:00:00Z", "ended_at": "2025-01-01T00:00:01Z",
                "expires_at": "2025-01-02T00:00:00Z", "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.base_url}/v1/messages/batches/{b['id']}/results"}

    def _handler(self):
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, etype: str, headers: dict[str, str] | None = None):
                self._send(status, {"type": "error", "error": {"type": etype, "message": f"fake {etype}"}}, headers)

            def _pre(self) -> bool:
                """Count, authenticate, apply an injected fault. False when the request was answered."""
                with fake.lock:
                    fake.requests += 1
                bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ").strip()
                if fake.api_key not in (self.headers.get("x-api-key"), bearer):  # SDK 2.x sends a Bearer header
                    self._error(401, "authentication_error")
                    return False
                return True

            def _fault(self) -> bool:
                with fake.lock:
                    f = fake.faults.pop(0) if fake.faults else None
                if f is None:
                    return False
                if f.get("drop"):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return True
                if f.get("sleep"):
                    time.sleep(f["sleep"])
                    return False
                st = int(f["status"])
                hdr = {"retry-after": str(f["retry_after"])} if "retry_after" in f else {}
                etype = {429: "rate_limit_error", 529: "overloaded_error"}.get(st, "api_error")
                self._error(st, etype, hdr)
                return True

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if not self._pre():
                    return
                if self.path.rstrip("/") == "/v1/messages":
                    with fake.lock:
                        fake.message_requests += 1
                    if self._fault():
                        return
                    with fake.lock:
                        fake.bodies.append(body)
                    self._send(200, fake.message(body))
                elif self.path.rstrip("/") == "/v1/messages/batches":
                    bid = "msgbatch_" + uuid.uuid4().hex[:12]
                    b = {"id": bid, "requests": body["requests"],
                         "results": [{"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": fake.message(r["params"])}}
                                     for r in body["requests"]]}
                    with fake.lock:
                        fake.batches[bid] = b
                    self._send(200, fake._batch_view(b))
                else:
                    self._error(404, "not_found_error")

            def do_GET(self):
                if not self._pre():
                    return
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) >= 4 and parts[:3] == ["v1", "messages", "batches"] and parts[3] in fake.batches:
                    b = fake.batches[parts[3]]
                    if len(parts) == 5 and parts[4] == "results":
                        raw = "".join(json.dumps(r) + "\n" for r in b["results"]).encode()
                        self._send(200, None, {"content-type": "application/binary"}, raw=raw)
                    else:
                        self._send(200, fake._batch_view(b))
                else:
                    self._error(404, "not_found_error")

        return H


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", default="sk-" + "ant-test-0000000000")
    a = ap.parse_args()
    srv = FakeAnthropic(api_key=a.key, port=a.port)
    print(srv.base_url, flush=True)
    srv.httpd.serve_forever()
