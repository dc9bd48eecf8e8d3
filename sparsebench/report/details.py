"""The detail block of one record: everything needed to trace a number back to its run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Detail:
    anchor: str
    title: str
    status: str
    fields: list[tuple[str, str]]
    params: list[tuple[str, str]]
    settings: list[tuple[str, str]]
    packages: list[tuple[str, str]]
    error: str



def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def record_detail(anchor: str, rec: dict, runs: int) -> Detail:
    prof, prov, ds = rec["profile"], rec["provenance"], rec["dataset"]
    sidecar = rec.get("per_query")
    fields = [
        ("method", rec["method"]),
        ("family", rec["family"]),
        ("method version", _text(rec.get("method_version", ""))),
        ("status", rec["status"]),
        ("suite", f"{rec['suite']} (task {rec['task']})"),
        ("suite digest", _text(rec.get("suite_digest") or "not recorded (schema 1 record)")),
        ("dataset", f"{_text(ds.get('id', ''))}, checksum {_text(ds.get('checksum', ''))}"),
        ("dataset counts", _text(ds.get("counts", {}))),
        ("profile", (f"{_text(prof.get('id'))}, fingerprint {_text(prof.get('fingerprint'))}, "
                     f"{'matched' if prof.get('matched', True) is not False else 'NOT matched'}")),
        ("profile mismatches", _text(prof.get("mismatches", []))),
        ("machine", _text(prof.get("machine", {}))),
        ("threads", _text(prof.get("threads", {}))),
        ("git commit", f"{_text(prov.get('git_commit'))}{' (dirty working tree)' if prov.get('git_dirty') else ''}"),
        ("python", _text(prov.get("python", ""))),
        ("started", rec["started_at"]),
        ("finished", rec["finished_at"]),
        ("duration", f"{_text(rec.get('duration_s'))} s"),
        ("run id", rec["run_id"]),
        ("key", rec["key"]),
        ("records with this key", str(runs)),
        ("per-query file", f"{_text(sidecar.get('path'))} (sha256 {_text(sidecar.get('sha256'))})" if isinstance(sidecar, dict) else "none"),
    ]
    if isinstance(rec.get("contention"), dict):
        fields.append(("contention", _text(rec["contention"])))
    if rec.get("extra"):
        fields.append(("extra", _text(rec["extra"])))
    packages = prov.get("packages") if isinstance(prov.get("packages"), dict) else {}
    return Detail(
        anchor=anchor,
        title=f"{rec['method']} \u00b7 {rec['status']} \u00b7 {rec['finished_at']}",
        status=rec["status"],
        fields=fields,
        params=[(str(k), _json(v)) for k, v in sorted(rec["params"].items())],
        settings=[(str(k), _json(v)) for k, v in sorted(rec["settings"].items())],
        packages=[(str(k), _text(v)) for k, v in sorted(packages.items())],
        error=str(rec.get("error") or ""),
    )
