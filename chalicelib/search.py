"""Face search: a key face (uploaded key photo, inline image, or a face already in the
album) → the caller's photos with that person, one result per photo, best first."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from datetime import timedelta

from .album import Album, validate_file
from .auth import User
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unprocessable,
)
from .face_client import Deadline, FaceClient, FaceServiceError
from .people import People
from .score_norm import KeyNormalisation, QueryExpansion
from .storage import CONTENT_TYPE_EXTENSIONS, SEARCH_KEY_TAG, key_photo_key
from .store import now_ms
from .vector_search import VectorIndex

MAX_INLINE_BYTES = 4 * 1024 * 1024
MAX_KEY_BYTES = 10 * 1024 * 1024
MAX_HITS = 2000
KEY_ANALYSIS_TTL = timedelta(hours=1)  # a key's faces are kept this long for the search's later pages
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_FACE_ID = re.compile(r"^[0-9a-f]{32}-[0-9]{3}$")


def _requested_threshold(requested) -> float:
    if isinstance(requested, bool) or not isinstance(requested, (int, float)) or not 0.0 <= requested <= 0.99:
        raise BadRequest("threshold must be a number between 0 and 0.99")
    return float(requested)


def _error_from_face_service(exc: FaceServiceError) -> ApiError:
    if exc.retriable:
        return ServiceUnavailable("face detection is unavailable right now; try again shortly")
    error = ApiError(exc.message, code="invalid_key_photo")
    error.status = exc.status if exc.status in (400, 413, 415, 422) else 400
    return error


class FaceSearch:
    def __init__(self, album: Album, faces: FaceClient, index: VectorIndex, people: People | None = None):
        self.album, self.store, self.storage = album, album.store, album.storage
        self.settings = album.settings
        self.faces, self.index, self.people = faces, index, people

    # Key uploads --------------------------------------------------------------
    def create_key_upload(self, user: User, body) -> dict:
        item = validate_file("body", body if isinstance(body, dict) else None, MAX_KEY_BYTES)
        self._count_key_photo(user)
        key_id = uuid.uuid4().hex
        ttl = 300
        post = self.storage.presigned_upload(
            key_photo_key(user.sub, key_id, item["content_type"]),
            item["content_type"],
            MAX_KEY_BYTES,
            ttl,
            tags=SEARCH_KEY_TAG,
        )
        return {"key_id": key_id, "url": post["url"], "fields": post["fields"], "expires_in": ttl}

    def _count_key_photo(self, user: User) -> None:
        """Key photos cost GPU time: at most ``key_photos_per_hour`` a user (uploads and inline images)."""
        now = now_ms()
        window = now.replace(minute=0, second=0, microsecond=0)
        if not self.store.take_rate(user.sub, "key_photo", window, self.settings.key_photos_per_hour):
            retry_after = int((window + timedelta(hours=1) - now).total_seconds()) + 1
            raise TooManyRequests(
                f"at most {self.settings.key_photos_per_hour} key photos an hour; "
                f"try again in {retry_after // 60 + 1} minutes",
                code="key_photo_rate",
                retry_after=retry_after,
            )

    # Search -------------------------------------------------------------------
    def search(self, user: User, body, deadline: Deadline | None = None) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        sources = [name for name in ("key_id", "image_base64", "face_id", "person_id") if body.get(name) is not None]
        if len(sources) != 1:
            raise BadRequest(
                'give exactly one key: "key_id", "image_base64", "person_id", or "photo_id" with "face_id"'
            )
        limit = self._int(body, "limit", 30, 1, 100)
        offset = self._cursor(body.get("cursor"))
        if sources[0] == "person_id":
            if self.people is None:
                raise ServiceUnavailable("people are not available here")
            found = self.people.search(user, str(body["person_id"]), offset, limit)
            following = found["next"]
            return {
                "person_id": body["person_id"],
                "results": found["results"],
                "total": found["total"],
                "next_cursor": self._encode_cursor(following) if following is not None else None,
            }
        if sources[0] == "face_id":
            key = self._album_face(user, body, deadline)
        else:
            key = self._key_photo(user, body, sources[0], deadline)
        threshold, key_norm = self._decision(body.get("threshold"), key)
        hits = self.index.search(user.sub, key["model_version"], key["vector"], MAX_HITS, threshold, key_norm)
        best = {}
        for face_id, photo_id, similarity, score in hits:  # best first: a photo's first hit is its best face
            if photo_id not in best:
                best[photo_id] = (face_id, similarity, score)
        ranked = list(best.items())
        page = ranked[offset : offset + limit]
        next_cursor = self._encode_cursor(offset + limit) if offset + limit < len(ranked) else None
        return {
            "model_version": key["model_version"],
            "threshold": threshold,
            "score_threshold": key_norm.threshold if key_norm else None,
            "normalised": key_norm is not None,
            "expanded_threshold": key_norm.expansion.threshold if key_norm and key_norm.expansion else None,
            "key_faces": key["faces"],
            "used_face": key["used_face"],
            "results": self._present(user, page),
            "next_cursor": next_cursor,
        }

    @staticmethod
    def _decision(requested, key: dict):
        """(cosine threshold, KeyNormalisation or None). With the bundle's cohort normalisation a
        result needs cosine ≥ its raw floor and a normalised score ≥ its threshold, and results are
        ranked by that score, with the bundle's query expansion when it has one; a ``threshold`` in
        the request is a plain cosine cut instead (still ranked by the normalised score, no expansion)."""
        norm, stats = key.get("normalisation") or {}, key.get("cohort") or (None, None)
        mean, std = stats
        if not norm or mean is None or std is None:  # a bundle without a cohort: cosine only
            if requested is None:
                return float(key["threshold"]), None
            return _requested_threshold(requested), None
        if requested is None:
            expansion = QueryExpansion.from_settings(norm.get("expansion"))
            return float(norm["raw_floor"]), KeyNormalisation(mean, std, float(norm["threshold"]), expansion)
        return _requested_threshold(requested), KeyNormalisation(mean, std, None)

    def _key_photo(self, user: User, body: dict, source: str, deadline: Deadline | None) -> dict:
        """The key's faces, analysed once: later pages of the search read them from the store."""
        if source == "key_id":
            key_id = str(body["key_id"])
            if not _HEX_ID.match(key_id):
                raise NotFound("no such key photo")
            key_ref, data = f"key:{key_id}", None
        else:
            data = self._inline_image(body["image_base64"])
            key_ref = f"inline:{hashlib.sha256(data).hexdigest()}"
        result = self.store.key_faces_of(user.sub, key_ref)
        if result is None:
            try:
                if data is None:
                    result = self._analyze_key_object(user, key_id, deadline)
                else:
                    self._count_key_photo(user)
                    result = self.faces.analyze_bytes(data, deadline, max_pixels=self.settings.key_max_pixels)
            except FaceServiceError as exc:
                raise _error_from_face_service(exc) from exc
            result = {
                "model_version": result["model_version"],
                "threshold": result["threshold"],
                "normalisation": result.get("normalisation"),
                "faces": [
                    {
                        "box": f["box"],
                        "score": f["score"],
                        "embedding": f["embedding"],
                        "cohort": [f.get("cohort_mean"), f.get("cohort_std")],
                    }
                    for f in result["faces"]
                ],
            }
            self.store.save_key_faces(user.sub, key_ref, result, KEY_ANALYSIS_TTL)
        faces = result["faces"]
        if not faces:
            raise Unprocessable(
                "no face was found in the key photo; use a photo where the face is clearly visible", code="no_face"
            )
        used = self._int(body, "face", 0, 0, len(faces) - 1)
        return {
            "model_version": result["model_version"],
            "threshold": result["threshold"],
            "normalisation": result.get("normalisation"),
            "cohort": faces[used].get("cohort"),
            "vector": faces[used]["embedding"],
            "used_face": used,
            "faces": [{"box": f["box"], "score": f["score"]} for f in faces],
        }

    def _analyze_key_object(self, user: User, key_id: str, deadline: Deadline | None) -> dict:
        for content_type in CONTENT_TYPE_EXTENSIONS:
            key = key_photo_key(user.sub, key_id, content_type)
            try:
                self.storage.s3.head_object(Bucket=self.storage.bucket, Key=key)
            except self.storage.s3.exceptions.ClientError:
                continue
            return self.faces.analyze_s3(self.storage.bucket, key, deadline, max_pixels=self.settings.key_max_pixels)
        raise NotFound("no such key photo (keys expire a day after upload)")

    @staticmethod
    def _inline_image(value) -> bytes:
        if not isinstance(value, str):
            raise BadRequest("image_base64 must be a base64 string")
        if len(value) > MAX_INLINE_BYTES * 4 // 3 + 4:
            raise PayloadTooLarge(f"image_base64 is limited to {MAX_INLINE_BYTES} bytes; upload a key photo instead")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("image_base64 is not valid base64") from None

    def _album_face(self, user: User, body: dict, deadline: Deadline | None) -> dict:
        photo_id, face_id = str(body.get("photo_id", "")), str(body["face_id"])
        face = self.store.get_face(user.sub, face_id) if _FACE_ID.match(face_id) else None
        if face is None or face["photo_id"] != photo_id:
            raise NotFound("no such face in your album")
        info = self._served_model(deadline)
        if face["model_version"] != info["model_version"]:
            raise Conflict(
                "this photo was indexed with an older face model; it is being reindexed", code="stale_model_version"
            )
        return {
            "model_version": face["model_version"],
            "threshold": info["threshold"],
            "normalisation": info.get("normalisation"),
            "cohort": [face.get("cohort_mean"), face.get("cohort_std")],
            "vector": face["embedding"],
            "used_face": face["face_index"],
            "faces": [{"box": face["box"], "score": face["score"]}],
        }

    def _served_model(self, deadline: Deadline | None) -> dict:
        try:
            return self.faces.served_model(deadline)
        except FaceServiceError as exc:
            raise _error_from_face_service(exc) from exc

    def _present(self, user: User, page) -> list:
        if not page:
            return []
        photo_ids = [photo_id for photo_id, _ in page]
        face_ids = [face_id for _, (face_id, _, _) in page]
        photos = self.store.photos_by_id(user.sub, photo_ids)
        boxes = self.store.face_boxes(user.sub, face_ids)
        results = []
        for photo_id, (face_id, similarity, score) in page:
            photo = photos.get(photo_id)
            if photo is None or photo.get("trashed_at"):
                continue  # deleted or trashed since the vectors were cached
            shown = self.album.present(photo)
            results.append(
                {
                    "photo_id": photo_id,
                    "face_id": face_id,
                    "similarity": round(similarity, 5),
                    "score": round(score, 4),
                    "box": boxes.get(face_id),
                    "thumbnail_url": shown["thumbnail_url"],
                    "url": shown["url"],
                }
            )
        return results

    @staticmethod
    def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadRequest(f"{name} must be an integer between {low} and {high}")
        return value

    @staticmethod
    def _encode_cursor(offset: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")

    @staticmethod
    def _cursor(cursor: str | None) -> int:
        if not cursor:
            return 0
        try:
            offset = json.loads(base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)))["o"]
            if isinstance(offset, int) and offset >= 0:
                return offset
        except (ValueError, KeyError, TypeError, binascii.Error):
            pass
        raise BadRequest("cursor is not valid", code="invalid_cursor")
