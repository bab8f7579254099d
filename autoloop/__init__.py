"""autoloop: a checkpoint-and-score loop that improves things overnight, with evidence.

The loop is in autoloop/loop.py; the target contract in autoloop/target.py.
"""
from autoloop.target import Candidate, Rejected, Scores, TargetError

__all__ = ["Candidate", "Rejected", "Scores", "TargetError"]
__version__ = "0.1.0"
