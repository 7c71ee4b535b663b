"""Fits the constants of the default language detector (``transforms/langid_tweet.py``) on the
XLM-T *train* and *val* splits only (never test, TweetLID, the bench tweets or the archives).

Run by hand, then paste what it prints into ``langid_tweet.py``::

    .venv/bin/python bench/fit_lang_tweet.py

1. ``langid_words.OOV_MARGIN``, ``TEMPERATURE`` and ``WORD_WEIGHT``: maximum likelihood on the
   train split (7 languages, romanised Hindi out), with no prior: the split is balanced over its
   languages.
2. ``CALIBRATION``: the share of right answers as a function of the raw posterior of the best
   language, by isotonic regression (pool adjacent violators) on train + val, with the fitted
   constants and ``PRIOR_WEIGHT``; ``lang_score`` is that share, so that "score >= 0.9" means
   "right 90 % of the time" on data like this.
"""

from __future__ import annotations

import lang_eval_data as data
import numpy as np
from tweetmill.transforms import langid_tweet as lt


def posterior(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def fit_temperature(items: list[data.Item]) -> tuple[float, float, float]:
    texts = [it.text for it in items]
    tables = lt._Tables.load()
    gold = np.array([tables.column[it.group] for it in items])
    rows = []
    for margin in (1.0, 2.0, 3.0, 4.0):
        for t in (6.0, 8.0, 10.0, 12.0, 16.0):
            for g in (0.1, 0.15, 0.2, 0.3):
                det = lt.TweetDetector(temperature=t, word_weight=g, prior_weight=0.0, oov_margin=margin)
                p = posterior(det.scores(texts)[0])
                nll = -float(np.mean(np.log(p[np.arange(len(gold)), gold] + 1e-12)))
                rows.append((nll, margin, t, g, float(np.mean(p.argmax(axis=1) == gold))))
    rows.sort()
    print("OOV margin  temperature  word weight  NLL     accuracy   (best 8 of the grid, XLM-T train)")
    for nll, margin, t, g, acc in rows[:8]:
        print(f"{margin:>10.1f}  {t:>11.1f}  {g:>11.2f}  {nll:.4f}  {100 * acc:.2f}")
    return rows[0][1], rows[0][2], rows[0][3]


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent violators: the non-decreasing step function closest to ``y`` over sorted ``x``."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order].astype(float)
    blocks: list[list[float]] = []  # [sum, count, x_first, x_last]
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        blocks.append([yi, 1.0, xi, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, c, _, last = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][3] = last
    knots_x = np.array([(b[2] + b[3]) / 2 for b in blocks])
    knots_y = np.array([b[0] / b[1] for b in blocks])
    return knots_x, knots_y


def fit_calibration(items: list[data.Item], margin: float, t: float, g: float) -> list[tuple[float, float]]:
    det = lt.TweetDetector(
        min_confidence=0.0, calibration=(), oov_margin=margin, temperature=t, word_weight=g
    )
    answers = det.detect_batch([it.text for it in items])
    conf = np.array([c for _, c in answers])
    right = np.array([lang in it.gold for it, (lang, _) in zip(items, answers, strict=True)])
    kx, ky = isotonic(conf, right)
    # A few knots are enough for np.interp: the isotonic curve at fixed raw scores.
    grid = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0])
    values = np.interp(grid, kx, ky)
    values = np.maximum.accumulate(np.round(values, 3))
    print("\nraw posterior -> share right (XLM-T train + val, isotonic)")
    for g, v in zip(grid.tolist(), values.tolist(), strict=True):
        n = int(np.sum(np.abs(conf - g) < 0.05))
        print(f"  {g:.2f} -> {v:.3f}   ({n} answers within 0.05)")
    return list(zip(grid.tolist(), values.tolist(), strict=True))


def main() -> None:
    train = [it for it in data.xlmt("train") if it.group != "hi"]
    val = [it for it in data.xlmt("val") if it.group != "hi"]
    margin, t, g = fit_temperature(train)
    print(f"\nOOV_MARGIN = {margin}\nTEMPERATURE = {t}\nWORD_WEIGHT = {g}")
    calibration = fit_calibration(train + val, margin, t, g)
    print("CALIBRATION = (" + ", ".join(f"({a:g}, {b:g})" for a, b in calibration) + ")")


if __name__ == "__main__":
    main()
