"""Where a link's time goes: one synthetic run of N links, its steps timed apart.

``python bench/_perlink_run.py 1000000 run``: the run is ``_memory_run``'s (synthetic lister,
everything else real), each step's function wrapped with a CPU-time counter. The wrapped
calls are per page or per chunk of links (never per link), so the counters cost nothing
measurable. ``python bench/_perlink_run.py 0 pieces`` takes signed links apart: the pieces of
signing, the staged JSON line, the CSV row, the file writes, the url digest and the audit
event, each timed alone on the same 20,000 links. Prints one JSON object: microseconds of CPU
per link, per step. With ``PYTHONPATH`` on another checkout it measures that code (it only
calls what both sides have), which is how docs/performance.md's before/after tables were made.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _memory_run import PREFIXES, SyntheticGateway, SyntheticListing

from sharebatch import audit, child
from sharebatch.models import Credentials, Expiry, ObjectRef
from sharebatch.run import bundles, link_ids, pipeline, pool, runner, select, sign
from sharebatch.s3 import gateway as gateway_module
from sharebatch.s3.sigv4 import SigV4Presigner
from sharebatch.times import iso

SPENT: dict[str, float] = {}


def _timed(name: str, owner: Any, attribute: str) -> None:
    inner: Callable[..., Any] = getattr(owner, attribute)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            SPENT[name] = SPENT.get(name, 0.0) + time.process_time() - started

    setattr(owner, attribute, wrapper)


def _timed_async(name: str, owner: Any, attribute: str) -> None:
    inner: Callable[..., Any] = getattr(owner, attribute)

    @functools.wraps(inner)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return await inner(*args, **kwargs)
        finally:
            SPENT[name] = SPENT.get(name, 0.0) + time.process_time() - started

    setattr(owner, attribute, wrapper)


def whole_run(links: int, workers: int = 1) -> dict[str, float]:
    """CPU us per link of each step of a whole run, and of the run.

    With ``workers`` > 1 the steps are the run's own (the parent's): the signing, staging and
    audit lines are the workers', so what is timed is what the parent does around them.
    """
    SyntheticListing.per_prefix = links // PREFIXES
    gateway_module.S3Gateway = SyntheticGateway  # type: ignore[misc]
    if workers > 1:
        _parent_steps()
    _timed("filter matching", select.Selector, "select")
    _timed("sign (Signer.sign_get)", sign.Signer, "sign_get")
    _timed("stage (PartFile.write)", bundles.PartFile, "write")
    if hasattr(sign, "stage_chunk"):  # chunks signed into columns (no Link per object)
        _timed("sign (Signer.sign_columns)", sign.Signer, "sign_columns")
        _timed("stage (PartFile.write_columns)", bundles.PartFile, "write_columns")
        _timed("audit link_issued_columns", audit, "link_issued_columns")
    if hasattr(pipeline, "link_issued"):
        _timed("audit link_issued", pipeline, "link_issued")
    else:
        _timed("audit link_issued", pipeline, "emit_many")
    _timed_async("join (write_bundles)", runner, "write_bundles")
    _timed("review page (write_review)", runner, "write_review")
    _timed("summary (build_report + summary.json)", runner, "build_report")
    _timed("summary (build_report + summary.json)", runner, "_finish")
    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-") as tmp:
        manifest = Path(tmp) / "m.yml"
        prefixes = "".join(f"      - data/p{i:03d}/\n" for i in range(PREFIXES))
        manifest.write_text(
            "version: 1\njobs:\n  - name: bulk\n    bucket: bench-bucket\n    region: eu-west-1\n"
            f"    expires_in: 7d\n    prefixes:\n{prefixes}    recipients: [{{id: r}}]\n"
        )
        started, cpu = time.perf_counter(), time.process_time()
        summary = asyncio.run(
            runner.run_manifest_async(manifest, out=Path(tmp) / "out", workers=workers)
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - started
        assert summary.report["totals"]["links"] == links
    result = {name: 1e6 * spent / links for name, spent in SPENT.items()}
    result["whole run (CPU)"] = 1e6 * cpu / links
    if workers > 1:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped
        result["workers (CPU)"] = 1e6 * (children.ru_utime + children.ru_stime) / links
    result["whole run (wall)"] = 1e6 * wall / links
    return result


def _parent_steps() -> None:
    """The parent's own steps with signing workers (each wrapped call is per page)."""
    _timed("listing (the synthetic pages)", SyntheticListing, "page")
    _timed("reading answers (pickle.loads)", child.pickle, "loads")
    _timed("link ids (link_ids.draw)", link_ids, "draw")
    if hasattr(pipeline._Pending, "choose"):
        _timed("selection and tallies (_Pending.choose)", pipeline._Pending, "choose")
    _timed("page to columns (worker.pack)", pool, "pack")
    _timed("pickling pages (child.frame)", child, "frame")
    _timed("answers appended (_Pending._commit)", pipeline._Pending, "_commit")


