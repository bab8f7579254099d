"""The history writer opens DuckDB on its own thread while the loop's thread writes the environment
(AUTOLOOP_ITER and friends, each phase). Unguarded, glibc's setenv moving the environment under
duckdb.connect's getenv crashes the process with SIGSEGV within seconds (autoloop.envguard). Each case
runs in a child process, so a crash is a failed test, not a dead pytest."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import faulthandler, os, sys, threading, time
    from pathlib import Path
    from autoloop import store
    faulthandler.enable()
    stop, opened = False, [0]
    def writer():
        while not stop:
            store.connect(Path(sys.argv[1]) / f"h{opened[0] % 3}.duckdb").close()
            opened[0] += 1
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    t0, n = time.time(), 0
    while time.time() - t0 < float(sys.argv[2]):
        {write}
        n += 1
        if n % 200 == 0:
            for k in [k for k in os.environ if k.startswith("X_RACE_")]:
                {delete}
    stop = True
    t.join()
    print("survived", n, "writes,", opened[0], "opens")
""")

WRITES = {
    "os.environ": ('os.environ[f"X_RACE_{n}"] = "v" * 10', "del os.environ[k]"),
    "os.putenv": ('os.putenv(f"X_RACE_{n}", "v" * 10); os.environ._data[os.fsencode(f"X_RACE_{n}")] = b"v"',
                  "os.unsetenv(k); os.environ._data.pop(os.fsencode(k), None)"),
}


@pytest.mark.parametrize("how", sorted(WRITES))
def test_environment_writes_beside_duckdb_opens_do_not_crash(tmp_path, how):
    write, delete = WRITES[how]
    code = SCRIPT.replace("{write}", write).replace("{delete}", delete)
    # Unguarded, this crashed in 0.4-4.3 s (5 of 5 tries); 8 s guarded is the evidence.
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), "8"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"rc {p.returncode}\n{p.stderr[-3000:]}"
    assert "survived" in p.stdout
