"""Builds ``transforms/assets/langid-words.npz``, the word model of the default language detector.

Run by hand (it needs ``wordfreq``, which only the benchmark venv has)::

    .venv/langbench/bin/pip install wordfreq==3.1.1
    .venv/bin/python bench/build_lang_words.py [--words 15000]

The source is wordfreq 3.1.1's ``small`` lists (Apache-2.0 code; data CC-BY-SA 4.0, built by its
authors from Wikipedia, subtitles, news, books, web text, Twitter and Reddit): none of this
project's evaluation tweets. For each detector language wordfreq has (``nb`` is ``no``, ``fil``
``tl``, ``sh`` ``hr``; Chinese and Japanese are left out: they are not written with spaces, and
script decides them), every listed token is normalised as the detector sees text (lower case,
non-letters as spaces, so ``don't`` gives ``don`` and ``t``), pieces in another script than the
language's are dropped (the Latin words of the Russian list: the script rules decide those),
the frequencies of what one piece collects are added up, and the ``--words`` most frequent
pieces are kept with their log10 frequency (float16). Languages wordfreq lacks (af, cy, et, so,
sq, sw and the Indic languages but hi, bn, ta, ur) get no word evidence (0 for every word).

The data licence (CC-BY-SA 4.0) applies to the derived asset: docs/language-id.md says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "transforms" / "assets" / "langid-words.npz"
BENCH_PYTHON = ROOT / ".venv" / "langbench" / "bin" / "python"
WORDFREQ_CODES = {"no": "nb", "tl": "fil", "hr": "sh"}
SKIP = {"ja", "zh-cn", "zh-tw"}

_DUMP = """
import json, sys, wordfreq
out = {}
have = set(wordfreq.available_languages("small"))
for lang in (c for c in json.loads(sys.argv[1]) if c in have):
    buckets = wordfreq.get_frequency_list(lang, wordlist="small")
    out[lang] = [(w, -i / 100) for i, bucket in enumerate(buckets) for w in bucket]
json.dump({"lists": out}, sys.stdout)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--words", type=int, default=15000, help="pieces kept per language")
    args = parser.parse_args()

    from tweetmill.transforms.langid_codes import DETECTOR_LANGUAGES
    from tweetmill.transforms.langid_profiles import tweet_clean
    from tweetmill.transforms.langid_script import SCRIPT_LANGUAGES, S, script_table

    table = script_table()
    own_scripts = {
        lang: {S[name] for name, langs in SCRIPT_LANGUAGES.items() if lang in langs}
        for lang in DETECTOR_LANGUAGES
    }

    wanted = {lang: WORDFREQ_CODES.get(lang, lang) for lang in sorted(DETECTOR_LANGUAGES - SKIP)}
    proc = subprocess.run(
        [str(BENCH_PYTHON), "-c", _DUMP, json.dumps(sorted(set(wanted.values())))],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(f"wordfreq dump failed (is it installed in {BENCH_PYTHON}?):\n{proc.stderr}")
    lists = json.loads(proc.stdout)["lists"]
    langs, words, values = [], [], []
    for lang, code in wanted.items():
        if code not in lists:
            continue
        tokens = [w for w, _ in lists[code]]
        logf = np.array([f for _, f in lists[code]])
        pieces: dict[str, float] = {}
        for text, lf in zip(tweet_clean(tokens), logf.tolist(), strict=True):
            for piece in text.lower().split():
                if {int(table[ord(ch)]) for ch in piece} <= own_scripts[lang]:
                    pieces[piece] = pieces.get(piece, 0.0) + 10.0**lf
        top = sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))[: args.words]
        langs.append(lang)
        words.append("\n".join(w for w, _ in top))
        values.append(np.log10([f for _, f in top]).astype(np.float16))
        print(f"{lang}: {len(tokens):,} wordfreq tokens -> {len(pieces):,} pieces, kept {len(top):,}")
    np.savez_compressed(
        OUT,
        langs=np.array(langs),
        words=np.array(words),
        log10_freq=np.concatenate(values),
        counts=np.array([len(v) for v in values], dtype=np.int32),
        source=np.array(f"wordfreq 3.1.1 small lists, top {args.words} pieces per language"),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {len(langs)} languages)")


if __name__ == "__main__":
    main()
