"""Tune an HTTP service: start it under a guardian, replay a calls file, measure p95 and check every answer.

A library for targets, used by targets/api_generic.py (your own service) and targets/api_tuning.py (the
bundled demo). The engine never imports it: it sits in the package rather than beside the targets (as the
design notes first suggested for domain code) so that a target file copied anywhere can import it. Modules:

    target    ApiTarget: a user's service as a target in ~10 lines (command, health, calls, knobs)
    calls     the calls file (format, validation, canonical answer hash) and converters from HAR / access logs
    service   start a command on 127.0.0.1 under guardian.py with its own scratch dir; health; stop the tree
    guardian  the process that takes a service's process group and scratch dir down with its starter
    replay    drive calls against a running service, one at a time or `concurrency` at once
    measure   fleets of services side by side, restart or reset between replays, drift check, Scores
    stats     percentiles
    example   a small orders service to tune (the walk-through's and the tests')
"""
import importlib

_EXPORTS = {"ApiTarget": "target", "record_expectations": "target", "ServiceError": "service",
            "ServiceProcess": "service", "calls_from_access_log": "calls", "calls_from_har": "calls",
            "load_calls": "calls", "response_hash": "calls", "write_calls": "calls"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Imported on first use: `python -m autoloop.services.example.orders` (started once per replay) pays
    for none of the harness."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'autoloop.services' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autoloop.services.{_EXPORTS[name]}"), name)
