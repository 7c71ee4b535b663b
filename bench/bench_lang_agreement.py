"""How often the language detector agrees with Twitter's own ``lang`` tag, on real archives.

Run by hand:  .venv/bin/python bench/bench_lang_agreement.py [DIR ...]   (default: ../shared/data/v1)

Tweets are parsed and cleaned as the pipeline does; retweets are skipped (their tag is the
original's). Tweets Twitter tagged with no language (und, zxx, qme, ...) are counted apart.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from tweetmill.schemas.records import Tweet
from tweetmill.transforms.clean import CleanConfig, clean_batch
from tweetmill.transforms.langid import make_detector, normalize_language_code, resolve_language
from tweetmill.transforms.parse import iter_records

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESOLVED = "resolved to twitter tag"
NO_LANGUAGE = {"und", "zxx", "qme", "qam", "qct", "qht", "qst", ""}


def tagged_tweets(roots: list[Path]) -> list[Tweet]:
    tweets: list[Tweet] = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            with open(path, "rb") as f:
                tweets += [
                    r
                    for r in iter_records(str(path), f)
                    if isinstance(r, Tweet) and r.twitter_lang and not r.is_retweet
                ]
    return clean_batch(tweets, CleanConfig())


def main() -> None:
    roots = [Path(a) for a in sys.argv[1:]] or [SHARED / "v1"]
    tweets = tagged_tweets(roots)
    detector = make_detector("profiles")
    detections = detector.detect_batch([t.text for t in tweets])
    outcome: Counter = Counter()
    pairs: Counter = Counter()
    for tweet, (lang, score) in zip(tweets, detections, strict=True):
        tag = normalize_language_code(tweet.twitter_lang)
        if tag in NO_LANGUAGE or tag.startswith("q"):
            outcome["twitter: no language"] += 1
            continue
        detected = normalize_language_code(lang)
        if detected == "und":
            outcome["detector: und"] += 1
        elif detected.split("-")[0] == tag.split("-")[0]:
            outcome["agree"] += 1
        else:
            outcome["disagree"] += 1
            pairs[(tag, detected)] += 1
        outcome[RESOLVED] += resolve_language(lang, score, tweet.twitter_lang) == tag
    comparable = outcome["agree"] + outcome["disagree"] + outcome["detector: und"]
    print(f"{len(tweets):,} tagged, non-retweet tweets from {', '.join(str(r) for r in roots)}")
    for key in ("agree", "disagree", "detector: und", "twitter: no language"):
        share = (
            f"{100 * outcome[key] / comparable:.1f}% of comparable" if key != "twitter: no language" else ""
        )
        print(f"  {key:<22}{outcome[key]:>7,}  {share}")
    print(f"  resolve_language keeps Twitter's tag for {outcome[RESOLVED]:,} of {comparable:,}")
    print(
        "  most frequent disagreements (twitter → detector):",
        ", ".join(f"{a}→{b} {n}" for (a, b), n in pairs.most_common(8)),
    )


if __name__ == "__main__":
    main()
