"""The classification prompt: one versioned place.

`PROMPT_VERSION` is part of the classification cache key, so a cached answer is never reused for a
different question. Bump it whenever the text `build_prompt` returns changes (a unit test pins the text's
fingerprint to the version, so forgetting fails the build)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from photopipe.models.classification import Category

PROMPT_VERSION = "2026-11-23.1"

# What each key means, for the model; the order is the order the model reads them in.
CATEGORY_DESCRIPTIONS: Mapping[Category, str] = MappingProxyType(
    {
        Category.SOCIAL_ACTIVITIES: (
            "two or more people together: friends, family, parties, meals, events, group photos"
        ),
        Category.PETS: "a pet or other animal is the main subject (cat, dog, rabbit, bird, ...)",
        Category.SINGLE_PERSON: "one person is the main subject: a portrait, a selfie, a full-body photo",
        Category.FOODS: "food or drinks are the main subject: dishes, meals, desserts, coffee",
        Category.TRAVEL_SCENERY: (
            "landscapes, cityscapes, landmarks, nature, streets and views while travelling"
        ),
        Category.SCREENSHOT: "a screenshot of a phone or computer screen: apps, chats, web pages, games",
        Category.IDCARD: (
            "an identity document (ID card, passport, driving licence) or a formal ID-style headshot "
            "on a plain background"
        ),
        Category.OTHER: "anything else, or when no category above clearly fits",
    }
)

_SCHEMA = '{"category": "<one key>", "confidence": <number from 0 to 1>, "reason": "<one short sentence>"}'

_STRICT = (
    "Your previous reply could not be used. Reply with only this JSON, no prose, no code fences, "
    "no markdown, no other keys, nothing before or after it:\n" + _SCHEMA
)


def build_prompt(*, strict: bool = False) -> str:
    """The instruction sent with the photo. `strict=True` adds the retry instruction used after an
    answer outside the schema."""
    keys = "\n".join(f"- {category.value}: {CATEGORY_DESCRIPTIONS[category]}" for category in Category)
    text = (
        "Classify this photo into exactly one of these categories (use the key on the left):\n"
        f"{keys}\n\n"
        "Rules: judge the main subject of the photo. A screenshot is `screenshot` whatever it shows. "
        "A formal ID photo is `idcard`, not `single_person`. If no category fits, answer `other`.\n\n"
        "Answer with ONLY a JSON object, no prose and no code fences, exactly in this form:\n"
        f"{_SCHEMA}\n"
        '- "category": one of the keys above, spelled exactly as written.\n'
        '- "confidence": how sure you are, a number from 0 to 1.\n'
        '- "reason": one short sentence in English (at most 200 characters) saying what you see. '
        "Never copy names, numbers or other personal data from documents into it."
    )
    if strict:
        text += "\n\n" + _STRICT
    return text
