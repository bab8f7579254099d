#!/usr/bin/env bash
# Time the README's first command as a new user meets it: a fresh clone of COMMIT, an empty HOME (no pip cache,
# no ~/.cache/autoloop model) and, on Linux, the system OpenBLAS hidden by a tmpfs over its folder (MLX then gets
# the pip OpenBLAS, as on a machine without libopenblas0-pthread). Needs root for the mount; the mount lives only
# in the private namespace `unshare -m` gives it. Output: the command's whole log, its exit code and elapsed time.
# usage (root, from the repository): unshare -m bash bench/quickstart_fresh.sh COMMIT OUTFILE
# Results: bench/results/quickstart_fresh_machine.txt
set -u
commit=$1; out=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
blas=/usr/lib/x86_64-linux-gnu/openblas-pthread
[ -d "$blas" ] && mount -t tmpfs tmpfs "$blas"
d=$(mktemp -d /tmp/qs.XXXX); export HOME=$d/home; mkdir -p "$HOME"
git clone -q "$repo" "$d/autoloop" && cd "$d/autoloop" && git checkout -q "$commit" || exit 2
{
echo "# commit $(git rev-parse --short HEAD), started $(date -u +%H:%M:%S) UTC, HOME=$HOME"
python3 -c "import os; print('system openblas visible:', os.path.exists('$blas/libopenblas.so.0'))"
cmd=$(sed -n '/^```bash/{n;p;q}' README.md)  # the README's first command, as written
echo "\$ $cmd"
start=$(date +%s)
bash -c "$cmd" 2>&1
rc=$?
echo "rc=$rc elapsed=$(( $(date +%s) - start ))s  ended $(date -u +%H:%M:%S) UTC"
} > "$out" 2>&1
