"""An executor whose children share nothing with the engine but the target file: every path a call names
moves as `autoloop.executor.pack` bytes into a private scratch folder, and what the method writes comes
back the same way. It exists to prove the seam (the loop works with no shared file system) and as the
pattern a remote executor (Ray) follows: replace "unpack into scratch" with "send to a worker".

    autoloop run T --executor archive_executor:ArchiveExecutor     (with tests/ on PYTHONPATH)
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from autoloop.context import LLM_CALLS_FILE
from autoloop.executor import ChildCall, ChildResult, LocalExecutor, pack, unpack


@dataclasses.dataclass
class _Job:
    handle: Any
    call: ChildCall  # as the engine made it (engine-side paths)
    remote_args: dict
    scratch: Path


class ArchiveExecutor:
    def __init__(self, parallel: int = 1):
        self.parallel = parallel
        self.local = LocalExecutor(parallel)
        self.shipped_bytes = 0

    def submit(self, call: ChildCall) -> _Job:
        scratch = Path(tempfile.mkdtemp(prefix="autoloop-remote-"))
        args = dict(call.args)
        for key in call.paths:
            src = Path(call.args[key])
            data = pack(src)  # what would travel over the network
            self.shipped_bytes += len(data)
            dest = unpack(data, scratch / "in" / key)
            args[key] = str(dest if src.is_dir() else dest / src.name)
        env = dict(call.env)
        if env.get("AUTOLOOP_ITER_DIR"):
            env["AUTOLOOP_ITER_DIR"] = str(scratch / "iter")
        remote = dataclasses.replace(call, args=args, env=env, work_dir=scratch / "work")
        return _Job(self.local.submit(remote), call, args, scratch)

    def wait(self, handles: Sequence[_Job], should_abort: Callable[[], bool] = lambda: False) -> list[ChildResult]:
        results = self.local.wait([j.handle for j in handles], should_abort)
        for job, res in zip(handles, results):
            call = job.call
            for key in call.writes:  # the changed state comes back as an archive, replacing the engine's copy
                self.shipped_bytes += len(data := pack(Path(job.remote_args[key])))
                unpack(data, Path(call.args[key]))
            call.work_dir.mkdir(parents=True, exist_ok=True)
            for f in (job.scratch / "work").glob("*"):
                shutil.copy2(f, call.work_dir / f.name)
            calls = job.scratch / "iter" / LLM_CALLS_FILE
            if calls.exists() and call.env.get("AUTOLOOP_ITER_DIR"):
                with open(Path(call.env["AUTOLOOP_ITER_DIR"]) / LLM_CALLS_FILE, "ab") as out:
                    out.write(calls.read_bytes())
            if res.log_path is not None:
                res.log_path = call.work_dir / res.log_path.name
            shutil.rmtree(job.scratch, ignore_errors=True)
        return results

    def close(self) -> None:
        self.local.close()
