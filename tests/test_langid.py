"""Language identification: exactness against langdetect, determinism, tweet-aware cleaning,
the ``und`` rules, ``resolve_language``'s policy and pickling."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import detect_in_another_process, shared_data
from tweetmill.schemas.records import UNDETERMINED_LANGUAGE as UND
from tweetmill.transforms import langid, langid_profiles

# Clear cases: one or two plain sentences per language.
CLEAR = {
    "en": "The weather is lovely today and we are going to the beach with the kids after lunch.",
    "de": "Heute ist das Wetter wirklich schön und wir gehen nach dem Mittagessen mit den Kindern spazieren.",
    "fr": "Il fait vraiment beau aujourd'hui et nous allons à la plage avec les enfants après le déjeuner.",
    "es": "Hoy hace muy buen tiempo y vamos a ir a la playa con los niños después de comer.",
    "it": "Oggi il tempo è bellissimo e dopo pranzo andiamo al mare con i bambini.",
    "pt": "Hoje o tempo está muito bonito e vamos à praia com as crianças depois do almoço.",
    "nl": "Het weer is vandaag heerlijk en we gaan na de lunch met de kinderen naar het strand.",
    "ru": "Сегодня прекрасная погода, и после обеда мы пойдём с детьми на пляж.",
    "ar": "الطقس جميل جدا اليوم وسنذهب إلى الشاطئ مع الأطفال بعد الغداء.",
    "tr": "Bugün hava çok güzel ve öğle yemeğinden sonra çocuklarla sahile gideceğiz.",
    "pl": "Dzisiaj jest piękna pogoda i po obiedzie idziemy z dziećmi na plażę.",
    "el": "Σήμερα ο καιρός είναι υπέροχος και μετά το μεσημεριανό θα πάμε στην παραλία με τα παιδιά.",
    "ja": "今日はとても良い天気なので、昼ご飯の後で子供たちと海に行きます。",
    "ko": "오늘은 날씨가 정말 좋아서 점심을 먹고 아이들과 함께 바다에 갈 거예요.",
    "hi": "आज मौसम बहुत अच्छा है और दोपहर के खाने के बाद हम बच्चों के साथ समुद्र तट पर जाएंगे।",
}

# Texts for exactness and determinism: scripts, capitals, URLs, e-mail, Vietnamese marks, emoji,
# fancy fonts, NULs, empty and long texts.
VARIED = [
    *CLEAR.values(),
    "",
    " ",
    "😀😂🔥",
    "RT @someone: LOL this is SO GOOD http://t.co/abc #blessed 🙏🙏",
    "@a @b @c",
    "http://example.com/x?y=1 https://t.co/Zz",
    "mail me at john.doe@example.com or @jd",
    "ABC DEF ghi JKL mno",
    "Tiếng Việt có dấu: Tiếng Việt",
    "Tie\u0302\u0301ng Vie\u0323\u0302t",
    "日本語とEnglishのmix text です",
    "Привет, как дела? Hello!",
    "𝐓𝐡𝐢𝐬 𝐢𝐬 𝐟𝐚𝐧𝐜𝐲",
    "ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ",
    "x\x00y embedded NUL",
    "jajajajaja siiiii que bueno",
    "word " * 3000,
    "a",
    "I",
]


@pytest.fixture(scope="module")
def detector() -> langid_profiles.ProfileDetector:
    det = langid_profiles.ProfileDetector()
    det.setup()
    return det


@pytest.fixture(scope="module")
def factory():
    return langid._langdetect_factory(0)


# ---------------------------------------------------------------------------------------------
# Exactness: the vectorised n-gram scoring is langdetect's, feature for feature
# ---------------------------------------------------------------------------------------------


def _langdetect_loglik(factory, text: str, langs: tuple[str, ...], alpha: float) -> tuple[int, np.ndarray]:
    """What langdetect's own code extracts from ``text``, scored exactly (no sampling)."""
    det = factory.create()
    det.append(text)
    det.cleaning_text()
    grams = det._extract_ngrams()
    order = [factory.langlist.index(lang) for lang in langs]
    loglik = np.zeros(len(langs))
    for gram in grams:
        loglik += np.log(alpha / langid_profiles.BASE_FREQ + np.array(factory.word_lang_prob_map[gram]))[
            order
        ]
    return len(grams), loglik


@pytest.mark.slow
def test_scores_equal_langdetect_feature_extraction(detector, factory):
    """Raw mode reproduces Detector.append/cleaning_text/_extract_ngrams and NGram.normalize."""
    raw = langid_profiles.ProfileDetector(cleaning=langid.NO_CLEANING)
    scores = raw.scores(VARIED)
    for i, text in enumerate(VARIED):
        n, expected = _langdetect_loglik(factory, text, raw.languages, langid_profiles.LANGDETECT_ALPHA)
        assert scores.n_grams[i] == n, text
        np.testing.assert_allclose(scores.loglik[i], expected, rtol=1e-5, atol=1e-3, err_msg=text)


