"""A real Google Cloud Storage server for tests, and Google's client libraries kept off the network.

``GcsEmulator`` runs ``gcp-storage-emulator`` (a GCS JSON-API server from PyPI) in a subprocess on
127.0.0.1 and a free port. Beam's GCS filesystem (``apache_beam.io.gcp.gcsio``) talks to GCS through
``google-cloud-storage``, whose ``Client`` sends every request to ``STORAGE_EMULATOR_HOST`` when that
variable is set; ``google_cloud_env`` sets it, together with what keeps authentication offline:

* Beam asks ``google.auth.default()`` for credentials (retrying 4 times, ~30 s, when there are none,
  then connecting anonymously). ``GOOGLE_APPLICATION_CREDENTIALS`` names an ``authorized_user`` file
  like ``gcloud auth application-default login`` writes, holding an access token that has not
  expired, so no token is ever fetched; the emulator accepts any token.
* ``NO_GCE_CHECK`` stops google-auth from probing for the GCE metadata server, and the metadata
  host and token URI point at a closed loopback port in case anything still tries.
* ``GOOGLE_CLOUD_PROJECT`` gives the client a project without asking anyone.

Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = "tweetmill-test"
CLOSED_LOOPBACK = "127.0.0.1:9"  # the discard port: nothing listens there


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def google_cloud_env(work_dir: Path, emulator_url: str | None = None) -> dict[str, str]:
    """Environment for Google's client libraries that never leaves this machine (see the module doc)."""
    adc = work_dir / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "tweetmill-test.apps.googleusercontent.com",
                "client_secret": "not-a-secret",
                "refresh_token": "not-a-token",
                "token": "emulator-accepts-any-token",
                "expiry": "2999-01-01T00:00:00Z",
                "token_uri": f"http://{CLOSED_LOOPBACK}/token",
            }
        )
    )
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": CLOSED_LOOPBACK,
        "GCE_METADATA_IP": CLOSED_LOOPBACK,
        "CLOUDSDK_CONFIG": str(work_dir / "gcloud"),  # no user gcloud configuration is read
    }
    # Without an emulator, a storage client that is used anyway fails at once on loopback.
    env["STORAGE_EMULATOR_HOST"] = emulator_url or f"http://{CLOSED_LOOPBACK}"
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield


class GcsEmulator:
    """``gcp-storage-emulator`` in a subprocess on 127.0.0.1, in memory; ``url`` is its endpoint."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> GcsEmulator:
        cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
               "--port", str(self.port), "--in-memory", "--quiet"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the GCS emulator exited: {self._proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the GCS emulator did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def create_bucket(self, name: str) -> None:
        """Through the JSON API, as ``gsutil mb`` would (Beam has no bucket-creating filesystem call)."""
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project={PROJECT}",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200, r.status

    def object_names(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object under ``prefix``, straight from the server (not through Beam)."""
        names: list[str] = []
        token = ""
        while True:
            query = f"prefix={urllib.parse.quote(prefix)}" + (f"&pageToken={token}" if token else "")
            with urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o?{query}", timeout=10) as r:
                page = json.loads(r.read())
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)


def upload(local: Path, gcs_path: str) -> None:
    """Copy a local file to ``gcs_path`` through Beam's FileSystems (bytes as they are)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(gcs_path, compression_type="uncompressed") as f:
        f.write(local.read_bytes())

