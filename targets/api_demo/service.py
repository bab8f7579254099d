"""A demo service instance: its own copy of the database with the config's indexes, started by the harness
in autoloop.services (guardian, health, stop)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from api_demo import config as knobs
from api_demo import data
from autoloop.services.service import ServiceProcess

SERVER = Path(__file__).with_name("server.py")


def demo_service(cfg: dict[str, Any], base_db: Path, workdir: Path) -> ServiceProcess:
    """A not-yet-started demo service: its own copy of the database with the config's indexes."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = data.prepare_instance_db(base_db, workdir / "instance.sqlite", knobs.indexes(cfg))
    (workdir / "config.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, str(SERVER), "--db", str(db), "--config", str(workdir / "config.json"),
           "--port-file", "{port_file}"]
    return ServiceProcess(cmd, workdir=workdir, port_from_file=True)
