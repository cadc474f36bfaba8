"""People in MongoDB: the ``people`` collection and the person fields of each face.

A face's person fields: ``person_id`` (None: unassigned), ``assigned_by`` ("user" when the user
confirmed or moved it, "auto" when the algorithm put it there) and ``rejected_from`` (persons the
user said it is not). The algorithm writes only with a condition that the face is not the
user's and was not rejected from the person, so a correction made while a job runs is never
overwritten. A person's counts and cover are recomputed from its faces (``refresh``), never
incremented, so concurrent changes converge. Every query is scoped by ``owner``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import cast

from pymongo import ASCENDING, DESCENDING

from chalicelib.clock import now_ms
from chalicelib.records import Face, Person
from chalicelib.shared.boxes import box_iou
from chalicelib.stores.photo_store import binary_to_vector

_NO_ID = {"_id": 0}
USER, AUTO = "user", "auto"
DECISIONS = ("person_id", "assigned_by", "rejected_from", "skipped_for")
SAME_FACE_IOU = 0.5


class PeopleStore:
    """People, their faces' assignments, merges and regrouping requests in MongoDB."""

    def __init__(self, database):
        self.people = database["people"]
        self.faces = database["faces"]
        self.regroup_requests = database["people_jobs"]  # per user: the newest regrouping request's token
        self.merges = database["people_merges"]  # what a recent merge changed, so the user can undo it

    def ensure_indexes(self) -> None:
        """The indexes people's queries need."""
        self.people.create_index([("person_id", ASCENDING), ("owner", ASCENDING)], unique=True)
        self.people.create_index([("owner", ASCENDING), ("face_count", ASCENDING)])
        self.faces.create_index([("person_id", ASCENDING), ("owner", ASCENDING)])

    # Regrouping requests (``people_jobs``) ---------------------------------------------
    def request_regroup(self, owner: str, token: str, new_faces: list[str] | None = None) -> None:
        """Record ``token`` as the owner's latest regrouping request: a full regrouping, or (with
        ``new_faces``) one of the faces indexing left unassigned, added to those still waiting."""
        update: dict = {"$set": {"owner": owner, "token": token, "requested_at": now_ms()}}
        if new_faces is None:
            update["$set"]["full"] = True
        else:
            update["$addToSet"] = {"new_faces": {"$each": list(new_faces)}}
        self.regroup_requests.update_one({"_id": owner}, update, upsert=True)

    def regroup_request(self, owner: str) -> dict | None:
        """The owner's latest regrouping request: its token, ``full``, the ``new_faces`` waiting."""
        return self.regroup_requests.find_one({"_id": owner})

    def regroup_token(self, owner: str) -> str | None:
        """The owner's latest regrouping request, if any."""
        current = self.regroup_requests.find_one({"_id": owner})
        return current.get("token") if current else None

    def clear_regroup_request(self, owner: str, token: str) -> None:
        """Only this request's record: one made meanwhile keeps its own message."""
        self.regroup_requests.delete_one({"_id": owner, "token": token})

    # People ---------------------------------------------------------------------
    def create(self, owner: str, name: str | None = None) -> Person:
        """A new person of the owner's, without faces yet."""
        now = now_ms()
        doc: Person = {
            "owner": owner,
            "person_id": uuid.uuid4().hex,
            "name": name,
            "hidden": False,
            "face_count": 0,
            "photo_count": 0,
            "cover_face_id": None,
            "cover_photo_id": None,
            "created_at": now,
            "updated_at": now,
        }
        self.people.insert_one(dict(doc))
        return doc

    def get(self, owner: str, person_id: str) -> Person | None:
        """One of the owner's people."""
        return self.people.find_one({"person_id": person_id, "owner": owner}, _NO_ID)

    def page(self, owner: str, offset: int, limit: int, include_hidden: bool) -> list[Person]:
        """Biggest first (then oldest), empty unnamed people left out."""
        query: dict = {"owner": owner, "$or": [{"face_count": {"$gt": 0}}, {"name": {"$ne": None}}]}
        if not include_hidden:
            query["hidden"] = False
        cursor = self.people.find(query, _NO_ID).sort([("face_count", DESCENDING), ("created_at", ASCENDING)])
        return list(cursor.skip(offset).limit(limit))

    def ids(self, owner: str) -> set[str]:
        """The ids of the owner's people."""
        return {p["person_id"] for p in self.people.find({"owner": owner}, {"_id": 0, "person_id": 1})}

    def update(self, owner: str, person_id: str, fields: dict) -> bool:
        """Set fields of a person; False if there is no such person."""
        result = self.people.update_one(
            {"person_id": person_id, "owner": owner}, {"$set": dict(fields, updated_at=now_ms())}
        )
        return result.matched_count == 1

    def delete(self, owner: str, person_id: str) -> bool:
        """The grouping goes, the faces stay (unassigned); rejections of it stay recorded."""
        found = self.people.delete_one({"person_id": person_id, "owner": owner}).deleted_count == 1
        self.faces.update_many(
            {"person_id": person_id, "owner": owner}, {"$set": {"person_id": None, "assigned_by": None}}
        )
        return found

    def remove(self, owner: str, person_id: str) -> None:
        """The record only (a merged person, whose faces have moved)."""
        self.people.delete_one({"person_id": person_id, "owner": owner})

    def delete_owner(self, owner: str) -> int:
        """Forget every person of the owner's; how many there were."""
        self.regroup_requests.delete_many({"_id": owner})
        self.merges.delete_many({"owner": owner})
        return self.people.delete_many({"owner": owner}).deleted_count

    def refresh(self, owner: str, person_ids: Iterable[str | None]) -> None:
        """Recompute the counts and the cover of each person from its faces; a person whose faces
        all left and that has no name is removed."""
        for person_id in {p for p in person_ids if p}:
            faces = list(
                self.faces.find(
                    {"person_id": person_id, "owner": owner},
                    {"_id": 0, "face_id": 1, "photo_id": 1, "assigned_by": 1, "score": 1, "box": 1},
                )
            )
            person = self.get(owner, person_id)
            if person is None:
                continue
            if not faces and not person.get("name"):
                self.people.delete_one({"person_id": person_id, "face_count": person["face_count"], "owner": owner})
                continue
            ids = {f["face_id"] for f in faces}
            cover = person.get("cover_face_id") if person.get("cover_face_id") in ids else None
            if cover is None and faces:
                # Prefer what the user confirmed, then the largest face, then the most confident.
                best = max(faces, key=lambda f: (f.get("assigned_by") == USER, _area(f.get("box")), f.get("score", 0)))
                cover = best["face_id"]
            cover_photo = next((f["photo_id"] for f in faces if f["face_id"] == cover), None)
            self.people.update_one(
                {"person_id": person_id, "owner": owner},
                {
                    "$set": {
                        "face_count": len(faces),
                        "photo_count": len({f["photo_id"] for f in faces}),
                        "confirmed_count": sum(1 for f in faces if f.get("assigned_by") == USER),
                        "cover_face_id": cover,
                        "cover_photo_id": cover_photo,
                    }
                },
            )

    # Faces' person fields ----------------------------------------------------------
    def face(self, owner: str, face_id: str) -> Face | None:
        """One face of the owner's, without its vector."""
        return self.faces.find_one({"face_id": face_id, "owner": owner}, {"_id": 0, "embedding": 0})

    def faces_of(self, owner: str, person_id: str, with_vectors: bool = False) -> list[Face]:
        """A person's faces, with their vectors as float32 arrays only if asked."""
        query = {"person_id": person_id, "owner": owner}
        if not with_vectors:
            return list(self.faces.find(query, {"_id": 0, "embedding": 0}))
        faces = list(self.faces.find(query, {"_id": 0}))
        for face in faces:
            face["embedding"] = binary_to_vector(face["embedding"])
        return faces

    def photo_ids_of(self, owner: str, person_id: str) -> set[str]:
        """The photos a person is in."""
        rows = self.faces.find({"person_id": person_id, "owner": owner}, {"_id": 0, "photo_id": 1})
        return {r["photo_id"] for r in rows}

    def carry_decisions(self, owner: str, photo_id: str, faces: list[Face]) -> list[Face]:
        """The photo's new faces (indexed again, maybe by a new bundle, maybe in another order),
        each with the person fields of the stored face it overlaps most (IoU ≥ 0.5, one to one):
        a face keeps its person, confirmation and rejections across a reindex."""
        old = list(
            self.faces.find({"photo_id": photo_id, "owner": owner}, {"_id": 0, "box": 1, **dict.fromkeys(DECISIONS, 1)})
        )
        pairs = sorted(
            ((box_iou(o["box"], f["box"]), i, j) for i, o in enumerate(old) for j, f in enumerate(faces)), reverse=True
        )
        carried = [f.copy() for f in faces]
        used_old, used_new = set(), set()
        for overlap, i, j in pairs:
            if overlap < SAME_FACE_IOU:
                break
            if i in used_old or j in used_new:
                continue
            used_old.add(i)
            used_new.add(j)
            carried[j].update(cast(Face, {k: old[i][k] for k in DECISIONS if old[i].get(k) is not None}))
        return carried

    def decisions(self, owner: str, face_ids: list[str]) -> list[Face]:
        """The person fields of these faces."""
        projection = {"_id": 0, "face_id": 1, "person_id": 1, "assigned_by": 1, "rejected_from": 1, "skipped_for": 1}
        return list(self.faces.find({"face_id": {"$in": face_ids}, "owner": owner}, projection))

    def reject(self, owner: str, face_id: str, person_id: str) -> None:
        """Remember that the face is not this person's (never assigned to them again)."""
        self.faces.update_one({"face_id": face_id, "owner": owner}, {"$addToSet": {"rejected_from": person_id}})

    def skip(self, owner: str, face_id: str, person_id: str) -> None:
        """The user skipped "Is this <person>?" for the face: it is not asked again."""
        self.faces.update_one({"face_id": face_id, "owner": owner}, {"$addToSet": {"skipped_for": person_id}})

    def set_by_user(self, owner: str, face_id: str, person_id: str | None, rejected: str | None) -> bool:
        """The user's word on one face: its person (or none), and a person it is not."""
        update: dict = {"$set": {"person_id": person_id, "assigned_by": USER if person_id else None}}
        if rejected:
            update["$addToSet"] = {"rejected_from": rejected}
        return self.faces.update_one({"face_id": face_id, "owner": owner}, update).matched_count == 1

    def set_by_algorithm(self, owner: str, face_id: str, person_id: str | None) -> bool:
        """Only a face the user has not decided, and never into a person it was rejected from."""
        query: dict = {"face_id": face_id, "assigned_by": {"$ne": USER}, "owner": owner}
        if person_id:
            query["rejected_from"] = {"$ne": person_id}
        update = {"$set": {"person_id": person_id, "assigned_by": AUTO if person_id else None}}
        return self.faces.update_one(query, update).matched_count == 1

    def move_out(self, owner: str, face_ids: list[str], source: str, target: str) -> int:
        """The user's "no" to a half of ``source``: its faces the user has not decided leave it for
        ``target`` (as the algorithm's, so a regrouping may place them again, never back into
        ``source``: each is rejected from it). How many moved."""
        query = {"face_id": {"$in": face_ids}, "person_id": source, "assigned_by": {"$ne": USER}, "owner": owner}
        update = {"$set": {"person_id": target, "assigned_by": AUTO}, "$addToSet": {"rejected_from": source}}
        return self.faces.update_many(query, update).modified_count

    def count_answers(self, owner: str, person_id: str, answers: int) -> None:
        """Answers the user gave about the person: the parity decides which kind of question is
        asked next (``People.suggestions``)."""
        self.people.update_one({"person_id": person_id, "owner": owner}, {"$inc": {"answers": answers}})

    def merge_into(self, owner: str, source: str, target: str) -> None:
        """Merge is the user's word that both are one person: ``source``'s faces join ``target``, and
        every face of both counts as confirmed (a regrouping never splits them again) and none is
        rejected from ``target`` any more (the latest word wins); a face rejected from ``source`` is
        rejected from ``target`` too."""
        self.faces.update_many({"person_id": source, "owner": owner}, {"$set": {"person_id": target}})
        self.faces.update_many(
            {"person_id": target, "owner": owner}, {"$set": {"assigned_by": USER}, "$pull": {"rejected_from": target}}
        )
        self.faces.update_many({"owner": owner, "rejected_from": source}, {"$addToSet": {"rejected_from": target}})

    # Undoing a merge (``people_merges``) -----------------------------------------------
    def keep_merge(self, owner: str, target: str, sources: list[str]) -> str:
        """Before a merge: the people's records and the decisions of every face the merge touches
        (the faces of all, and those rejected from any), kept under a new merge id."""
        ids = [target, *sources]
        faces: dict[str, dict] = {}
        fields = {"_id": 0, "face_id": 1, "person_id": 1, "assigned_by": 1, "rejected_from": 1}
        for person_id in ids:
            for query in ({"person_id": person_id}, {"rejected_from": person_id}):
                for face in self.faces.find({**query, "owner": owner}, fields):
                    faces[face["face_id"]] = face
        merge_id = uuid.uuid4().hex
        self.merges.insert_one(
            {
                "_id": merge_id,
                "owner": owner,
                "made_at": now_ms(),
                "people": [p for p in (self.get(owner, p) for p in ids) if p],  # the target's name may change too
                "faces": list(faces.values()),
            }
        )
        return merge_id

    def take_merge(self, owner: str, merge_id: str, made_after) -> dict | None:
        """The kept merge if it was made after ``made_after``, removed (an undo happens once)."""
        query = {"_id": merge_id, "owner": owner, "made_at": {"$gte": made_after}}
        kept = self.merges.find_one(query)
        if kept is None or self.merges.delete_one(query).deleted_count != 1:
            return None
        return kept

    def drop_merges_before(self, owner: str, cutoff) -> None:
        """Forget merges made before ``cutoff`` (a regrouping has taken them in)."""
        self.merges.delete_many({"owner": owner, "made_at": {"$lt": cutoff}})

    def restore_merge(self, owner: str, kept: dict) -> list[str]:
        """The sources again, and every face's decisions as they were before the merge (faces
        deleted since stay deleted). Faces of one decision are restored together."""
        for person in kept["people"]:
            if self.get(owner, person["person_id"]) is None:
                self.people.insert_one(dict(person))
            else:
                fields = {"name": person.get("name"), "hidden": person.get("hidden", False)}
                self.people.update_one({"person_id": person["person_id"], "owner": owner}, {"$set": fields})
        groups: dict[tuple, list[str]] = {}
        for face in kept["faces"]:
            key = (face.get("person_id"), face.get("assigned_by"), tuple(face.get("rejected_from") or ()))
            groups.setdefault(key, []).append(face["face_id"])
        for (person_id, assigned_by, rejected), face_ids in groups.items():
            update = {"person_id": person_id, "assigned_by": assigned_by, "rejected_from": list(rejected)}
            self.faces.update_many({"face_id": {"$in": face_ids}, "owner": owner}, {"$set": update})
        return [p["person_id"] for p in kept["people"]]

    def face_count(self, owner: str, model_version: str) -> int:
        """How many faces of one model version the owner has."""
        return self.faces.count_documents({"owner": owner, "model_version": model_version})

    def grouping_input(self, owner: str, model_version: str, face_ids: list[str] | None = None) -> list[Face]:
        """Every face of one model version (or those of ``face_ids``) with what grouping needs:
        vector, cohort statistics, photo, person fields."""
        projection = {
            "_id": 0,
            "face_id": 1,
            "photo_id": 1,
            "embedding": 1,
            "cohort_mean": 1,
            "cohort_std": 1,
            "person_id": 1,
            "assigned_by": 1,
            "rejected_from": 1,
        }
        query: dict = {"owner": owner, "model_version": model_version}
        if face_ids is not None:
            query["face_id"] = {"$in": face_ids}
        rows = list(self.faces.find(query, projection))
        for row in rows:
            row["embedding"] = binary_to_vector(row["embedding"])
        return rows


def _area(box) -> float:
    return float(box[2]) * float(box[3]) if box and len(box) == 4 else 0.0
