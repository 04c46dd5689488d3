from __future__ import annotations

import pytest

from photopipe.classification import Answer, Category, InvalidAnswer, parse_answer

GOOD = '{"category": "pets", "confidence": 0.93, "reason": "A cat on a sofa."}'


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"  \n{GOOD}\n ",
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Here is the classification:\n{GOOD}\nI hope this helps.",
        f"Sure! ```json {GOOD} ``` Let me know.",
        '{"category":"pets","confidence":0.93,"reason":"   A cat on a sofa.  "}',
        'I think {this} is it: {"category": "pets", "confidence": 0.93, "reason": "A cat on a sofa."}',
    ],
    ids=[
        "bare",
        "whitespace",
        "json-fence",
        "plain-fence",
        "prose",
        "fence-in-prose",
        "padded",
        "brace-in-prose",
    ],
)
def test_accepts_the_object_bare_fenced_or_in_prose(text: str) -> None:
    assert parse_answer(text) == Answer(category=Category.PETS, confidence=0.93, reason="A cat on a sofa.")


def test_integer_confidence_and_unicode_reason() -> None:
    result = parse_answer('{"category": "foods", "confidence": 1, "reason": "一碗拉面。"}')
    assert (result.category, result.confidence, result.reason) == (Category.FOODS, 1.0, "一碗拉面。")


def test_takes_the_first_object_and_never_a_later_one() -> None:
    text = f'{{"category": "cat", "confidence": 0.9, "reason": "x"}} or maybe {GOOD}'
    with pytest.raises(InvalidAnswer, match="'cat' is not one of"):
        parse_answer(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '{"category": "cats", "confidence": 0.9, "reason": "x"}',
            "category: 'cats' is not one of social_activities",
        ),
        ('{"category": "Pets", "confidence": 0.9, "reason": "x"}', "category: 'Pets' is not one of"),
        ('{"category": "宠物萌照", "confidence": 0.9, "reason": "x"}', "is not one of"),
        (
            '{"category": "pets", "confidence": 1.5, "reason": "x"}',
            "confidence: Input should be less than or equal",
        ),
        (
            '{"category": "pets", "confidence": -0.1, "reason": "x"}',
            "confidence: Input should be greater than or",
        ),
        (
            '{"category": "pets", "confidence": "0.9", "reason": "x"}',
            "confidence: Input should be a valid number",
        ),
        (
            '{"category": "pets", "confidence": true, "reason": "x"}',
            "confidence: Input should be a valid number",
        ),
        (
            '{"category": "pets", "confidence": NaN, "reason": "x"}',
            "confidence: Input should be a finite number",
        ),
        ('{"category": "pets", "reason": "x"}', "confidence: Field required"),
        ('{"category": "pets", "confidence": 0.9}', "reason: Field required"),
        ('{"confidence": 0.9, "reason": "x"}', "category: Field required"),
        ('{"category": "pets", "confidence": 0.9, "reason": "   "}', "reason: String should have at least 1"),
        (
            '{"category": "pets", "confidence": 0.9, "reason": "' + "x" * 301 + '"}',
            "reason: String should have at most",
        ),
        ('{"category": ["pets"], "confidence": 0.9, "reason": "x"}', "category:"),
        ("pets", "no JSON object in the reply 'pets'"),
        ("", "no JSON object"),
        ('["pets", 0.9, "x"]', "no JSON object"),
        ('{"category": "pets", "confidence": 0.9, "reason": "x"', "no JSON object"),
        ("The category is pets with confidence 0.9.", "no JSON object"),
    ],
)
def test_rejects_anything_outside_the_schema(text: str, problem: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_answer(text)
    assert problem in info.value.message
    assert info.value.code == "invalid_answer"


def test_error_quotes_a_bounded_snippet_of_the_reply() -> None:
    with pytest.raises(InvalidAnswer) as info:
        parse_answer("blah " * 500)
    assert len(info.value.message) < 200


def test_answer_is_frozen() -> None:
    result = parse_answer(GOOD)
    with pytest.raises(ValueError, match="frozen"):
        result.reason = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        '{"category": "pets", "confidence": 0.9, "reason": "x", "label": "宠物"}',
        '{"category": "pets", "label_en": "Pets", "label_zh": "宠物萌照", "confidence": 0.9, "reason": "x", '
        '"tags": ["cat", "sofa"], "details": {"animal": "cat"}}',
        '```json\n{"reason": "x", "category": "pets", "extra": null, "confidence": 0.9}\n```',
    ],
    ids=["label", "several-keys", "fenced-null-key"],
)
def test_keys_the_model_adds_are_ignored(text: str) -> None:
    assert parse_answer(text) == Answer(category=Category.PETS, confidence=0.9, reason="x")
