"""Dataflow without Google Cloud: the full job graph translated offline (``--dry_run``), what is staged
for the workers, and the option checks that refuse a run before anything is built."""

from __future__ import annotations

import base64
import hashlib
import pickle
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import Distribution, distribution
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from conftest import REPO_ROOT
from gcs_emulator import environment, google_cloud_env
from tweetmill.pipeline import build as build_module
from tweetmill.pipeline import dataflow
from tweetmill.pipeline.build import run
from tweetmill.pipeline.options import RunConfig
from tweetmill.transforms.tokenize import TokenizerSpec

BUCKET = "gs://tweetmill-test-bucket"
DATAFLOW = [
    "--runner", "DataflowRunner",
    "--project", "tweetmill-test",
    "--region", "europe-west4",
    "--temp_location", f"{BUCKET}/tmp",
]
# Offline: translate and stage, do not submit; no credentials; requirements are not downloaded
# from PyPI at submission (a real run downloads and stages them).
DRY_RUN = [*DATAFLOW, "--dry_run=True", "--no_auth", "--requirements_cache", "skip"]
CONFIG = RunConfig(inputs=(f"{BUCKET}/archive/2022-*/*.json.bz2",), output=f"{BUCKET}/shards/v1")
# The dedup stages take the filters' batches as they are (no Unbatch step before them since #15).
STAGES = ("ReadArchives", "Clean", "empty", "retweets", "length", "DeduplicateIds", "DeduplicateTexts",
          "RemoveNearDuplicates", "language", "Tokenize", "WriteShards", "WriteDeadLetters", "Finalize")


@pytest.fixture(autouse=True, scope="module")
def offline(tmp_path_factory):
    """Google's clients see credentials and a storage endpoint on loopback only (tests/gcs_emulator.py)."""
    with environment(google_cloud_env(tmp_path_factory.mktemp("gcloud"))):
        yield


