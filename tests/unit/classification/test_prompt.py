from __future__ import annotations

import hashlib
import re

from photopipe.classification import CATEGORY_LABELS, PROMPT_VERSION, Category, build_prompt

# The prompt text each version stands for. The cache key includes PROMPT_VERSION, so a changed prompt with
# the same version would reuse answers to a different question: bump PROMPT_VERSION, then add its line.
FINGERPRINTS = {
    "2026-11-23.1": "5fdbc8ac9ee813dc9fc5a3c731523c59f6942b4f4b5fbdb1c4f05758034844a6",
}


def _fingerprint() -> str:
    text = build_prompt() + "\x00" + build_prompt(strict=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_prompt_text_matches_its_version() -> None:
    assert FINGERPRINTS.get(PROMPT_VERSION) == _fingerprint(), (
        "the prompt changed: bump PROMPT_VERSION and record the new fingerprint "
        f"{PROMPT_VERSION!r}→{_fingerprint()!r} here"
    )


def test_version_is_a_dated_serial() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\.\d+", PROMPT_VERSION)


def test_prompt_names_every_category_key_and_the_json_fields() -> None:
    prompt = build_prompt()
    for category in Category:
        assert f"- {category.value}: " in prompt
    for key in ('"category"', '"confidence"', '"reason"'):
        assert key in prompt
    assert "ONLY a JSON object" in prompt


def test_strict_prompt_is_the_prompt_plus_the_retry_instruction() -> None:
    strict = build_prompt(strict=True)
    assert strict.startswith(build_prompt())
    assert "Reply with only this JSON, no prose, no code fences" in strict[len(build_prompt()) :]


def test_labels_cover_every_category_with_the_original_chinese_names() -> None:
    assert set(CATEGORY_LABELS) == set(Category)
    assert [CATEGORY_LABELS[c][0] for c in Category] == [
        "社交活动",
        "宠物萌照",
        "单人照片",
        "美食记录",
        "旅行风景",
        "手机截图",
        "证件照",
        "其它",
    ]
    assert CATEGORY_LABELS[Category.TRAVEL_SCENERY] == ("旅行风景", "Travel & scenery")
    assert [c.value for c in Category] == [
        "social_activities",
        "pets",
        "single_person",
        "foods",
        "travel_scenery",
        "screenshot",
        "idcard",
        "other",
    ]
