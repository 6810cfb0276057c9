"""Object operations on ``gs://`` that a file API lacks, through gcsfs's JSON API client
(its credentials, retries and ``STORAGE_EMULATOR_HOST`` support).

- ``write_if_generation``: an upload that succeeds only if the object's generation
  is still the one given (0: only if the object does not exist), so two hosts
  cannot both create or both replace it (the workdir lock);
- ``stat``: an object's generation and last-update time, read fresh (no cache);
- ``delete_if_generation``: removes the object only if it was not replaced meanwhile;
- ``append``: adds bytes to an object in O(1) requests and O(new bytes) upload,
  by composing the object with an uploaded part (objects cannot be appended to).

Every function takes a ``gs://bucket/key`` URL. Failed preconditions raise
``FileExistsError`` (gcsfs maps HTTP 412 to it), a missing object ``FileNotFoundError``.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import NamedTuple, Optional

from livt_jax import paths

# GCS refuses to compose an object of more than 1024 components; before that the
# object is rewritten whole as one component (once per ~1000 appends).
COMPACT_AT_COMPONENTS = 1000


class ObjectStat(NamedTuple):
    generation: int
    updated: float  # seconds since the epoch, by the server's clock


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.partition("://")[2].partition("/")
    return bucket, key


def _fs():
    return paths.filesystem("gs://")


def write_if_generation(url: str, data: bytes, generation: int) -> int:
    """Uploads ``data`` to ``url`` if its generation is ``generation`` (0: absent);
    returns the new generation. Raises FileExistsError if the precondition fails."""
    bucket, key = _split(url)
    fs = _fs()
    boundary = "==livt-jax=="
    body = (f"--{boundary}\nContent-Type: application/json; charset=UTF-8\n\n"
            f"{json.dumps({'name': key})}\n--{boundary}\n"
            "Content-Type: application/octet-stream\n\n").encode() + data + f"\n--{boundary}--".encode()
    result = fs.call("POST", f"{fs._location}/upload/storage/v1/b/{bucket}/o",  # pylint: disable=protected-access
                     uploadType="multipart", ifGenerationMatch=str(generation), data=body,
                     headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                     json_out=True)
    return int(result["generation"])


def stat(url: str) -> Optional[ObjectStat]:
    """The object's generation and update time; None if it does not exist."""
    bucket, key = _split(url)
    try:
        meta = _fs().call("GET", "b/{}/o/{}", bucket, key, json_out=True)
    except FileNotFoundError:
        return None
    updated = datetime.datetime.fromisoformat(meta["updated"].replace("Z", "+00:00"))
    return ObjectStat(int(meta["generation"]), updated.timestamp())


def delete_if_generation(url: str, generation: int) -> None:
    """Deletes the object if it is still at ``generation``."""
    bucket, key = _split(url)
    _fs().call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=str(generation))


def append(url: str, data: bytes) -> None:
    """Appends ``data`` to the object (creating it): 1 request when it is new, else 3
    (upload a part, compose object + part into the object, delete the part)."""
    if not data:
        return
    try:
        write_if_generation(url, data, 0)
        return
    except FileExistsError:
        pass
    bucket, key = _split(url)
    part = f"{key}.part-{uuid.uuid4().hex}"
    fs = _fs()
    fs.pipe_file(f"gs://{bucket}/{part}", data)
    try:
        result = fs.call("POST", "b/{}/o/{}/compose", bucket, key, json_out=True,
                         headers={"Content-Type": "application/json"},
                         json={"kind": "storage#composeRequest",
                               "sourceObjects": [{"name": key}, {"name": part}],
                               "destination": {"contentType": "application/octet-stream"}})
    finally:
        fs.rm_file(f"gs://{bucket}/{part}")
    if int(result.get("componentCount", 1)) >= COMPACT_AT_COMPONENTS:
        fs.pipe_file(url, fs.cat_file(url))
