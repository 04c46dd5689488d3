"""The model's answer: a schema strict about what matters (the category is one of the eight, the confidence
a number in 0-1, the reason a string) and tolerant of what does not (keys the model adds, e.g. a `label`,
are ignored), and a parser that finds the JSON object in the reply and never guesses a category from
anything else."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from photopipe.errors import PhotopipeError
from photopipe.models.classification import Category

MAX_REASON_CHARS = 300
# How many `{` positions `parse_answer` tries before giving up (replies are a few hundred characters).
_MAX_OBJECT_STARTS = 32
_SNIPPET_CHARS = 120


class InvalidAnswer(PhotopipeError):
    """The model's reply is not a classification in the schema (not JSON, unknown category, ...)."""

    status = 502
    default_code = "invalid_answer"


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    category: Category
    # strict: a number, never a string or a boolean the model happened to write.
    confidence: float = Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


def parse_answer(text: str) -> Answer:
    """The classification in a reply: a bare JSON object, or the first JSON object found in it (inside
    code fences or prose). Raises `InvalidAnswer` for anything else."""
    obj = _first_object(text)
    if obj is None:
        raise InvalidAnswer(f"no JSON object in the reply {_snippet(text)}")
    try:
        return Answer.model_validate(obj)
    except ValidationError as e:
        problems = "; ".join(_describe(err) for err in e.errors())
        raise InvalidAnswer(f"{problems} (reply {_snippet(text)})") from e


def _first_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    try:
        whole = json.loads(stripped)
    except ValueError:
        pass
    else:
        return whole if isinstance(whole, dict) else None
    decoder = json.JSONDecoder()
    start = stripped.find("{")
    tries = 0
    while start != -1 and tries < _MAX_OBJECT_STARTS:
        tries += 1
        try:
            value, _ = decoder.raw_decode(stripped, start)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                return value
        start = stripped.find("{", start + 1)
    return None


def _describe(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "answer"
    if err["type"] == "enum":
        allowed = ", ".join(c.value for c in Category)
        return f"{where}: {err['input']!r} is not one of {allowed}"
    return f"{where}: {err['msg']}"


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _SNIPPET_CHARS:
        flat = flat[:_SNIPPET_CHARS] + "…"
    return repr(flat)
