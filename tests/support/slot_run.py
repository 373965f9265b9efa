"""A real run on moto that issues upload slots, for the tests of `inspect` on slots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.linkkit import invoke, run_dir_of
from tests.support.s3 import S3, write_manifest

BUCKET = "slot-inspect"
PUT_KEY = "inbox/globex/signed-contract.pdf"
POST_KEY = "inbox/initech/${filename}"


def slot_run(s3: S3, tmp_path: Path, formats: str = "[csv, json]") -> Path:
    """globex gets one 2h PUT slot (a named file), initech one 2h POST form (any name, PDFs
    up to 1 KB); both get 1h download links. Returns the run folder."""
    s3.bucket(BUCKET, {"q3/a.pdf": b"%PDF a"})
    path = write_manifest(
        tmp_path / "slots.yml",
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h, formats: {formats}}}
jobs:
  - name: q3
    prefixes: [q3/]
    upload: {{prefix: "inbox/{{recipient.id}}/", max_size: 1KB, expires_in: 2h}}
    recipients:
      - {{id: globex, upload: {{keys: [signed-contract.pdf], content_types: [application/pdf]}}}}
      - {{id: initech, upload: {{content_types: [application/pdf]}}}}
""",
    )
    out = str(tmp_path / "out")
    return run_dir_of(invoke("run", str(path), "--out", out, "--endpoint-url", s3.endpoint))


def bundle_json(bundle: Path) -> dict[str, Any]:
    """The links.json of a bundle folder, parsed."""
    data: dict[str, Any] = json.loads((bundle / "links.json").read_text(encoding="utf-8"))
    return data


def rewrite_json(bundle: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as the folder's links.json (a tampered copy); returns its path."""
    path = bundle / "links.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
