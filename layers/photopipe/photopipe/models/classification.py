"""The eight photo categories, their display labels, and a cached classification.

The category keys are what the model answers, what the cache and the image records store, and what clients
map to labels: never rename one without migrating the stored data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Category(StrEnum):
    SOCIAL_ACTIVITIES = "social_activities"
    PETS = "pets"
    SINGLE_PERSON = "single_person"
    FOODS = "foods"
    TRAVEL_SCENERY = "travel_scenery"
    SCREENSHOT = "screenshot"
    IDCARD = "idcard"
    OTHER = "other"


CATEGORY_LABELS: Mapping[Category, tuple[str, str]] = MappingProxyType(
    {
        Category.SOCIAL_ACTIVITIES: ("社交活动", "Social activities"),
        Category.PETS: ("宠物萌照", "Pets"),
        Category.SINGLE_PERSON: ("单人照片", "Single person"),
        Category.FOODS: ("美食记录", "Food"),
        Category.TRAVEL_SCENERY: ("旅行风景", "Travel & scenery"),
        Category.SCREENSHOT: ("手机截图", "Screenshot"),
        Category.IDCARD: ("证件照", "ID card"),
        Category.OTHER: ("其它", "Other"),
    }
)
"""(label_zh, label_en) for each category."""


class ClassificationSource(StrEnum):
    LLM = "llm"
    EXACT_CACHE = "exact_cache"
    NEAR_DUPLICATE = "near_duplicate"


@dataclass(frozen=True)
class CachedResult:
    """One classification in the cache (keyed by the photo's sha256, the model and the prompt version)."""

    sha256: str
    phash: str | None
    category: str
    confidence: float
    reason: str
    model: str
    prompt_version: str
    cost: float
    created_at: str
