"""The gateway against hostile clients, over raw sockets: framing, limits, timeouts, keys.

No answer, whatever the input, carries SQL, a traceback or a Python type name.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import serve_gateway
from tierline.config.settings import POLICY_DIR
from tierline.gateway import DEFAULT_LIMITS
from tierline.gateway.keys_file import load_keys
from tierline.producer.client import Client
from tierline.producer.embedded import embedded

KEY = "sk-hostile-0001"
AUTH = f"Authorization: Bearer {KEY}\r\n"
HELLO = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "2 + 2?"}]})
LIMITS = dataclasses.replace(DEFAULT_LIMITS, body_bytes=64 << 10, upload_bytes=256 << 10,
                             header_timeout_s=1.0, read_timeout_s=1.0)
LEAKS = re.compile(r"Traceback|SELECT|INSERT|sqlalchemy|psycopg|File \"|"
                   r"\b[A-Z][a-zA-Z]*(Error|Exception)\b|RecursionError|<[a-z_.]+ object")


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("hostile")
    keys = folder / "keys.yaml"
    keys.write_text(f"hostile: [{KEY}]\n")
    with embedded(POLICY_DIR / "demo.yaml", database=folder / "t.sqlite") as rt, \
            serve_gateway(Client(rt), keys=load_keys(keys), limits=LIMITS) as base:
        yield int(base.split(":")[2].split("/")[0])


def _exchange(port: int, head: str, body: bytes = b"", *, wait_s: float = 10.0
              ) -> tuple[int, dict[str, str], bytes]:
    """Send a request as given (head without its blank line, then body) and read one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        try:
            sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all: read the answer
        return _answer(sock)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed without an answer: {data!r}")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    _no_leak(rest)
    return status, headers, rest


def _no_leak(body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    assert not LEAKS.search(text), text


def _post(path: str, body: bytes, extra: str = "", *, auth: bool = True) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{AUTH if auth else ''}"
            f"Content-Type: application/json\r\n{extra}")


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "12, 13"])
def test_a_malformed_content_length_is_400(port: int, length: str) -> None:
    status, _, _ = _exchange(port, _post("/v1/chat/completions", b"",
                                         f"Content-Length: {length}\r\n"), HELLO.encode())
    assert status == 400


def test_transfer_encoding_with_content_length_is_400(port: int) -> None:
    chunked = f"{len(HELLO):x}\r\n{HELLO}\r\n0\r\n\r\n".encode()
    status, headers, _ = _exchange(port, _post(
        "/v1/chat/completions", b"", f"Content-Length: {len(chunked)}\r\n"
        "Transfer-Encoding: chunked\r\n"), chunked)
    assert status == 400 and headers.get("connection") == "close"


def test_a_chunked_body_is_read_and_answered(port: int) -> None:
    chunked = b"".join(f"{len(part):x}\r\n{part}\r\n".encode()
                       for part in (HELLO[:10], HELLO[10:])) + b"0\r\n\r\n"
    status, _, body = _exchange(port, _post("/v1/chat/completions", b"",
                                            "Transfer-Encoding: chunked\r\n"), chunked)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"]


def test_a_chunked_body_over_the_limit_is_413(port: int) -> None:
    piece = b"x" * 8192
    chunked = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    body = chunked * 16  # 128 KiB, never ended: refused once the count passes 64 KiB
    status, headers, answer = _exchange(port, _post("/v1/chat/completions", b"",
                                                    "Transfer-Encoding: chunked\r\n"), body)
    assert status == 413 and b"the limit is 65536" in answer
    assert headers.get("connection") == "close"


def test_a_declared_body_over_the_limit_is_413_before_it_is_sent(port: int) -> None:
    status, _, answer = _exchange(port, _post("/v1/chat/completions", b"",
                                              "Content-Length: 10000000\r\n"), b"")
    assert status == 413 and b"10000000 bytes; the limit is 65536" in answer


def test_an_unauthenticated_upload_is_401_without_reading_it(port: int) -> None:
    size = 50 << 20
    head = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n")
    started = time.monotonic()
    status, headers, answer = _exchange(port, head, b"x" * (64 << 10))
    assert status == 401 and b"no API key" in answer
    assert headers.get("connection") == "close"
    assert time.monotonic() - started < 2.0  # answered at once, not after 50 MB


def test_a_long_idempotency_key_is_400(port: int) -> None:
    status, _, answer = _exchange(port, _post(
        "/v1/chat/completions", b"", f"Content-Length: {len(HELLO)}\r\n"
        f"Idempotency-Key: {'k' * 300}\r\n"), HELLO.encode())
    assert status == 400 and b"at most 255 characters" in answer


