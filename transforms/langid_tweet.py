"""The default language detector (``--lang-engine tweet``): script first, then characters and words,
then Twitter's own tag.

For each tweet (all of a batch at once, numpy only):

1. **What it sees** (``langid_clean.prepare_tweet_codes``): the tweet-aware cleaning of the profile
   engine (mentions, URLs, placeholders, cashtags, check-ins, emoji, digits out; elongations cut;
   shouted words lower-cased), with hashtag letters marked: their evidence counts
   ``HASHTAG_WEIGHT`` (camel case splits them into words). The stored text does not change.
2. **Script** (``langid_script``): the dominant script restricts the candidates; kana decide
   ``ja``, Hangul ``ko``; Han alone is ``ja``/``zh-cn``/``zh-tw`` by the profiles; a script with one
   language (Thai, Greek, Georgian...) names it.
3. **Evidence**: ``log p(text | lang) / TEMPERATURE`` from langdetect's character profiles (exact
   sums, no sampling) plus ``WORD_WEIGHT`` x the word evidence of ``langid_words``, plus
   ``PRIOR_WEIGHT`` x the log of a rough prior of languages on Twitter (``TWITTER_PRIOR``).
4. **Twitter's tag**, where the tweet has one that names a language the script allows: it adds
   ``TAG_BONUS`` to that language (a tag the model cannot answer, such as ``eu``, wins unless the
   detector is sure, ``STRONG_CONFIDENCE``). ``use_twitter_lang=False`` ignores it.
5. **Decision**: the posterior's best language and its probability as ``lang_score``; ``und``
   without letters, without any evidence, or below ``min_confidence``.

The fitted constants come from XLM-T's train and val splits only (``bench/fit_lang_tweet.py``);
the engine is measured on XLM-T test, TweetLID, the bench tweets and the archives
(``bench/bench_lang_targets.py``; docs/language-id.md has the figures and what was set by hand).
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
from tweetmill.schemas.records import UNDETERMINED_LANGUAGE
from tweetmill.transforms import langid_script as script
from tweetmill.transforms.langid_clean import TWEET_CLEANING, Cleaning, _segments, prepare_tweet_codes
from tweetmill.transforms.langid_codes import normalize_language_code
from tweetmill.transforms.langid_profiles import (
    CHUNK_CHARS,
    DEFAULT_ALPHA,
    load_profile_model,
    ngram_hits,
    sum_hits,
)
from tweetmill.transforms.langid_words import OOV_MARGIN, batch_words, load_word_model

UND = UNDETERMINED_LANGUAGE

# Fitted by maximum likelihood on the XLM-T train split (7 languages, romanised Hindi out):
TEMPERATURE = 10.0  # divides the character log-likelihood (overlapping n-grams are not independent)
WORD_WEIGHT = 0.15  # scales the word evidence (natural log)
# Set, not fitted (XLM-T is balanced over its languages, so its likelihood always prefers no
# prior): a quarter of the log prior moves ties between close Latin-script languages towards the
# ones Twitter is written in, without overruling clear evidence.
PRIOR_WEIGHT = 0.25
HASHTAG_WEIGHT = 0.5  # evidence from a hashtag's letters counts half
MARKED_SCRIPT_WEIGHT = 0.2  # and their letters count a fifth when the dominant script is chosen
CHECKIN_WEIGHT = 0.5  # and from an Instagram check-in's place ("... @ Venice Beach")
TAG_BONUS = 3.0  # added to the log-odds of Twitter's tag (swept in bench/bench_lang_agreement.py)
STRONG_CONFIDENCE = 0.9  # a tag the model cannot answer yields only to this confidence
# A tag the script rules exclude ("ko" on "[MYSTIC LISTEN] 장재인 X EXO 수호(SUHO) ...") is allowed
# back when its script holds this share of the tweet's letters.
TAG_SCRIPT_SHARE = 0.25

# A rough share of languages among tweets: orders of magnitude rounded from published language
# counts of Twitter samples (e.g. Hong, Convertino and Chi, "Language matters in Twitter", ICWSM
# 2011: English about half, Japanese a fifth, then Portuguese, Indonesian, Spanish), not fitted.
# Unlisted languages of the detector get OTHER_PRIOR.
# fmt: off
TWITTER_PRIOR: dict[str, float] = {
    "en": 0.40, "ja": 0.15, "es": 0.08, "pt": 0.06, "ar": 0.06, "id": 0.05, "ko": 0.02,
    "fr": 0.02, "tr": 0.02, "th": 0.02, "ru": 0.01, "it": 0.01, "de": 0.01, "tl": 0.01,
    "nl": 0.005, "zh-cn": 0.003, "zh-tw": 0.003, "hi": 0.003, "pl": 0.003, "fa": 0.002,
    "ur": 0.001, "sv": 0.001, "ca": 0.001, "el": 0.001, "uk": 0.001,
}
# fmt: on
OTHER_PRIOR = 0.0003
# Raw posterior of the best language -> share of such answers that are right (isotonic fit on
# XLM-T train + val by bench/fit_lang_tweet.py); ``lang_score`` is the calibrated value.
# fmt: off
CALIBRATION: tuple[tuple[float, float], ...] = (
    (0, 0), (0.1, 0.057), (0.2, 0.311), (0.3, 0.463), (0.4, 0.534), (0.5, 0.653), (0.6, 0.762),
    (0.7, 0.854), (0.8, 0.893), (0.9, 0.934), (0.95, 0.944), (0.99, 0.978), (1, 1),
)
# fmt: on


class TweetDetector:
    """Script rules, langdetect's character profiles, word evidence and Twitter's tag, batched.

    Deterministic: every text's answer depends on its own text and tag only (no sampling, no
    state), bit for bit at any batch size or order (texts are scored in chunks of independent
    rows). Pickles without its tables; ``setup`` loads them (about a second).
    """

    name = "tweet"

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        min_chars: int = 3,
        use_twitter_lang: bool = True,
        cleaning: Cleaning = TWEET_CLEANING,
        temperature: float = TEMPERATURE,
        word_weight: float = WORD_WEIGHT,
        prior_weight: float = PRIOR_WEIGHT,
        hashtag_weight: float = HASHTAG_WEIGHT,
        checkin_weight: float = CHECKIN_WEIGHT,
        tag_bonus: float = TAG_BONUS,
        calibration: tuple[tuple[float, float], ...] | None = None,
        oov_margin: float = OOV_MARGIN,
    ):
        self.min_confidence = min_confidence
        self.min_chars = min_chars
        self.use_twitter_lang = use_twitter_lang
        self.cleaning = cleaning
        self.temperature = temperature
        self.word_weight = word_weight
        self.prior_weight = prior_weight
        self.hashtag_weight = hashtag_weight
        self.checkin_weight = checkin_weight
        self.tag_bonus = tag_bonus
        self.calibration = CALIBRATION if calibration is None else tuple(calibration)
        self.oov_margin = oov_margin
        self._tables: _Tables | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tables"] = None
        return state

    def setup(self) -> None:
        if self._tables is None:
            self._tables = _Tables.load(self.oov_margin)

    @property
    def languages(self) -> tuple[str, ...]:
        self.setup()
        return self._tables.langs

    def detect_batch(self, texts: list[str]) -> list[tuple[str, float]]:
        """``(language, confidence)`` per text, from the text alone."""
        return self.detect_tweets(texts, None)

    def detect_tweets(
        self, texts: list[str], twitter_langs: list[str | None] | None
    ) -> list[tuple[str, float]]:
        """``(language, confidence)`` per text, with Twitter's tag as evidence where given (and
        ``use_twitter_lang``)."""
        if not texts:
            return []
        self.setup()
        t = self._tables
        z, evidence, letters, counts = self.scores(texts)
        if twitter_langs is not None and self.use_twitter_lang:
            tags = [normalize_language_code(x) for x in twitter_langs]
        else:
            tags = [UND] * len(texts)
        col = np.array([t.column.get(x, -1) for x in tags])
        rows = np.arange(len(texts))
        tagged = np.flatnonzero(col >= 0)
        ruled_out = tagged[~np.isfinite(z[tagged, col[tagged]])]
        if len(ruled_out):  # the script rules excluded the tag: allowed back if its script is
            share = (counts[ruled_out] * t.lang_scripts[col[ruled_out]]).sum(axis=1)  # a quarter
            back = ruled_out[share >= TAG_SCRIPT_SHARE * counts[ruled_out].sum(axis=1)]
            z[back, col[back]] = z[back].max(axis=1)  # as likely as the best, before the bonus
        has_col = (col >= 0) & np.isfinite(z[rows, np.maximum(col, 0)])
        z[has_col, col[has_col]] += self.tag_bonus
        best = z.argmax(axis=1)
        z -= z[rows, best][:, None]
        conf = 1.0 / np.exp(z).sum(axis=1)  # the best language's posterior: exp(0) / sum
        if self.calibration:
            raw, calibrated = zip(*self.calibration, strict=True)
            conf = np.interp(conf, raw, calibrated)
        answer = evidence & (letters >= self.min_chars) & (conf >= self.min_confidence)
        labels = t.labels[np.where(answer, best, len(t.langs))].tolist()
        scores = conf.tolist()
        for i, tag in enumerate(tags):
            if tag != UND and tag not in t.column and scores[i] < STRONG_CONFIDENCE:
                labels[i] = tag  # a language the model cannot answer (eu, gl, ht...): Twitter knows it
        return list(zip(labels, scores, strict=True))

    def scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(z, evidence, letters, script counts)``: the log-posterior before Twitter's tag
        (float64[S, L], ``-inf`` for languages the script rules out), whether any n-gram, word or
        script evidence was found, the letters left after cleaning, and the weighted letters of
        each script (float[S, N_SCRIPTS], CJK counted ``CJK_LETTER_WEIGHT`` times)."""
        self.setup()
        parts = [self._score_chunk(texts[lo:hi]) for lo, hi in _chunks(texts)]
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(x) for x in zip(*parts, strict=True))  # type: ignore[return-value]

    def _score_chunk(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        t = self._tables
        m = t.profiles
        prepared = prepare_tweet_codes(texts, m, self.cleaning)
        codes, tag = prepared.codes, prepared.hashtag
        weights = np.ones(len(codes), dtype=np.float32)
        weights[tag] = self.hashtag_weight
        weights[prepared.checkin] = self.checkin_weight
        starts, seg = _segments(codes)
        n = len(starts)
        script_w = np.where(weights < 1, np.float32(MARKED_SCRIPT_WEIGHT), np.float32(1.0))
        counts = script.script_counts(codes, seg, n, m.letter, script_w)
        dominant = script.dominant_script(counts)
        # Character scores only for the languages each text's script allows (a Latin tweet
        # needs 31 of the 55 profiles, a Thai one none): the gather is most of the cost.
        hits = ngram_hits(codes, m, weights)
        k = len(t.profile_langs)
        loglik = np.zeros((n, k), dtype=np.float64)
        for scripts, cols, table in t.score_groups:
            texts_in = scripts[dominant]
            if texts_in.any():
                loglik[np.ix_(texts_in, cols)] = sum_hits(table, hits, texts_in)[texts_in]
        words = batch_words(codes, seg, t.words, m.letter, m.upper, m.lower, hashtag=tag)
        word_w = weights[words.start]
        word_ev = t.words.text_evidence(words, n, word_w)
        z = np.full((n, len(t.langs)), -np.inf)
        han = dominant == script.S["han"]
        if han.any():  # Han-only text: each language's likelihood given that a character is Han
            loglik[han] += np.outer(counts[han, script.S["han"]], t.han_correction)
        z[:, :k] = loglik / self.temperature + self.word_weight * word_ev
        z[:, k:] = 0.0
        z += self.prior_weight * t.log_prior
        z[~t.allowed[dominant]] = -np.inf
        single = t.single[dominant]  # scripts of one language: that language, whatever the scores
        z[single >= 0] = -np.inf
        z[single >= 0, single[single >= 0]] = 0.0
        evidence = (hits.n_grams > 0) | (single >= 0)
        counts[:, list(script.CJK)] *= script.CJK_LETTER_WEIGHT
        return z, evidence, hits.letters, counts


class _Tables:
    """Per-process tables: the profiles, the word model, the prior and the script masks."""

    _cached: ClassVar[dict[float, _Tables]] = {}

    def __init__(self, oov_margin: float) -> None:
        self.profiles = load_profile_model()
        self.profile_langs = self.profiles.langs
        self.langs = self.profile_langs + tuple(sorted(script.SCRIPT_ONLY_LANGUAGES))
        self.column = {lang: i for i, lang in enumerate(self.langs)}
        self.labels = np.array([*self.langs, UND], dtype=object)  # index len(langs): und
        # float[L, N_SCRIPTS]: 1 where a language is written in a script
        self.lang_scripts = np.zeros((len(self.langs), script.N_SCRIPTS))
        for name, langs in script.SCRIPT_LANGUAGES.items():
            for lang in langs:
                self.lang_scripts[self.column[lang], script.S[name]] = 1.0
        self.words = load_word_model(self.profile_langs, oov_margin)
        self.log_prior = np.log([TWITTER_PRIOR.get(lang, OTHER_PRIOR) for lang in self.langs])
        self.allowed = script.candidate_mask(self.langs)
        self.single = np.full(script.N_SCRIPTS, -1, dtype=np.int64)
        for name, langs in script.SCRIPT_LANGUAGES.items():
            if len(langs) == 1:
                self.single[script.S[name]] = self.column[langs[0]]
        self.han_correction = _han_correction(self.profiles)
        # the scripts whose texts are scored with the same columns
        groups: dict[tuple[int, ...], np.ndarray] = {}
        for sid in range(script.N_SCRIPTS):
            if self.single[sid] >= 0:
                continue  # one language: no scores needed
            cols = tuple(np.flatnonzero(self.allowed[sid, : len(self.profile_langs)]).tolist())
            groups.setdefault(cols, np.zeros(script.N_SCRIPTS, dtype=bool))[sid] = True
        full = self.profiles.log_table(DEFAULT_ALPHA)
        every = tuple(range(len(self.profile_langs)))
        self.score_groups = [  # (scripts, columns, their rows of the table: a copy unless all)
            (scripts, np.array(cols), full if cols == every else np.ascontiguousarray(full[list(cols)]))
            for cols, scripts in groups.items()
            if cols
        ]

    @classmethod
    def load(cls, oov_margin: float = OOV_MARGIN) -> _Tables:
        tables = cls._cached.get(oov_margin)
        if tables is None:
            tables = cls._cached[oov_margin] = cls(oov_margin)
        return tables


def _han_correction(model) -> np.ndarray:
    """float[L]: ``-log(share of Han among the language's characters)``, per Han character.

    Japanese is a third Han (kana make up the rest), Chinese nine tenths, so on a text of Han
    only the profiles' raw likelihood prefers Chinese by ``log 0.88 - log 0.35`` a character
    even for Japanese kanji compounds ("東京大学理科1類合格"). Conditioning on "this character is
    Han" removes that bias; the profiles then compare the characters themselves. Languages with
    (almost) no Han get a large penalty, but the script rules allow only ja/zh-cn/zh-tw here.
    """
    han = script.script_table()[np.arange(0x10000)] == script.S["han"]
    digits = np.unique(model.digit[:0x10000][han])
    unigram = model.keys < model.radix  # 1-grams: a single digit
    rows = np.flatnonzero(unigram & np.isin(model.keys, digits))
    share = np.zeros(len(model.langs))
    hit = np.isin(model.prob_rows, rows)
    np.add.at(share, model.prob_cols[hit].astype(np.int64), model.prob_vals[hit])
    return -np.log(np.clip(share, 1e-3, 1.0))


def _chunks(texts: list[str]) -> list[tuple[int, int]]:
    """Index ranges of consecutive texts with about CHUNK_CHARS characters each."""
    lengths = [len(t) + 1 for t in texts]
    if sum(lengths) <= CHUNK_CHARS:
        return [(0, len(texts))]
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(CHUNK_CHARS, ends[-1], CHUNK_CHARS), side="right")
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < len(texts)}), len(texts)]
    return list(itertools.pairwise(bounds))
