"""SFIA 9 task package shared by the SFIA targets (GRPO training, prompt optimisation).

Modules, each with one job and no heavy imports (no mlx) so the engine process can import them cheaply:
    framework       the 147 skills as data, lookups by code or name, generic level names
    convert_official  read the official SFIA spreadsheet a user downloads into a user cache folder
    forge_score     the reward / score: forge_score and its five components
    prompting       the system prompt, chat messages, JSONL loading
    contamination   refuse training data that overlaps the gold set
    phrasebank      the generator's wording: activity phrasings, level statements, noise (train / held-out)
    generate        the seeded generator of the synthetic gold, train and dev files
"""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
TRAIN_PATH = DATA_DIR / "train.jsonl"
DEV_PATH = DATA_DIR / "dev.jsonl"
GOLD_PATH = PACKAGE_DIR.parent.parent / "gold" / "sfia_gold.jsonl"
