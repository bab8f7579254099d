"""One GRPO cycle of targets/sfia_grpo.py from a saved state, then `autoloop eval` of the result: how the GRPO
settings quoted in sfia_grpo.py's comments were compared (one SFT state, one cycle per setting).

    SFIA_GOLD_LIMIT=60 autoloop run targets/sfia_grpo.py --max-iters 1      # an SFT state: runs/<run>/state
    SFIA_GOLD_LIMIT=60 SFIA_GRPO_PROMPTS=1 SFIA_GRPO_BETA=0.02 \\
        python bench/grpo_cycle.py runs/<run>/state /tmp/out 2e-5 2         # STATE OUT LR SEED [BUDGET_S]

The cycle runs the target's own run() in a child process with the target's BLAS environment, under the same
deadline as an engine cycle; the settings come from the target's environment variables (SFIA_GRPO_*,
SFIA_OVERLONG_BUFFER). The copy of STATE in OUT is scored on SFIA_GOLD_LIMIT realistic items (recorded in the
evaluations table). One cycle per setting is n = 1: compare settings from the same state and seed, and read
differences of a few hundredths as noise."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    if len(sys.argv) < 5:
        print("usage: python bench/grpo_cycle.py STATE OUT LR SEED [BUDGET_S]", file=sys.stderr)
        sys.exit(2)
    src, out, lr, seed = sys.argv[1:5]
    budget = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0
    if not (Path(src) / "train_state.json").exists():
        print(f"{src}: not a sfia_grpo state (no train_state.json); pass runs/<run>/state of a sfia_grpo run",
              file=sys.stderr)
        sys.exit(2)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".git"))
    from autoloop.mlx.blas import blas_env

    env = {**os.environ, **blas_env()}
    code = (f"import sys, time; sys.path.insert(0, {str(REPO / 'targets')!r})\n"
            "from pathlib import Path\nfrom autoloop import Candidate\nimport sfia_grpo\n"
            f"sfia_grpo.target.run(Candidate(params={{'stage': 'grpo', 'phase': 'compare', 'lr': {float(lr)}, "
            f"'seed': {int(seed)}, 'reset_optimizer': True}}), Path({out!r}), time.time() + {budget})\n")
    t0 = time.time()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    ts = json.loads((Path(out) / "train_state.json").read_text())
    print("train", round(time.time() - t0), "s", json.dumps(ts["last_cycle"]), "reward", ts["reward_curve"], flush=True)
    subprocess.run([sys.executable, "-m", "autoloop", "eval", out, "--target", str(REPO / "targets/sfia_grpo.py"),
                    "--worst", "3"], cwd=REPO, check=True)


if __name__ == "__main__":
    main()
