"""The records that cross module boundaries: the caller, a photo, a face and a person as stored,
and the face endpoint's answers; and the rules that build them.

TypedDicts rather than classes: they are the very documents pymongo reads and writes and the JSON
the endpoint sends, so nothing converts them, and mypy checks every key a module reads or writes.
``total=False``: a stored document carries the fields of its stage (a pending photo has no size
yet, a read may project fields away); each field's meaning is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from chalicelib.clock import utc

_EPOCH = datetime(1970, 1, 1)  # where a record without an upload time sits in the timeline


@dataclass(frozen=True)
class User:
    """Who is calling: a verified token's claims (``edge.auth``)."""

    sub: str
    username: str | None = None
    email: str | None = None
    issued_at: int = 0  # the token's ``iat`` (whole seconds since the epoch)


class Photo(TypedDict, total=False):
    """A photo as stored: one per upload asked for, whatever became of it."""

    owner: str  # the Cognito ``sub`` of the user whose album it is
    photo_id: str  # 32 hex digits
    key: str  # the original's S3 object key
    filename: str
    content_type: str  # what the bytes are once indexed (declared until then)
    declared_size: int  # bytes the upload said it holds: the quota counts these
    upload_token: str  # pinned on the object by the upload form: the indexer takes no other object
    status: str  # pending, indexed, failed or duplicate
    error: str | None  # why it failed, in words for the user
    retriable: bool  # a failure the next event may undo (the face service was down)
    face_count: int
    width: int | None  # pixels, upright (EXIF orientation applied)
    height: int | None
    taken_at: str | datetime | None  # EXIF DateTimeOriginal, local time as written in the photo
    uploaded_at: datetime
    timeline_at: datetime  # where it sits in the timeline: taken, else uploaded
    thumbnail_key: str | None
    preview_key: str | None  # a browser-viewable JPEG for types browsers cannot show
    model_version: str  # the bundle that indexed it
    source_etag: str  # the S3 ETag of the bytes it was indexed from
    indexed_at: datetime
    content_sha256: str
    duplicate_of: str | None  # the photo holding the same bytes
    picture_hash: str  # 64-bit difference hash, hex
    picture_bands: list[str]  # its eight indexed bands ("i:xx"), to find near-duplicates
    trashed_at: datetime | None
    removed_boxes: list[list[int]]  # false detections the user removed: not brought back by a reindex


class Face(TypedDict, total=False):
    """A face as stored: its box and vector, its photo, and whose it is."""

    owner: str
    face_id: str  # "<photo_id>-<index:03d>"
    photo_id: str
    face_index: int
    box: list[int]  # [left, top, right, bottom] in the upright photo's pixels
    score: float  # the detector's confidence
    landmarks: list[list[float]] | None
    embedding: Any  # the unit vector: BSON binary float32 as stored, a list from the endpoint
    model_version: str
    cohort_mean: float | None  # this face's score statistics against the bundle's cohort
    cohort_std: float | None
    source: str  # "manual" when the user drew its box
    aligned: bool | None  # a drawn box: were landmarks found inside it
    person_id: str | None  # None: unassigned
    assigned_by: str | None  # "user" (confirmed or moved by hand) or "auto"
    rejected_from: list[str]  # people the user said it is not
    skipped_for: list[str]  # people the user skipped "Is this …?" for: not asked again


class Person(TypedDict, total=False):
    """A person of an album, as stored."""

    owner: str
    person_id: str
    name: str | None
    hidden: bool
    face_count: int
    photo_count: int
    confirmed_count: int  # faces the user confirmed (or moved) into the person
    answers: int  # answers the user gave to the person's questions
    cover_face_id: str | None
    cover_photo_id: str | None
    created_at: datetime
    updated_at: datetime


class DetectedFace(TypedDict, total=False):
    """One face of the endpoint's answer (``/invocations``)."""

    box: list[int]
    score: float
    landmarks: list[list[float]] | None
    embedding: list[float]
    cohort_mean: float | None
    cohort_std: float | None
    source: str  # "box" for a caller-given box, else detected
    aligned: bool | None


class ModelInfo(TypedDict, total=False):
    """What the served bundle says about itself: every answer of the endpoint carries it."""

    model_version: str
    threshold: float  # the calibrated cosine threshold
    normalisation: dict | None  # cohort score normalisation settings (None: cosine only)
    grouping: dict | None  # people grouping parameters


class Analysis(ModelInfo, total=False):
    """The endpoint's answer for one photo."""

    width: int
    height: int
    faces: list[DetectedFace]


def timeline_at(uploaded_at: datetime | None, taken_at: str | datetime | None = None) -> datetime:
    """Where a photo sits in the album's timeline (naive, as BSON keeps it): the camera's clock when the
    photo says when it was taken (the local time people see; the offset is not applied, so a month
    groups what its photos show), else the upload time. Never later than the upload: indexing only
    moves a photo back in time, so a client paging the timeline may meet it twice (same ``photo_id``)
    but never misses it. A record without an upload time (written by tools) sits at the epoch."""
    uploaded = utc(uploaded_at).replace(tzinfo=None) if uploaded_at else _EPOCH
    if not taken_at:
        return uploaded
    try:  # records of earlier versions hold the camera's time as a datetime
        taken = (taken_at if isinstance(taken_at, datetime) else datetime.fromisoformat(taken_at)).replace(tzinfo=None)
    except (TypeError, ValueError):
        return uploaded
    taken = taken.replace(microsecond=taken.microsecond // 1000 * 1000)
    return min(taken, uploaded) if uploaded_at else taken


MANUAL = "manual"  # a face's ``source`` when the user drew its box


def face_record(face_id: str, index: int, analysed: DetectedFace, model_version: str) -> Face:
    """A face as stored, from the face endpoint's answer for it."""
    return {
        "face_id": face_id,
        "face_index": index,
        "box": analysed["box"],
        "score": analysed["score"],
        "landmarks": analysed["landmarks"],
        "embedding": analysed["embedding"],
        "model_version": model_version,
        "cohort_mean": analysed.get("cohort_mean"),
        "cohort_std": analysed.get("cohort_std"),
    }


def drawn_face_record(face_id: str, index: int, analysed: DetectedFace, model_version: str) -> Face:
    """A face whose box the user drew, from the endpoint's answer for that box."""
    face = face_record(face_id, index, analysed, model_version)
    face["source"], face["aligned"] = MANUAL, bool(analysed.get("aligned"))
    return face


def photo_size(photo: Photo) -> int:
    """The bytes a photo counts for in its owner's quota: the declared size, which the upload
    policy makes an upper bound of the object's."""
    return int(photo.get("declared_size") or 0)
