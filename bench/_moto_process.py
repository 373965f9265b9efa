"""Child process for the benchmarks: moto's S3 server, seeded straight into its backend.

Seeding 50,000 objects through HTTP would take minutes; the backend takes them in seconds.
With a delay argument it also starts the delaying proxy (in this process, so that neither
moto nor the proxy competes with the measured client for its GIL). Prints
``READY <moto port> <proxy port or 0>`` and serves until its stdin closes.
"""

from __future__ import annotations

import gc
import json
import logging
import sys

from _servers import delaying_proxy
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer


def main() -> None:
    seed: dict[str, list[list[object]]] = json.loads(sys.argv[1])
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for bucket, prefixes in seed.items():
        backend.create_bucket(bucket, "eu-west-1")
        for prefix, count in prefixes:
            for i in range(int(count)):  # type: ignore[call-overload]
                backend.put_object(bucket, f"{prefix}obj-{i:06d}.bin", f"{prefix}{i}".encode())
    # The seeded backend is a large, long-lived heap: without this, a full collection now and
    # then stalls every thread of this process (the proxy's too) for ~100 ms, which S3's
    # latency does not have and which would be charged to the client being measured.
    gc.freeze()
    port = server.get_host_and_port()[1]
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    if delay:
        with delaying_proxy(f"http://127.0.0.1:{port}", delay) as proxy:
            print("READY", port, proxy.server_address[1], flush=True)
            sys.stdin.read()
    else:
        print("READY", port, 0, flush=True)
        sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
