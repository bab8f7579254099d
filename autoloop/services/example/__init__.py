"""A small service to tune: the orders API (`orders.py`, stdlib http.server over SQLite) and its calls file.

targets/api_generic.py tunes it out of the box, so the walk-through in the README runs anywhere; the tests
use it as the service autoloop was not built around (an index that is the real win, a knob that only
costs, a stale-cache trap, and a payment made by GET that changes data a second replay reads).
"""
from pathlib import Path

APP = Path(__file__).with_name("orders.py")
CALLS = Path(__file__).with_name("orders_calls.jsonl")