def _dry_run(monkeypatch, config: RunConfig, beam_args: list[str]):
    """``run()`` as the CLI calls it; returns its result and the Dataflow job it translated."""
    results = []
    original = beam.Pipeline.run

    def spy(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(beam.Pipeline, "run", spy)
    returned = run(config, beam_args)
    jobs = [r.job for r in results if getattr(r, "job", None) is not None]
    assert jobs, "the Dataflow runner translated no job"
    return returned, jobs[-1]


def _staged(job) -> dict[str, str]:
    """staged name → local path of every artifact of the job's environments."""
    staged = {}
    for env in job.proto_pipeline.components.environments.values():
        for dep in env.dependencies:
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
            staged[name] = path
    return staged


@pytest.mark.slow
def test_dry_run_translates_the_whole_graph_and_stages_tweetmill(monkeypatch):
    returned, job = _dry_run(monkeypatch, CONFIG, DRY_RUN)
    assert returned is None  # nothing was submitted, so there is no manifest to return

    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert set(STAGES) <= names
    assert "WriteShards/GroupByShard" in names and "Finalize/CheckAndPublish" in names
    # Containers are split into members on one worker, then the members are spread: the parse step
    # reads what the reshuffle after the listing emits, so one big tar is parsed by every worker.
    by_name = {t.unique_name: t for t in job.proto_pipeline.components.transforms.values()}
    listed = set(by_name["ReadArchives/ListUnits"].outputs.values())
    assert listed == set(by_name["ReadArchives/ReshuffleUnits"].inputs.values())
    assert set(by_name["ReadArchives/ParseUnits"].inputs.values()) == set(
        by_name["ReadArchives/ReshuffleUnits"].outputs.values())
    (env,) = job.proto_pipeline.components.environments.values()
    image = beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert image.endswith(f"beam_python{python}_sdk:{beam.__version__}")  # Beam's SDK image, this Python
    assert job.proto.name and job.options.view_as(dataflow.GoogleCloudOptions).region == "europe-west4"

    staged = _staged(job)
    wheels = [n for n in staged if n.startswith("tweetmill-") and n.endswith(".whl")]
    assert len(wheels) == 1, staged
    assert Path(staged["extra_packages.txt"]).read_text().split() == wheels
    with zipfile.ZipFile(staged[wheels[0]]) as whl:
        files = set(whl.namelist())
        metadata = whl.read(next(n for n in files if n.endswith(".dist-info/METADATA"))).decode()
    assert "tweetmill/transforms/assets/tweet-bpe-16k.json" in files  # the bundled tokenizer
    for module in ("pipeline/build.py", "pipeline/dataflow.py", "transforms/parse.py", "transforms/write.py",
                   "transforms/containers.py", "transforms/read.py", "schemas/records.py",
                   "transforms/stage.py", "transforms/filters/length.py", "schemas/shard_dir.py"):
        assert f"tweetmill/{module}" in files
    assert "Requires-Dist: langdetect==1.0.9" in metadata

    pins = Path(staged["requirements.txt"]).read_text().splitlines()
    assert f"tokenizers=={distribution('tokenizers').version}" in pins  # same token ids on the workers
    assert "langdetect==1.0.9" in pins and f"datasketch=={distribution('datasketch').version}" in pins
    in_the_image = ("apache-beam", "numpy", "pyarrow")
    assert not [p for p in pins if p.split("==")[0].lower() in in_the_image]
    # langdetect's language profiles are its package data: they travel inside the langdetect it pins.
    assert any(f.as_posix() == "langdetect/profiles/en" for f in distribution("langdetect").files)


@pytest.mark.slow
def test_dry_run_with_the_users_setup_file_pyproject(monkeypatch):
    """``--setup_file ./pyproject.toml`` (Beam builds an sdist with ``python -m build``): tweetmill then
    stages no wheel of its own, and the sdist carries the bundled tokenizer."""
    monkeypatch.chdir(REPO_ROOT)
    _, job = _dry_run(monkeypatch, CONFIG, [*DRY_RUN, "--setup_file=./pyproject.toml"])
    staged = _staged(job)
    assert not [n for n in staged if n.endswith(".whl")], staged
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:
        names = sdist.getnames()
    assert any(n.endswith("transforms/assets/tweet-bpe-16k.json") for n in names), names
    assert "requirements.txt" in staged  # the pins still come from tweetmill


def test_staging_leaves_what_the_user_provides():
    def args(*extra):
        return dataflow.staging_args(PipelineOptions([*DATAFLOW, *extra]), "/nonexistent")

    assert args("--sdk_container_image", "europe-docker.pkg.dev/p/r/tweetmill:0.1.0") == []
    own_wheel = "/wheels/tweetmill-0.1.0-py3-none-any.whl"
    assert args("--extra_package", own_wheel, "--requirements_file", "reqs.txt") == []
    assert args("--setup_file", "./pyproject.toml", "--requirements_file", "reqs.txt") == []
    for local in ([], ["--runner", "DirectRunner"], ["--runner", "PrismRunner"]):
        assert dataflow.staging_args(PipelineOptions(local), "/nonexistent") == []
    loopback = PipelineOptions(["--runner", "FlinkRunner", "--environment_type", "LOOPBACK"])
    assert dataflow.staging_args(loopback, "/nonexistent") == []
    # An external worker pool runs its SDK workers in its own Python and installs nothing staged.
    external = PipelineOptions(["--runner", "PortableRunner", "--environment_type", "EXTERNAL"])
    assert dataflow.staging_args(external, "/nonexistent") == []


def _bad_run(monkeypatch, config: RunConfig, beam_args: list[str]) -> str:
    """The error of a run that must be refused before the output, the tokenizer or the graph is touched."""

    def untouched(*_args, **_kwargs):
        raise AssertionError("touched before the options were checked")

    monkeypatch.setattr(build_module, "output_spec", untouched)
    monkeypatch.setattr(build_module, "make_pipeline", untouched)
    monkeypatch.setattr(build_module.FileSystems, "exists", untouched)
    with pytest.raises(dataflow.RunnerOptionsError) as info:
        run(config, beam_args)
    return str(info.value)


def _without(args: list[str], option: str) -> list[str]:
    i = args.index(option)
    return args[:i] + args[i + 2 :]


@pytest.mark.parametrize(
    ("config", "beam_args", "expected"),
    [
        (CONFIG, _without(DATAFLOW, "--project"), "--project PROJECT_ID is required"),
        (CONFIG, _without(DATAFLOW, "--region"), "--region is required"),
        (CONFIG, _without(DATAFLOW, "--temp_location"), "--temp_location gs://BUCKET/tmp is required"),
        (CONFIG, [*_without(DATAFLOW, "--temp_location"), "--temp_location", "/tmp/beam"],
         "--temp_location '/tmp/beam' is not a Cloud Storage path"),
        (CONFIG, [*DATAFLOW, "--staging_location", "file:///tmp/staging"], "--staging_location 'file:///tmp/st"),
        (CONFIG, [*_without(DATAFLOW, "--temp_location"), "--temp_location", "gs://B_/tmp"],
         "Invalid GCS bucket"),
        (CONFIG, [*_without(DATAFLOW, "--project"), "--project", "P"], "Invalid Project ID"),
        (RunConfig(inputs=CONFIG.inputs, output="out/shards"), DATAFLOW,
         "--output 'out/shards' is a local path: Dataflow workers write the shards"),
        (RunConfig(inputs=("archive/*.json", f"{BUCKET}/a/*"), output=CONFIG.output), DATAFLOW,
         "input 'archive/*.json' is a local path"),
        (RunConfig(inputs=CONFIG.inputs, output=CONFIG.output, tokenizer=TokenizerSpec("my/tokenizer.json")),
         DATAFLOW, "--tokenizer 'my/tokenizer.json' is a local path"),
    ],
)
def test_dataflow_options_are_checked_before_anything_is_built(monkeypatch, config, beam_args, expected):
    monkeypatch.delenv("CLOUDSDK_COMPUTE_REGION", raising=False)
    message = _bad_run(monkeypatch, config, beam_args)
    assert expected in message
    assert message.startswith("cannot run on Dataflow with these options")


def test_every_problem_is_reported_at_once(monkeypatch):
    message = _bad_run(monkeypatch, RunConfig(inputs=("in/*",), output="out"), ["--runner", "DataflowRunner"])
    for part in ("--project", "--region", "--temp_location", "--output 'out'", "input 'in/*'"):
        assert part in message


def _record_ok(whl: zipfile.ZipFile) -> None:
    record = next(n for n in whl.namelist() if n.endswith(".dist-info/RECORD"))
    rows = [line.split(",") for line in whl.read(record).decode().splitlines()]
    assert {r[0] for r in rows} == set(whl.namelist())
    for name, digest, size in rows:
        if name == record:
            continue
        data = whl.read(name)
        assert len(data) == int(size)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}"


