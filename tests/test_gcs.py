"""Cloud Storage for real: the whole pipeline ``gs://`` → ``gs://`` against a GCS server on loopback
(``tests/gcs_emulator.py``), through Beam's own GCS filesystem and client, then ``tweetmill stats``."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from apache_beam.io.filesystems import FileSystems
from conftest import REPO_ROOT
from gcs_emulator import GcsEmulator, environment, google_cloud_env, upload
from tweetmill.pipeline.build import OutputExistsError, output_spec, run
from tweetmill.pipeline.cli import main as cli_main
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.stats import compute_stats, read_manifest
from tweetmill.schemas.manifest import MANIFEST_NAME
from tweetmill.transforms import write
from tweetmill.transforms.tokenize import TokenizerSpec

SAMPLE = REPO_ROOT / "examples" / "sample" / "data"
BUCKET = "tweetmill-test-bucket"
GS = f"gs://{BUCKET}"
# Every compression and a plain file; three input formats.
FILES = ("tweepy_v1.jsonl.gz", "twarc_brexit_v2.jsonl.bz2", "xlmt_german_test.txt")
BROKEN = b'{"id_str": "1", "text": "a complete tweet with enough text", "lang": "en"}\n{"id_str": "2", "te\n'


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator with a bucket holding a few sample archives and a broken one; Beam pointed at it."""
    with GcsEmulator() as emulator, environment(google_cloud_env(tmp_path_factory.mktemp("gcloud"),
                                                                 emulator.url)):
        emulator.create_bucket(BUCKET)
        for name in FILES:
            upload(SAMPLE / name, f"{GS}/archive/2022-01/{name}")
        broken = tmp_path_factory.mktemp("broken") / "broken.jsonl"
        broken.write_bytes(BROKEN)
        upload(broken, f"{GS}/archive/2022-02/broken.jsonl")
        # The bundled tokenizer, to be read back from gs:// with --tokenizer.
        bundled = REPO_ROOT / "transforms" / "assets" / "tweet-bpe-16k.json"
        upload(bundled, f"{GS}/tokenizers/tweet-bpe-16k.json")
        yield emulator


def table_of(shard_dir: str, manifest) -> pa.Table:
    tables = []
    for shard in manifest.shards:
        with FileSystems.open(FileSystems.join(shard_dir, shard.file), compression_type="uncompressed") as f:
            tables.append(pa.ipc.open_file(pa.py_buffer(f.read())).read_all())
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def gcs_run(gcs):
    config = RunConfig(inputs=(f"{GS}/archive/2022-*/*",), output=f"{GS}/shards/v1", rows_per_shard=400,
                       tokenizer=TokenizerSpec(f"{GS}/tokenizers/tweet-bpe-16k.json"))
    return config, run(config)


@pytest.mark.slow
def test_gs_to_gs_run_publishes_a_complete_shard_set(gcs, gcs_run, tmp_path):
    config, manifest = gcs_run
    counts = manifest.counts
    assert counts.balanced and counts.read == counts.kept + sum(counts.dropped.values()) + counts.errors
    assert counts.errors == 1 and manifest.error_files  # the broken archive's truncated record
    assert len(manifest.shards) >= 2
    assert {f["file"] for f in manifest.inputs} == {
        *(f"{GS}/archive/2022-01/{n}" for n in FILES), f"{GS}/archive/2022-02/broken.jsonl"}

    objects = gcs.object_names(BUCKET, "shards/v1/")
    names = [*(s.file for s in manifest.shards), *manifest.error_files, "manifest.json", *manifest.side_files]
    expected = {f"shards/v1/{name}" for name in names}
    assert set(objects) == expected  # nothing else: the temporary prefix is gone
    letters = []
    for name in manifest.error_files:
        with FileSystems.open(f"{config.output}/{name}", compression_type="uncompressed") as f:
            letters += [json.loads(line) for line in f.read().decode().splitlines()]
    assert [d["source_file"] for d in letters] == [f"{GS}/archive/2022-02/broken.jsonl"]

    # Same tweets, tokens and counts as the same archives read from local disk.
    (tmp_path / "broken.jsonl").write_bytes(BROKEN)
    inputs = (*(str(SAMPLE / n) for n in FILES), str(tmp_path / "broken.jsonl"))
    local = run(RunConfig(inputs=inputs, output=str(tmp_path / "out"), rows_per_shard=400))
    assert local.counts == counts
    assert local.tokenizer.sha256 == manifest.tokenizer.sha256
    # The same rows in the same shards: ids (derived ones too) do not depend on where the archive is.
    def layout(m) -> list[tuple]:
        return [(s.file, s.rows, s.tokens) for s in m.shards]

    assert layout(local) == layout(manifest)
    columns = ["id", "id_derived", "text", "tokens", "lang", "lang_score", "created_at", "source_format"]
    assert table_of(config.output, manifest).select(columns).equals(
        table_of(str(tmp_path / "out"), local).select(columns))