def _cpu(action: Callable[[], object], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


def pieces(count: int = 20_000) -> dict[str, float]:
    """CPU us per link of the pieces inside signing, staging and auditing (best of 5)."""
    when = datetime(2026, 9, 30, tzinfo=UTC)
    objects = [
        ObjectRef("bench-bucket", f"data/p000/file-{i:09d}.csv", 1024 + i, "0" * 32, when)
        for i in range(count)
    ]
    credentials = Credentials("AKIABENCHBENCHBENCH0", "bench-secret")
    presign = SigV4Presigner(
        credentials, region="eu-west-1", endpoint_url=None, addressing_style="auto", environ={}
    )
    signer = sign.Signer(presign, job="bulk", expiry=Expiry(seconds=7 * 86400))
    links = signer.sign_get("r", objects)
    params = [signer.params(o.key) for o in objects]
    found: dict[str, float] = {}
    found["sign: fast presigner alone"] = _cpu(
        lambda: [
            presign("GET", o.bucket, o.key, 604800, p) for o, p in zip(objects, params, strict=True)
        ]
    )
    if hasattr(presign, "get_many"):
        requests = [(o.key, p) for o, p in zip(objects, params, strict=True)]
        found["sign: fast presigner, get_many"] = _cpu(
            lambda: [
                presign.get_many("bench-bucket", 604800, requests[i : i + 250])
                for i in range(0, count, 250)
            ]
        )
    found["sign: link ids"] = _cpu(lambda: [link_ids.new_link_id() for _ in objects])
    found["sign: download name (templates.render)"] = _cpu(
        lambda: [signer.params(o.key) for o in objects]
    )
    found["sign: whole Signer.sign_get"] = _cpu(lambda: signer.sign_get("r", objects))
    found["url digest (sha256)"] = _cpu(lambda: [audit.url_digest(link.url) for link in links])

    with tempfile.TemporaryDirectory(prefix="sharebatch-bench-") as tmp:
        folder = Path(tmp)

        def staged(csv: bool) -> Callable[[], None]:
            def run() -> None:
                part = bundles.PartFile(folder / "part.jsonl", csv=csv)
                for start in range(0, count, 250):
                    part.write(links[start : start + 250])
                part.close()

            return run

        found["stage: JSON line + its write"] = _cpu(staged(False))
        found["stage: JSON line + CSV row + writes"] = _cpu(staged(True))
        found["stage: CSV row + its write"] = (
            found["stage: JSON line + CSV row + writes"] - found["stage: JSON line + its write"]
        )
        text = (folder / "part.jsonl").read_text()
        lines = text.splitlines(keepends=True)

        def writes() -> None:
            with open(folder / "copy.jsonl", "w", encoding="utf-8", newline="") as out:
                for line in lines:
                    out.write(line)

        found["stage: file writes alone (JSON part)"] = _cpu(writes)

        def audited() -> None:
            with audit.audit_file(folder / "audit.jsonl"):
                for start in range(0, count, 250):
                    chunk = links[start : start + 250]
                    if hasattr(audit, "link_issued"):
                        audit.link_issued(chunk)
                    else:
                        audit.emit_many("debug", "link_issued", _records(chunk))

        found["audit: link_issued event (records, digest, redact, JSON, write)"] = _cpu(audited)
        os.unlink(folder / "audit.jsonl")
    return {name: 1e6 * spent / count for name, spent in found.items()}


def _records(links: list[Any]) -> Any:
    # As pipeline._deliver built them before audit.link_issued.
    return (
        {
            "job": link.job,
            "recipient": link.recipient,
            "bucket": link.obj.bucket,
            "key": link.obj.key,
            "method": link.method,
            "expires_at": iso(link.expires_at),
            "link_id": link.link_id,
            "url_sha256": audit.url_digest(link.url),
        }
        for link in links
    )


def main() -> None:
    links = int(sys.argv[1])
    what = sys.argv[2] if len(sys.argv) > 2 else "run"
    # ``run N`` in one process, ``parent N W``: the run's own steps with W signing workers.
    if what == "pieces":
        result = pieces()
    else:
        result = whole_run(links, int(sys.argv[3]) if what == "parent" else 1)
    print(json.dumps({name: round(value, 2) for name, value in result.items()}))


if __name__ == "__main__":
    main()
