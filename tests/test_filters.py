"""The tweet-quality filters (length's maximum, entities_only, entity_counts, repetition), without Beam.

Texts are as the clean stage leaves them: mentions ``@user``, URLs ``<URL>``, hashtags kept. The
positive cases are real tweets of the shared corpus (``docs/quality-filters.md``), shortened.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import random
import re

import pytest
from tweetmill.pipeline.stage_options import add_stage_arguments, stage_config_from_args
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.filters.entities_only import (
    DROP_ONLY_EMOJI,
    DROP_ONLY_HASHTAGS,
    DROP_ONLY_LINKS,
    DROP_ONLY_MENTIONS,
    ENTITY,
    ENTITY_PATTERNS,
    EntitiesOnly,
    plain_text,
)
from tweetmill.transforms.filters.entity_counts import (
    DROP_TOO_MANY_HASHTAGS,
    DROP_TOO_MANY_MENTIONS,
    EntityCounts,
    count_mentions,
    count_tags,
)
from tweetmill.transforms.filters.length import DROP_TOO_LONG, Length
from tweetmill.transforms.filters.repetition import (
    DROP_REPEATED_CHARS,
    DROP_REPEATED_WORDS,
    Repetition,
    may_repeat_chars,
    repeated_char_share,
    text_words,
    top_phrase_share,
)
from tweetmill.transforms.stage import TweetFilter, run_stage

NEW_FILTERS = (EntitiesOnly, EntityCounts, Repetition)
FAMILY = "👨‍👩‍👧‍👦"  # a ZWJ sequence of 7 code points
CODER = "👩🏽‍💻"  # skin tone + ZWJ: 4 code points


def tweet(text: str, i: int = 1, **kw) -> Tweet:
    return Tweet(id=i, text=text, source_format="text", source_file="f.txt", position=i, **kw)


def reason(stage: TweetFilter, text: str) -> str | None:
    return stage.reject(tweet(text))


# --- the stage contract --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", (*NEW_FILTERS, Length))
def test_the_stage_contract(cls):
    stage = cls()
    assert stage.enabled() and stage.name and stage.description
    assert stage.reasons and len(set(stage.reasons)) == len(stage.reasons)
    for field in dataclasses.fields(cls.Config):
        assert field.metadata["help"], field.name
    texts = [
        "#McGregor 💪🏻",
        "@user @user <URL>",
        "🔥🔥🔥",
        "GOOOOOOOOOOOOOL",
        "preach " * 20,
        " ".join(f"#tag{i}" for i in range(12)) + " caption",
        "thanks " + "@user " * 9,
        "A perfectly ordinary tweet about the weather in Lisbon today.",
        "x" * 30_001,
        "",
    ]
    tweets = [tweet(t, i) for i, t in enumerate(texts)]
    kept, dropped = run_stage(stage, tweets)  # raises on an undeclared reason or a lost tweet
    assert {t.id for t in kept} | {t.id for t, _ in dropped} == set(range(len(texts)))
    assert pickle.loads(pickle.dumps(stage)).config == stage.config  # Beam pickles stages


def test_the_new_reasons_are_distinct_and_the_names_unique():
    reasons = [r for cls in NEW_FILTERS for r in cls.reasons]
    assert len(set(reasons)) == len(reasons) == 8
    assert len({cls.name for cls in (*NEW_FILTERS, Length)}) == 4


def test_the_options_become_flags_and_zero_turns_each_filter_off():
    parser = argparse.ArgumentParser()
    add_stage_arguments(parser, (Length, *NEW_FILTERS))  # no clashing flags
    args = parser.parse_args([])
    assert [stage_config_from_args(args, cls) for cls in NEW_FILTERS] == [cls.Config() for cls in NEW_FILTERS]
    assert stage_config_from_args(args, Length).max_chars == 30_000
    flags = ("--min-plain-chars", "--max-hashtags", "--max-mentions", "--char-repetition", "--word-repeats")
    off = parser.parse_args([arg for flag in flags for arg in (flag, "0")])
    for cls in NEW_FILTERS:
        assert not cls(stage_config_from_args(off, cls)).enabled(), cls.name
    with pytest.raises(SystemExit):
        parser.parse_args(["--char-repetition", "1.5"])


# --- length: the maximum -------------------------------------------------------------------------


def test_max_length_keeps_long_posts_and_replies_and_drops_accidents():
    length = Length()
    reply = "@user " * 9 + "yep. my ex-wife had thrombosis and heart problems, " * 5  # 334-char real reply
    assert reason(length, reply) is None
    assert reason(length, "A long post. " * 1900) is None  # ~25,000 characters: a note tweet
    assert reason(length, "row,of,a,csv,file\n" * 2000) == DROP_TOO_LONG  # 36,000: rows in one cell
    assert Length(dataclasses.replace(Length.Config(), max_chars=0)).reject(tweet("x" * 40_000)) is None


# --- entities_only -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#McGregor 💪🏻", DROP_ONLY_HASHTAGS),
        ("😂😂😂😂 #MayweatherMcGregor <URL>", DROP_ONLY_HASHTAGS),
        ("#TeamMayweather #MoneyTeam💰 #MayweatherMcGregor <URL>", DROP_ONLY_HASHTAGS),  # length keeps it
        ("🤷🏾\u200d♀️ #MayweatherMcGregor", DROP_ONLY_HASHTAGS),
        ("Go #McGregor 🙏", DROP_ONLY_HASHTAGS),  # 2 letters of its own
        ("$AAPL $TSLA $NVDA 🚀🚀", DROP_ONLY_HASHTAGS),  # cashtags are tags
        ("@user #gowokegobroke", DROP_ONLY_HASHTAGS),  # a tie: hashtags first
        ("@user @user #FreeDorothy", DROP_ONLY_MENTIONS),
        ("@user @user <URL>", DROP_ONLY_MENTIONS),
        ("<URL> <URL>", DROP_ONLY_LINKS),
        ("https://example.com/a-long-path/with-words 👀", DROP_ONLY_LINKS),  # URLs kept by the clean config
        ("<EMAIL> <PHONE>", DROP_ONLY_LINKS),
        ("🔥🔥🔥", DROP_ONLY_EMOJI),
        (f"{FAMILY} {CODER} 👍🏽👍🏿 🇮🇪", DROP_ONLY_EMOJI),
        ("... !!! ???", DROP_ONLY_EMOJI),
    ],
)
def test_entities_only_drops(text, expected):
    assert reason(EntitiesOnly(), text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Go team go #McGregor",
        "#McGregor wins 🥊",
        "#tbt @ Los Angeles, California",  # a check-in: "@ place" is no mention
        "ok 😂",  # short, no entity: length's business, not "only emoji"
        "",  # empty's business
        "太棒了 #McGregor",  # each CJK character counts
        "Hashtag-heavy but real: #Obama #Hamas #BLM #CAIR #NOI to name a few",
        f"{FAMILY} day at the beach <URL>",
        "50-0 #TheGOAT",  # "#50" is no hashtag: its digits count
    ],
)
def test_entities_only_keeps(text):
    assert reason(EntitiesOnly(), text) is None


def test_entities_only_threshold_and_off():
    assert reason(EntitiesOnly(EntitiesOnly.Config(min_plain_chars=1)), "Go #McGregor 🙏") is None
    assert reason(EntitiesOnly(EntitiesOnly.Config(min_plain_chars=1)), "#McGregor 🙏") == DROP_ONLY_HASHTAGS
    assert not EntitiesOnly(EntitiesOnly.Config(min_plain_chars=0)).enabled()


def test_the_guarded_entity_regex_blanks_what_the_plain_alternation_blanks():
    unguarded = re.compile("|".join(p.pattern for p in ENTITY_PATTERNS))
    texts = [
        "RT @user: hi #tag $AAPL <URL> https://t.co/x RTX rt #50 &#39; a#b x$Y",
        "Read https://x.com/@name and mail me@example.com #ünïcode #tag_1 $BRK.A (RT)",
        "\nRT\n@a\n#b\n$c\n<EMAIL>",
    ]
    for text in texts:
        assert ENTITY.sub(" ", text) == unguarded.sub(" ", text)
    assert plain_text("Go #McGregor @user <URL>").split() == ["Go"]


# --- entity_counts -------------------------------------------------------------------------------


def test_too_many_hashtags():
    counts = EntityCounts()
    tags = "#sushi #food #foodporn #lunch #love #fish #nigiri #lifestyle #blogger #la"
    assert reason(counts, tags + " @ Sushi 4 You") == DROP_TOO_MANY_HASHTAGS  # 10 tags
    caption = "Love lifts us up where we belong #love #Runyon #la #workout #city #hiking #peace #myheart #sun"
    assert reason(counts, caption) is None  # 9: an Instagram caption and its tags
    real = 'When the pilot says "get off the plane" #lol #flying #samsung #faa #tsa #dot'
    assert reason(counts, real) is None
    pump = "$AAPL $TSLA $NVDA $AMD $MSFT $META $GOOG $AMZN $NFLX $INTC to the moon"
    assert reason(counts, pump) == DROP_TOO_MANY_HASHTAGS
    assert count_tags("$100 and $5.99 are prices, #1 is a rank, &#39; an entity") == 0
    assert count_tags("#a #b $AAPL") == 3


def test_too_many_mentions_does_not_count_the_reply_prefix():
    counts = EntityCounts()
    thread_reply = "@user " * 10 + "hardware specs? open source? tutorial?"
    assert count_mentions(thread_reply) == 0 and reason(counts, thread_reply) is None
    shoutout = "grandes apañeros del tuit diario #FF " + "@user " * 8
    assert reason(counts, shoutout) == DROP_TOO_MANY_MENTIONS
    assert reason(counts, "Our Mila's first Halloween photo! " + "@user " * 6) is None  # tagging friends
    dotted = ".@user " + "@user " * 7 + "Trump knows"  # ".@" is no reply prefix
    assert count_mentions(dotted) == 8 and reason(counts, dotted) == DROP_TOO_MANY_MENTIONS
    assert count_mentions("mail <EMAIL> or call <PHONE>") == 0


def test_entity_counts_limits_and_off():
    tags = " ".join(f"#t{i}x" for i in range(20))
    assert reason(EntityCounts(EntityCounts.Config(max_hashtags=0)), tags) is None
    assert reason(EntityCounts(EntityCounts.Config(max_hashtags=20)), tags) is None
    assert reason(EntityCounts(EntityCounts.Config(max_hashtags=19)), tags) == DROP_TOO_MANY_HASHTAGS
    assert not EntityCounts(EntityCounts.Config(max_hashtags=0, max_mentions=0)).enabled()


# --- repetition ----------------------------------------------------------------------------------

REPEATED_CHARS = [
    "GOOOOOOOOOOOOOL",
    "woooooooohooooooo!",
    "JAJAJAJAJAJAJA😂😂😂😂😂 <URL>",
    "#McGregor " + "🔥" * 54,
    "#McGregor " + "💪🏼" * 11,  # skin-toned emoji: a 2-code-point unit
    "LET'S GO " + "🇮🇪" * 20,  # flags: 2 regional indicators
    CODER * 8,  # a 4-code-point ZWJ sequence
    "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ",
    "哈哈哈哈哈哈哈哈哈哈",
    "@user jajajajajajajajajajajajajajajajaja qué monaditaaaa",
]
REPEATED_WORDS = [
    "@user " + "preach " * 20,
    "Che palle " * 14,
    "PENIS " * 11 + "#28c3 #pentanews <URL>",
    "@user FOLLOW ME PLEASEEEE RT FOLLOW ME FOLLOW ME PLEASE FOLLOW ME FOLLOW ME FOLLOW ME",
    "加油 " * 7 + "大家一起",  # CJK: a word runs to a space or punctuation ("加油！" * 6 is a char run)
]
NOT_REPETITION = [
    "Kkkkkkkkkkkkkkkkkkkk mano a vergonha alheia desse quadro, nunca faria. Puta merda #TheNoite",
    "Salmaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaan ajhooo 4 ghanto se apka wait kar rahi hu",
    "sooooo tired today, can't wait for the weekend!!!!",
    f"{FAMILY}{FAMILY}{FAMILY} family day at the beach with everyone",
    f"{CODER}{CODER}{CODER}{CODER} coding all night",
    "我们天天见面，慢慢地走回家。今天的天气真好，大家都很开心，谢谢谢谢你们！",
    "今日はとても楽しかったです。また明日も頑張ります！よろしくお願いします。",
    "วันนี้อากาศดีมากเราไปเที่ยวทะเลกันนะครับ",
    "Work, work, work, work, work @ Granite Bay, California",  # 5 < 6
    "U U U only for U U U my love is for U. #tts #snsd",  # one-letter words weigh little
    "Ich hatte einen pädagogisch ganz und gar unvorzeigbaren Tag. Und einfallsreich war ich auch: "
    "nein! Nein! NEin! NEIn! NEIN! neiN! neIN! nEIN!",
    "Our goal: 1000000 signatures by Friday, please sign and share",
    "Have a great weekend ---------- #fbf",
    "@user " * 10 + "#tag " * 10,  # entities are other filters' business
]


@pytest.mark.parametrize("text", REPEATED_CHARS)
def test_repeated_chars(text):
    assert reason(Repetition(), text) == DROP_REPEATED_CHARS


@pytest.mark.parametrize("text", REPEATED_WORDS)
def test_repeated_words(text):
    assert reason(Repetition(), text) == DROP_REPEATED_WORDS


@pytest.mark.parametrize("text", NOT_REPETITION)
def test_not_repetition(text):
    assert reason(Repetition(), text) is None


def test_the_batch_path_decides_like_reject():
    stage = Repetition()
    texts = REPEATED_CHARS + REPEATED_WORDS + NOT_REPETITION + ["", "lone \ud800 surrogate aaaaaaaaaaaa"]
    tweets = [tweet(t, i) for i, t in enumerate(texts)]
    kept, dropped = run_stage(stage, tweets)
    assert {t.id: r for t, r in dropped} == {t.id: stage.reject(t) for t in tweets if stage.reject(t)}
    assert [t.id for t in kept] == [t.id for t in tweets if stage.reject(t) is None]
    assert run_stage(stage, []) == ([], [])


def test_the_batch_pre_check_never_rules_out_a_repetitive_text():
    rng = random.Random(7)
    units = ["a", "ha", "😂", "👍🏽", "lol", "-", "ㅋ", CODER, "xyz!"]
    words = ["the", "cat", "sat", "on", "mat", "and", "so", "did", "I", "哈", " ", "\n"]
    texts = []
    for _ in range(2000):
        parts = [
            rng.choice(units) * rng.randint(1, 12) if rng.random() < 0.3 else rng.choice(words)
            for _ in range(rng.randint(1, 15))
        ]
        texts.append(" ".join(parts))
    for share in (0.3, 0.6, 0.9):
        may = may_repeat_chars(texts, share)
        assert all(may[i] for i, t in enumerate(texts) if repeated_char_share(t) >= share)
        assert not may_repeat_chars(["A perfectly ordinary tweet about the weather."], share)[0]


def test_repetition_measures():
    assert repeated_char_share("aaaa") == 0.75  # 3 of 4 characters repeat the first
    assert repeated_char_share("aaa bbb") == 0.0  # 3 copies make no run
    assert repeated_char_share("hahahaha x") == 6 / 9
    assert text_words("@user Hello hello #tag <URL> HELLO") == ["hello", "hello", "hello"]
    assert top_phrase_share(["che", "palle"] * 6, 6) == 1.0
    assert top_phrase_share(["nein"] * 8, 6) == 1.0
    assert top_phrase_share(["a", "b", "c"] * 5, 6) == 0.0  # 5 occurrences only
    # Overlapping occurrences do not count twice: "ha ha ha" holds 3 "ha", not two "ha ha".
    assert top_phrase_share(["ha"] * 6 + ["long", "sentence", "here"], 6) == 12 / 28


def test_repetition_options_and_off():
    only_words = Repetition(Repetition.Config(char_repetition=0.0))
    assert reason(only_words, "GOOOOOOOOOOOOOL") is None
    assert reason(only_words, "preach " * 20) == DROP_REPEATED_WORDS
    only_chars = Repetition(Repetition.Config(word_repeats=0))
    assert reason(only_chars, "preach " * 20) is None
    assert run_stage(only_words, [tweet("GOOOOOOOOOOOOOL")])[1] == []
    assert not Repetition(Repetition.Config(char_repetition=0.0, word_repeats=0)).enabled()
    strict = Repetition(Repetition.Config(word_repeats=4, word_repetition=0.3))
    assert reason(strict, "Work, work, work, work, work @ Granite Bay, California") == DROP_REPEATED_WORDS
