"""File names of the site's pages, made from untrusted record text.

A page name never carries record text as is: it is lower-case letters, digits and hyphens,
with a digest of the full text so two groups (or two methods) never share a page and a name
cannot climb out of its folder.
"""

from __future__ import annotations

import hashlib
import re

_CLEAN = re.compile(r"[a-z0-9_]{1,40}")
_UNSAFE = re.compile(r"[^a-z0-9]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:10]


def _readable(text: str, limit: int = 48) -> str:
    return _UNSAFE.sub("-", text.lower()).strip("-")[:limit].strip("-") or "x"


def group_page(group_key: tuple[str, str, str, str]) -> str:
    """suites/<suite>-<dataset>-<profile>-<digest>.html for (suite, dataset id, checksum, profile)."""
    suite, dataset, _, profile = group_key
    return f"suites/{_readable(f'{suite} {dataset} {profile}', 72)}-{_digest(chr(0).join(group_key))}.html"


def method_page(name: str) -> str:
    """methods/<name>.html for a registry-style name; anything else gets a cleaned name and a digest
    (a cleaned name holds a hyphen, which registry names never do, so the two cannot collide)."""
    if _CLEAN.fullmatch(name):
        return f"methods/{name}.html"
    return f"methods/{_readable(name, 32)}-{_digest(name)}.html"


def method_name_of(rec: dict) -> str:
    """The registry name of a record's outermost method: `method_name` where the record has it
    (schema 2), else the id's text before its first parenthesis."""
    name = rec.get("method_name")
    if isinstance(name, str) and name:
        return name
    return str(rec.get("method", "")).split("(", 1)[0]