@pytest.mark.slow
def test_stats_reads_the_shards_from_gcs(gcs, gcs_run, capsys):
    config, manifest = gcs_run
    stats = compute_stats(config.output)
    assert stats["shards"] == len(manifest.shards)
    assert stats["rows"] == manifest.counts.kept
    assert stats["tokens"] == sum(s.tokens for s in manifest.shards)
    assert cli_main(["stats", config.output, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == manifest.counts.kept


def test_a_finished_run_on_gcs_is_not_overwritten_by_accident(gcs, gcs_run):
    config, _ = gcs_run
    with pytest.raises(OutputExistsError):
        run(config)


@pytest.mark.slow
def test_overwrite_on_gcs_replaces_the_whole_shard_set(gcs):
    fewer = RunConfig(inputs=(f"{GS}/archive/2022-01/*",), output=f"{GS}/shards/v2", num_shards=3)
    run(fewer)
    again = RunConfig(inputs=fewer.inputs, output=fewer.output, num_shards=2)
    manifest = run(again, overwrite=True)
    objects = gcs.object_names(BUCKET, "shards/v2/")
    names = [*(s.file for s in manifest.shards), "manifest.json", *manifest.side_files]
    assert objects == sorted(f"shards/v2/{name}" for name in names)  # no shard of the 3-shard run is left
    assert [s.file for s in manifest.shards] == [f"data/shard-0000{i}-of-00002.arrow" for i in range(2)]
    assert compute_stats(fewer.output)["rows"] == manifest.counts.kept


def test_a_publish_that_fails_part_way_leaves_no_manifest_and_a_retry_completes(gcs, monkeypatch):
    """A failed finalizer leaves shards without a manifest (not a finished run); the runner's retry of
    the bundle then publishes everything, keeping the shards the failed attempt had already moved."""
    config = RunConfig(inputs=(f"{GS}/archive/*",), output=f"{GS}/shards/retry", num_shards=2)
    spec = output_spec(config)
    written = write.fill_missing_shards(spec, [], 2)
    manifest = write.build_manifest(spec, [w.entry for w in written], read=0, dropped={}, errors=0,
                                    error_files=[], stages={}, inputs=[])
    real_write_bytes = write.write_bytes

    def failing_manifest(path, data):
        if path.endswith(MANIFEST_NAME):
            raise OSError("worker lost")
        real_write_bytes(path, data)

    monkeypatch.setattr(write, "write_bytes", failing_manifest)
    with pytest.raises(OSError, match="worker lost"):
        write.publish(spec, written, [], manifest)
    assert not FileSystems.exists(f"{config.output}/{MANIFEST_NAME}")
    with pytest.raises(FileNotFoundError):
        read_manifest(config.output)
    moved = gcs.object_names(BUCKET, "shards/retry/data/shard-")
    assert len(moved) == 2

    monkeypatch.setattr(write, "write_bytes", real_write_bytes)
    write.publish(spec, written, [], manifest)  # the retry: same written files, sources already moved
    assert read_manifest(config.output).shards == manifest.shards
    side = ("manifest.json", "tokenizer.json", "tokenizer_config.json")
    assert gcs.object_names(BUCKET, "shards/retry/") == sorted([*moved, *(f"shards/retry/{n}" for n in side)])


def test_beams_own_gcs_client_is_the_one_talking_to_the_emulator(gcs):
    """Beam's ``GcsIO`` builds its google-cloud-storage client with the application-default
    credentials (not an anonymous fallback) and sends to ``STORAGE_EMULATOR_HOST``."""
    from apache_beam.internal.gcp.auth import get_service_credentials
    from apache_beam.io.gcp.gcsio import GcsIO
    from apache_beam.options.pipeline_options import PipelineOptions

    assert get_service_credentials(PipelineOptions()) is not None
    client = GcsIO(pipeline_options=PipelineOptions()).client
    assert gcs.url == client._connection.API_BASE_URL


def test_the_input_size_estimate_reads_object_sizes_and_magic_on_gcs(gcs):
    """The local default worker count (pipeline/local_workers.py) on objects: their listed sizes,
    the compressed ones (gzip, bzip2: by their first bytes) counted several times."""
    from tweetmill.pipeline.local_workers import COMPRESSION_RATIO, estimated_input_bytes

    sizes = {name: (SAMPLE / name).stat().st_size for name in FILES}
    compressed = sizes["tweepy_v1.jsonl.gz"] + sizes["twarc_brexit_v2.jsonl.bz2"]
    expected = sizes["xlmt_german_test.txt"] + compressed * COMPRESSION_RATIO
    assert estimated_input_bytes([f"{GS}/archive/2022-01/*"]) == pytest.approx(expected, rel=1e-6)
