"""A real two-node Ray cluster on this machine, for tests: `ray start --head` plus a second `ray start
--address` with its own resources, each in a process group of its own, so the second node can be killed
mid-iteration (SIGKILL of its group: raylet, workers, agents) as a lost machine would be.

Every process of the cluster carries AUTOLOOP_RAY_TEST=<id> in its environment (and so does every
candidate a worker starts), so `leftovers()` can prove nothing outlived the test. No usage statistics are
sent (RAY_USAGE_STATS_ENABLED=0), no dashboard, one CPU per node (this box has two, and a flagship run).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from autoloop.proc import free_port

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(os.sys.executable).parent / "ray")
MARK = "AUTOLOOP_RAY_TEST"


class LocalRayCluster:
    def __init__(self, head_cpus: int = 1, node2_cpus: int = 1, object_store_mb: int = 80):
        self.id = uuid.uuid4().hex[:10]
        self.tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        self.node2_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head_cpus, self.node2_cpus, self.store = head_cpus, node2_cpus, object_store_mb * 1_000_000
        self.groups: dict[str, int] = {}
        scratch = self.tmp / "scratch"
        scratch.mkdir()
        self.env = dict(os.environ)
        self.env.update({
            "RAY_USAGE_STATS_ENABLED": "0", MARK: self.id, "AUTOLOOP_SCRATCH": str(scratch),
            # Workers import this checkout's autoloop (a real cluster has it installed on every node).
            "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
        })
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, name: str, args: list[str], timeout: float = 240) -> None:
        log = open(self.tmp / f"{name}.start.log", "wb")
        p = subprocess.Popen(["nice", "-n", "19", RAY, "start", *args, "--disable-usage-stats",
                              f"--object-store-memory={self.store}"],
                             stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.groups[name] = p.pid  # the daemons `ray start` leaves behind keep this process group
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            raise RuntimeError(f"ray start ({name}) failed ({rc}):\n" + (self.tmp / f"{name}.start.log").read_text()[-3000:])

    def start(self) -> "LocalRayCluster":
        base = 20000 + (os.getpid() % 200) * 50
        self._start("head", ["--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
                             "--include-dashboard=false", f"--temp-dir={self.tmp}", '--resources={"head": 1}',
                             f"--min-worker-port={base}", f"--max-worker-port={base + 19}"])
        self.start_node2(base + 25)
        return self

    def start_node2(self, worker_base: int | None = None) -> None:
        base = worker_base or (20000 + (os.getpid() % 200) * 50 + 25)
        self._start("node2", [f"--address={self.address}", f"--num-cpus={self.node2_cpus}",
                              '--resources={"node2": 1}', f"--node-manager-port={self.node2_port}",
                              f"--min-worker-port={base}", f"--max-worker-port={base + 19}"])
        self.wait_nodes(2)

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        code = ("import ray,sys,time\nray.init(address=sys.argv[1],logging_level='ERROR',log_to_driver=False)\n"
                "t=time.time()\nwhile len([x for x in ray.nodes() if x['Alive']])<int(sys.argv[2]) and time.time()-t<float(sys.argv[3]):\n"
                "    time.sleep(0.5)\nprint(len([x for x in ray.nodes() if x['Alive']]))\nray.shutdown()\n")
        out = subprocess.run([os.sys.executable, "-c", code, self.address, str(n), str(timeout)], env=self.env,
                             capture_output=True, text=True, timeout=timeout + 120)
        alive = int((out.stdout.strip().splitlines() or ["0"])[-1])
        if alive < n:
            raise RuntimeError(f"only {alive} of {n} Ray nodes came up:\n{out.stderr[-2000:]}")

    def kill_node2(self) -> None:
        """A lost machine: SIGKILL every process of the second node at once (no clean shutdown)."""
        pgid = self.groups.pop("node2")
        for p in self._marked():
            try:
                if os.getpgid(p.pid) == pgid:
                    p.kill()
            except (ProcessLookupError, psutil.Error):
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _marked(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter():
            if p.pid == os.getpid():
                continue
            try:
                if p.environ().get(MARK) == self.id:
                    out.append(p)
            except (psutil.Error, OSError):
                pass
        return out

    def leftovers(self) -> list[str]:
        out = []
        for p in self._marked():
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            except psutil.Error:
                pass
        return out

    def stop(self) -> None:
        """SIGTERM the groups, then every process carrying our mark; SIGKILL what is left."""
        for pgid in self.groups.values():
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.groups.clear()
        procs = self._marked()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        deadline = time.time() + 10
        while self.leftovers() and time.time() < deadline:
            for p in self._marked():
                try:
                    p.kill()
                except psutil.Error:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.tmp, ignore_errors=True)
