"""Running on a remote runner (Dataflow, Flink, Spark): option checks, and shipping tweetmill to workers.

Two things a remote run needs that a local one does not:

* **Options that work before anything is built.** ``check_runner_options`` refuses a Dataflow run
  without ``--project``/``--region``, without a ``gs://`` temp/staging location, or with a local
  output, input or tokenizer path (workers cannot reach this machine's disk), with a message that
  says why. It runs before the output is looked at, the tokenizer loaded or a wheel built.
* **tweetmill on the workers.** ``staging_args`` returns the Beam options that stage it, the way
  Beam documents for a multi-file project: ``--extra_package`` with a wheel of the installed
  tweetmill (built here, with its bundled tokenizer as package data) and ``--requirements_file``
  with tweetmill's dependencies that the Beam SDK container lacks, pinned to the versions
  installed here (so workers tokenize and write with the exact same libraries). Beam downloads
  those requirements at submission and stages them, so workers install them without PyPI where
  the packages have wheels. A user's own ``--setup_file``, ``--requirements_file``,
  ``--extra_package tweetmill-*`` or ``--sdk_container_image`` (see ``Dockerfile``) wins: tweetmill
  then stages only what the user did not provide, or nothing.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from importlib.metadata import Distribution, PackageNotFoundError, distribution, distributions
from pathlib import Path
from urllib.parse import unquote, urlparse

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from packaging.requirements import Requirement
from tweetmill.pipeline.beam_options import ViewCachingOptions

log = logging.getLogger(__name__)

DIST_NAME = "tweetmill"
# Runners that execute in this process or its local subprocesses: they import the tweetmill
# installed here, so nothing is staged for them.
LOCAL_RUNNER_NAMES = frozenset(
    {"DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "PrismRunner",
     "InteractiveRunner"}
)
DATAFLOW_RUNNER_NAMES = frozenset({"DataflowRunner", "TestDataflowRunner"})
BUNDLED_TOKENIZER_PREFIX = "bundled:"  # tweetmill.transforms.tokenize.BUNDLED_PREFIX


class RunnerOptionsError(ValueError):
    """The runner cannot run this job with these options; the message says what to change."""


# --- which runner, which paths ------------------------------------------------------------------


def runner_name(options: PipelineOptions) -> str | None:
    """The runner's class name (``DataflowRunner``), whether given as a name, a dotted path or an object."""
    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return None
    if not isinstance(runner, str):
        return type(runner).__name__
    return runner.rsplit(".", 1)[-1]


def is_remote_runner(options: PipelineOptions) -> bool:
    name = runner_name(options)
    return name is not None and name not in LOCAL_RUNNER_NAMES


def is_dataflow(options: PipelineOptions) -> bool:
    return runner_name(options) in DATAFLOW_RUNNER_NAMES


def is_dry_run(options: PipelineOptions) -> bool:
    """``--dry_run``: the Dataflow runner translates and stages the job but does not submit it."""
    return is_dataflow(options) and bool(options.view_as(TestOptions).dry_run)


def console_url(project: str, region: str, job_id: str) -> str:
    """The Cloud Console page of a Dataflow job."""
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def is_local_path(path: str) -> bool:
    """A path on this machine's disk (no scheme, or ``file://``), which remote workers cannot read."""
    return FileSystems.get_scheme(path) in (None, "file")


def check_runner_options(config, options: PipelineOptions) -> None:
    """Refuse, before anything is built or read, a Dataflow run that cannot work; say why.

    ``config`` is the run's ``RunConfig``. Other runners are not checked: a Flink or Spark cluster
    may share a filesystem with this machine.
    """
    if not is_dataflow(options):
        return
    cloud = options.view_as(GoogleCloudOptions)
    problems: list[str] = []
    validator = PipelineOptionsValidator(options, None)
    if not cloud.project:
        problems.append("--project PROJECT_ID is required: the Google Cloud project that runs (and pays for) "
                        "the job")
    else:  # Beam's checks of the project id, --job_name and --dataflow_endpoint
        problems.extend(validator.validate_cloud_options(cloud))
    if not cloud.region and not os.environ.get("CLOUDSDK_COMPUTE_REGION"):
        problems.append("--region is required (e.g. --region europe-west4): the workers run there; pick the "
                        "region of your buckets, cross-region reads and writes are billed")
    if not cloud.temp_location and not cloud.staging_location:
        problems.append("--temp_location gs://BUCKET/tmp is required: Dataflow keeps temporary files and the "
                        "staged tweetmill package there")
    for name in ("temp_location", "staging_location"):
        value = getattr(cloud, name)
        if value and not value.startswith("gs://"):
            problems.append(f"--{name} {value!r} is not a Cloud Storage path: the Dataflow service and its "
                            f"workers cannot read this machine's disk; use gs://BUCKET/...")
        elif value:
            # Beam's own check, made here: when both locations fail it, Beam would go and create a
            # default bucket in the project instead of saying what is wrong.
            problems.extend(validator.validate_gcs_path(cloud, name))
    if is_local_path(config.output):
        problems.append(f"--output {config.output!r} is a local path: Dataflow workers write the shards and "
                        f"cannot reach this machine's disk; use gs://BUCKET/...")
    for pattern in config.inputs:
        if is_local_path(pattern):
            problems.append(f"input {pattern!r} is a local path: Dataflow workers read the inputs and cannot "
                            f"reach this machine's disk; copy them to gs://BUCKET/... first")
    source = config.tokenizer.source
    if not source.startswith(BUNDLED_TOKENIZER_PREFIX) and is_local_path(source):
        problems.append(f"--tokenizer {source!r} is a local path: Dataflow workers load the tokenizer; copy "
                        f"it to gs://BUCKET/... (or use the bundled one)")
    if problems:
        raise RunnerOptionsError(
            "cannot run on Dataflow with these options:\n  - " + "\n  - ".join(problems)
        )


