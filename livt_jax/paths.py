"""One path layer for local paths and ``gs://`` URLs alike (``etils.epath``).

Every file the product reads or writes on a user-given path goes through
here: workdir outputs (``metrics.jsonl``, TensorBoard, CSV, PNG, the
resolved config), split lists and images, Animal-MNIST pickles, conversion
inputs and outputs. orbax, grain and tfds take the same strings and use
epath themselves. ``gs://`` needs ``gcsfs`` (``pip install 'etils[epath-gcs]'``,
part of this package's core dependencies).

Object stores are not file systems, and three differences matter here:
- there are no directories: ``makedirs`` on a URL checks that the bucket
  exists (instead of creating one) and writes nothing;
- objects cannot be appended to: ``append_text`` rewrites the object;
- failures (missing bucket, missing object, no credentials) are raised as
  :class:`StorageError`, one line naming the URL and what was expected.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO, Iterator

import fsspec
from etils import epath

NO_CREDENTIALS_HINT = ("no credentials or no permission? Run `gcloud auth application-default "
                       "login`, or give the VM's service account access to the bucket")


class StorageError(OSError):
    """A read or write on a URL failed; the message is one line naming the URL."""


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` paths (``gs://bucket/...``)."""
    return "://" in os.fspath(path)


def resolve(path: str | os.PathLike) -> str:
    """Absolute local path, or the URL unchanged (orbax needs absolute paths)."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a folder or a bucket prefix."""
    return os.fspath(epath.Path(base).joinpath(*parts)) if is_url(base) else os.path.join(base, *parts)


def basename(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) if not is_url(path) else epath.Path(path).name


def bucket_of(url: str) -> str:
    """``gs://bucket/a/b`` -> ``gs://bucket``."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


@contextlib.contextmanager
def storage_errors(url: str, expected: str) -> Iterator[None]:
    """Turns a failure on ``url`` into one :class:`StorageError` line (local
    paths pass through untouched)."""
    if not is_url(url):
        yield
        return
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError:
        raise StorageError(f"{url} does not exist (expected {expected})") from None
    except Exception as e:  # gcsfs / google-auth / aiohttp raise many types
        code = getattr(e, "code", None) or getattr(e, "status", None)
        detail = " ".join(str(e).split())[:200]
        hint = f"; {NO_CREDENTIALS_HINT}" if code in (401, 403) else ""
        raise StorageError(f"cannot access {url} (expected {expected}): "
                           f"{type(e).__name__}: {detail}{hint}") from None


def exists(path: str) -> bool:
    with storage_errors(path, "a readable location"):
        return epath.Path(path).exists()


def is_file(path: str) -> bool:
    with storage_errors(path, "a file"):
        return epath.Path(path).is_file()


def is_dir(path: str) -> bool:
    """A local folder, or a URL prefix that holds at least one object."""
    with storage_errors(path, "a folder"):
        return epath.Path(path).is_dir()


def makedirs(path: str) -> None:
    """Creates a local folder (and parents); for a URL checks that its bucket exists."""
    if not is_url(path):
        os.makedirs(path, exist_ok=True)
        return
    bucket = bucket_of(path)
    with storage_errors(bucket, "an existing bucket"):
        if not epath.Path(bucket).exists():
            raise StorageError(f"bucket {bucket} does not exist (needed for {path}); "
                               "create it first, e.g. `gcloud storage buckets create`")


def open_file(path: str, mode: str = "r") -> IO:
    """``open`` for a local path or a URL (text modes use UTF-8). Not for appending."""
    if "a" in mode:
        raise ValueError("use append_text: objects in a bucket cannot be appended to")
    kwargs = {} if "b" in mode else {"encoding": "utf-8"}
    expected = "a file" if "r" in mode else "a writable location"
    with storage_errors(path, expected):
        return epath.Path(path).open(mode, **kwargs)


def read_bytes(path: str, expected: str = "a file") -> bytes:
    """The whole file; from a bucket in one GET (no metadata request first: 2-3x
    faster per image than opening the object)."""
    with storage_errors(path, expected):
        if is_url(path):
            return fsspec.filesystem(path.partition("://")[0]).cat_file(path)
        return epath.Path(path).read_bytes()


def read_text(path: str, expected: str = "a text file") -> str:
    with storage_errors(path, expected):
        return epath.Path(path).read_text(encoding="utf-8")


def write_bytes(path: str, data: bytes) -> None:
    with storage_errors(path, "a writable location"):
        epath.Path(path).write_bytes(data)


def write_text(path: str, text: str) -> None:
    with storage_errors(path, "a writable location"):
        epath.Path(path).write_text(text, encoding="utf-8")


def append_text(path: str, text: str) -> None:
    """Appends ``text`` to a local file, or rewrites the object with ``text`` added."""
    if not is_url(path):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    old = read_text(path) if exists(path) else ""
    write_text(path, old + text)


def save_figure(fig, path: str, **savefig_kwargs) -> None:
    """``fig.savefig`` to a local path or a URL (PNG bytes written in one go)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1][1:] or "png", **savefig_kwargs)
    write_bytes(path, buffer.getvalue())
