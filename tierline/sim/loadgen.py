"""Load generator: tiny chat requests from N threads over keep-alive connections.

python -m tierline.sim.loadgen http://127.0.0.1:8700 --threads 8 --seconds 5 --model sim-nano
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from urllib.parse import urlsplit


def _worker(url: str, body: bytes, deadline: float, counts: list[int], i: int) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    n = 0
    while time.perf_counter() < deadline:
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200:
            n += 1
    conn.close()
    counts[i] = n


def run(url: str, threads: int, seconds: float, model: str, max_tokens: int) -> float:
    """Requests per second completed with status 200."""
    body = json.dumps(
        {
            "model": model,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "ping"}],
        }
    ).encode()
    counts = [0] * threads
    deadline = time.perf_counter() + seconds
    pool = [
        threading.Thread(target=_worker, args=(url, body, deadline, counts, i))
        for i in range(threads)
    ]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    """Print requests/s for the given URL and thread count."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--model", default="sim-nano")
    parser.add_argument("--max-tokens", type=int, default=4)
    args = parser.parse_args()
    rps = run(args.url, args.threads, args.seconds, args.model, args.max_tokens)
    print(f"{rps:.0f} requests/s ({args.threads} threads, {args.seconds:g} s, {args.model})")


if __name__ == "__main__":
    main()
