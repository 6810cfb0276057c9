"""One path layer for local paths and ``gs://`` URLs alike (``etils.epath`` / fsspec).

Every file the product reads or writes on a user-given path goes through
here: workdir outputs (``metrics.jsonl``, TensorBoard, CSV, PNG), split lists
and images, Animal-MNIST pickles, conversion inputs and outputs. orbax
(checkpoints, exports; tensorstore for the arrays) and tfds take the same
strings and reach the bucket themselves. ``gs://`` needs ``gcsfs``
(``etils[epath-gcs]``, one of this package's core dependencies), imported only
when a URL is first used (``import livt_jax`` does not import it); a missing or
broken gcsfs is one :class:`StorageError` line.

Object stores are not file systems, and three differences matter here:
- there are no directories: ``makedirs`` on a URL checks that the bucket
  exists (instead of creating one) and writes nothing;
- objects cannot be appended to: ``append_text`` composes the object with
  an uploaded part (``livt_jax.gcs.append``: O(1) requests, O(new bytes));
- failures (missing bucket, missing object, no credentials) are raised as
  :class:`StorageError`, one line naming the URL and what was expected.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Iterator

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


def dirname(path: str) -> str:
    """The folder (or URL prefix) holding ``path``; local paths come back absolute."""
    return os.fspath(epath.Path(path).parent) if is_url(path) else os.path.dirname(resolve(path))


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
    filesystem(url)
    try:
        yield
    except StorageError:
        raise
    except Exception as e:  # gcsfs / google-auth / aiohttp raise many types
        raise one_line_error(url, expected, e) from None


def one_line_error(url: str, expected: str, error: Exception) -> StorageError:
    """``error`` (raised on ``url``) as one line naming the URL and what was expected."""
    if isinstance(error, FileNotFoundError):
        return StorageError(f"{url} does not exist (expected {expected})")
    detail = " ".join(str(error).split())[:200]
    hint = f"; {NO_CREDENTIALS_HINT}" if _http_code(error) in (401, 403) else ""
    return StorageError(f"cannot access {url} (expected {expected}): "
                        f"{type(error).__name__}: {detail}{hint}")


def _http_code(error: Exception):
    return getattr(error, "code", None) or getattr(error, "status", None)


def filesystem(url: str) -> fsspec.AbstractFileSystem:
    """The fsspec file system of ``url``'s scheme (gcsfs for ``gs://``); one
    StorageError line when its package is missing or fails to import."""
    scheme = url.partition("://")[0]
    try:
        return fsspec.filesystem(scheme)
    except Exception as e:  # ImportError, or anything a mismatched gcsfs raises at import
        detail = " ".join(str(e).split())[:200]
        package = "gcsfs" if scheme in ("gs", "gcs") else f"the fsspec backend of {scheme}://"
        raise StorageError(
            f"{url} needs {package}, which did not load ({type(e).__name__}: {detail}); "
            f"reinstall it next to fsspec {fsspec.__version__}: pip install -U gcsfs") from None



def _info(url: str) -> dict | None:
    """The metadata of the object or prefix at ``url``; None when there is none.
    Other failures (no credentials, ...) raise, unlike fsspec's ``exists``."""
    fs = filesystem(url)
    try:
        return fs.info(url)
    except FileNotFoundError:
        return None
    except Exception as e:  # pylint: disable=broad-except
        raise one_line_error(url, "a readable location", e) from None


def exists(path: str) -> bool:
    return _info(path) is not None if is_url(path) else os.path.exists(path)


def is_file(path: str) -> bool:
    if not is_url(path):
        return os.path.isfile(path)
    info = _info(path)
    return info is not None and info["type"] == "file"


def is_dir(path: str) -> bool:
    """A local folder, or a URL prefix (or bucket) that holds objects."""
    if not is_url(path):
        return os.path.isdir(path)
    info = _info(path)
    return info is not None and info["type"] == "directory"


def listdir(path: str) -> list[str]:
    """Sorted names in a local folder or directly under a URL prefix."""
    if not is_url(path):
        return sorted(os.listdir(path))
    with storage_errors(path, "a folder"):
        return sorted(epath.Path(p).name for p in filesystem(path).ls(path, detail=False))


def list_files(path: str) -> list[str]:
    """Every file under a local folder or URL prefix (recursive), as sorted paths
    relative to it ('a/b.jpg')."""
    if not is_url(path):
        root = os.path.normpath(path)
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, files in os.walk(root) for f in files)
    with storage_errors(path, "a folder"):
        fs = filesystem(path)
        prefix = fs._strip_protocol(path).rstrip("/") + "/"  # pylint: disable=protected-access
        return sorted(p[len(prefix):] for p in fs.find(path) if p.startswith(prefix))


def makedirs(path: str) -> None:
    """Creates a local folder (and parents); for a URL checks that its bucket exists."""
    if not is_url(path):
        os.makedirs(path, exist_ok=True)
        return
    bucket = bucket_of(path)
    fs = filesystem(bucket)
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise StorageError(f"bucket {bucket} does not exist (needed for {path}); create it "
                           "first, e.g. `gcloud storage buckets create`") from None
    except Exception as e:  # pylint: disable=broad-except
        if _http_code(e) == 403:  # may use objects without reading the bucket's metadata
            return
        raise one_line_error(bucket, "an existing bucket", e) from None


def read_bytes(path: str, expected: str = "a file") -> bytes:
    """The whole file; from a bucket in one GET (no metadata request first: 2-3x
    faster per image than opening the object)."""
    with storage_errors(path, expected):
        if is_url(path):
            return filesystem(path).cat_file(path)
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


def write_text_atomic(path: str, text: str) -> None:
    """``write_text`` that a reader never sees half done: a local file is written
    beside ``path`` and renamed over it; an object is written in one request."""
    if is_url(path):
        write_text(path, text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def append_bytes(path: str, data: bytes) -> None:
    """Appends ``data`` to a local file or to an object (``gcs.append``: the
    object is composed with a part holding ``data``, never rewritten whole)."""
    if not is_url(path):
        with open(path, "ab") as f:
            f.write(data)
        return
    from livt_jax import gcs  # pylint: disable=import-outside-toplevel  (gcs uses this module)
    with storage_errors(path, "a writable location"):
        gcs.append(path, data)


def append_text(path: str, text: str) -> None:
    append_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: str, **savefig_kwargs) -> None:
    """``fig.savefig`` to a local path or a URL (PNG bytes written in one go)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1][1:] or "png", **savefig_kwargs)
    write_bytes(path, buffer.getvalue())
