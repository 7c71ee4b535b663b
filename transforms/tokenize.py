"""Tokenize stage: HF ``tokenizers`` over batches of tweets, EOS appended to every document.

Any ``tokenizer.json`` works (``--tokenizer``, a local or Beam path); without one, the byte-level
BPE bundled with tweetmill (trained on tweets by ``tweetmill train-tokenizer``) is used, so no
download is needed. Token ids travel between stages as little-endian int32 bytes: far cheaper to
pickle than lists or numpy arrays.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tokenizers import Tokenizer
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.bpe_words import WordCachedBPE
from tweetmill.transforms.common import METRICS_NAMESPACE, relax_collector
from tweetmill.transforms.dedup_batches import TweetBatch

log = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
BUNDLED_TOKENIZER = "bundled:tweet-bpe-16k"
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "[SEP]")
TOKEN_DTYPE = np.dtype("<i4")


@dataclass(frozen=True)
class TokenizerSpec:
    """Where a tokenizer comes from, and which token ends a document."""

    source: str = BUNDLED_TOKENIZER  # a path (local, gs://, ...) or "bundled:<name>"
    eos_token: str | None = None  # None: the first of EOS_CANDIDATES the vocabulary has


def read_tokenizer_bytes(source: str) -> bytes:
    """The raw ``tokenizer.json`` bytes: bundled package data, or any path Beam can open."""
    if source.startswith(BUNDLED_PREFIX):
        name = source[len(BUNDLED_PREFIX) :]
        asset = resources.files("tweetmill.transforms").joinpath("assets", f"{name}.json")
        if not asset.is_file():
            raise FileNotFoundError(f"no bundled tokenizer named {name!r}")
        return asset.read_bytes()
    with FileSystems.open(source, compression_type="uncompressed") as f:
        return f.read()


@dataclass
class LoadedTokenizer:
    tokenizer: Tokenizer
    sha256: str
    eos_id: int
    eos_token: str
    vocab_size: int
    source: str
    words: WordCachedBPE | None = None  # the same ids, faster, for byte-level BPE (bpe_words.py)


_CACHE: dict[TokenizerSpec, LoadedTokenizer] = {}
_CACHE_LOCK = threading.Lock()


def load_tokenizer(spec: TokenizerSpec) -> LoadedTokenizer:
    """Load (once per process) and identify a tokenizer; fail clearly if it has no usable EOS."""
    with _CACHE_LOCK:
        cached = _CACHE.get(spec)
        if cached is not None:
            return cached
        raw = read_tokenizer_bytes(spec.source)
        try:
            tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise ValueError(f"{spec.source}: not a valid HF tokenizer.json: {exc}") from exc
        candidates = (spec.eos_token,) if spec.eos_token else EOS_CANDIDATES
        eos_token = next((t for t in candidates if tokenizer.token_to_id(t) is not None), None)
        if eos_token is None:
            raise ValueError(
                f"{spec.source}: the tokenizer has no end-of-document token "
                f"(looked for {', '.join(candidates)}); name one with --eos-token"
            )
        loaded = LoadedTokenizer(
            tokenizer=tokenizer,
            sha256=hashlib.sha256(raw).hexdigest(),
            eos_id=tokenizer.token_to_id(eos_token),
            eos_token=eos_token,
            vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
            source=spec.source,
            words=WordCachedBPE.for_tokenizer(tokenizer, raw.decode("utf-8")),
        )
        _CACHE[spec] = loaded
        return loaded


def encode_batch(tokenizer: LoadedTokenizer, texts: list[str]) -> list[bytes]:
    """Token ids of each text with EOS appended, as little-endian int32 bytes: word by word where
    that gives the same ids (``bpe_words.py``), else HF's ``encode_batch_fast`` (tokenizers 0.20+),
    which skips the character offsets nothing here reads."""
    if tokenizer.words is not None:
        id_lists = tokenizer.words.encode_batch(texts)
    else:
        hf = tokenizer.tokenizer
        encode = getattr(hf, "encode_batch_fast", hf.encode_batch)
        id_lists = [e.ids for e in encode(texts, add_special_tokens=False)]
    flat: list[int] = []
    ends: list[int] = []
    for ids in id_lists:
        flat += ids
        flat.append(tokenizer.eos_id)
        ends.append(len(flat) * TOKEN_DTYPE.itemsize)
    data = np.array(flat, dtype=TOKEN_DTYPE).tobytes()  # one conversion for the batch
    out, start = [], 0
    for end in ends:
        out.append(data[start:end])
        start = end
    return out


def tokenize_batch(tokenizer: LoadedTokenizer, tweets: list[Tweet]) -> list[Tweet]:
    token_bytes = encode_batch(tokenizer, [t.text for t in tweets])
    return [t.replace(token_bytes=b) for t, b in zip(tweets, token_bytes, strict=True)]


# The tokenizers library's switch for its thread pool, read at every ``encode_batch``.
PARALLELISM_ENV = "TOKENIZERS_PARALLELISM"


class _TokenizeFn(beam.DoFn):
    def __init__(self, spec: TokenizerSpec, threads: bool = True):
        self._spec = spec
        self._threads = threads
        self._tokens = Metrics.counter(METRICS_NAMESPACE, "tokens")

    def setup(self) -> None:
        relax_collector()
        if not self._threads:  # unless the user asked for them (the variable set either way)
            os.environ.setdefault(PARALLELISM_ENV, "false")
        self._tokenizer = load_tokenizer(self._spec)

    def process(self, batch: list[Tweet]) -> Iterator[list[Tweet]]:
        tokenized = tokenize_batch(self._tokenizer, batch)
        self._tokens.inc(sum(len(t.token_bytes) for t in tokenized) // TOKEN_DTYPE.itemsize)
        yield tokenized


class TokenizeTweets(beam.PTransform):
    """Batches of tweets → the same batches, each tweet with its ``token_bytes`` (``encode_batch``)."""

    name = "tokenize"
    kind = "map"
    reasons = ()
    description = "token ids of every kept tweet, end-of-document token appended"

    def __init__(self, spec: TokenizerSpec, threads: bool = True):
        """``threads=False`` where every core already runs a worker process (several local workers,
        Dataflow's process per vCPU): a thread pool in each then only adds the cost of handing
        batches between threads (~35 % more CPU per token than one thread, measured on tweets)."""
        super().__init__()
        self._spec = spec
        self._threads = threads

    def expand(self, batches):
        encode = _TokenizeFn(self._spec, self._threads)
        return batches | "Encode" >> beam.ParDo(encode).with_output_types(TweetBatch)


# --- training the bundled tokenizer -------------------------------------------------------------

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, placeholders: Iterable[str] = ()) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style, case kept) trained on ``texts``.

    The clean stage's placeholders (``<URL>``, ``@user``...) are added as whole tokens so each
    costs one id. ``<|endoftext|>`` is id 0 and ends every document.
    """
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers

    placeholders = list(placeholders)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(placeholders),  # the placeholders complete the vocabulary
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(p, normalized=False) for p in placeholders])
    return tokenizer
