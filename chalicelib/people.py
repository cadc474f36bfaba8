"""People: the user's faces grouped into persons that the user names and corrects.

- **Assignment on indexing** (``assign_photo``): each new face joins the person its nearest
  neighbours (the vector index) link it to best, by the mean normalised score of its neighbours in
  that person, when that reaches the bundle's grouping threshold, unless the person already holds
  another face of the photo or the face was rejected from it.
- **Regrouping** (``regroup``): every face of the served model version, grouped again by
  ``grouping.agglomerate`` under the user's confirmations and rejections; groups are mapped back to
  the existing people (confirmed faces decide, then the most auto faces), so names survive. A large
  album's graph is built by a fan-out of workers (``graph_fanout``) and agglomerated when it is
  finished (``regroup_from_graph``).
- **Corrections** are the user's word and are never undone by either: see ``people_store``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from itertools import zip_longest

import numpy as np

from chalicelib.album import Album
from chalicelib.clock import Deadline, now_ms
from chalicelib.cursors import encode_position
from chalicelib.edge.request_models import Answer, FaceDecision, Merge, Page, PeoplePage
from chalicelib.errors import Conflict, Invalid, NotFound, Unavailable
from chalicelib.face_client import FaceClient, FaceServiceError
from chalicelib.graph_fanout import GraphFanout
from chalicelib.grouping import (
    Constraints,
    GroupingParams,
    agglomerate,
    doubtful_half,
    knn_edges,
    normalised_pair_scores,
)
from chalicelib.observability import logger
from chalicelib.people_aware import NO_RAW_FLOOR, PeopleAware
from chalicelib.records import MANUAL, Face, ModelInfo, Person, User, drawn_face_record
from chalicelib.shared.boxes import box_iou
from chalicelib.shared.score_norm import KeyNormalisation
from chalicelib.stores.people_store import AUTO, SAME_FACE_IOU, USER, PeopleStore
from chalicelib.stores.photo_store import PhotoStore
from chalicelib.stores.vector_index import VectorIndex

MAX_KEY_FACES = 30  # a person's faces used as search keys (confirmed first)
FIT_NEIGHBOURS = 3  # a grouped face's fit to its person: its mean score to this many of the person's faces
MAX_FIT_FACES = 2000  # the person's faces a fit is measured against (confirmed first)
QUESTION_PEOPLE = 20  # the album's questions come from this many of its biggest people
MAX_HALF_FACES = 300  # a person's faces split in two for its half question (confirmed first)
NEIGHBOURHOOD = 30  # a new face's nearest album faces an incremental grouping looks at
UNDO_SECONDS = 600  # a merge can be undone this long after it was made
_ID = re.compile(r"^[0-9a-f]{32}$")
_FACE_ID = re.compile(r"^[0-9a-f]{32}-[0-9]{3}$")
MIN_BOX = 16  # the smallest side of a face box the user draws
MANUAL_FIRST_INDEX = 500  # drawn faces are numbered from here: detected ones keep 000-499


class People:
    """The album's people: grouping, naming, merging, corrections and the owner's answers."""

    def __init__(
        self,
        photo_store: PhotoStore,
        people_store: PeopleStore,
        album: Album,
        face_client: Callable[[], FaceClient],
        index: VectorIndex,
        graph_fanout: GraphFanout | None = None,
    ):
        """``face_client``: gives the face client, asked only by what needs the endpoint."""
        self.photo_store, self.people_store, self.album, self.index = photo_store, people_store, album, index
        self.graph_fanout = graph_fanout
        self.views = album.views
        self.face_client = face_client
        self.aware = PeopleAware(photo_store, people_store, index)

    def served_model(self, deadline: Deadline | None = None) -> ModelInfo:
        """The served bundle's info; a 503 when the face endpoint does not answer."""
        try:
            return self.face_client().served_model(deadline)
        except FaceServiceError as exc:
            raise Unavailable("face detection is unavailable right now; try again shortly") from exc

    # The served bundle's grouping calibration ---------------------------------------
    def _served(self, deadline: Deadline | None = None) -> tuple[str, GroupingParams]:
        info = self.served_model(deadline)
        params = GroupingParams.from_model_info(info)
        if params is None:
            raise Unavailable("the face model in service has no grouping calibration", code="no_grouping")
        return info["model_version"], params

    # Assignment on indexing ---------------------------------------------------------
    def assign_photo(self, owner: str, photo_id: str, model_version: str, params: GroupingParams) -> dict:
        """Assign (or re-validate, after a reindex) the photo's faces that the user has not decided.
        Returns ``{"assigned": n, "unassigned": m, "unassigned_faces": [face ids]}``."""
        faces = [f for f in self.photo_store.list_faces(owner, photo_id) if f.get("model_version") == model_version]
        taken = {f["person_id"] for f in faces if f.get("assigned_by") == USER and f.get("person_id")}
        counts: dict = {"assigned": 0, "unassigned": 0, "unassigned_faces": []}
        touched = set()
        for face in sorted(faces, key=lambda f: -float(f.get("score", 0))):
            if face.get("assigned_by") == USER:
                continue
            person = self._best_person(owner, face, model_version, params, taken)
            changed = person != face.get("person_id")
            if changed and self.people_store.set_by_algorithm(owner, face["face_id"], person):
                touched |= {person, face.get("person_id")}
            if person:
                taken.add(person)
            counts["assigned" if person else "unassigned"] += 1
            if not person:
                counts["unassigned_faces"].append(face["face_id"])
        self.people_store.refresh(owner, touched)
        return counts

    def _best_person(self, owner: str, face: Face, model_version: str, params: GroupingParams, taken: set):
        stored = self.photo_store.get_face(owner, face["face_id"])
        if stored is None:  # deleted meanwhile
            return None
        return self.aware.vote(
            owner,
            model_version,
            stored["embedding"],
            (face.get("cohort_mean"), face.get("cohort_std")),
            params,
            skip_face=face["face_id"],
            skip_photo=face["photo_id"],
            excluded=taken | set(face.get("rejected_from") or ()),
        )

    # Regrouping ----------------------------------------------------------------------
    def regroup(
        self,
        owner: str,
        deadline: Deadline | None = None,
        token: str | None = None,
        new_faces: list[str] | None = None,
    ) -> dict:
        """Group every face of the served version again, keeping names, confirmations, rejections.
        A job's ``token`` lets a large album's graph fan out: then the grouping waits for it. With
        ``new_faces`` (indexing left them unassigned) a large album groups only those faces and
        their neighbourhoods (``group_new_faces``)."""
        model_version, params = self._served(deadline)
        fanout = self.graph_fanout
        large = fanout is not None and self.people_store.face_count(owner, model_version) >= fanout.fanout_faces
        if new_faces is not None and large:
            return self.group_new_faces(owner, new_faces, model_version, params)
        rows = self.people_store.grouping_input(owner, model_version)
        if not rows:
            return {"faces": 0, "people": 0, "changed": 0}
        vectors, stats = _grouping_matrix(rows)
        if token and self.graph_fanout and self.graph_fanout.wanted(len(rows)):
            face_ids = [r["face_id"] for r in rows]
            return self.graph_fanout.start(owner, token, model_version, face_ids, vectors, stats, params.k)
        return self._group(owner, rows, knn_edges(vectors, stats, params.k), params)

    def group_new_faces(self, owner: str, face_ids: list[str], model_version: str, params: GroupingParams) -> dict:
        """An incremental grouping: the faces indexing left unassigned, with the unassigned faces
        among each one's ``NEIGHBOURHOOD`` nearest album faces, grouped among themselves; a group
        becomes a new person. The album's people are not regrouped, and no face the user decided
        moves. Its cost grows with the new faces, not with the album."""
        new = _undecided_and_unassigned(self.people_store.grouping_input(owner, model_version, list(face_ids)))
        near: set[str] = set()
        for row in new:
            mean, std = row.get("cohort_mean"), row.get("cohort_std")
            if mean is None or std is None:
                continue
            key = KeyNormalisation(float(mean), float(std), params.threshold)
            hits = self.index.nearest(owner, model_version, row["embedding"], NEIGHBOURHOOD, NO_RAW_FLOOR, key)
            near |= {hit[0] for hit in hits}
        near -= {row["face_id"] for row in new}
        rows = new + _undecided_and_unassigned(self.people_store.grouping_input(owner, model_version, sorted(near)))
        if not rows:
            return {"faces": 0, "people": 0, "changed": 0, "incremental": True}
        vectors, stats = _grouping_matrix(rows)
        return {**self._group(owner, rows, knn_edges(vectors, stats, params.k), params), "incremental": True}

    def regroup_from_graph(self, owner: str, token: str, deadline: Deadline | None = None) -> dict:
        """Group the faces of a finished fanned-out graph (``graph_fanout``). Faces deleted since are
        left out; faces indexed since keep what indexing gave them (a later regrouping takes them in)."""
        fanout = self.graph_fanout
        job = fanout.job(owner, token) if fanout else None
        if fanout is None or job is None:
            return {"status": "gone"}  # applied already (a second announcement), or expired
        if not fanout.finished(job):
            return {"status": "waiting"}
        model_version, params = self._served(deadline)
        if (job.model_version, job.k) != (model_version, params.k):  # a new bundle since: build it again
            fanout.clear(owner, token)
            return self.regroup(owner, deadline, token)
        face_ids, (i, j, s) = fanout.graph(job)
        rows = self.people_store.grouping_input(owner, model_version)
        where = {r["face_id"]: n for n, r in enumerate(rows)}
        kept = [n for n in (where.get(face) for face in face_ids) if n is not None]
        position = np.full(len(face_ids), -1, np.int64)
        position[[n for n, face in enumerate(face_ids) if face in where]] = np.arange(len(kept))
        i, j = position[i], position[j]
        both = (i >= 0) & (j >= 0)
        result = self._group(owner, [rows[n] for n in kept], (i[both], j[both], s[both]), params)
        fanout.clear(owner, token)
        return result

    def _group(self, owner: str, rows: list[Face], edges: tuple[np.ndarray, ...], params: GroupingParams) -> dict:
        """Agglomerate ``rows`` over the graph ``edges`` (indexes into ``rows``) and apply it."""
        confirmed = [r.get("person_id") if r.get("assigned_by") == USER else None for r in rows]
        rejected = [frozenset(r.get("rejected_from") or ()) for r in rows]
        labels = agglomerate(
            len(rows),
            edges,
            [r["photo_id"] for r in rows],
            params.threshold,
            params.min_faces,
            params.linkage,
            Constraints(confirmed, rejected, [r.get("person_id") for r in rows]),
        )
        wanted = self._map_groups(owner, rows, labels, confirmed)
        changed, touched = 0, set()
        for row, person in zip(rows, wanted):
            if row.get("assigned_by") == USER:
                continue
            if person in (row.get("rejected_from") or ()):
                person = None
            if person != row.get("person_id") and self.people_store.set_by_algorithm(owner, row["face_id"], person):
                changed += 1
                touched |= {person, row.get("person_id")}
        self.people_store.refresh(owner, touched)
        people = len({p for p in wanted if p})
        logger.info("people regrouped", extra={"user": owner, "faces": len(rows), "people": people, "changed": changed})
        return {"faces": len(rows), "people": people, "changed": changed}

    def _map_groups(self, owner: str, rows: list[Face], labels: np.ndarray, confirmed: list) -> list:
        """The person each face should be in: a group with confirmed faces is their person; any
        other group takes the existing person most of its auto faces are in (each person once,
        biggest overlap first), else a new person. Faces outside every group: None."""
        groups: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(labels.tolist()):
            if label >= 0:
                groups[label].append(i)
        person_of: dict[int, str] = {}
        used = set()
        for label, members in groups.items():
            fixed = {confirmed[i] for i in members if confirmed[i]}
            if fixed:
                (person_of[label],) = fixed  # agglomerate never joins two confirmed people
                used |= fixed
        overlaps = []
        for label, members in groups.items():
            if label in person_of:
                continue
            votes: dict[str, int] = defaultdict(int)
            for i in members:
                person = rows[i].get("person_id")
                if person and rows[i].get("assigned_by") == AUTO:
                    votes[person] += 1
            overlaps += [(-count, label, person) for person, count in votes.items()]
        existing = self.people_store.ids(owner)
        for _, label, person in sorted(overlaps):
            if label not in person_of and person not in used and person in existing:
                person_of[label] = person
                used.add(person)
        for label in groups:
            if label not in person_of:
                person_of[label] = self.people_store.create(owner)["person_id"]
        wanted: list = [None] * len(rows)
        for label, members in groups.items():
            for i in members:
                wanted[i] = person_of[label]
        return wanted

    # Reading -------------------------------------------------------------------------
    def list_people(self, user: User, page: PeoplePage) -> dict:
        """A page of the caller's people, biggest first, each with a cover face."""
        limit, offset = page.limit, page.offset
        rows = self.people_store.page(user.sub, offset, limit + 1, page.include_hidden)
        more = len(rows) > limit
        return {
            "people": [self._present(user, p) for p in rows[:limit]],
            "next_cursor": str(offset + limit) if more else None,
        }

    def get_person(self, user: User, person_id: str) -> dict:
        """One of the caller's people, presented."""
        return self._present(user, self._owned(user, person_id))

    def person_photos(self, user: User, person_id: str, page: Page) -> dict:
        """The person's photos, newest first, each with the person's face box."""
        self._owned(user, person_id)
        faces = self.people_store.faces_of(user.sub, person_id)
        rows, last = self.photo_store.list_photos(user.sub, page.limit, page.after, only={f["photo_id"] for f in faces})
        boxes = {f["photo_id"]: f for f in faces}
        photos = []
        for row in rows:
            face = boxes.get(row["photo_id"])
            if face is None:
                continue  # moved out of the person between the two reads
            shown = self.views.present(row)
            photos.append(dict(shown, face_id=face["face_id"], box=face["box"], assigned_by=face.get("assigned_by")))
        return {"photos": photos, "next_cursor": encode_position(last)}

    def _present(self, user: User, person: Person) -> dict:
        cover = None
        cover_face_id, cover_photo_id = person.get("cover_face_id"), person.get("cover_photo_id")
        if cover_face_id and cover_photo_id:
            face = self.people_store.face(user.sub, cover_face_id)
            photo = self.photo_store.get_photo(user.sub, cover_photo_id) if face else None
            if face and photo:
                cover = {
                    "face_id": face["face_id"],
                    "photo_id": photo["photo_id"],
                    "box": face["box"],
                    "photo_width": photo.get("width"),
                    "photo_height": photo.get("height"),
                    "thumbnail_url": self.views.thumbnail_url(photo),
                }
        return {
            "person_id": person["person_id"],
            "name": person.get("name"),
            "hidden": bool(person.get("hidden")),
            "face_count": person.get("face_count", 0),
            "photo_count": person.get("photo_count", 0),
            "cover": cover,
        }

    def _owned(self, user: User, person_id: str) -> Person:
        person = self.people_store.get(user.sub, person_id) if _ID.match(person_id or "") else None
        if person is None:
            raise NotFound("no such person")
        return person

    def _owned_face(self, user: User, face_id: str) -> Face:
        face = self.people_store.face(user.sub, face_id) if _FACE_ID.match(face_id or "") else None
        if face is None:
            raise NotFound("no such face in your album")
        return face

    # Changes --------------------------------------------------------------------------
    def update_person(self, user: User, person_id: str, fields: dict) -> dict:
        """``fields``: ``request_models.person_update``'s."""
        self._owned(user, person_id)
        if not self.people_store.update(user.sub, person_id, fields):
            raise NotFound("no such person")
        return self.get_person(user, person_id)

    def delete_person(self, user: User, person_id: str) -> None:
        """Forget a person; their faces stay in the album, assigned to nobody."""
        self._owned(user, person_id)
        self.people_store.delete(user.sub, person_id)

    def merge(self, user: User, merge: Merge) -> dict:
        """The sources' faces join the target, which keeps its name (or takes the first source's
        name if it has none). What it changed is kept for ``UNDO_SECONDS`` (``undo_merge``)."""
        target_id = merge.target
        target = self._owned(user, target_id)
        others = [self._owned(user, s) for s in merge.sources]
        self.people_store.drop_merges_before(user.sub, now_ms() - timedelta(seconds=UNDO_SECONDS))
        merge_id = self.people_store.keep_merge(user.sub, target_id, [s["person_id"] for s in others])
        for source in others:
            self.people_store.merge_into(user.sub, source["person_id"], target_id)
            self.people_store.remove(user.sub, source["person_id"])
        if not target.get("name"):
            name = next((s["name"] for s in others if s.get("name")), None)
            if name:
                self.people_store.update(user.sub, target_id, {"name": name})
        self.people_store.refresh(user.sub, [target_id])
        return {"person": self.get_person(user, target_id), "undo": {"merge_id": merge_id, "expires_in": UNDO_SECONDS}}

    def undo_merge(self, user: User, merge_id: str) -> dict:
        """The people and face decisions as they were before the merge, within ``UNDO_SECONDS``
        and once. A correction made since to the merged faces is undone with it."""
        since = now_ms() - timedelta(seconds=UNDO_SECONDS)
        kept = self.people_store.take_merge(user.sub, merge_id, since) if _ID.match(merge_id or "") else None
        if kept is None:
            raise NotFound("no such merge to undo (an undo is possible once, for 10 minutes)")
        restored = self.people_store.restore_merge(user.sub, kept)
        self.people_store.refresh(user.sub, restored)
        return {"people": [self.get_person(user, p) for p in restored if self.people_store.get(user.sub, p)]}

    def set_face_person(self, user: User, face_id: str, decision: FaceDecision) -> dict:
        """The user's word on one face: this is a person (confirm or move), not the person it is
        in, or a new person."""
        face = self._owned_face(user, face_id)
        current = face.get("person_id")
        if decision.new_person:
            target = self.people_store.create(user.sub, decision.name)["person_id"]
        elif decision.person_id is None:
            target = None
        else:
            target = self._owned(user, decision.person_id)["person_id"]
        if target and self._photo_has_other_face_in(user.sub, face, target):
            raise Conflict("another face of this photo is already this person", code="same_photo")
        rejected = current if current and current != target else None
        self.people_store.set_by_user(user.sub, face_id, target, rejected)
        if target and self.people_store.get(user.sub, target) is None:
            # The person was merged or deleted meanwhile: the face must not point at nothing.
            self.people_store.set_by_user(user.sub, face_id, None, None)
            raise Conflict("that person no longer exists", code="person_gone")
        self.people_store.refresh(user.sub, [current, target])
        updated = self.people_store.face(user.sub, face_id) or {}
        return {
            "face_id": face_id,
            "photo_id": face["photo_id"],
            "person_id": updated.get("person_id"),
            "assigned_by": updated.get("assigned_by"),
            "rejected_from": updated.get("rejected_from") or [],
        }

    def _photo_has_other_face_in(self, owner: str, face: Face, person_id: str) -> bool:
        return any(
            f["face_id"] != face["face_id"] and f.get("person_id") == person_id
            for f in self.photo_store.list_faces(owner, face["photo_id"])
        )

    # Faces drawn or removed by the user ---------------------------------------------------
    def add_face(self, user: User, photo_id: str, box: list[float], deadline: Deadline | None = None) -> dict:
        """A face the detector missed, embedded at ``box`` ([x, y, w, h]; aligned when landmarks are
        found inside it), stored as ``source: manual`` and assigned like any other."""
        photo = self.album.owned_photo(user, photo_id)
        if photo.get("trashed_at"):
            raise Conflict("the photo is in the trash; restore it first", code="in_trash")
        width, height = photo.get("width"), photo.get("height")
        if photo["status"] != "indexed" or not width or not height:
            raise Conflict("the photo is not indexed yet", code="not_indexed")
        x, y, w, h = box
        if w < MIN_BOX or h < MIN_BOX or x < 0 or y < 0 or x + w > width or y + h > height:
            raise Invalid(
                f"the box must lie inside the {width}x{height} photo and be at least {MIN_BOX} px wide and high",
                code="bad_box",
            )
        faces = self.photo_store.list_faces(user.sub, photo_id)
        if any(box_iou(f["box"], [x, y, w, h]) >= SAME_FACE_IOU for f in faces):
            raise Conflict("there is already a face at that box", code="face_exists")
        try:
            result = self.face_client().analyze_s3(
                self.album.object_storage.bucket, photo["key"], deadline, boxes=[[x, y, w, h]], detect=False
            )
        except FaceServiceError as exc:
            if exc.retriable:
                raise Unavailable("face detection is unavailable right now; try again shortly") from exc
            raise Invalid(exc.message, code="bad_box") from exc
        if result["model_version"] != photo.get("model_version"):
            raise Conflict(
                "this photo is being indexed with a new face model; try again soon", code="stale_model_version"
            )
        index = max([MANUAL_FIRST_INDEX - 1] + [f["face_index"] for f in faces]) + 1
        if index > 999:
            raise Conflict("this photo has as many faces as it can hold", code="too_many_faces")
        (analysed,) = result["faces"]
        face = drawn_face_record(f"{photo_id}-{index:03d}", index, analysed, result["model_version"])
        if not self.photo_store.add_face(user.sub, photo_id, face):
            raise NotFound("no such photo")
        params = GroupingParams.from_model_info(result)
        if params is not None:
            self.assign_photo(user.sub, photo_id, result["model_version"], params)
        stored = self.people_store.face(user.sub, face["face_id"]) or {}
        return {
            "face_id": face["face_id"],
            "photo_id": photo_id,
            "box": face["box"],
            "source": MANUAL,
            "aligned": face["aligned"],
            "person_id": stored.get("person_id"),
        }

    def remove_face(self, user: User, face_id: str) -> None:
        """A wrong face box (a false detection, or a drawn box): gone, and not detected again."""
        face = self._owned_face(user, face_id)
        self.photo_store.remove_face(user.sub, face, remember_box=face.get("source") != MANUAL)
        self.people_store.refresh(user.sub, [face.get("person_id")])

    # Suggestions and search by person ----------------------------------------------------
    def candidates(self, user: User, person_id: str, deadline: Deadline | None = None) -> list:
        """Faces not in the person, not rejected from it and not decided by the user elsewhere,
        that match one of its faces (confirmed ones first): (face_id, photo_id, score, the person
        the face is in now or None), best first."""
        person = self._owned(user, person_id)
        info = self.served_model(deadline)
        norm = info.get("normalisation") or {}
        keys = sorted(
            (
                f
                for f in self.people_store.faces_of(user.sub, person["person_id"])
                if f["model_version"] == info["model_version"]
            ),
            key=lambda f: (f.get("assigned_by") != USER, -float(f.get("score", 0))),
        )[:MAX_KEY_FACES]
        if not keys:
            return []
        if not norm:
            return []
        stored = self.photo_store.vectors_of_faces(user.sub, [k["face_id"] for k in keys])
        usable = [
            (stored[k["face_id"]], KeyNormalisation(mean, std, norm["threshold"]))
            for k in keys
            if k["face_id"] in stored
            and (mean := k.get("cohort_mean")) is not None
            and (std := k.get("cohort_std")) is not None
        ]
        found = self.index.nearest_many(
            user.sub,
            info["model_version"],
            [vector for vector, _ in usable],
            500,
            float(norm["raw_floor"]),
            [key for _, key in usable],
        )
        best: dict[str, tuple] = {}
        for face_id, photo_id, _, score in (hit for hits in found for hit in hits):
            if face_id not in best or score > best[face_id][2]:
                best[face_id] = (face_id, photo_id, score)
        if not best:
            return []
        rows = self.people_store.decisions(user.sub, list(best))
        eligible = [
            (*best[r["face_id"]], r.get("person_id"))
            for r in rows
            if r.get("person_id") != person_id
            and person_id not in (r.get("rejected_from") or ())
            and person_id not in (r.get("skipped_for") or ())
            and r.get("assigned_by") != USER
        ]
        return sorted(eligible, key=lambda c: -c[2])

    def doubtful_members(self, user: User, person_id: str, model_version: str) -> list:
        """The person's faces the grouping put there (not confirmed, not skipped), the least
        fitting first: (face_id, photo_id, fit), the fit a face's mean normalised score to its
        ``FIT_NEIGHBOURS`` closest other faces of the person (``MAX_FIT_FACES`` of them at most,
        confirmed first)."""
        faces = self._comparable_faces(user.sub, person_id, model_version)
        if len(faces) < 2:
            return []
        matrix = np.vstack([f["embedding"] for f in faces])
        stats = np.array([(f.get("cohort_mean"), f.get("cohort_std")) for f in faces], np.float64)
        reference = slice(0, MAX_FIT_FACES)
        scores = normalised_pair_scores(matrix, stats, matrix[reference], stats[reference])
        np.fill_diagonal(scores, -np.inf)  # the leading square: a face against itself
        top = -np.sort(-scores, axis=1)[:, :FIT_NEIGHBOURS]
        fits = np.where(np.isfinite(top), top, np.nan)
        out = []
        for face, fit in zip(faces, np.nanmean(fits, axis=1)):
            asked = face.get("assigned_by") == USER or person_id in (face.get("skipped_for") or ())
            if not asked and np.isfinite(fit):
                out.append((face["face_id"], face["photo_id"], float(fit)))
        return sorted(out, key=lambda row: row[2])

    def _comparable_faces(self, owner: str, person_id: str, model_version: str) -> list[Face]:
        """The person's faces of ``model_version`` with cohort statistics, with vectors, confirmed first."""
        faces = [
            f
            for f in self.people_store.faces_of(owner, person_id, with_vectors=True)
            if f.get("model_version") == model_version and f.get("cohort_std") is not None
        ]
        return sorted(faces, key=lambda f: f.get("assigned_by") != USER)

    def half_question(self, owner: str, person_id: str, model_version: str) -> tuple[str, str, list[str]] | None:
        """The person's half question (``grouping.doubtful_half`` over its first ``MAX_HALF_FACES``
        faces, confirmed first): (the face that stands for the half, its photo, the half's faces the
        user has not decided), or None."""
        faces = self._comparable_faces(owner, person_id, model_version)[:MAX_HALF_FACES]
        if not faces:
            return None
        matrix = np.vstack([f["embedding"] for f in faces])
        stats = np.array([(f.get("cohort_mean"), f.get("cohort_std")) for f in faces], np.float64)
        confirmed = np.array([f.get("assigned_by") == USER for f in faces])
        askable = ~confirmed & np.array([person_id not in (f.get("skipped_for") or ()) for f in faces])
        found = doubtful_half(normalised_pair_scores(matrix, stats, matrix, stats), confirmed, askable)
        if found is None:
            return None
        half, chosen = found
        leaving = [f["face_id"] for f, inside, mine in zip(faces, half, confirmed) if inside and not mine]
        return faces[chosen]["face_id"], faces[chosen]["photo_id"], leaving

    def suggestions(self, user: User, person_id: str, limit: int) -> dict:
        """ "Is this <name>?": the questions whose answers change the most, in the order chosen on
        the calibration identities (``benchmarks.simulated_owner``). First the half question, when
        the person's faces fall in two halves and one holds no confirmed face (``kind: half``, with
        the half's other faces a "no" takes out, ``with_faces``); then, in turn, the person's own
        grouped faces that fit it least (``kind: member``) and faces outside it that match its faces,
        best first, one per photo (``kind: candidate``) — members first after an even number of
        answers. A face answered or skipped for the person is never asked again."""
        person = self._owned(user, person_id)
        model_version = self.served_model()["model_version"]
        out: list[tuple] = []
        half = self.half_question(user.sub, person_id, model_version)
        if half is not None:
            out.append((half[0], half[1], None, "half", len(half[2]) - 1))
        if len(out) < limit:  # the album's queue asks one question a person: often the half's
            members = [
                (face_id, photo_id, None, "member", None)
                for face_id, photo_id, _ in self.doubtful_members(user, person_id, model_version)
                if face_id not in {q[0] for q in out}
            ]
            candidates = self._candidate_questions(user, person_id, limit)
            turns = [members, candidates] if person.get("answers", 0) % 2 == 0 else [candidates, members]
            for first, second in zip_longest(*turns):
                out += [q for q in (first, second) if q is not None]
            out = out[:limit]
        shown = self._present_faces(user, [q[:3] for q in out])
        extra = {q[0]: {"kind": q[3], **({"with_faces": q[4]} if q[3] == "half" else {})} for q in out}
        return {"suggestions": [dict(row, **extra[row["face_id"]]) for row in shown]}

    def _candidate_questions(self, user: User, person_id: str, limit: int) -> list[tuple]:
        """Up to ``limit`` candidates to ask about, one per photo, none in a photo the person is in."""
        out: list[tuple] = []
        seen: set[str] = set()
        for face_id, photo_id, score, _ in self.candidates(user, person_id):
            if len(out) == limit:
                break
            if photo_id in seen or self._photo_has_other_face_in(
                user.sub, {"face_id": face_id, "photo_id": photo_id}, person_id
            ):
                continue
            seen.add(photo_id)
            out.append((face_id, photo_id, score, "candidate", None))
        return out

    def album_questions(self, user: User, limit: int) -> dict:
        """The album's next questions: the first question of each of its ``QUESTION_PEOPLE`` biggest
        people (hidden ones left out), the people the user confirmed least first, then the biggest."""
        people = self.people_store.page(user.sub, 0, QUESTION_PEOPLE, include_hidden=False)
        people.sort(key=lambda p: (p.get("confirmed_count", 0), -p.get("photo_count", 0)))
        out = []
        for person in people:
            first = self.suggestions(user, person["person_id"], 1)["suggestions"]
            out += [dict(q, person={"person_id": person["person_id"], "name": person.get("name")}) for q in first]
            if len(out) == limit:
                break
        return {"questions": out}

    def answer(self, user: User, person_id: str, answers: list[Answer]) -> dict:
        """Bulk answers to "Is this <name>?", each a confirmation, a rejection or a skip. A face taken
        out of the person joins the person its neighbours vote for, if any (``PeopleAware.vote``):
        the answer is learnt at once, with no regrouping. Each answer says where its face is now."""
        before = self._owned(user, person_id).get("photo_count", 0)
        self.people_store.count_answers(user.sub, person_id, len(answers))
        done: list[dict] = []
        for a in answers:
            face = self._owned_face(user, a.face_id)
            if a.accept is None:
                self.people_store.skip(user.sub, a.face_id, person_id)
                done.append({"face_id": a.face_id, "result": "skipped", "person_id": face.get("person_id")})
                continue
            if a.accept:
                if self._photo_has_other_face_in(user.sub, face, person_id):
                    done.append({"face_id": a.face_id, "result": "same_photo", "person_id": face.get("person_id")})
                    continue
                elsewhere = face.get("person_id") if face.get("person_id") != person_id else None
                self.people_store.set_by_user(user.sub, a.face_id, person_id, elsewhere)
                self.people_store.refresh(user.sub, [face.get("person_id"), person_id])
                done.append({"face_id": a.face_id, "result": "confirmed", "person_id": person_id})
            else:
                now = face.get("person_id")
                moved = self._move_half(user.sub, face, person_id) if now == person_id else None
                if moved is not None:
                    target, others = moved
                    done.append({"face_id": a.face_id, "result": "rejected", "person_id": target, "with_faces": others})
                    continue
                if now == person_id:
                    self.people_store.set_by_user(user.sub, a.face_id, None, person_id)
                    self.people_store.refresh(user.sub, [person_id])
                    now = self._revote(user.sub, face)
                else:
                    self.people_store.reject(user.sub, a.face_id, person_id)
                done.append({"face_id": a.face_id, "result": "rejected", "person_id": now})
        person = self.get_person(user, person_id)
        return {"answers": done, "person": person, "photos_before": before}

    def _move_half(self, owner: str, face: Face, person_id: str) -> tuple[str, int] | None:
        """A "no" to the face that stands for the person's doubtful half (its half question, asked
        now): the half's faces the user has not decided leave together, as a new person, each
        rejected from this one. (The new person, how many faces went with the face), or None when
        the face is not that question's."""
        try:
            model_version = self.served_model()["model_version"]
        except Unavailable:
            return None
        half = self.half_question(owner, person_id, model_version)
        if half is None or half[0] != face["face_id"]:
            return None
        target = self.people_store.create(owner)["person_id"]
        moved = self.people_store.move_out(owner, half[2], person_id, target)
        self.people_store.refresh(owner, [person_id, target])
        return target, max(0, moved - 1)

    def _revote(self, owner: str, face: Face) -> str | None:
        """The face's person after its photo's undecided faces are assigned again (None when the
        face endpoint cannot say which bundle is served: the next regrouping places it)."""
        try:
            model_version, params = self._served()
        except Unavailable:
            return None
        if face.get("model_version") == model_version:
            self.assign_photo(owner, face["photo_id"], model_version, params)
        return (self.people_store.face(owner, face["face_id"]) or {}).get("person_id")

    def search_by_person(self, user: User, person_id: str, offset: int, limit: int) -> dict:
        """The person's photos (``member``), then photos not in it that match its faces above the
        search threshold (``suggested``), best first: faces of no other person (the people compete,
        as in Find: ``people_aware``)."""
        faces = self.people_store.faces_of(user.sub, self._owned(user, person_id)["person_id"])
        members: dict[str, Face | None] = {}
        for f in sorted(faces, key=lambda f: f.get("assigned_by") != USER):
            members.setdefault(f["photo_id"], f)
        ranked = [(pid, f["face_id"], None, "member") for pid, f in members.items() if f]
        ranked.sort(key=lambda r: r[0])
        for face_id, photo_id, score, elsewhere in self.candidates(user, person_id):
            if photo_id not in members and elsewhere is None:
                members[photo_id] = None
                ranked.append((photo_id, face_id, score, "suggested"))
        page = ranked[offset : offset + limit]
        shown = self._present_faces(user, [(face_id, photo_id, score) for photo_id, face_id, score, _ in page])
        for row, (_, _, _, kind) in zip(shown, page):
            row["match"] = kind
        return {
            "results": shown,
            "total": len(ranked),
            "next": offset + limit if offset + limit < len(ranked) else None,
        }

    def _present_faces(self, user: User, items) -> list:
        if not items:
            return []
        photos = self.photo_store.photos_by_id(user.sub, [photo_id for _, photo_id, _ in items])
        boxes = self.photo_store.face_boxes(user.sub, [face_id for face_id, _, _ in items])
        out = []
        for face_id, photo_id, score in items:
            photo = photos.get(photo_id)
            if photo is None:
                continue
            out.append(
                {
                    "face_id": face_id,
                    "photo_id": photo_id,
                    "box": boxes.get(face_id),
                    "score": None if score is None else round(float(score), 4),
                    "photo_width": photo.get("width"),
                    "photo_height": photo.get("height"),
                    "thumbnail_url": self.views.thumbnail_url(photo),
                    "url": self.views.url(photo),
                }
            )
        return out


def _grouping_matrix(rows: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    """The faces' vectors and cohort statistics (mean, std; NaN where missing) as matrices."""
    vectors = np.vstack([r["embedding"] for r in rows])
    stats = np.array([(r.get("cohort_mean"), r.get("cohort_std")) for r in rows], dtype=np.float64)
    return vectors, stats


def _undecided_and_unassigned(rows: list[Face]) -> list[Face]:
    """The faces in no person that the user has not decided."""
    return [r for r in rows if not r.get("person_id") and r.get("assigned_by") != USER]
