"""End to end: the lifecycle commands on the bundles a real `link: cloudfront` run writes.

A run on moto with 30-day CloudFront links (one recipient held to 127.0.0.1/32); `inspect`
reads its bundles, `verify` asks the test edge, `renew` re-signs them (a window past the links'
end), and every renewed link downloads through the edge with the object's exact bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from sharebatch.cloudfront.read import read_cloudfront_url
from tests.support.cfkeys import public_keys, rsa_pair
from tests.support.cloudfront_edge import cloudfront_edge, fetch
from tests.support.linkkit import invoke, run_dir_of
from tests.support.s3 import S3, write_manifest

BUCKET = "acme-reports"
FILES = {"reports/q3/a.pdf": b"%PDF a" * 50, "reports/q3/b c+d.txt": "caf\u00e9".encode()}


def test_inspect_verify_renew_on_a_run_of_cloudfront_links(s3: S3, tmp_path: Path) -> None:
    """The run's own CloudFront bundles: inspect reads them VALID with their key pair and IP
    range, verify finds them ok at the edge, renew re-signs them with the same settings and
    new ids, and the renewed links download byte for byte (exit codes 0 throughout)."""
    s3.bucket(BUCKET, FILES)
    pair = rsa_pair()
    key_file, _ = pair.write(tmp_path)
    with cloudfront_edge(s3, BUCKET, public_keys(pair)) as edge:
        path = write_manifest(
            tmp_path / "cf.yml",
            f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 30d
  link: cloudfront
  download_name: "q3-{{basename}}"
  cloudfront:
    domain: {edge.origin}
    key_pair_id: {pair.key_pair_id}
    private_key: {{file: {key_file}}}
    max_expires_in: 90d
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
      - {{id: office, allow_ips: [127.0.0.1/32]}}
""",
        )
        result = invoke(
            "run", str(path), "--out", str(tmp_path / "out"), "--endpoint-url", s3.endpoint
        )
        assert result.exit_code == 0, result.output
        run_dir = run_dir_of(result)
        folders = [run_dir / "q3" / "globex", run_dir / "q3" / "office"]

        shown = invoke("inspect", *map(str, folders), "--json")
        assert shown.exit_code == 0, shown.output
        report = json.loads(shown.stdout)
        assert [b["link"] for b in report["bundles"]] == ["cloudfront", "cloudfront"]
        office = report["bundles"][1]["recipients"][0]["links"]
        assert {(x["status"], x["policy"], x["source_ip"]) for x in office} == {
            ("VALID", "custom", "127.0.0.1/32")
        }
        assert report["valid"] == 4

        checked = invoke("verify", *map(str, folders), "--json")
        assert checked.exit_code == 0, checked.output
        assert json.loads(checked.stdout)["outcomes"] == {"ok": 4}

        renewed = invoke("renew", *map(str, folders), "--within", "31d")
        assert renewed.exit_code == 0, renewed.output
        written = [Path(p) for p in renewed.stdout.splitlines() if p.endswith(".json")]
        assert [p.parent for p in written] == folders
        for folder, new_path in zip(folders, written, strict=True):
            old = json.loads((folder / "links.json").read_text(encoding="utf-8"))
            new = json.loads(new_path.read_text(encoding="utf-8"))
            assert new["header"]["cloudfront"] == old["header"]["cloudfront"]
            for was, row in zip(old["links"], new["links"], strict=True):
                facts = read_cloudfront_url(row["url"])
                assert facts.key_pair_id == pair.key_pair_id
                assert facts.source_ip == (None if folder.name == "globex" else "127.0.0.1/32")
                assert row["link_id"] != was["link_id"]
                old_query = dict(parse_qsl(urlsplit(was["url"]).query))
                got = fetch(row["url"])
                assert got.status == 200
                assert got.body == FILES[row["key"]]
                assert (
                    got.headers["content-disposition"] == old_query["response-content-disposition"]
                )
        # The renewals are what a folder now stands for: verify checks them at the edge.
        again = invoke("verify", *map(str, folders), "--json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["outcomes"] == {"ok": 4}