# --- staging tweetmill and its requirements -----------------------------------------------------


def _is_tweetmill_package(path: str) -> bool:
    return re.match(r"tweetmill-\d", os.path.basename(path)) is not None


def staging_args(options: PipelineOptions, work_dir: str) -> list[str]:
    """Beam options that ship tweetmill and its requirements to a remote runner's workers.

    Empty for local runners, for ``--environment_type LOOPBACK`` (the workers are this process),
    for ``EXTERNAL`` (a worker pool started by the user runs its SDK workers in its own Python, which
    installs nothing staged: tweetmill must be installed there, as for the pool itself) and with
    ``--sdk_container_image`` (the image holds tweetmill: see ``Dockerfile``).
    """
    if not is_remote_runner(options):
        return []
    if options.view_as(WorkerOptions).sdk_container_image:
        log.info("--sdk_container_image given: tweetmill and its requirements are expected in the image")
        return []
    if (options.view_as(PortableOptions).environment_type or "").upper() in ("LOOPBACK", "EXTERNAL"):
        return []
    setup = options.view_as(SetupOptions)
    args: list[str] = []
    if setup.setup_file is None and not any(map(_is_tweetmill_package, setup.extra_packages or [])):
        wheel = build_wheel(work_dir)
        log.info("staging %s for the workers", wheel)
        args += ["--extra_package", wheel]
    if setup.requirements_file is None:
        args += ["--requirements_file", write_requirements(os.path.join(work_dir, "requirements.txt"))]
    return args


def remote_pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """``PipelineOptions`` of ``beam_args``, plus the staging options a remote runner needs.

    The staged files live in a temporary directory removed when this process exits (Beam uploads
    them when the pipeline runs).
    """
    options = ViewCachingOptions(beam_args)
    if not is_remote_runner(options):
        return options
    work_dir = tempfile.mkdtemp(prefix="tweetmill-staging-")
    atexit.register(shutil.rmtree, work_dir, True)
    return ViewCachingOptions([*beam_args, *staging_args(options, work_dir)])


def _installed() -> Distribution:
    """The installed tweetmill: its editable install, else an installed wheel (``.dist-info``).

    A checkout's ``tweetmill.egg-info`` (left by ``pip install -e .``) is also found when the
    checkout is on ``sys.path`` (``python -m pytest``); it is neither, so it is skipped when another
    is there.
    """
    found = list(distributions(name=DIST_NAME))
    for dist in found:
        if editable_source(dist) is not None:
            return dist
    for dist in found:
        if any(f.parts[0].endswith(".dist-info") for f in dist.files or ()):
            return dist
    if found:
        return found[0]
    raise RuntimeError(
        "tweetmill is not installed as a package (pip install -e .), so it cannot be staged for the "
        "workers; install it, or pass --sdk_container_image with an image that has it"
    )


def editable_source(dist: Distribution) -> Path | None:
    """The project directory of an editable install (``pip install -e .``), else None."""
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    info = json.loads(raw)
    if not info.get("dir_info", {}).get("editable") or not info.get("url", "").startswith("file:"):
        return None
    root = Path(unquote(urlparse(info["url"]).path))
    return root if (root / "pyproject.toml").is_file() else None


