"""``tweetmill train-tokenizer``: a byte-level BPE trained on cleaned tweets.

The texts go through the same parser and cleaner as the pipeline, so the vocabulary sees what the
shards will hold (placeholders included, as single tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.clean import CleanConfig, clean_text
from tweetmill.transforms.parse import iter_records
from tweetmill.transforms.tokenize import train_bpe_tokenizer

log = logging.getLogger(__name__)


def iter_clean_texts(patterns: list[str], limit: int | None = None) -> Iterator[str]:
    config = CleanConfig()
    emitted = 0
    for match in FileSystems.match(patterns):
        for meta in sorted(match.metadata_list, key=lambda m: m.path):
            with FileSystems.open(meta.path) as f:
                for record in iter_records(meta.path, f):
                    if not isinstance(record, Tweet) or record.is_retweet:
                        continue
                    text = clean_text(record.text, config, is_reply=record.is_reply)
                    if text:
                        yield text
                        emitted += 1
                        if limit is not None and emitted >= limit:
                            return


def placeholders(config: CleanConfig) -> list[str]:
    return [
        config.url_placeholder,
        config.mention_placeholder,
        config.email_placeholder,
        config.phone_placeholder,
    ]


def train_tokenizer_from_files(
    patterns: list[str], output: str, *, vocab_size: int = 16384, limit: int | None = None
) -> dict:
    texts = list(iter_clean_texts(patterns, limit))
    if not texts:
        raise ValueError("no tweet text found in the inputs")
    tokenizer = train_bpe_tokenizer(texts, vocab_size, placeholders(CleanConfig()))
    with FileSystems.create(output, compression_type="uncompressed") as f:
        f.write(tokenizer.to_str().encode("utf-8"))
    return {"texts": len(texts), "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True)}
