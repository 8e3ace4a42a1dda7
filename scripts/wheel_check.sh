#!/usr/bin/env bash
# Build the wheel, install it into a clean virtual environment OUTSIDE the repository, and run
# the three CLIs on the result: what `pip install latentflow` gives a user.
#   bash scripts/wheel_check.sh        (needs the data root in $LATENTFLOW_DATA; CI runs it)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/latentflow-wheel.XXXXXX)"
trap 'rm -rf "$work"' EXIT
: "${LATENTFLOW_DATA:?set LATENTFLOW_DATA to the data root}"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"   # the CPU wheel here
"$work/venv/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$repo"
"$work/venv/bin/python" -m pip install -q "$work"/dist/latentflow-*.whl
cd "$work"   # nothing of the repository on the path from here on
bin="$work/venv/bin"
"$bin/python" - <<'PY'
import latentflow, pathlib
path = pathlib.Path(latentflow.__file__)
assert "site-packages" in str(path), path
assert (path.parent / "conf" / "train.yaml").is_file(), "configs are not in the wheel"
print("installed at", path.parent)
PY
# No extras: none of the optional features' libraries came with it, and each says what to add.
if "$bin/python" -c "import wandb" 2>/dev/null; then echo "wandb came without [wandb]"; exit 1; fi
if "$bin/latentflow-train" logger=wandb debug=tiny hydra.run.dir="$work/w" 2>"$work/err"; then
  echo "logger=wandb ran without the wandb extra"; exit 1
fi
grep -q "pip install 'latentflow\[wandb\]'" "$work/err" || { cat "$work/err"; exit 1; }
"$bin/latentflow-train" -m hydra/launcher=slurm debug=tiny 2>"$work/err" && exit 1
grep -q "pip install 'latentflow\[slurm\]'" "$work/err" || { cat "$work/err"; exit 1; }
common=(runtime.threads=1 trainer.enable_progress_bar=false)
"$bin/latentflow-train" experiment=jsb/af_af debug=tiny "${common[@]}" hydra.run.dir="$work/run"
test -f "$work/run/metrics.json"
"$bin/latentflow-eval" ckpt_path="$work/run/checkpoints/last.ckpt" "splits=[test]" \
  eval.num_samples=4 runtime.threads=1 hydra.run.dir="$work/eval"
test -f "$work/eval/metrics.json"
"$bin/latentflow-sample" ckpt_path="$work/run/checkpoints/last.ckpt" num_samples=2 \
  runtime.threads=1 hydra.run.dir="$work/sample"
test -f "$work/sample/samples.json" && ls "$work/sample/midi" | grep -q '\.mid$'
echo "wheel check: the installed wheel trains, evaluates and samples"
