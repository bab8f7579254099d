"""Run `mlx_lm.server` as a child process for offline prompt optimisation with real HTTP calls.

The server gets its own process group (so stopping it stops everything it started) and, on Linux,
PR_SET_PDEATHSIG, so it dies with its parent even after kill -9. The BLAS preload from
autoloop.mlx.blas (when present) is set before it starts: prompt processing is ~15x faster with it.
mlx_lm.server batches concurrent seedless requests (decode up to --decode-concurrency, prefill up
to --prompt-concurrency at a time), so clients should send ~8 requests at once.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from autoloop.proc import free_port, new_session_dying_with_parent, stop_group
from autoloop.target import TargetError


def blas_env() -> dict[str, str]:
    try:
        from autoloop.mlx.blas import blas_env as _blas_env  # type: ignore[import-not-found]
    except ImportError:
        return {}
    return dict(_blas_env() or {})


class LocalModelServer:
    """`with LocalModelServer(folder) as srv: OpenAICompatClient(srv.base_url, ...)`."""

    def __init__(self, model: str | Path, *, port: int | None = None, startup_timeout_s: float = 180.0,
                 decode_concurrency: int = 16, prompt_concurrency: int = 8, max_tokens: int = 512,
                 log_path: Path | None = None):
        self.model = Path(model)
        if not (self.model / "config.json").exists():
            raise TargetError(f"{self.model}: not an mlx-lm model folder (no config.json); pass a converted model folder")
        self.port = port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self.args = ["--decode-concurrency", str(decode_concurrency), "--prompt-concurrency", str(prompt_concurrency),
                     "--max-tokens", str(max_tokens)]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._lock = threading.Lock()
        self._failed: Exception | None = None

    def ensure_started(self) -> None:
        """Start on first use (thread-safe): a phase answered wholly from the response cache starts nothing."""
        with self._lock:
            if self._failed is not None:
                raise self._failed  # one failed start is enough: do not retry per request
            if self.proc is None:
                try:
                    self.start()
                except Exception as e:
                    self._failed = e
                    raise

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LocalModelServer":
        env = {**os.environ, **blas_env()}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        t0 = time.time()
        cmd = [sys.executable, "-m", "mlx_lm", "server", "--model", str(self.model), "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", "WARNING", *self.args]
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so fork from a keeper thread that lives
        # exactly as long as the server (callers may start us from a short-lived pool thread).
        box: dict = {}
        forked = threading.Event()

        def keeper() -> None:
            try:
                box["proc"] = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                               preexec_fn=new_session_dying_with_parent)
            except Exception as e:  # noqa: BLE001 - reported to the caller below
                box["err"] = e
            forked.set()
            if "proc" in box:
                box["proc"].wait()

        threading.Thread(target=keeper, name="mlx-server-keeper", daemon=True).start()
        forked.wait()
        if "err" in box:
            raise TargetError(f"cannot start mlx_lm.server: {box['err']}")
        self.proc = box["proc"]
        atexit.register(self.stop)
        if log is not subprocess.DEVNULL:
            log.close()
        while time.time() - t0 < self.startup_timeout_s:
            if self.proc.poll() is not None:
                raise TargetError(f"mlx_lm.server for {self.model} exited with code {self.proc.returncode} at start; "
                                  f"see {self.log_path or 'its stderr'}")
            try:
                # /health answers once the HTTP server is up; the model itself loads on the first request.
                if httpx.get(self.base_url + "/health", timeout=2.0).status_code == 200:
                    self._warm()
                    self.startup_s = time.time() - t0
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TargetError(f"mlx_lm.server for {self.model} did not answer within {self.startup_timeout_s:.0f}s")

    def _warm(self) -> None:
        """Load the model now so the first real request's latency is not a 5 s outlier."""
        httpx.post(self.base_url + "/v1/chat/completions", timeout=self.startup_timeout_s,
                   json={"model": "default_model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            stop_group(p, grace=5.0)

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