def test_langdetect_engine_is_langdetect(factory):
    """On raw text the reference engine gives langdetect's own answer (seed fixed)."""
    det = langid.LangdetectDetector(cleaning=langid.NO_CLEANING, min_confidence=0.0, min_chars=0)
    texts = list(CLEAR.values())
    for text, (lang, score) in zip(texts, det.detect_batch(texts), strict=True):
        ref = factory.create()
        ref.append(text)
        best = ref.get_probabilities()[0]
        assert (lang, score) == (best.lang, best.prob)


@pytest.mark.slow
def test_langdetect_factory_loads_once_under_threads(monkeypatch):
    monkeypatch.setattr(langid, "_FACTORIES", {})
    det = langid.LangdetectDetector(seed=7)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: det.detect_batch([CLEAR["de"]]), range(4)))
    assert answers == [answers[0]] * 4 and answers[0][0][0] == "de"
    assert list(langid._FACTORIES) == [7]


def test_profile_languages_are_langdetects(detector, factory):
    assert sorted(detector.languages) == sorted(factory.get_lang_list())
    assert set(detector.languages) == langid.DETECTOR_LANGUAGES
    assert len(detector.languages) == 55


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_identical_across_runs_and_batch_sizes(detector):
    whole = detector.detect_batch(VARIED)
    assert detector.detect_batch(VARIED) == whole
    for size in (1, 3, 7):
        parts = [a for i in range(0, len(VARIED), size) for a in detector.detect_batch(VARIED[i : i + size])]
        assert parts == whole
    order = list(reversed(range(len(VARIED))))
    assert [detector.detect_batch([VARIED[i] for i in order])[k] for k in range(len(order))] == [
        whole[i] for i in order
    ]


def test_identical_across_chunks(detector, monkeypatch):
    whole = detector.detect_batch(VARIED)
    monkeypatch.setattr(langid_profiles, "CHUNK_CHARS", 64)
    assert len(langid_profiles._chunks(VARIED)) > 5
    assert detector.detect_batch(VARIED) == whole


@pytest.mark.slow
def test_identical_in_another_process(detector):
    theirs = detect_in_another_process(VARIED, "langdetect-profiles")
    ours = [[lang, repr(score)] for lang, score in detector.detect_batch(VARIED)]
    assert theirs == ours


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", langid.ENGINES)
def test_clear_cases_agree_with_langdetect(engine):
    det = langid.make_detector(engine)
    answers = det.detect_batch(list(CLEAR.values()))
    for (expected, text), (lang, score) in zip(CLEAR.items(), answers, strict=True):
        assert lang == expected, (text, lang, score)
        assert 0.5 <= score <= 1.0


@pytest.mark.parametrize("engine", langid.ENGINES)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "😀😂🔥❤️",
        "http://t.co/abc https://example.com/a/b",
        "@user @other_user",
        "#️⃣ 123 4.5 !!!",
        "RT @user: http://t.co/x",
        "&amp; &lt;3 <URL> <EMAIL> <PHONE>",
        "a",
    ],
)
def test_und_without_text(engine, text):
    lang, score = langid.make_detector(engine).detect_batch([text])[0]
    assert lang == UND
    assert 0.0 <= score <= 1.0


def test_thresholds(detector):
    text = "Hoy vamos a la playa con los niños"
    assert detector.detect_batch([text])[0][0] == "es"
    assert langid_profiles.ProfileDetector(min_chars=100).detect_batch([text])[0][0] == UND
    lang, score = langid_profiles.ProfileDetector(min_confidence=1.01).detect_batch([text])[0]
    assert lang == UND and score > 0.5  # und, with the confidence the best guess had
    assert langid_profiles.ProfileDetector(min_confidence=0.0, min_chars=0).detect_batch(["ok"])[0][0] != UND


def test_confidence_is_lower_for_ambiguous_text(detector):
    (_, short), (_, long) = detector.detect_batch(["casa", CLEAR["es"]])
    assert short < 0.9 < long


def test_tweet_noise_does_not_change_the_answer(detector):
    plain = "Heute ist das Wetter wirklich schön und wir gehen spazieren"
    noisy = f"RT @Some_User: {plain.upper()} 😀😀😀 #Sonntag http://t.co/xyz &amp; 2024 <URL>"
    assert detector.detect_batch([noisy])[0][0] == "de"
    assert langid_profiles.tweet_clean([noisy])[0].split() == [*plain.lower().split(), "Sonntag"]


def test_fancy_fonts_and_full_width(detector):
    assert detector.detect_batch(["𝐓𝐡𝐢𝐬 𝐢𝐬 𝐚 𝐯𝐞𝐫𝐲 𝐧𝐢𝐜𝐞 𝐝𝐚𝐲 𝐟𝐨𝐫 𝐚 𝐰𝐚𝐥𝐤 𝐢𝐧 𝐭𝐡𝐞 𝐩𝐚𝐫𝐤"])[0][0] == "en"
    assert langid_profiles.tweet_clean(["ｆｕｌｌ 𝕗𝕒𝕟𝕔𝕪"]) == ["full fancy"]