@pytest.mark.slow
def test_a_non_editable_install_is_repacked_into_an_equivalent_wheel(tmp_path):
    """``pip install tweetmill`` (no source tree): the installed files are repacked into a wheel."""
    built = Path(dataflow.build_wheel(str(tmp_path)))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(built)], check=True)
    installed = Distribution.at(next(target.glob("tweetmill-*.dist-info")))
    assert dataflow.editable_source(installed) is None
    repacked_dir = tmp_path / "repacked"
    repacked_dir.mkdir()
    repacked = Path(dataflow.build_wheel(str(repacked_dir), installed))
    assert repacked.name == built.name
    with zipfile.ZipFile(built) as a, zipfile.ZipFile(repacked) as b:
        _record_ok(b)
        assert set(a.namelist()) == set(b.namelist())
        for name in a.namelist():
            if not name.endswith("/RECORD"):
                assert a.read(name) == b.read(name), name


def test_pipeline_options_make_each_view_once():
    """Beam's type checks ask for a view at each check while the graph is built; one view per
    class shares the values every other view and the options themselves see."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    from tweetmill.pipeline.beam_options import ViewCachingOptions

    options = ViewCachingOptions(["--direct_num_workers", "2"])
    view = options.view_as(DirectOptions)
    assert options.view_as(DirectOptions) is view and view.direct_num_workers == 2
    options.view_as(StandardOptions).runner = "DirectRunner"
    assert options.get_all_options()["runner"] == "DirectRunner"
    copy = pickle.loads(pickle.dumps(options))
    assert copy.view_as(DirectOptions).direct_num_workers == 2
    assert copy.view_as(StandardOptions).runner == "DirectRunner"
    assert isinstance(build_module.make_pipeline([]).options, ViewCachingOptions)
    assert isinstance(dataflow.remote_pipeline_options(["--runner", "DirectRunner"]), ViewCachingOptions)
