"""Run by tests/test_kvpress.py with the kv environment's Python (kvpress imports only there):
every press applied to the tiny LM through sparsebench's adapter, in one process, and what it
did, as JSON on stdout. The assertions stay in the test.

usage: python tests/helpers/kv_presses.py MODEL_DIR PRESS_ID [PRESS_ID ...]
"""

from __future__ import annotations

import json
import sys

import torch

from sparsebench import registry
from sparsebench.kv.measure import cache_size
from sparsebench.lm.cached import cache_keyword, extend, prefill
from sparsebench.lm.model import load_causal_lm
from sparsebench.methods.lm_base import Calibration

PREFIX, LENGTH = 64, 96


def run(model_dir: str, method_id: str, ids: torch.Tensor) -> dict:
    lm = load_causal_lm(model_dir)
    method = registry.build(method_id)
    calib = Calibration(torch.randint(3, 300, (2, 64), generator=torch.Generator().manual_seed(1))) \
        if method.needs_calibration else None
    report = method.apply(lm, calib, None)
    kw = cache_keyword(lm.model)
    with torch.inference_mode():
        first, cache = prefill(lm.model, ids[:, :PREFIX], report.kv.new_cache if report.kv else None, kw)
        size = cache_size(cache)
        if len({layer.get_seq_length() for layer in cache.layers}) == 1:
            rest, _ = extend(lm.model, ids[:, PREFIX:], cache, PREFIX, kw)
            logits = torch.cat([first.logits, rest.logits], dim=1)
        else:
            steps = [first.logits]
            for t in range(PREFIX, LENGTH):
                out, cache = extend(lm.model, ids[:, t : t + 1], cache, t, kw)
                steps.append(out.logits)
            logits = torch.cat(steps, dim=1)
    return {"logits": logits[0].tolist(), "bytes": size.bytes, "tokens": size.tokens, "layers": size.layers,
            "range": [size.min_tokens, size.max_tokens], "backend": report.kv.backend if report.kv else "",
            "attention": lm.model.config._attn_implementation}


def main() -> None:
    model_dir, *methods = sys.argv[1:]
    ids = torch.randint(3, 300, (1, LENGTH), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        dense = load_causal_lm(model_dir).model(input_ids=ids, use_cache=False).logits[0].tolist()
    print(json.dumps({"dense": dense, **{m: run(model_dir, m, ids) for m in methods}}))


if __name__ == "__main__":
    main()