def build_wheel(dest_dir: str, dist: Distribution | None = None) -> str:
    """A wheel of the installed tweetmill in ``dest_dir``: what this process runs, package data included.

    An editable install is built from its source tree by its own build backend (offline: no build
    isolation, no index; the build's scratch files go to a temporary directory, not into the
    checkout). Any other install is repacked from its installed files.
    """
    dist = dist or _installed()
    source = editable_source(dist)
    if source is not None:
        return _build_from_source(source, dest_dir)
    return repack_installed(dist, dest_dir)


def _build_from_source(source: Path, dest_dir: str) -> str:
    with tempfile.TemporaryDirectory(prefix="tweetmill-wheel-") as scratch:
        # setuptools reads DIST_EXTRA_CONFIG: build/ and *.egg-info go to the scratch directory.
        config = Path(scratch, "build.cfg")
        config.write_text(f"[build]\nbuild_base = {scratch}/build\n[egg_info]\negg_base = {scratch}\n")
        out = Path(scratch, "dist")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--quiet", "--wheel-dir", str(out), str(source)]
        proc = subprocess.run(cmd, env={**os.environ, "DIST_EXTRA_CONFIG": str(config)},
                              capture_output=True, text=True, check=False)
        wheels = sorted(out.glob("tweetmill-*.whl"))
        if proc.returncode or not wheels:
            raise RuntimeError(
                f"building a wheel of tweetmill from {source} failed (needs pip and setuptools>=69 in this "
                f"environment):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            )
        target = Path(dest_dir, wheels[0].name)
        shutil.move(str(wheels[0]), target)
    return str(target)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack_installed(dist: Distribution, dest_dir: str) -> str:
    """A wheel of an installed (non-editable) distribution, from the files its RECORD lists."""
    info_dirs = {f.parts[0] for f in dist.files or () if f.parts[0].endswith(".dist-info")}
    if len(info_dirs) != 1:
        raise RuntimeError(f"cannot repack {dist.metadata['Name']}: its installed files list no .dist-info")
    info_dir = info_dirs.pop()
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    wheel_path = Path(dest_dir, f"{name}-{dist.version}-py3-none-any.whl")
    skip_info = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record: list[str] = []
    with zipfile.ZipFile(wheel_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(dist.files or (), key=str):
            rel = f.as_posix()
            if rel.startswith("..") or "__pycache__" in f.parts or rel.endswith(".pyc"):
                continue  # scripts outside site-packages are regenerated from entry_points.txt
            if f.parts[0] == info_dir and f.name in skip_info:
                continue
            data = Path(f.locate()).read_bytes()
            zf.writestr(rel, data)
            record.append(f"{rel},{_record_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return str(wheel_path)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_of(dist: Distribution, extras: Iterable[str] = ()) -> list[Requirement]:
    found = []
    for line in dist.requires or ():
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            found.append(req)
    return found


def _closure(roots: Iterable[Requirement]) -> dict[str, Distribution]:
    """The installed distributions ``roots`` need, transitively (extras followed, markers evaluated here)."""
    found: dict[str, Distribution] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = _canonical(req.name)
        if key in found:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            continue  # not installed here: pip on the worker resolves it from the wheel's metadata
        found[key] = dist
        todo.extend(_requirements_of(dist, req.extras))
    return found


def pinned_requirements(dist: Distribution | None = None) -> list[str]:
    """``name==version`` of every runtime dependency of tweetmill that the Beam SDK container lacks.

    The container holds apache-beam and its dependencies (numpy, pyarrow...) at the versions it was
    built with; everything else tweetmill needs (tokenizers, ftfy, langdetect and its language
    profiles, datasketch...) is pinned to the version installed here, transitively.
    """
    dist = dist or _installed()
    own = [r for r in _requirements_of(dist) if _canonical(r.name) != "apache-beam"]
    provided = _closure([Requirement("apache-beam")])
    needed = _closure(own)
    return sorted(f"{d.metadata['Name']}=={d.version}" for k, d in needed.items() if k not in provided)


def write_requirements(path: str) -> str:
    pins = pinned_requirements()
    header = f"# tweetmill {_installed().version}: runtime requirements pinned to the launching environment\n"
    Path(path).write_text(header + "".join(p + "\n" for p in pins))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m tweetmill.pipeline.dataflow requirements`` prints the pins tweetmill stages;
    ``... wheel DIR`` builds the wheel it stages. For building worker images (see ``Dockerfile``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tweetmill.pipeline.dataflow", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("requirements", help="print tweetmill's pinned worker requirements")
    wheel = sub.add_parser("wheel", help="build a wheel of the installed tweetmill")
    wheel.add_argument("dest", help="directory to write the wheel to")
    args = parser.parse_args(argv)
    if args.what == "requirements":
        print("\n".join(pinned_requirements()))
    else:
        os.makedirs(args.dest, exist_ok=True)
        print(build_wheel(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
