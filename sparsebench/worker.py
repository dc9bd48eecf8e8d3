"""`python -m sparsebench.worker PAYLOAD OUTCOME`: one spec's worker in another environment.

The runner starts this with the interpreter of the worker environment a method needs
(sparsebench.envs); the payload and the outcome are JSON files, so nothing of the runner's
environment (its sys.path, its packages) reaches the worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    payload = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    from .runner import _die_with_parent, _work
    from .logs import configure_logging

    _die_with_parent(payload["parent_pid"])
    configure_logging(verbose=False)
    try:
        outcome = _work(payload, None)
    except BaseException as e:  # report, don't lose, any failure of the worker itself
        outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
