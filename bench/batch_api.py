"""A large OpenAI-style batch through the gateway on the embedded stack, with the SDK.

    python bench/batch_api.py --lines 20000

Times the upload, the create call (it answers ``validating`` before the file is read), the
intake until the batch is ``in_progress`` (a worker reads, validates and writes every line),
the run until the batch ends, and the download of its output file, and checks that every
custom_id is answered exactly once. The intake is timed by polling every 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import openai

from tierline.config.settings import POLICY_DIR
from tierline.gateway import DEFAULT_LIMITS, make_app, serving
from tierline.producer.client import Client
from tierline.producer.embedded import embedded

ENDED = ("completed", "failed", "cancelled", "expired")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    n = parser.parse_args().lines
    content = b"".join(json.dumps({
        "custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": f"What is {i} + 1?"}],
                 "max_tokens": 32}}).encode() + b"\n" for i in range(n))
    with tempfile.TemporaryDirectory() as tmp, embedded(
            POLICY_DIR / "demo.yaml", database=Path(tmp) / "t.sqlite") as rt, \
            serving(make_app(Client(rt)), DEFAULT_LIMITS) as url:
        sdk = openai.OpenAI(base_url=f"{url}/v1",
                            api_key="unused", max_retries=0, timeout=600)
        started = time.perf_counter()
        upload = sdk.files.create(file=("bench.jsonl", content), purpose="batch")
        uploaded = time.perf_counter()
        batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                   completion_window="24h")
        created = time.perf_counter()
        answered_as = batch.status
        while (batch := sdk.batches.retrieve(batch.id)).status == "validating":
            time.sleep(0.1)
        read = time.perf_counter()
        while (batch := sdk.batches.retrieve(batch.id)).status not in ENDED:
            time.sleep(1)
        ended = time.perf_counter()
        output = sdk.files.content(batch.output_file_id or "").text.splitlines()
        downloaded = time.perf_counter()
    ids = sorted(json.loads(line)["custom_id"] for line in output)
    print(f"{n} lines ({len(content) / 1e6:.1f} MB): upload {uploaded - started:.1f} s, "
          f"create {created - uploaded:.2f} s ({answered_as}), intake until in_progress "
          f"{read - created:.1f} s, run {ended - created:.1f} s, download "
          f"{downloaded - ended:.1f} s; {batch.status}, {batch.request_counts}; every "
          f"custom_id once: {ids == sorted(f'r{i}' for i in range(n))}")


if __name__ == "__main__":
    main()
