"""How often the language detectors agree with Twitter's own ``lang`` tag, on real tweets.

Run by hand:  .venv/bin/python bench/bench_lang_agreement.py [DIR ...]
(default: ../shared/data/v1, v2 and archive)

Tweets are parsed and cleaned as the pipeline does; retweets are skipped (their tag is the
original's). Tweets Twitter tagged with no language (und, zxx, qme, ...) are counted apart. The
default ``tweet`` engine is measured twice: with the tag as evidence (the pipeline's default) and
with ``--ignore-twitter-lang``; the langdetect-profile engine's answer is also shown after
``resolve_language``, the rule the langdetect engines use.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import lang_eval_data as data
from tweetmill.transforms.langid import UND, make_detector, resolve_language
from tweetmill.transforms.langid_tweet import TweetDetector


def agreement(items: list[data.Item], answers: list[str]) -> tuple[Counter, Counter]:
    outcome: Counter = Counter()
    pairs: Counter = Counter()
    for it, lang in zip(items, answers, strict=True):
        tag = it.group
        if tag == UND:
            outcome["twitter: no language"] += 1
        elif lang == UND:
            outcome["detector: und"] += 1
        elif lang.split("-")[0] == tag.split("-")[0]:
            outcome["agree"] += 1
        else:
            outcome["disagree"] += 1
            pairs[(tag, lang)] += 1
    return outcome, pairs


def main() -> None:
    dirs = tuple(sys.argv[1:]) or data.TAGGED_DIRS
    items = data.tagged(tuple(str(Path(d).resolve()) if Path(d).exists() else d for d in dirs))
    texts = [it.text for it in items]
    tags = [it.twitter_lang for it in items]
    tweet = make_detector("tweet")
    profiles = make_detector("langdetect-profiles")
    runs = {
        "tweet (default, tag as evidence)": [a for a, _ in tweet.detect_tweets(texts, tags)],
        "tweet --ignore-twitter-lang": [a for a, _ in tweet.detect_batch(texts)],
        "langdetect-profiles": [a for a, _ in profiles.detect_batch(texts)],
        "langdetect-profiles + resolve_language": [
            resolve_language(a, s, t) for (a, s), t in zip(profiles.detect_batch(texts), tags, strict=True)
        ],
    }
    print(f"{len(items):,} tagged, non-retweet tweets from {', '.join(dirs)}")
    print("\nTAG_BONUS sweep (the tweet engine; agreement where Twitter names a language):")
    for bonus in (0.0, 1.0, 2.0, 3.0, 5.0, 10.0):
        det = TweetDetector(tag_bonus=bonus)
        outcome, _ = agreement(items, [a for a, _ in det.detect_tweets(texts, tags)])
        comparable = outcome["agree"] + outcome["disagree"] + outcome["detector: und"]
        print(
            f"  {bonus:>4.1f}: {100 * outcome['agree'] / comparable:.2f} %  "
            f"(disagree {outcome['disagree']}, und {outcome['detector: und']})"
        )
    for name, answers in runs.items():
        outcome, pairs = agreement(items, answers)
        comparable = outcome["agree"] + outcome["disagree"] + outcome["detector: und"]
        share = 100 * outcome["agree"] / comparable
        print(
            f"\n{name}: agree {outcome['agree']:,} of {comparable:,} ({share:.2f} %), "
            f"disagree {outcome['disagree']:,}, und {outcome['detector: und']:,}; "
            f"Twitter tagged no language: {outcome['twitter: no language']:,}"
        )
        print(
            "  most frequent disagreements (twitter → detector):",
            ", ".join(f"{a}→{b} {n}" for (a, b), n in pairs.most_common(8)),
        )


if __name__ == "__main__":
    main()
