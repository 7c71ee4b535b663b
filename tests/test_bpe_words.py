"""The word-by-word byte-level BPE (transforms/bpe_words.py) gives exactly HF tokenizers' ids."""

from __future__ import annotations

import json
import unicodedata

import pytest
import regex
from conftest import shared_data
from tokenizers import AddedToken, Tokenizer
from tweetmill.transforms import bpe_words
from tweetmill.transforms.bpe_words import (
    BYTE_LEVEL_PATTERN,
    SYMBOL_BLOCKS,
    WordCachedBPE,
    unsettled_characters,
)
from tweetmill.transforms.tokenize import (
    TokenizerSpec,
    load_tokenizer,
    read_tokenizer_bytes,
    train_bpe_tokenizer,
)

# Characters of recent Unicode versions that the installed engines class differently: Oniguruma
# (inside tokenizers) as unassigned, the regex module as letters.
DISPUTED = "\u0558\ua7ce\U0001094a\U00016ea0"
EDGE_CASES = [
    "", " ", "<URL> @user", "héllo 👋🏽 世界", "a  b   c\t\td\n\n", "don't 'tis we'll'll", "x@usery",
    "@user@user<URL>", "  trailing  ", "1,000.50 ½ ² ٣", "\u00a0\u2003\u3000 spaces", "\x00\x1c\x1f controls",
]


def real_texts() -> list[str]:
    texts = shared_data("bench", "tweeteval_sentiment__test_text.txt").read_text("utf-8").splitlines()
    for path in sorted(shared_data("lang").rglob("test_text.txt")):
        texts += path.read_text("utf-8").splitlines()
    return texts


def hf_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


@pytest.fixture(scope="module")
def bundled():
    return load_tokenizer(TokenizerSpec())


@pytest.fixture(scope="module")
def gpt2_like() -> str:
    """A byte-level BPE written as GPT-2's tokenizer.json is: its special token ``normalized``."""
    texts = [t for t in real_texts() if t][:3000]
    tok = train_bpe_tokenizer(texts, 2000)
    config = json.loads(tok.to_str())
    for added in config["added_tokens"]:
        added["normalized"] = True
    return json.dumps(config)


def test_bundled_tokenizer_is_encoded_word_by_word_with_hfs_ids(bundled):
    assert bundled.words is not None
    texts = [*real_texts(), *EDGE_CASES]
    assert bundled.words.encode_batch(texts) == hf_ids(bundled.tokenizer, texts)
    assert len(bundled.words._cache) > 1000  # the words were cached, not handed to HF


def test_gpt2_like_tokenizer_keeps_its_ids(gpt2_like):
    tok = Tokenizer.from_str(gpt2_like)
    words = WordCachedBPE.for_tokenizer(tok, gpt2_like)
    assert words is not None
    texts = [*real_texts()[:3000], *EDGE_CASES, "end<|endoftext|>start <|endoftext|><|endoftext|>"]
    assert words.encode_batch(texts) == hf_ids(tok, texts)


def test_longest_added_token_wins_where_two_start_together(gpt2_like):
    tok = Tokenizer.from_str(gpt2_like)
    tok.add_tokens([AddedToken(t, normalized=True) for t in ("<a>", "<a>b", "b<a")])
    config = tok.to_str()
    tok = Tokenizer.from_str(config)
    words = WordCachedBPE.for_tokenizer(tok, config)
    texts = ["x<a>by", "<a><a>b", "b<a>b<a>", "ab<a>bb<a"]
    assert words is not None and words.encode_batch(texts) == hf_ids(tok, texts)


def test_texts_with_characters_the_engines_class_differently_go_to_hf(bundled):
    texts = [f"it{c}'s {c}'ll" for c in DISPUTED]
    assert all(unsettled_characters().search(t) for t in texts)
    # The guard is what keeps these right: word by word, their ids would differ from HF's (while
    # the regex module knows a later Unicode than tokenizers' Oniguruma).
    assert [bundled.words._encode_settled(t) for t in texts] != hf_ids(bundled.tokenizer, texts)
    assert bundled.words.encode_batch(texts) == hf_ids(bundled.tokenizer, texts)


def test_a_full_cache_starts_over_with_the_same_ids(bundled, monkeypatch):
    monkeypatch.setattr(bpe_words, "CACHE_WORDS", 50)
    words = WordCachedBPE.for_tokenizer(bundled.tokenizer, read_tokenizer_bytes(bundled.source).decode())
    texts = real_texts()[:400]
    assert words.encode_batch(texts) == hf_ids(bundled.tokenizer, texts)
    assert len(words._cache) <= 50


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(normalizer={"type": "NFKC"}),
        lambda c: c["pre_tokenizer"].update(add_prefix_space=True),
        lambda c: c["model"].update(dropout=0.1),
        lambda c: c["added_tokens"][-1].update(lstrip=True),
        lambda c: c["added_tokens"][-1].update(normalized=True),  # a mix: HF matches them in two passes
        lambda c: c.update(pre_tokenizer={"type": "Whitespace"}),
        lambda c: c["added_tokens"].extend(
            {**c["added_tokens"][-1], "id": 20_000 + i, "content": f"<extra{i}>"} for i in range(64)
        ),
    ],
    ids=["normalizer", "prefix-space", "dropout", "lstrip", "mixed-normalized", "other-pre-tokenizer",
         "many-added-tokens"],
)
def test_other_tokenizers_are_left_to_hf(bundled, change):
    config = json.loads(read_tokenizer_bytes(bundled.source))
    change(config)
    text = json.dumps(config)
    assert WordCachedBPE.for_tokenizer(Tokenizer.from_str(text), text) is None


@pytest.mark.slow
def test_engines_agree_on_every_settled_code_point(bundled):
    """Oniguruma (in tokenizers) and the regex module split alike around every code point that the
    guard lets through: beside letters, digits, spaces, punctuation, itself and an apostrophe."""
    category = unicodedata.ucd_3_2_0.category
    unsettled = unsettled_characters()
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and not unsettled.match(chr(c))]
    assert len(code_points) > 200_000
    assert all(category(chr(c)) not in ("Cn", "Cs") or any(lo <= c <= hi for lo, hi in SYMBOL_BLOCKS)
               for c in code_points)
    pre_tokenize = bundled.tokenizer.pre_tokenizer.pre_tokenize_str
    split = regex.compile(BYTE_LEVEL_PATTERN).findall

    def agree(text: str) -> bool:
        return [text[a:b] for _, (a, b) in pre_tokenize(text)] == split(text)

    template = "a{c}b 1{c}2 {c}x !{c}? {c} y{c}  z\n{c}\t{c}{c}'{c}'s{c}"
    differ = []
    for start in range(0, len(code_points), 4096):  # a chunk at a time; one by one where one differs
        chunk = code_points[start:start + 4096]
        if not agree("".join(template.format(c=chr(c)) for c in chunk)):
            differ += [c for c in chunk if not agree(template.format(c=chr(c)))]
    assert not differ, [hex(c) for c in differ[:20]]
