"""``tierline metrics``: the exporter Prometheus scrapes for what no one process counts.

``GET /metrics`` answers with the cluster's gauges read from Redis at that moment (queue
depth per ingress and tier queue, absorber use, breakers; ``tierline.metrics``) and the
counters of the processes sharing its ``PROMETHEUS_MULTIPROC_DIR``, if any.
``GET /healthz`` answers ``ok`` when Redis answers (the compose healthcheck).
"""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from tierline import metrics
from tierline.workers.metrics_cluster import cluster_collector

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, metrics.render(cluster_collector()), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                cluster_collector().ping()
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b"not found: try /metrics\n", "text/plain")
        except Exception as exc:  # a scrape error is an answer, never a dropped connection
            log.warning("metrics: %s failed", path, exc_info=True)
            self._send(503, f"unavailable: {type(exc).__name__}\n".encode(), "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug(format, *args)


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """The exporter bound to ``host:port`` (port 0: any free one), not yet serving."""
    return ThreadingHTTPServer((host, port), _Handler)


def serve(host: str, port: int) -> None:
    """Serve until interrupted."""
    cluster_collector()  # fail at start, not at the first scrape, without Redis
    server = make_server(host, port)
    print(f"tierline metrics on http://{host}:{server.server_address[1]}/metrics", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
