"""``Client.stream`` on the embedded stack: an answer as the model writes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from tierline.config.settings import POLICY_DIR
from tierline.producer.client import Client
from tierline.producer.embedded import embedded
from tierline.producer.streams import AnswerReplaced, Piece, RequestFailed, follow
from tierline.record.schema import jobs
from tierline.router.errors import InvalidInput
from tierline.workers.engine.relay import Event


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """demo.yaml: ``kind: single``, so a streamed answer is relayed piece by piece."""
    database = tmp_path_factory.mktemp("stream") / "t.sqlite"
    with embedded(POLICY_DIR / "demo.yaml", database=database) as rt:
        yield Client(rt)


def _newest(client: Client, wait_s: float = 0.0) -> dict[str, Any]:
    """The result of the newest streamed request (each one is a job named ``stream``)."""
    with client.rt.engine.connect() as conn:
        job = str(conn.execute(select(jobs.c.id).where(jobs.c.name == "stream")
                               .order_by(jobs.c.created_at.desc()).limit(1)).scalar_one())
    client.wait(job, timeout_s=wait_s)
    return next(iter(client.results(job)))


def test_an_answer_comes_piece_by_piece_and_adds_up_to_the_result(single: Client) -> None:
    pieces = list(single.stream("Describe a harbour at dawn."))
    assert len(pieces) > 1
    row = _newest(single)
    assert row["status"] == "done" and "".join(pieces) == row["content"]


def test_a_request_dict_streams_too_and_bad_input_is_refused(single: Client) -> None:
    pieces = list(single.stream({"messages": [{"role": "user", "content": "Name a bird."}],
                                 "max_output_tokens": 16}))
    assert "".join(pieces) == _newest(single)["content"]
    with pytest.raises(InvalidInput, match="messages"):
        list(single.stream({"messages": []}))


def test_an_answer_not_ready_in_time_is_an_error_and_still_answered(single: Client) -> None:
    with pytest.raises(RequestFailed, match="not answered within 0 s") as raised:
        list(single.stream("Tell me about lighthouses.", timeout_s=0.0))
    assert raised.value.status in ("accepted", "routed")
    assert _newest(single, wait_s=30)["status"] == "done"


def test_under_a_cascade_the_answer_comes_whole_once_accepted(tmp_path: Path) -> None:
    policy = yaml.safe_load((POLICY_DIR / "demo.yaml").read_text())
    policy["strategy"] = {"kind": "cascade", "confidence_bar": 0.5}
    path = tmp_path / "cascade.yaml"
    path.write_text(yaml.safe_dump(policy))
    with embedded(path, database=tmp_path / "t.sqlite") as rt:
        client = Client(rt)
        pieces = list(client.stream("What is 12 + 30?"))
        assert pieces == [_newest(client)["content"]]


def test_following_a_call_that_broke_part_way_raises_answer_replaced(single: Client) -> None:
    # What a tier worker relays when a streamed call breaks and its fallback answers.
    request_id = "not-a-request-row"
    single.rt.relay.publish(request_id, [Event("begin", "sim-nano"), Event("text", "The sea"),
                                         Event("begin", "sim-small"), Event("text", "A ship")])
    seen = []
    with pytest.raises(AnswerReplaced, match="void"):
        for piece in follow(single.rt, request_id, timeout_s=5.0):
            seen.append(piece)
    assert seen == [Piece("The sea", "sim-nano")]


def test_following_ends_at_the_end_event_or_the_timeout(single: Client) -> None:
    single.rt.relay.publish("ended", [Event("begin", "m"), Event("text", "a"), Event("end"),
                                      Event("text", "never read")])
    assert [p.text for p in follow(single.rt, "ended", timeout_s=5.0)] == ["a"]
    assert list(follow(single.rt, "silent", timeout_s=0.2)) == []
