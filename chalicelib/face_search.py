"""Face search: a key face (uploaded key photo, inline image, or a face already in the
album) → the caller's photos with that person, one result per photo, best first."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from chalicelib.album import Album
from chalicelib.clock import Deadline, now_ms
from chalicelib.cursors import search_cursor
from chalicelib.edge.request_models import MAX_KEY_BYTES, FileToUpload, SearchRequest
from chalicelib.errors import (
    CannotProcess,
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    RateLimited,
    TooLarge,
    Unavailable,
    UnsupportedType,
)
from chalicelib.face_client import FaceClient, FaceServiceError
from chalicelib.grouping import GroupingParams
from chalicelib.people import People
from chalicelib.people_aware import KeyPerson, PeopleAware
from chalicelib.records import Analysis, ModelInfo, User
from chalicelib.shared.score_norm import KeyNormalisation, QueryExpansion
from chalicelib.stores.object_storage import SEARCH_KEY_TAG, key_photo_key
from chalicelib.stores.people_store import PeopleStore
from chalicelib.stores.vector_index import VectorIndex

MAX_HITS = 2000
KEY_ANALYSIS_TTL = timedelta(hours=1)  # a key's faces are kept this long for the search's later pages
POSSIBLE_MAX = 10  # "possible" matches offered below the decision, on a search's first page
# How far below the decision "possible" reaches, and how far above it "very likely" starts when the
# bundle has no confident score of its own: product choices, not fitted (docs/api.md, POST /search).
POSSIBLE_MARGIN = {"normalised": 1.0, "cosine": 0.08}
VERY_LIKELY_MARGIN = {"normalised": 0.75, "cosine": 0.1}
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_FACE_ID = re.compile(r"^[0-9a-f]{32}-[0-9]{3}$")


def _error_from_face_service(exc: FaceServiceError) -> DomainError:
    if exc.retriable:
        return Unavailable("face detection is unavailable right now; try again shortly")
    # The endpoint's refusal of the photo, in the same kind (too large, unsupported, unreadable).
    kind = {413: TooLarge, 415: UnsupportedType, 422: CannotProcess}.get(exc.status or 400, Invalid)
    return kind(exc.message, code="invalid_key_photo")


def _best_per_photo(hits, skip: set) -> dict:
    """photo_id → (face_id, similarity, score) of its best face, best first; ``skip`` left out."""
    best: dict = {}
    for face_id, photo_id, similarity, score in hits:  # best first: a photo's first hit is its best face
        if photo_id not in best and photo_id not in skip:
            best[photo_id] = (face_id, similarity, score)
    return best


class _Words:
    """A match in words users understand: "very_likely", "likely" (both pass the decision)."""

    def __init__(self, threshold: float, key_norm: KeyNormalisation | None):
        if key_norm is not None and key_norm.threshold is not None:
            confident = key_norm.expansion.min_score if key_norm.expansion else None
            self.on, self.cut = "score", confident or key_norm.threshold + VERY_LIKELY_MARGIN["normalised"]
        else:
            self.on, self.cut = "similarity", threshold + VERY_LIKELY_MARGIN["cosine"]

    def of(self, similarity: float, score: float) -> str:
        return "very_likely" if (score if self.on == "score" else similarity) >= self.cut else "likely"


@dataclass(frozen=True)
class KeyFace:
    """The face a search looks for, with what the served bundle says about deciding on it."""

    model_version: str
    vector: list
    threshold: float  # the bundle's cosine threshold
    normalisation: dict | None  # the bundle's cohort normalisation settings, if it has a cohort
    cohort: tuple  # (mean, std) of this face against the cohort, or (None, None)
    used_face: int  # which face of the key photo (or the album face's index in its photo)
    faces: list  # every face of the key: {"box", "score"}
    photo_id: str | None  # the album photo that is the key itself: never a result
    face_id: str | None = None  # the album face that is the key (a face of the album as the key)
    grouping: dict | None = None  # the bundle's grouping calibration: a key photo's face joins a person by it
    rejected_from: frozenset = frozenset()  # an album face's people the user said it is not


class FaceSearch:
    """Find: the album's photos of a key photo's face, an album face or a person."""

    def __init__(self, album: Album, face_client: FaceClient, index: VectorIndex, people: People | None = None):
        self.album, self.photo_store, self.object_storage = album, album.photo_store, album.object_storage
        self.views = album.views
        self.settings = album.settings
        self.face_client, self.index, self.people = face_client, index, people
        self.aware: PeopleAware | None = people.aware if people else None
        self.people_store: PeopleStore | None = people.people_store if people else None

    # Key uploads --------------------------------------------------------------
    def create_key_upload(self, user: User, item: FileToUpload) -> dict:
        """``item`` parsed with ``MAX_KEY_BYTES`` as its size limit."""
        self._count_key_photo(user)
        key_id = uuid.uuid4().hex
        ttl = 300
        post = self.object_storage.presigned_upload(
            key_photo_key(user.sub, key_id, item.content_type),
            item.content_type,
            MAX_KEY_BYTES,
            ttl,
            tags=SEARCH_KEY_TAG,
            # The key's hash, kept on the object: a key that is an album photo is not its own result.
            metadata={"sha256": item.sha256} if item.sha256 else None,
        )
        return {"key_id": key_id, "url": post["url"], "fields": post["fields"], "expires_in": ttl}

    def _count_key_photo(self, user: User) -> None:
        """Key photos cost GPU time: at most ``key_photos_per_hour`` a user (uploads and inline images)."""
        now = now_ms()
        window = now.replace(minute=0, second=0, microsecond=0)
        if not self.album.rates.take(user.sub, "key_photo", window, self.settings.key_photos_per_hour):
            retry_after = int((window + timedelta(hours=1) - now).total_seconds()) + 1
            raise RateLimited(
                f"at most {self.settings.key_photos_per_hour} key photos an hour; "
                f"try again in {retry_after // 60 + 1} minutes",
                code="key_photo_rate",
                retry_after=retry_after,
            )

    # Search -------------------------------------------------------------------
    def search(self, user: User, request: SearchRequest, deadline: Deadline | None = None) -> dict:
        """A page of results for one search request, best first, with why each matched."""
        limit, offset = request.limit, request.offset
        if request.person_id is not None:
            if self.people is None:
                raise Unavailable("people are not available here")
            found = self.people.search_by_person(user, request.person_id, offset, limit)
            following = found["next"]
            return {
                "person_id": request.person_id,
                "results": found["results"],
                "total": found["total"],
                "next_cursor": search_cursor(following) if following is not None else None,
            }
        if request.face_id is not None:
            key_face = self._album_face(user, request, deadline)
        else:
            key_face = self._key_photo(user, request, deadline)
        threshold, key_norm = self._decision(request.threshold, key_face)
        own = key_face.photo_id
        person = self._key_person(user, key_face)
        hits = self.index.nearest(user.sub, key_face.model_version, key_face.vector, MAX_HITS, threshold, key_norm)
        with_possible = offset == 0 and request.threshold is None
        loose = self._possible(user, key_face, threshold, key_norm) if with_possible else []
        rows = self._decisions(user, person, key_face, hits + loose)
        best = _best_per_photo(self._compete(user, person, key_face, hits, rows), skip={own})
        best, kinds = self._with_person(user, person, key_face, key_norm, best)
        ranked = list(best.items())
        page = ranked[offset : offset + limit]
        next_cursor = search_cursor(offset + limit) if offset + limit < len(ranked) else None
        words = _Words(threshold, key_norm)
        possible = []
        if with_possible:
            possible = self._compete(user, person, key_face, loose, rows)
            possible = list(_best_per_photo(possible, skip={own, *best}).items())[:POSSIBLE_MAX]
        return {
            "model_version": key_face.model_version,
            "threshold": threshold,
            "score_threshold": key_norm.threshold if key_norm else None,
            "normalised": key_norm is not None,
            "expanded_threshold": key_norm.expansion.threshold if key_norm and key_norm.expansion else None,
            "key_faces": key_face.faces,
            "used_face": key_face.used_face,
            "key_photo_id": own,
            "person": person.present() if person else None,
            "results": self._present(user, page, words, kinds=kinds),
            "possible": self._present(user, possible, words, "possible"),
            "next_cursor": next_cursor,
        }

    def _key_person(self, user: User, key_face: KeyFace) -> KeyPerson | None:
        """The album's person the key is (``people_aware``), or None: search decides on the key alone."""
        if self.aware is None or self.people_store is None:
            return None
        if key_face.face_id is not None:
            found = self.people_store.decisions(user.sub, [key_face.face_id])
            return self.aware.key_person(user.sub, found[0].get("person_id") if found else None, "album_face")
        params = GroupingParams.from_model_info({"grouping": key_face.grouping} if key_face.grouping else None)
        if params is None:
            return None
        person_id = self.aware.vote(
            user.sub, key_face.model_version, key_face.vector, key_face.cohort, params, skip_photo=key_face.photo_id
        )
        return self.aware.key_person(user.sub, person_id, "matched")

    def _with_person(self, user: User, person: KeyPerson | None, key_face: KeyFace, key_norm, best: dict):
        """(``best`` with every photo of the key's person, ranked by the key's score; photo_id →
        the match of the person's own photos)."""
        if person is None or self.aware is None:
            return best, {}
        members = self.aware.members(user.sub, person, key_face.model_version, key_face.vector, key_norm)
        members.pop(key_face.photo_id, None)
        best.update({photo_id: row[:3] for photo_id, row in members.items()})
        ranked = dict(sorted(best.items(), key=lambda item: -item[1][2]))
        return ranked, {photo_id: row[3] for photo_id, row in members.items()}

    def _decisions(self, user: User, person: KeyPerson | None, key_face: KeyFace, hits: list) -> dict | None:
        """The hits' person fields, read once, when the people compete for them (else None)."""
        if self.aware is None or not hits or (person is None and not key_face.rejected_from):
            return None
        return self.aware.decisions_of(user.sub, hits)

    def _compete(self, user: User, person: KeyPerson | None, key_face: KeyFace, hits: list, rows=None) -> list:
        if self.aware is None:
            return hits
        person_id = person.person_id if person else None
        return self.aware.compete(user.sub, hits, person_id, key_face.rejected_from, rows)

    def _possible(self, user: User, key_face: KeyFace, threshold: float, key_norm) -> list:
        """The faces just below the decision (``POSSIBLE_MARGIN``), for "nobody found" pages: the
        hits of a looser decision, best first (the caller leaves out the photos already found)."""
        if key_norm is not None and key_norm.threshold is not None:
            loose = KeyNormalisation(key_norm.mean, key_norm.std, key_norm.threshold - POSSIBLE_MARGIN["normalised"])
            hits = self.index.nearest(user.sub, key_face.model_version, key_face.vector, MAX_HITS, threshold, loose)
        else:
            floor = threshold - POSSIBLE_MARGIN["cosine"]
            hits = self.index.nearest(user.sub, key_face.model_version, key_face.vector, MAX_HITS, floor, key_norm)
        return hits

    @staticmethod
    def _decision(requested: float | None, key_face: KeyFace):
        """(cosine threshold, KeyNormalisation or None). With the bundle's cohort normalisation a
        result needs cosine ≥ its raw floor and a normalised score ≥ its threshold, and results are
        ranked by that score, with the bundle's query expansion when it has one; a ``threshold`` in
        the request is a plain cosine cut instead (still ranked by the normalised score, no expansion)."""
        norm = key_face.normalisation or {}
        mean, std = key_face.cohort
        if not norm or mean is None or std is None:  # a bundle without a cohort: cosine only
            return (float(key_face.threshold) if requested is None else requested), None
        if requested is None:
            expansion = QueryExpansion.from_settings(norm.get("expansion"))
            return float(norm["raw_floor"]), KeyNormalisation(mean, std, float(norm["threshold"]), expansion)
        return requested, KeyNormalisation(mean, std, None)

    def _key_photo(self, user: User, request: SearchRequest, deadline: Deadline | None) -> KeyFace:
        """The key's faces, analysed once: later pages of the search read them from the store."""
        key_id, data = request.key_id or "", request.image
        if data is None:
            if not _HEX_ID.match(key_id):
                raise NotFound("no such key photo")
            analysis_id, sha256 = f"key:{key_id}", None
        else:
            sha256 = hashlib.sha256(data).hexdigest()
            analysis_id = f"inline:{sha256}"
        result = self.album.key_faces.get(user.sub, analysis_id)
        if result is None:
            try:
                if data is None:
                    analysis, sha256 = self._analyze_key_object(user, key_id, deadline)
                else:
                    self._count_key_photo(user)
                    analysis = self.face_client.analyze_bytes(data, deadline, max_pixels=self.settings.key_max_pixels)
            except FaceServiceError as exc:
                raise _error_from_face_service(exc) from exc
            result = {
                "sha256": sha256,
                "model_version": analysis["model_version"],
                "threshold": analysis["threshold"],
                "normalisation": analysis.get("normalisation"),
                "grouping": analysis.get("grouping"),
                "faces": [
                    {
                        "box": f["box"],
                        "score": f["score"],
                        "embedding": f["embedding"],
                        "cohort": [f.get("cohort_mean"), f.get("cohort_std")],
                    }
                    for f in analysis["faces"]
                ],
            }
            self.album.key_faces.save(user.sub, analysis_id, result, KEY_ANALYSIS_TTL)
        faces = result["faces"]
        if not faces:
            raise CannotProcess(
                "no face was found in the key photo; use a photo where the face is clearly visible", code="no_face"
            )
        used = 0 if request.face is None else request.face
        if isinstance(used, bool) or not isinstance(used, int) or not 0 <= used < len(faces):
            raise Invalid(f"face must be an integer between 0 and {len(faces) - 1}")
        copy = self.photo_store.photo_with_content(user.sub, result["sha256"]) if result.get("sha256") else None
        return KeyFace(
            model_version=result["model_version"],
            vector=faces[used]["embedding"],
            threshold=result["threshold"],
            normalisation=result.get("normalisation"),
            cohort=tuple(faces[used].get("cohort") or (None, None)),
            used_face=used,
            faces=[{"box": f["box"], "score": f["score"]} for f in faces],
            photo_id=copy["photo_id"] if copy else None,
            grouping=result.get("grouping"),
        )

    def _analyze_key_object(self, user: User, key_id: str, deadline: Deadline | None) -> tuple[Analysis, str | None]:
        """The key's analysis and the SHA-256 its upload declared (None if it declared none)."""
        object_key = self.object_storage.find_key_photo(user.sub, key_id)
        metadata = self.object_storage.metadata(object_key) if object_key else None
        if object_key is None or metadata is None:
            raise NotFound("no such key photo (keys expire a day after upload)")
        found = self.face_client.analyze_s3(
            self.object_storage.bucket, object_key, deadline, max_pixels=self.settings.key_max_pixels
        )
        return found, metadata.get("sha256")

    def _album_face(self, user: User, request: SearchRequest, deadline: Deadline | None) -> KeyFace:
        photo_id, face_id = request.photo_id or "", request.face_id or ""
        face = self.photo_store.get_face(user.sub, face_id) if _FACE_ID.match(face_id) else None
        if face is None or face["photo_id"] != photo_id:
            raise NotFound("no such face in your album")
        info = self._served_model(deadline)
        if face["model_version"] != info["model_version"]:
            raise Conflict(
                "this photo was indexed with an older face model; it is being reindexed", code="stale_model_version"
            )
        return KeyFace(
            model_version=face["model_version"],
            vector=face["embedding"],
            threshold=info["threshold"],
            normalisation=info.get("normalisation"),
            cohort=(face.get("cohort_mean"), face.get("cohort_std")),
            used_face=face["face_index"],
            faces=[{"box": face["box"], "score": face["score"]}],
            photo_id=photo_id,
            face_id=face_id,
            rejected_from=frozenset(face.get("rejected_from") or ()),
        )

    def _served_model(self, deadline: Deadline | None) -> ModelInfo:
        try:
            return self.face_client.served_model(deadline)
        except FaceServiceError as exc:
            raise _error_from_face_service(exc) from exc

    def _present(self, user: User, page, words: _Words, word: str | None = None, kinds: dict | None = None) -> list:
        """``kinds``: photo_id → the match of a key person's own photos (``people_aware``)."""
        if not page:
            return []
        photo_ids = [photo_id for photo_id, _ in page]
        face_ids = [face_id for _, (face_id, _, _) in page]
        photos = self.photo_store.photos_by_id(user.sub, photo_ids)
        boxes = self.photo_store.face_boxes(user.sub, face_ids)
        results = []
        for photo_id, (face_id, similarity, score) in page:
            photo = photos.get(photo_id)
            if photo is None or photo.get("trashed_at"):
                continue  # deleted or trashed since the vectors were cached
            results.append(
                {
                    "photo_id": photo_id,
                    "face_id": face_id,
                    "similarity": round(similarity, 5),
                    "score": round(score, 4),
                    "match": word or (kinds or {}).get(photo_id) or words.of(similarity, score),
                    "box": boxes.get(face_id),
                    "thumbnail_url": self.views.thumbnail_url(photo),
                    "url": self.views.url(photo),
                }
            )
        return results
