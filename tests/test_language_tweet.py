"""The default ``tweet`` language engine (issue #13): the issue's examples, script rules, the
tweet-aware view, Twitter's tag as evidence and the flag that ignores it, calibration,
determinism, and the exact langdetect-profile mode that stays available."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from conftest import detect_in_another_process, shared_data
from tweetmill.schemas.records import DROP_LANGUAGE, Tweet
from tweetmill.schemas.records import UNDETERMINED_LANGUAGE as UND
from tweetmill.transforms import langid, langid_profiles, langid_script, langid_tweet, langid_words
from tweetmill.transforms.language import DetectLanguage, LanguageConfig

GEEKY = "Geeky new beanie selfie #geek #geeky #sweetie #sillyhats #beanie #selfie @ Martha Lake,…"
LOSE_IT = "@user if you don't use it, you lose it. #Web"
KANJI_ONLY = ("東京大学理科1類合格", "線型代数20不可")

SCRIPTS = {
    "ko": "오늘은 날씨가 정말 좋아서 점심을 먹고 아이들과 함께 바다에 갈 거예요.",
    "ja": "今日はとても良い天気なので、昼ご飯の後で子供たちと海に行きます。",
    "th": "วันนี้อากาศดีมากและเราจะไปทะเลกับเด็กๆ หลังอาหารกลางวัน",
    "el": "Σήμερα ο καιρός είναι υπέροχος και μετά το μεσημεριανό θα πάμε στην παραλία.",
    "he": "היום מזג האוויר נפלא ואחרי ארוחת הצהריים נלך לים עם הילדים.",
    "ka": "დღეს ამინდი მშვენიერია და სადილის შემდეგ ბავშვებთან ერთად ზღვაზე წავალთ.",
    "hy": "Այսօր եղանակը հիանալի է, և ճաշից հետո երեխաների հետ ծով ենք գնալու։",
    "ru": "Сегодня прекрасная погода, и после обеда мы пойдём с детьми на пляж.",
    "ar": "الطقس جميل جدا اليوم وسنذهب إلى الشاطئ مع الأطفال بعد الغداء.",
    "hi": "आज मौसम बहुत अच्छा है और दोपहर के खाने के बाद हम बच्चों के साथ समुद्र तट पर जाएंगे।",
    "en": "The weather is lovely today and we are going to the beach with the kids after lunch.",
    "de": "Heute ist das Wetter wirklich schön und wir gehen nach dem Mittagessen spazieren.",
    "es": "Hoy hace muy buen tiempo y vamos a ir a la playa con los niños después de comer.",
    "pt": "Hoje o tempo está muito bonito e vamos à praia com as crianças depois do almoço.",
}


@pytest.fixture(scope="module")
def detector() -> langid_tweet.TweetDetector:
    det = langid_tweet.TweetDetector()
    det.setup()
    return det


def labels(det, texts, tags=None) -> list[str]:
    return [lang for lang, _ in det.detect_tweets(list(texts), tags)]


def tweet(i: int, text: str, twitter_lang: str | None = None) -> Tweet:
    return Tweet(
        id=i, text=text, source_format="text", source_file="x", position=i, twitter_lang=twitter_lang
    )


# ---------------------------------------------------------------------------------------------
# The issue's examples and the script rules
# ---------------------------------------------------------------------------------------------


def test_default_engine_is_tweet():
    assert langid.DEFAULT_ENGINE == "tweet" == LanguageConfig().lang_engine
    assert isinstance(langid.make_detector(), langid_tweet.TweetDetector)


def test_issue_examples(detector):
    got = detector.detect_batch([GEEKY, LOSE_IT, *KANJI_ONLY])
    assert [lang for lang, _ in got[:2]] == ["en", "en"]
    for lang, _ in got[2:]:
        assert lang != "ko"
        assert lang in ("ja", "zh-cn", "zh-tw", UND)
    # the exact langdetect-profile engine keeps langdetect's mistakes: the bug this engine fixes
    old = langid_profiles.ProfileDetector().detect_batch([GEEKY, *KANJI_ONLY])
    assert old[0][0] != "en" and "ko" in {lang for lang, _ in old[1:]}


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_clear_text_in_every_script(detector, lang):
    answer, score = detector.detect_batch([SCRIPTS[lang]])[0]
    assert answer == lang
    assert score > 0.9


def test_script_rules_restrict_the_candidates(detector):
    t = detector._tables
    allowed = t.allowed
    S = langid_script.S
    assert {t.langs[j] for j in np.flatnonzero(allowed[S["hangul"]])} == {"ko"}
    assert {t.langs[j] for j in np.flatnonzero(allowed[S["kana"]])} == {"ja"}
    assert {t.langs[j] for j in np.flatnonzero(allowed[S["han"]])} == {"ja", "zh-cn", "zh-tw"}
    assert {t.langs[j] for j in np.flatnonzero(allowed[S["cyrillic"]])} == {"bg", "mk", "ru", "uk"}
    # Han with kana is Japanese, with Hangul Korean; Hangul is required for Korean
    got = labels(
        detector, ["日本語とEnglishのmix text です", "韓國語 한국어 문장입니다 정말", "大韓民國萬歲"]
    )
    assert got[:2] == ["ja", "ko"] and got[2] != "ko"
    # a few Latin letters do not outweigh a Korean tweet (CJK characters count three letters)
    assert labels(detector, ["[MYSTIC LISTEN] 장재인 X EXO 수호(SUHO) '실례해도 될까요' 공개"]) == ["ko"]
    # English hashtags do not make an Arabic tweet Latin-script
    assert labels(detector, ["حقول الخزامى في فرنسا#france#traveltuesday #travel #tourism #hotels"]) == ["ar"]


def test_script_counts_and_dominant_script():
    model = langid_profiles.load_profile_model()
    codes = langid._prepare_codes(
        ["abc абв", "ひらがな漢字", "漢字", "한국어", "!!!"], model, langid.TWEET_CLEANING
    )
    starts, seg = langid._segments(codes)
    counts = langid_script.script_counts(codes, seg, len(starts), model.letter)
    names = [langid_script.SCRIPTS[i] for i in langid_script.dominant_script(counts)]
    assert names == ["latin", "kana", "han", "hangul", "none"]  # ties: the lower class


# ---------------------------------------------------------------------------------------------
# What the detector sees
# ---------------------------------------------------------------------------------------------


def test_tweet_noise_changes_nothing(detector):
    base = "Ich gehe heute Abend mit meinen Freunden ins Kino und danach essen"
    noisy = f"@someone {base} $TSLA https://t.co/xyz <URL> 😀😀 #kino"
    assert labels(detector, [base, noisy]) == ["de", "de"]


def test_hashtags_and_checkins_are_marked_not_removed():
    model = langid_profiles.load_profile_model()
    p = langid.prepare_tweet_codes(["I love it #ThrowbackThursday @ Venice Beach"], model)
    text = langid._from_codes(p.codes)[0]
    assert "ThrowbackThursday" in text and "Venice Beach" in text  # kept, with weights
    marked = langid._from_codes(np.where(p.hashtag, p.codes, 32).astype(np.int32))[0].split()
    assert marked == ["ThrowbackThursday"]
    assert langid._from_codes(np.where(p.checkin, p.codes, 32).astype(np.int32))[0].split() == [
        "Venice",
        "Beach",
    ]
    # the exact engine removes a check-in, at any position in the batch (also the first text)
    assert langid_profiles.tweet_clean(["@ Pike Place Market", "ok @ Pike Place"]) == [" ", "ok  "]


def test_camel_case_hashtags_split_into_words(detector):
    model = detector._tables.profiles
    p = langid.prepare_tweet_codes(["#GoodMorningWorld"], model)
    _, seg = langid._segments(p.codes)
    words = langid_words.batch_words(
        p.codes, seg, detector._tables.words, model.letter, model.upper, model.lower, hashtag=p.hashtag
    )
    assert len(words.row) == 3 and (words.row < len(detector._tables.words.hashes)).all()


def test_word_hashes_match_the_asset(detector):
    """The words of the asset are found by the runtime hashing (same normalisation)."""
    words = detector._tables.words
    model = detector._tables.profiles
    p = langid.prepare_tweet_codes(["the THE The", "voiture", "Zeitung"], model)
    _, seg = langid._segments(p.codes)
    found = langid_words.batch_words(p.codes, seg, words, model.letter, model.upper, model.lower)
    assert (found.row < len(words.hashes)).all() and len(found.row) == 5
    ev = words.text_evidence(found, 3)
    en, fr, de = (detector._tables.column[x] for x in ("en", "fr", "de"))
    assert [int(np.argmax(ev[i, [en, fr, de]])) for i in range(3)] == [0, 1, 2]


def test_und_only_without_evidence(detector):
    got = detector.detect_batch(["", "😀😂🔥", "@a @b http://t.co/x", "12345", "ok"])
    assert [lang for lang, _ in got] == [UND] * 5
    # short but clear
    assert labels(detector, ["thank you so much", "muchas gracias amigo", "vielen Dank"]) == [
        "en",
        "es",
        "de",
    ]


# ---------------------------------------------------------------------------------------------
# Twitter's tag
# ---------------------------------------------------------------------------------------------


def test_twitter_tag_is_evidence(detector):
    ambiguous = "Sleeping beauty"
    assert labels(detector, [ambiguous] * 2, ["nl", "en"]) == ["nl", "en"]
    clear = SCRIPTS["en"]
    assert labels(detector, [clear], ["de"]) == ["en"]  # clear text outweighs a wrong tag
    assert labels(detector, [SCRIPTS["ru"]], ["ko"]) == ["ru"]  # the script rules out the tag
    # ... unless the tag's script holds a quarter of the letters
    exo = "[STATION] EXO 수호(SUHO) X 장재인 'Dinner' Making Film"
    assert labels(detector, [exo, exo], [None, "ko"]) == ["en", "ko"]
    assert labels(detector, [ambiguous] * 3, ["und", "qme", None]) == labels(detector, [ambiguous] * 3)
    # a language the model cannot answer (Basque) is taken from the tag unless the text is clear
    assert labels(detector, ["Kaixo lagunak, zer moduz?"], ["eu"]) == ["eu"]
    assert labels(detector, [clear], ["eu"]) == ["en"]


def test_flag_ignores_twitter_tag():
    det = langid_tweet.TweetDetector(use_twitter_lang=False)
    assert labels(det, ["Sleeping beauty"] * 2, ["nl", "en"]) == labels(det, ["Sleeping beauty"] * 2)
    tweets = [tweet(1, "Sleeping beauty", "nl"), tweet(2, "Sleeping beauty", "en")]
    for use_tag, expected in ((True, {"nl", "en"}), (False, None)):
        stage = DetectLanguage(LanguageConfig(languages=("nl",), use_twitter_lang=use_tag))
        stage.setup()
        kept, dropped = stage.process_batch(tweets)
        if use_tag:
            assert [t.id for t in kept] == [1] and [(t.id, r) for t, r in dropped] == [(2, DROP_LANGUAGE)]
            assert {t.lang for t in kept + [d for d, _ in dropped]} == expected
        else:
            assert len({t.lang for t in kept + [d for d, _ in dropped]}) == 1  # same text, same answer


def test_cli_flag_is_derived():
    from tweetmill.pipeline.cli import build_parser
    from tweetmill.pipeline.options import config_from_args

    args = build_parser("run").parse_args(["run", "x", "-o", "y", "--ignore-twitter-lang"])
    assert config_from_args(args).stages["language"].use_twitter_lang is False
    args = build_parser("run").parse_args(["run", "x", "-o", "y", "--lang-engine", "langdetect-profiles"])
    assert config_from_args(args).stages["language"].lang_engine == "langdetect-profiles"


def test_stage_keeps_decision_and_twitter_tag():
    stage = DetectLanguage(LanguageConfig(languages=("en",)))
    stage.setup()
    kept, dropped = stage.process_batch([tweet(1, GEEKY, "und"), tweet(2, SCRIPTS["de"], "de")])
    assert [(t.id, t.lang, t.twitter_lang, t.text) for t in kept] == [(1, "en", "und", GEEKY)]
    assert [(t.id, t.lang, t.twitter_lang) for t, _ in dropped] == [(2, "de", "de")]
    assert 0.5 <= kept[0].lang_score <= 1.0


def test_langdetect_engines_still_use_resolve_language():
    stage = DetectLanguage(LanguageConfig(languages=("eu",), lang_engine="langdetect-profiles"))
    stage.setup()
    kept, _ = stage.process_batch([tweet(1, "Kaixo lagunak", "eu")])
    assert [t.id for t in kept] == [1]
    stage = DetectLanguage(
        LanguageConfig(languages=("eu",), lang_engine="langdetect-profiles", use_twitter_lang=False)
    )
    stage.setup()
    kept, _ = stage.process_batch([tweet(1, "Kaixo lagunak", "eu")])
    assert kept == []


# ---------------------------------------------------------------------------------------------
# Calibration and determinism
# ---------------------------------------------------------------------------------------------


def test_calibration_map_is_monotone_in_unit_interval():
    raw, cal = zip(*langid_tweet.CALIBRATION, strict=True)
    assert raw[0] == 0 and raw[-1] == 1 and list(raw) == sorted(raw)
    assert list(cal) == sorted(cal) and cal[0] >= 0 and cal[-1] == 1


def test_identical_whatever_the_batch(detector, monkeypatch):
    texts = [*SCRIPTS.values(), GEEKY, LOSE_IT, *KANJI_ONLY, "", "jajajaja siii", "word " * 3000]
    tags = [None, "en", "und", "de", "ko", "qme"] * 4
    tags = tags[: len(texts)]
    whole = detector.detect_tweets(texts, tags)
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    shuffled = detector.detect_tweets([texts[i] for i in order], [tags[i] for i in order])
    assert [shuffled[order.index(i)] for i in range(len(texts))] == whole
    assert [detector.detect_tweets([t], [g])[0] for t, g in zip(texts, tags, strict=True)] == whole
    monkeypatch.setattr(langid_tweet, "CHUNK_CHARS", 50)  # many chunks
    assert detector.detect_tweets(texts, tags) == whole


@pytest.mark.slow
def test_identical_in_another_process(detector):
    texts = [*SCRIPTS.values(), GEEKY, LOSE_IT, *KANJI_ONLY]
    ours = [[lang, repr(score)] for lang, score in detector.detect_batch(texts)]
    assert detect_in_another_process(texts) == ours


def test_pickles_without_tables(detector):
    det = langid_tweet.TweetDetector()
    before = det.detect_batch([GEEKY])
    blob = pickle.dumps(det)
    assert len(blob) < 3000
    assert pickle.loads(blob).detect_batch([GEEKY]) == before


def test_asset_is_small():
    assert langid_words.ASSET.stat().st_size < 5_000_000


# ---------------------------------------------------------------------------------------------
# On real tweets (shared data)
# ---------------------------------------------------------------------------------------------


def xlmt_sample(split: str, per_language: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    out = []
    for name, code in (
        ("arabic", "ar"),
        ("german", "de"),
        ("english", "en"),
        ("spanish", "es"),
        ("french", "fr"),
        ("italian", "it"),
        ("portuguese", "pt"),
    ):
        lines = shared_data("lang", "xlm-t", name, f"{split}_text.txt").read_text("utf-8").splitlines()
        out += [(t, code) for t in rng.sample(lines, per_language)]
    return out


def test_xlmt_accuracy_beats_the_exact_profiles(detector):
    sample = xlmt_sample("test", 120)
    texts = [t for t, _ in sample]
    ours = np.mean([a == g for a, (_, g) in zip(labels(detector, texts), sample, strict=True)])
    exact = np.mean(
        [
            a == g
            for (a, _), (_, g) in zip(
                langid_profiles.ProfileDetector().detect_batch(texts), sample, strict=True
            )
        ]
    )
    assert ours >= 0.96 and ours > exact


def test_high_scores_are_mostly_right(detector):
    sample = xlmt_sample("val", 100)
    got = detector.detect_batch([t for t, _ in sample])
    sure = [a == g for (a, s), (_, g) in zip(got, sample, strict=True) if s >= 0.9]
    assert len(sure) > 500 and np.mean(sure) >= 0.9


def test_exact_mode_equals_langdetect_on_a_sample():
    sample = xlmt_sample("test", 15)
    texts = [t for t, _ in sample]
    exact = langid.make_detector("langdetect-profiles", min_confidence=0.0).detect_batch(texts)
    reference = langid.make_detector("langdetect", min_confidence=0.0).detect_batch(texts)
    same = np.mean([a[0] == b[0] for a, b in zip(exact, reference, strict=True)])
    assert same >= 0.95  # langdetect samples n-grams at random; exact inference sums them all


def test_sample_lang_accepts_what_the_tweet_engine_writes():
    from tweetmill.pipeline.options import language_problems

    assert language_problems(["ka", "eu", "en", "und"], "tweet", option="--lang", detected_only=True) == []
    assert language_problems(["english"], "tweet", option="--lang", detected_only=True)
