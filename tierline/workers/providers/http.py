"""What every HTTP provider does the same way: send a JSON body under the remaining latency
budget, read a whole answer or stream it in. Each API supplies its body, its parser and its
stream reader."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tierline.workers.providers.base import Completion, ModelCall, TextStream, require_budget
from tierline.workers.providers.wire import read_json, send

StreamReader = tuple[Iterator[str], Callable[[float], Completion]]  # deltas; finish(latency_s)


class HttpProvider:
    """A model API over HTTP; subclasses set the endpoint and headers and the three hooks."""

    needs_base_url = True

    def __init__(self, url: str, headers: dict[str, str], client: httpx.Client) -> None:
        self._url = url
        self._headers = headers
        self._client = client

    def payload(self, call: ModelCall, *, stream: bool) -> dict[str, Any]:
        """The request body for ``call``."""
        raise NotImplementedError

    def parse(self, body: dict[str, Any], call: ModelCall, *, latency_s: float) -> Completion:
        """A Completion from a whole response body, or MalformedResponse."""
        raise NotImplementedError

    def read_stream(self, response: httpx.Response, call: ModelCall, *, deadline_at: float
                    ) -> StreamReader:
        """The text deltas of a streamed response, and how to assemble the Completion."""
        raise NotImplementedError

    def _send(self, call: ModelCall, *, stream: bool, timeout_s: float) -> httpx.Response:
        require_budget(timeout_s, call.model)
        return send(self._client, self._url, headers=self._headers,
                    payload=self.payload(call, stream=stream), timeout_s=timeout_s,
                    model=call.model)

    def complete(self, call: ModelCall, *, timeout_s: float) -> Completion:
        """Ask for one whole answer within ``timeout_s``; ``call.stream`` streams it in."""
        if call.stream:
            return self.stream(call, timeout_s=timeout_s).read()
        started = time.monotonic()
        response = self._send(call, stream=False, timeout_s=timeout_s)
        try:
            body = read_json(response, deadline_at=started + timeout_s, model=call.model)
        finally:
            response.close()
        return self.parse(body, call, latency_s=time.monotonic() - started)

    def stream(self, call: ModelCall, *, timeout_s: float) -> TextStream:
        """Send now (errors before the first token raise here); deltas come as read."""
        started = time.monotonic()
        response = self._send(call, stream=True, timeout_s=timeout_s)
        deltas, finish = self.read_stream(response, call, deadline_at=started + timeout_s)
        return TextStream(deltas, lambda: finish(time.monotonic() - started), response.close)
