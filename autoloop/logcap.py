"""A child's output, bounded on disk: the head and the tail are kept, the middle is dropped.

Why: a candidate that prints in a loop would otherwise leave a log as large as its output in every
iteration (80 MB, a night of them fills the disk). The head shows how it started, the tail holds the
traceback; between them one line says how much was dropped:

    [... 75497472 bytes dropped ...]

The child writes into a pipe; a thread here copies it to the file. Up to `cap` bytes the file is a plain
log (readable live with `tail -f`). Past that, the tail lives in memory and is rewritten after the head
at most every `flush_s` seconds and at the end, so the file never exceeds cap + one marker line, and a
kill -9 of the engine leaves at most `flush_s` of output unwritten.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import BinaryIO

DEFAULT_CAP_MB = 4.0
CHUNK = 1 << 16


def marker(dropped: int) -> bytes:
    return f"\n[... {dropped} bytes dropped ...]\n".encode()


class CappedLog:
    """Copy bytes from `fd` (the read end of a pipe) into `path`, keeping at most ~cap bytes."""

    def __init__(self, fd: int, path: Path, cap_bytes: int, flush_s: float = 0.5):
        self.fd, self.path = fd, Path(path)
        self.cap = max(int(cap_bytes), 2 * CHUNK)
        self.head_max = self.cap // 2
        self.tail_max = self.cap - self.head_max
        self.flush_s = flush_s
        self.total = 0
        self.error: OSError | None = None  # a write that failed (disk full): reported, never raised here
        self._tail = bytearray()
        self._head_len = 0
        self._thread = threading.Thread(target=self._pump, daemon=True, name=f"log:{self.path.name}")
        self._thread.start()

    @property
    def dropped(self) -> int:
        return max(0, self.total - self._head_len - len(self._tail))

    def _pump(self) -> None:
        last_flush = 0.0
        try:
            with open(self.path, "wb") as f:
                while True:
                    try:
                        data = os.read(self.fd, CHUNK)
                    except OSError:
                        break
                    if not data:
                        break
                    self.total += len(data)
                    last_flush = self._take(f, data, last_flush)
                if self.dropped:
                    self._write_tail(f)
        except OSError as e:
            self.error = self.error or OSError(e.errno, e.strerror, str(self.path))
            self._drain()
        finally:
            os.close(self.fd)

    def _take(self, f: BinaryIO, data: bytes, last_flush: float) -> float:
        room = self.head_max - self._head_len
        if room > 0 and not self._tail:
            part = data[:room]
            self._safe_write(f, part)
            self._head_len += len(part)
            data = data[room:]
            f.flush()
        if data:
            self._tail += data
            if len(self._tail) > self.tail_max:
                del self._tail[: len(self._tail) - self.tail_max]
            now = time.monotonic()
            if now - last_flush >= self.flush_s:
                self._write_tail(f)
                return now
        return last_flush

    def _write_tail(self, f: BinaryIO) -> None:
        f.seek(self._head_len)
        if self.dropped:
            self._safe_write(f, marker(self.dropped))
        self._safe_write(f, bytes(self._tail))
        f.truncate()
        f.flush()

    def _safe_write(self, f: BinaryIO, data: bytes) -> None:
        try:
            f.write(data)
        except OSError as e:  # keep reading so the child never blocks on a full pipe
            self.error = self.error or OSError(e.errno, e.strerror, str(self.path))

    def _drain(self) -> None:
        try:
            while os.read(self.fd, CHUNK):
                pass
        except OSError:
            pass

    def close(self, timeout: float = 10.0) -> None:
        """Wait for the writer side to close (the child and all it started are gone) and flush."""
        self._thread.join(timeout)
