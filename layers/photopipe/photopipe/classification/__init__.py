"""Vision-LLM classification of photos into eight categories: the prompt, the answer schema, the
providers (DashScope's SDK, any OpenAI-compatible endpoint) and the retrying classifier.

Importing this package does not import the DashScope SDK (about a second): `DashScopeProvider` imports
it on its first call."""

from photopipe.classification.answer import Answer, InvalidAnswer, parse_answer
from photopipe.classification.classifier import Classification, ClassificationFailed, VisionClassifier
from photopipe.classification.prompt import PROMPT_VERSION, build_prompt
from photopipe.classification.providers import (
    DashScopeProvider,
    OpenAICompatibleProvider,
    ProviderAuthError,
    ProviderError,
    ProviderReply,
    Usage,
    VisionProvider,
)
from photopipe.models.classification import CATEGORY_LABELS, Category

__all__ = [
    "CATEGORY_LABELS",
    "PROMPT_VERSION",
    "Answer",
    "Category",
    "Classification",
    "ClassificationFailed",
    "DashScopeProvider",
    "InvalidAnswer",
    "OpenAICompatibleProvider",
    "ProviderAuthError",
    "ProviderError",
    "ProviderReply",
    "Usage",
    "VisionClassifier",
    "VisionProvider",
    "build_prompt",
    "parse_answer",
]