def test_cleaning_keeps_texts_apart():
    texts = ["x", "x", "x", "", "ab\x00ab", "jajajajaja", "siiiiii", "@user", "e-mail: a.b@c.de"]
    texts.append("va a a acabar")
    cleaned = langid_profiles.tweet_clean(texts)
    assert len(cleaned) == len(texts)
    assert cleaned[:4] == ["x", "x", "x", ""]
    assert cleaned[4] == "ab ab"
    assert cleaned[5] == "jaja"
    assert cleaned[6] == "sii"
    assert cleaned[7].strip() == "" and cleaned[8].split() == ["e", "mail"]
    assert cleaned[9] == "va a a acabar"  # repeats are squeezed inside words only


def test_empty_batch():
    for engine in langid.ENGINES:
        assert langid.make_detector(engine).detect_batch([]) == []


def test_xlmt_sample_accuracy(detector):
    """A regression guard on real tweets (the bench has the full tables)."""
    codes = {
        "english": "en",
        "german": "de",
        "spanish": "es",
        "french": "fr",
        "italian": "it",
        "portuguese": "pt",
        "arabic": "ar",
    }
    right = total = 0
    for name, code in codes.items():
        path = shared_data("lang", "xlm-t", name, "test_text.txt")
        lines = path.read_text(encoding="utf-8").splitlines()[:60]
        answers = langid_profiles.ProfileDetector(min_confidence=0.0).detect_batch(lines)
        right += sum(lang == code for lang, _ in answers)
        total += len(lines)
    assert right / total >= 0.93


# ---------------------------------------------------------------------------------------------
# API, pickling
# ---------------------------------------------------------------------------------------------


def test_make_detector():
    assert langid.ENGINES == ("tweet", "langdetect-profiles", "langdetect")
    assert langid.make_detector("profiles").name == "langdetect-profiles"  # the name before #13
    for engine in langid.ENGINES:
        det = langid.make_detector(engine, min_confidence=0.3, min_chars=5)
        assert isinstance(det, langid.LanguageDetector)
        assert det.name == engine
        assert (det.min_confidence, det.min_chars) == (0.3, 5)
    with pytest.raises(ValueError, match="unknown language engine"):
        langid.make_detector("cld3")


@pytest.mark.parametrize("engine", langid.ENGINES)
def test_pickle(engine):
    det = langid.make_detector(engine)
    before = det.detect_batch(list(CLEAR.values())[:3])  # loads the model
    blob = pickle.dumps(det)
    assert len(blob) < 2000  # settings only: the model stays behind
    clone = pickle.loads(blob)
    assert clone.detect_batch(list(CLEAR.values())[:3]) == before


# ---------------------------------------------------------------------------------------------
# resolve_language
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("en-GB", "en"),
        ("pt_BR", "pt"),
        ("in", "id"),
        ("iw", "he"),
        ("nb", "no"),
        ("fil", "tl"),
        ("zh", "zh-cn"),
        ("zh-CN", "zh-cn"),
        ("zh-TW", "zh-tw"),
        ("zh-Hant", "zh-tw"),
        ("zh-Hans", "zh-cn"),
        ("und", UND),
        ("zxx", UND),
        ("qme", UND),
        ("qam", UND),
        ("qht", UND),
        ("qst", UND),
        ("qct", UND),
        ("qab", UND),
        ("", UND),
        (None, UND),
        ("not a code", UND),
        ("eu", "eu"),
    ],
)
def test_normalize_language_code(code, expected):
    assert langid.normalize_language_code(code) == expected


@pytest.mark.parametrize(
    ("detected", "score", "twitter", "expected", "rule"),
    [
        ("en", 0.7, None, "en", "1: no tag"),
        ("en", 0.7, "und", "en", "1: tag names no language"),
        ("und", 0.2, "qme", UND, "1: neither knows"),
        ("und", 0.0, None, UND, "1: neither knows"),
        ("und", 0.3, "de", "de", "2: detector undetermined, trust the tag"),
        ("und", 0.3, "in", "id", "2: ... normalised"),
        ("pt", 0.95, "gl", "gl", "3: a language the detector cannot answer"),
        ("es", 0.99, "eu", "eu", "3: a language the detector cannot answer"),
        ("es", 0.8, "es", "es", "4: agreement"),
        ("zh-tw", 0.8, "zh", "zh-tw", "4: agreement keeps the detector's script"),
        ("he", 0.6, "iw", "he", "4: agreement after normalising"),
        ("pt", 0.95, "es", "pt", "5: confident detector wins"),
        ("pt", 0.6, "es", "es", "5: unsure detector yields to the tag"),
    ],
)
def test_resolve_language_policy(detected, score, twitter, expected, rule):
    assert langid.resolve_language(detected, score, twitter) == expected, rule
