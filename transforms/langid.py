"""Language identification for tweets: the engines, their common protocol and the reference engine.

Three engines answer the same ``LanguageDetector`` protocol:

``tweet`` (default, ``transforms/langid_tweet.py``)
    Script rules first, then these profiles' exact scores with word evidence, a prior and
    Twitter's tag; see that module and docs/language-id.md.

``langdetect-profiles`` (``profiles`` before issue #13, ``transforms/langid_profiles.py``)
    langdetect's own 55 shipped n-gram profiles, scored *exactly* (no random sampling): for
    users who need langdetect's labels, 220x faster.

``langdetect``
    The reference: langdetect itself, one text at a time, seed fixed, on the same cleaned text.

All see the *tweet-aware* text (``Cleaning``, ``transforms/langid_clean.py``): URLs, @mentions,
$cashtags, e-mail addresses, HTML entities, the clean stage's ``<PLACEHOLDER>``s, ``RT`` markers
and Instagram check-ins removed; ``#`` signs, emoji, numbers and punctuation turned into spaces; capital words
lower-cased (langdetect skips them); elongations and laughter squeezed; fancy-font letters
NFKC-normalised. Below ``min_confidence``, or with fewer than ``min_chars`` letters left, the
answer is ``und``. The benches (``bench/bench_langid.py``, ``bench/bench_lang_targets.py``)
measure each step, the engines' speed and their accuracy.

``resolve_language`` (``transforms/langid_codes.py``) combines the langdetect engines' answer
with Twitter's own ``lang`` tag into the language the filter uses.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol, runtime_checkable

from tweetmill.schemas.records import UNDETERMINED_LANGUAGE
from tweetmill.transforms.langid_clean import (  # noqa: F401  (re-exported: the cleaning lives there)
    NO_CLEANING,
    TWEET_CLEANING,
    Cleaning,
    TweetCodes,
    _from_codes,
    _join,
    _prepare_codes,
    _segments,
    _squeeze,
    _to_codes,
    prepare_tweet_codes,
)
from tweetmill.transforms.langid_codes import (  # noqa: F401  (re-exported: the codes live there)
    DETECTOR_LANGUAGES,
    NON_LANGUAGE_TAGS,
    STRONG_CONFIDENCE,
    normalize_language_code,
    resolve_language,
)
from tweetmill.transforms.langid_profiles import (
    ProfileDetector,
    letter_counts,
    load_profile_model,
    profiles_directory,
)

log = logging.getLogger(__name__)

UND = UNDETERMINED_LANGUAGE
# ``tweet`` (the default, ``langid_tweet``), the exact langdetect-profile engine, and langdetect.
ENGINES: tuple[str, ...] = ("tweet", "langdetect-profiles", "langdetect")
DEFAULT_ENGINE = "tweet"
_ENGINE_ALIASES = {"profiles": "langdetect-profiles"}  # the exact engine's name before issue #13


@runtime_checkable
class LanguageDetector(Protocol):
    """What the filter stage needs: a name and one call per batch."""

    name: str

    def detect_batch(self, texts: list[str]) -> list[tuple[str, float]]:
        """One ``(language code, confidence in [0, 1])`` per text, ``und`` when undetermined."""
        ...


# ----------------------------------------------------------------------------------------------
# The reference engine: langdetect itself
# ----------------------------------------------------------------------------------------------

_FACTORIES: dict[int, object] = {}
_FACTORY_LOCK = threading.Lock()


def _langdetect_factory(seed: int):
    """A loaded ``DetectorFactory`` per seed; loading is not thread-safe, so it runs under a lock."""
    factory = _FACTORIES.get(seed)
    if factory is None:
        with _FACTORY_LOCK:
            factory = _FACTORIES.get(seed)
            if factory is None:
                from langdetect.detector_factory import DetectorFactory

                factory = DetectorFactory()
                factory.load_profile(profiles_directory())
                factory.set_seed(seed)
                _FACTORIES[seed] = factory
    return factory


class LangdetectDetector:
    """langdetect, one text at a time with a fixed seed: the slow reference engine."""

    name = "langdetect"

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        min_chars: int = 3,
        cleaning: Cleaning = TWEET_CLEANING,
        seed: int = 0,
    ):
        self.min_confidence = min_confidence
        self.min_chars = min_chars
        self.cleaning = cleaning
        self.seed = seed
        self._factory = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_factory"] = None
        return state

    def setup(self) -> None:
        self._factory = _langdetect_factory(self.seed)

    def detect_batch(self, texts: list[str]) -> list[tuple[str, float]]:
        from langdetect.lang_detect_exception import LangDetectException

        if not texts:
            return []
        if self._factory is None:
            self.setup()
        model = load_profile_model()
        codes = _prepare_codes(texts, model, self.cleaning)
        letters = letter_counts(codes, model).tolist()
        cleaned = _from_codes(codes)
        out: list[tuple[str, float]] = []
        for text, n_letters in zip(cleaned, letters, strict=True):
            lang, conf = UND, 0.0
            try:
                detector = self._factory.create()
                detector.append(text)
                best = detector.get_probabilities()
                if best:
                    lang, conf = best[0].lang, float(best[0].prob)
            except LangDetectException:
                pass  # no features in the text
            except Exception:  # langdetect's own bugs must not fail a batch
                log.debug("langdetect failed on %r", text, exc_info=True)
            if conf < self.min_confidence or n_letters < self.min_chars:
                lang = UND
            out.append((lang, conf))
        return out


def make_detector(
    engine: str = DEFAULT_ENGINE,
    *,
    min_confidence: float = 0.5,
    min_chars: int = 3,
    use_twitter_lang: bool = True,
) -> LanguageDetector:
    """A detector by engine name (``ENGINES``); its model loads on first use or in ``setup()``.
    ``use_twitter_lang`` only concerns the ``tweet`` engine, the one that weighs Twitter's tag."""
    engine = _ENGINE_ALIASES.get(engine, engine)
    if engine == "tweet":
        from tweetmill.transforms.langid_tweet import TweetDetector

        return TweetDetector(
            min_confidence=min_confidence, min_chars=min_chars, use_twitter_lang=use_twitter_lang
        )
    if engine == "langdetect-profiles":
        return ProfileDetector(min_confidence=min_confidence, min_chars=min_chars)
    if engine == "langdetect":
        return LangdetectDetector(min_confidence=min_confidence, min_chars=min_chars)
    raise ValueError(f"unknown language engine {engine!r}; expected one of {ENGINES}")
