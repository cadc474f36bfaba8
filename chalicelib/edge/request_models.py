"""Requests parsed at the edge: each JSON body and query string the API takes becomes one typed
value here, or a 4xx saying what is wrong with it. The domain (album, search, people) receives only
these."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from chalicelib.cursors import decode_position, search_offset
from chalicelib.edge.params import int_in_range
from chalicelib.errors import Invalid, TooLarge, UnsupportedType
from chalicelib.face_client import MAX_INLINE_BYTES  # a key sent inside the request goes on to the endpoint inline
from chalicelib.shared.media_types import SUPPORTED

MAX_FILENAME = 255
MAX_NAME = 100  # a person's name
MAX_MERGE = 50  # people merged into one at a time
MAX_ANSWERS = 100  # suggestions answered at a time
MAX_KEY_BYTES = 10 * 1024 * 1024  # a key photo uploaded for a search
SEARCH_SOURCES = ("key_id", "image_base64", "face_id", "person_id")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def valid_unicode(value, where: str = "body"):
    """``value`` (a parsed JSON body, a query or a path parameter) unchanged, or a 400 when a string
    in it, key or value, is not valid Unicode: JSON admits a lone surrogate (``"\\ud800"``), the
    store's encoder and S3 do not."""
    pending = [(where, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            _encodable(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                _encodable(str(key), path)
                pending.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return value


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = where.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise Invalid(f"{shown} holds text that is not valid Unicode", code="invalid_unicode") from None


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    return body


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Uploads -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileToUpload:
    """One file a client wants to upload, as it declares it."""

    filename: str
    content_type: str
    size: int
    sha256: str | None = None  # the client's word for the bytes' SHA-256 (lower-case hex)


def file_to_upload(where: str, item, max_bytes: int) -> FileToUpload:
    """One ``{"filename", "content_type", "size", "sha256"?}`` a client wants to upload."""
    if not isinstance(item, dict):
        raise Invalid(f"{where} must be an object")
    filename, content_type, size = item.get("filename"), item.get("content_type"), item.get("size")
    if not isinstance(filename, str) or not filename.strip() or len(filename) > MAX_FILENAME:
        raise Invalid(f"{where}.filename must be a non-empty string of at most {MAX_FILENAME} characters")
    if not isinstance(content_type, str):
        raise Invalid(f"{where}.content_type is required")
    content_type = content_type.strip().lower()
    if content_type == "image/jpg":
        content_type = "image/jpeg"
    if content_type not in SUPPORTED:
        raise UnsupportedType(
            f"{where}: {content_type!r} is not supported; send one of " + ", ".join(sorted(SUPPORTED))
        )
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise Invalid(f"{where}.size must be a positive integer (bytes)")
    if size > max_bytes:
        raise TooLarge(f"{where} is {size} bytes; the limit is {max_bytes} bytes")
    sha256 = item.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256.lower())):
        raise Invalid(f"{where}.sha256 must be the file's SHA-256 as 64 hex digits")
    return FileToUpload(filename.strip(), content_type, size, sha256.lower() if sha256 else None)


def files_to_upload(body, limit: int, max_bytes: int) -> list[FileToUpload]:
    """``{"files": [...]}``: 1 to ``limit`` files."""
    if not isinstance(body, dict) or not isinstance(body.get("files"), list):
        raise Invalid('body must be {"files": [{"filename", "content_type", "size"}, ...]}')
    files = body["files"]
    if not 1 <= len(files) <= limit:
        raise Invalid(f"ask for between 1 and {limit} uploads at a time")
    return [file_to_upload(f"files[{i}]", item, max_bytes) for i, item in enumerate(files)]


def photo_ids(body, limit: int) -> list[str]:
    """``{"photo_ids": [...]}``: 1 to ``limit`` ids, repeats dropped, in the order given."""
    ids = body.get("photo_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not 1 <= len(ids) <= limit or not all(isinstance(i, str) for i in ids):
        raise Invalid(f'body must be {{"photo_ids": [...]}} with 1 to {limit} photo ids')
    return list(dict.fromkeys(ids))


# Search --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchRequest:
    """Exactly one key: an uploaded key photo, an inline image, a face of the album, a person."""

    source: str  # one of SEARCH_SOURCES
    limit: int = 30
    offset: int = 0  # from the cursor
    key_id: str | None = None
    image: bytes | None = None
    photo_id: str | None = None
    face_id: str | None = None
    person_id: str | None = None
    face: object = None  # which face of a key photo (checked against the faces found in it)
    threshold: float | None = None  # a plain cosine cut instead of the bundle's decision


def search_request(body) -> SearchRequest:
    """A search's body parsed: exactly one key (photo, face or person) and its page."""
    body = _object(body)
    sources = [name for name in SEARCH_SOURCES if body.get(name) is not None]
    if len(sources) != 1:
        raise Invalid('give exactly one key: "key_id", "image_base64", "person_id", or "photo_id" with "face_id"')
    source = sources[0]
    threshold = body.get("threshold")
    if threshold is not None and (not _is_number(threshold) or not 0.0 <= threshold <= 0.99):
        raise Invalid("threshold must be a number between 0 and 0.99")
    return SearchRequest(
        source=source,
        limit=int_in_range(body.get("limit"), "limit", 30, 1, 100),
        offset=search_offset(body.get("cursor")),
        key_id=str(body["key_id"]) if source == "key_id" else None,
        image=_inline_image(body["image_base64"]) if source == "image_base64" else None,
        photo_id=str(body.get("photo_id", "")) if source == "face_id" else None,
        face_id=str(body["face_id"]) if source == "face_id" else None,
        person_id=str(body["person_id"]) if source == "person_id" else None,
        face=body.get("face"),
        threshold=float(threshold) if threshold is not None else None,
    )


def _inline_image(value) -> bytes:
    if not isinstance(value, str):
        raise Invalid("image_base64 must be a base64 string")
    if len(value) > MAX_INLINE_BYTES * 4 // 3 + 4:
        raise TooLarge(f"image_base64 is limited to {MAX_INLINE_BYTES} bytes; upload a key photo instead")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("image_base64 is not valid base64") from None


# People --------------------------------------------------------------------------------
def person_name(value) -> str | None:
    """A person's name: trimmed, at most ``MAX_NAME`` characters, no control characters; empty → None."""
    if value is None:
        return None
    if not isinstance(value, str) or _CONTROL.search(value):
        raise Invalid("name must be a string without control characters")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise Invalid(f"name must be at most {MAX_NAME} characters")
    return value or None


def person_update(body) -> dict:
    """``{"name"?, "hidden"?}`` → the fields to set."""
    if not isinstance(body, dict) or not body or set(body) - {"name", "hidden"}:
        raise Invalid('send "name" and/or "hidden"')
    fields: dict = {}
    if "name" in body:
        fields["name"] = person_name(body["name"])
    if "hidden" in body:
        if not isinstance(body["hidden"], bool):
            raise Invalid("hidden must be true or false")
        fields["hidden"] = body["hidden"]
    return fields


@dataclass(frozen=True)
class Merge:
    """People to merge into one."""

    target: str
    sources: list[str]  # repeats dropped


def merge_request(body) -> Merge:
    """A merge's body parsed: the person that stays and those merged into it."""
    body = _object(body)
    target, sources = body.get("target"), body.get("sources")
    if not isinstance(target, str) or not isinstance(sources, list) or not sources:
        raise Invalid('send "target" (a person id) and "sources" (a list of person ids)')
    if len(sources) > MAX_MERGE or not all(isinstance(s, str) for s in sources):
        raise Invalid(f"sources must be at most {MAX_MERGE} person ids")
    if target in sources:
        raise Invalid("a person cannot be merged into itself", code="merge_into_itself")
    return Merge(target, list(dict.fromkeys(sources)))


@dataclass(frozen=True)
class FaceDecision:
    """The user's word on one face: this is ``person_id``; not the person it is in (``person_id``
    None); or a new person (``new_person``, with an optional name)."""

    person_id: str | None = None
    new_person: bool = False
    name: str | None = None


def face_decision(body) -> FaceDecision:
    """Whose face it is: a person, a new person, or not the person it has."""
    if not isinstance(body, dict) or ("person_id" in body) == bool(body.get("new_person")):
        raise Invalid('send "person_id" (an id, or null for "not this person") or "new_person": true')
    if body.get("new_person"):
        return FaceDecision(new_person=True, name=person_name(body.get("name")))
    return FaceDecision(person_id=None if body["person_id"] is None else str(body["person_id"]))


def drawn_box(body) -> list[float]:
    """``{"box": [x, y, w, h]}`` in the photo's pixels (checked against the photo by the caller)."""
    box = body.get("box") if isinstance(body, dict) else None
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise Invalid('send {"box": [x, y, w, h]} in the photo\'s pixels')
    return [float(v) for v in box]


@dataclass(frozen=True)
class Answer:
    """The owner's answer to "Is this …?" for one face."""

    face_id: str
    accept: bool | None  # None: skipped (not asked again)


def answers(body) -> list[Answer]:
    """``{"answers": [{"face_id", "accept": bool} or {"face_id", "skip": true}]}``: 1 to
    ``MAX_ANSWERS`` answers to suggestions."""
    given = body.get("answers") if isinstance(body, dict) else None
    if not isinstance(given, list) or not 1 <= len(given) <= MAX_ANSWERS:
        raise Invalid(f'send "answers": a list of 1 to {MAX_ANSWERS} {{"face_id", "accept"}}')
    out = []
    for i, a in enumerate(given):
        face_id = a.get("face_id") if isinstance(a, dict) else None
        accept, skip = (a.get("accept"), a.get("skip")) if isinstance(a, dict) else (None, None)
        if not isinstance(face_id, str) or not (isinstance(accept, bool) ^ (skip is True)):
            raise Invalid(f'answers[{i}] must be {{"face_id": string, "accept": true|false}} or {{..., "skip": true}}')
        out.append(Answer(face_id, accept if skip is not True else None))
    return out


# Query strings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    """A page of a timeline: ``?limit=`` photos after where the previous page ended (``?cursor=``)."""

    limit: int
    after: tuple[datetime, str] | None = None  # None: the first page


def timeline_page(query: dict, default: int, most: int) -> Page:
    """A timeline page from the query string: its size and the cursor of where it starts."""
    limit = int_in_range(query.get("limit"), "limit", default, 1, most, from_query=True)
    return Page(limit, decode_position(query.get("cursor")))


@dataclass(frozen=True)
class PeoplePage:
    """``GET /people``: ``?limit=`` people from ``?cursor=`` (an offset), hidden ones with ``?hidden=1``."""

    limit: int
    offset: int
    include_hidden: bool


def people_page(query: dict) -> PeoplePage:
    """A page of people from the query string: size, offset, and whether hidden people count."""
    return PeoplePage(
        int_in_range(query.get("limit"), "limit", 50, 1, 100, from_query=True),
        int_in_range(query.get("cursor"), "cursor", 0, 0, 10**7, from_query=True),
        str(query.get("hidden", "")).lower() in ("1", "true", "yes"),
    )


def query_limit(query: dict, default: int, most: int) -> int:
    """``?limit=`` of a short list (suggestions, questions)."""
    return int_in_range(query.get("limit"), "limit", default, 1, most, from_query=True)
