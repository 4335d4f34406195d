"""Small pure helpers for scripts/setup.sh, deploy.sh and verify.sh: the index and JSON
arithmetic that would be fragile in bash. Standard library only (the operator's python3). The
scripts make every gcloud call themselves (echoed, retried, --dry-run aware); this only reads
their answers.

    python3 scripts/lib/gcphelp.py missing-indexes firestore.indexes.json LIST.json
    python3 scripts/lib/gcphelp.py field-overrides firestore.indexes.json
    python3 scripts/lib/gcphelp.py field-disabled FIELD.json
    python3 scripts/lib/gcphelp.py custom-audiences SERVICE.json
    python3 scripts/lib/gcphelp.py get FILE.json KEY[.KEY...]
    python3 scripts/lib/gcphelp.py unique-jpeg IN.jpg OUT.jpg
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any


def _load(path: str) -> Any:
    text = Path(path).read_text() if path != "-" else sys.stdin.read()
    return json.loads(text) if text.strip() else {}


def _index_key(group: str, scope: str, fields: list[dict[str, Any]]) -> tuple[Any, ...]:
    shape = []
    for field in fields:
        mode = field.get("order") or field.get("arrayConfig") or field.get("vectorConfig")
        shape.append((field.get("fieldPath"), str(mode).upper()))
    while shape and shape[-1][0] == "__name__":  # Firestore appends it to every index
        shape.pop()
    return (group, (scope or "COLLECTION").upper(), tuple(shape))


def missing_indexes(spec_path: str, list_path: str) -> list[str]:
    """One line per index of the spec that the listing lacks: its create flags, tab-separated."""
    existing = set()
    for index in _load(list_path) or []:
        # name: projects/P/databases/D/collectionGroups/G/indexes/ID
        parts = str(index.get("name", "")).split("/")
        group = parts[parts.index("collectionGroups") + 1] if "collectionGroups" in parts else ""
        existing.add(_index_key(group, index.get("queryScope", ""), index.get("fields", [])))
    lines = []
    for index in _load(spec_path).get("indexes", []):
        key = _index_key(index["collectionGroup"], index.get("queryScope", ""), index["fields"])
        if key in existing:
            continue
        flags = [f"--collection-group={index['collectionGroup']}", f"--query-scope={key[1]}"]
        for field in index["fields"]:
            if "order" in field:
                mode = f"order={field['order'].lower()}"
            else:
                mode = f"array-config={field['arrayConfig'].lower()}"
            flags.append(f"--field-config=field-path={field['fieldPath']},{mode}")
        lines.append("\t".join(flags))
    return lines


def field_overrides(spec_path: str) -> list[str]:
    out = []
    for field in _load(spec_path).get("fieldOverrides", []):
        if field.get("indexes"):
            raise SystemExit("only fieldOverrides that disable indexing are supported")
        out.append(f"{field['collectionGroup']}\t{field['fieldPath']}")
    return out


def field_disabled(field_path: str) -> bool:
    config = _load(field_path).get("indexConfig", {}) or {}
    return not config.get("usesAncestorConfig") and not config.get("indexes")


def custom_audiences(service_path: str) -> list[str]:
    """The custom audiences of a Cloud Run service (`gcloud run services describe --format=json`):
    a JSON list in the annotation run.googleapis.com/custom-audiences."""
    annotations = (_load(service_path).get("metadata") or {}).get("annotations") or {}
    raw = annotations.get("run.googleapis.com/custom-audiences") or "[]"
    try:
        audiences = json.loads(raw)
    except ValueError:
        return []
    return [str(a) for a in audiences] if isinstance(audiences, list) else []


def get(path: str, keys: str) -> str:
    value: Any = _load(path)
    for key in keys.split("."):
        if isinstance(value, list):
            value = value[int(key)] if key.isdigit() and int(key) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            value = None
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def unique_jpeg(src: str, dst: str) -> None:
    """The same photo with a fresh COM segment after SOI: other bytes, so another image id."""
    data = Path(src).read_bytes()
    if data[:2] != b"\xff\xd8":
        raise SystemExit(f"{src} is not a JPEG")
    text = f"imgpipe verify {secrets.token_hex(16)}".encode()
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    Path(dst).write_bytes(data[:2] + segment + data[2:])


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    listing = {
        "missing-indexes": missing_indexes,
        "field-overrides": field_overrides,
        "custom-audiences": custom_audiences,
    }
    if command in listing:
        for line in listing[command](*args):
            print(line)
        return 0
    if command == "field-disabled":
        return 0 if field_disabled(*args) else 1
    if command == "get":
        print(get(*args))
        return 0
    if command == "unique-jpeg":
        unique_jpeg(*args)
        return 0
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
