"""Shadowed traffic as training data: what production can grade, with no gold labels.

A shadowed request was answered by the routing in force and also sent to the top tier
(and to the other tiers the learner trains on). Its record holds only what production
saw: the prompt, and per model the response and its token counts. The grader is the
models' own agreement: the reference answer is the one most of the shadowed models give,
ties going to the top tier's (with two models, the top tier's answer is the reference); a
model's answer counts as right when it is the reference (the same extracted answer), and
when no model gives an answer, only the top tier's counts. :func:`items_from_traffic` turns
records into the items :func:`tierline.router.learned.training.train_routing` learns from, so
retraining
from traffic is the same code as training on a recorded-outcome dataset.

A record (one JSON object per line of a traffic file)::

    {"id": "...", "prompt": "...", "top": "model-c",
     "outcomes": {"model-a": {"response": "...", "prompt_tokens": 12, "completion_tokens": 30},
                  "model-c": {...}}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Outcome
from tierline.router.learned.answers import EXTRACTOR_FOR_GRADER, EXTRACTORS


def traffic_record(request_id: str, prompt: str, top: str,
                   outcomes: Mapping[str, Outcome]) -> dict[str, Any]:
    """The record of one shadowed request: what was paid for, without any grade."""
    return {"id": request_id, "prompt": prompt, "top": top,
            "outcomes": {m: {"response": o.response, "prompt_tokens": o.prompt_tokens,
                             "completion_tokens": o.completion_tokens}
                         for m, o in outcomes.items()}}


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{where}: a whole number >= 0, got {value!r}")
    return value


def reference_answer(answers: Mapping[str, str | None], top: str) -> str | None:
    """The answer a shadowed request is graded by: the one most of its models give, ties
    going to the top tier's (with two models, the top tier's own)."""
    counts: dict[str, int] = {}
    for answer in answers.values():
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return None
    most = max(counts.values())
    leaders = [a for a, n in counts.items() if n == most]
    return leaders[0] if len(leaders) == 1 else answers[top]


def item_from_record(record: Any, grader_kind: str, where: str) -> Item:
    """One record as a training item graded by agreement with its top tier."""
    if grader_kind not in EXTRACTOR_FOR_GRADER:
        raise InvalidInput(f"grader kind {grader_kind!r} is not supported "
                           f"(known: {', '.join(EXTRACTOR_FOR_GRADER)})")
    if not isinstance(record, dict):
        raise InvalidInput(f"{where}: not a JSON object")
    prompt, top, raw = record.get("prompt"), record.get("top"), record.get("outcomes")
    if not isinstance(prompt, str) or not isinstance(top, str) or not isinstance(raw, dict):
        raise InvalidInput(f"{where}: needs 'prompt' (text), 'top' (a model) and 'outcomes'")
    if top not in raw:
        raise InvalidInput(f"{where}: the top tier {top!r} has no outcome")
    extract = EXTRACTORS[EXTRACTOR_FOR_GRADER[grader_kind]]
    parsed: dict[str, tuple[str, int, int]] = {}
    for model, out in raw.items():
        at = f"{where}: outcomes.{model}"
        if not isinstance(out, dict) or not isinstance(out.get("response"), str):
            raise InvalidInput(f"{at}: needs 'response' (text)")
        parsed[str(model)] = (out["response"], _int(out.get("prompt_tokens"), at),
                              _int(out.get("completion_tokens"), at))
    answers = {m: extract(text) for m, (text, _, _) in parsed.items()}
    agreed = reference_answer(answers, top)
    outcomes = {m: Outcome(text, answers[m],
                           1.0 if (agreed is None and m == top)
                           or (agreed is not None and answers[m] == agreed) else 0.0, p, c)
                for m, (text, p, c) in parsed.items()}
    key = (agreed or "") if grader_kind == "choice" else None
    return Item(str(record.get("id", where)), prompt, grader_kind, key, {}, outcomes)


def items_from_traffic(records: Sequence[Any], grader_kind: str,
                       source: str = "<traffic>") -> list[Item]:
    """Every record as an item; all must hold the same models (those the learner trains)."""
    items = [item_from_record(r, grader_kind, f"{source}: record {i + 1}")
             for i, r in enumerate(records)]
    if items:
        models = set(items[0].outcomes)
        for i, it in enumerate(items):
            if set(it.outcomes) != models:
                raise InvalidInput(f"{source}: record {i + 1}: models {sorted(it.outcomes)} "
                                   f"differ from the first record's {sorted(models)}")
    return items