def test_headers_over_the_limit_are_refused(port: int) -> None:
    status, _, _ = _exchange(port, f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{AUTH}"
                             f"X-Padding: {'p' * (32 << 10)}\r\n")
    assert status in (400, 431)


@pytest.mark.parametrize(("body", "says"), [
    (b"[" * 60_000, b"nested deeper than"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1' + b"0" * 5000 + b"}",
     b"number longer than"),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', b"surrogate"),
    (b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}', b"NUL"),
    (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', b"not UTF-8"),
    (b'{"messages": [{"role": "user", "content": NaN}]}', b"NaN is not valid JSON"),
])
def test_hostile_json_is_400_with_a_reason(port: int, body: bytes, says: bytes) -> None:
    status, _, answer = _exchange(port, _post("/v1/chat/completions", b"",
                                              f"Content-Length: {len(body)}\r\n"), body)
    assert status == 400 and says in answer, answer


def test_a_client_that_never_finishes_its_headers_is_cut_off(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(5):  # a byte now and then does not keep it open
            time.sleep(0.3)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        assert sock.recv(1024) == b""
    assert time.monotonic() - started < 5.0


def test_a_body_that_stalls_is_408(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((_post("/v1/chat/completions", b"", "Content-Length: 1000\r\n")
                      + "\r\n").encode() + b'{"messages": ')
        status, headers, answer = _answer(sock)
    assert status == 408 and b"paused for more than 1 s" in answer
    assert headers.get("connection") == "close"


def test_content_parts_are_taken_as_openai_takes_them(port: int) -> None:
    parts = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is"}, {"type": "text", "text": "2 + 2?"}]}]}
    body = json.dumps(parts).encode()
    status, _, answer = _exchange(port, _post("/v1/chat/completions", b"",
                                              f"Content-Length: {len(body)}\r\n"), body)
    assert status == 200, answer
    image = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    body = json.dumps(image).encode()
    status, _, answer = _exchange(port, _post("/v1/chat/completions", b"",
                                              f"Content-Length: {len(body)}\r\n"), body)
    assert status == 400 and b"content[1]: type 'image_url' is not supported" in answer


def test_many_calls_share_one_kept_alive_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        ends = set()
        for number in range(12):
            if number % 3:
                conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            else:
                conn.request("POST", "/v1/chat/completions", body=HELLO,
                             headers={"Authorization": f"Bearer {KEY}",
                                      "Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            assert conn.sock is not None
            ends.add(conn.sock.getsockname())
        assert len(ends) == 1
    finally:
        conn.close()


def test_a_failure_inside_is_500_with_a_request_id_only(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    secret = json.dumps({"messages": [{"role": "user", "content": "my secret prompt"}]})
    with embedded(POLICY_DIR / "demo.yaml", database=tmp_path / "t.sqlite") as rt, \
            serve_gateway(Client(rt)) as base, caplog.at_level(logging.ERROR):
        with rt.engine.begin() as conn:  # the record fails: its error quotes SQL and values
            conn.exec_driver_sql("ALTER TABLE requests RENAME TO requests_gone")
        port = int(base.split(":")[2].split("/")[0])
        status, headers, answer = _exchange(port, _post(
            "/v1/chat/completions", b"", f"Content-Length: {len(secret)}\r\n", auth=False),
            secret.encode())
    assert status == 500
    message = json.loads(answer)["error"]["message"]
    assert message == f"internal error (request id {headers['x-request-id']})"
    assert "INSERT INTO requests" in caplog.text and headers["x-request-id"] in caplog.text


def test_each_request_leaves_one_access_log_line_without_its_prompt(
        port: int, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "the launch code is 0000"}]})
    with caplog.at_level(logging.INFO, logger="tierline.gateway.access"):
        status, headers, _ = _exchange(port, _post("/v1/chat/completions", b"",
                                                   f"Content-Length: {len(body)}\r\n"),
                                       body.encode())
        time.sleep(0.2)  # the line is written as the request ends
    lines = [r.getMessage() for r in caplog.records if r.name == "tierline.gateway.access"]
    line = next(x for x in lines if headers["x-request-id"] in x)
    assert status == 200
    assert line.startswith("POST /v1/chat/completions 200 ") and "tenant=hostile" in line
    assert "launch code" not in caplog.text


def test_metrics_are_served_without_a_key_in_prometheus_text(port: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    _exchange(port, _post("/v1/chat/completions", b"", f"Content-Length: {len(HELLO)}\r\n"),
              HELLO.encode())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    answer = conn.getresponse()
    text = answer.read().decode()
    assert answer.status == 200 and answer.getheader("content-type", "").startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert any(name.startswith("tierline_") for name in names), sorted(names)
