"""People-aware decisions: when a search key is a person of the album, the person answers, not
the one face. A family album's look-alikes are mostly its own other people, who are known.

- **The key's person.** An album face's own person; a face from outside the album (a key photo)
  joins the person its nearest album faces vote for, by the rule assignment on indexing uses
  (``vote``): the mean normalised score of its neighbours in that person reaches the bundle's
  grouping threshold. Nobody known: the key's own decision alone, as before.
- **The people compete** (``compete``): a face the grouping or the user put in *another* person
  belongs to that person, and a face the user rejected from this person is not it; neither is a
  result for this person, however close it is to the key. A key face of nobody that the user
  rejected from people finds none of their faces.
- **The person's faces count** (``members``): every photo of the person is a result, ``confirmed``
  where the user said so, ``same_person`` where the grouping did.

Find (``face_search``), search by person and assignment on indexing (``people``) all decide
through here, so the three never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from chalicelib.grouping import GroupingParams
from chalicelib.records import Face
from chalicelib.shared.score_norm import KeyNormalisation
from chalicelib.stores.people_store import USER, PeopleStore
from chalicelib.stores.photo_store import PhotoStore
from chalicelib.stores.vector_index import Hit, VectorIndex

NO_RAW_FLOOR = -1.0  # a vote judges by the normalised score alone
CONFIRMED, SAME_PERSON = "confirmed", "same_person"  # the ``match`` of a person's own photos


@dataclass(frozen=True)
class KeyPerson:
    """The album's person a search key is, and how that was known."""

    person_id: str
    name: str | None
    how: str  # "album_face": the key is one of the person's faces; "matched": its neighbours voted
    members: dict  # photo_id → the person's face in it, with its vector (a confirmed one first)

    def present(self) -> dict:
        """The person as a search answer names them."""
        return {"person_id": self.person_id, "name": self.name, "how": self.how}


class PeopleAware:
    """Find that knows the album's people: the key's person answers for its faces."""

    def __init__(self, photo_store: PhotoStore, people_store: PeopleStore, index: VectorIndex):
        self.photo_store, self.people_store, self.index = photo_store, people_store, index

    def vote(
        self,
        owner: str,
        model_version: str,
        vector,
        cohort: tuple,
        params: GroupingParams,
        skip_face: str | None = None,
        skip_photo: str | None = None,
        excluded: frozenset | set = frozenset(),
    ) -> str | None:
        """The person the face's ``params.k`` nearest album faces (other photos than
        ``skip_photo``) link it to best, if that link reaches the grouping threshold; persons in
        ``excluded`` never."""
        mean, std = cohort
        if mean is None or std is None:
            return None
        key = KeyNormalisation(float(mean), float(std), params.threshold)
        hits = self.index.nearest(owner, model_version, vector, params.k + 1, NO_RAW_FLOOR, key)
        hits = [h for h in hits if h[0] != skip_face and h[1] != skip_photo][: params.k]
        if not hits:
            return None
        people = {f["face_id"]: f.get("person_id") for f in self.people_store.decisions(owner, [h[0] for h in hits])}
        links: dict[str, list] = defaultdict(list)
        for face_id, _, _, score in hits:
            person = people.get(face_id)
            if person:
                links[person].append(score)
        ranked = sorted(links.items(), key=lambda item: -float(np.mean(item[1])))
        for person, scores in ranked:
            if person not in excluded and float(np.mean(scores)) >= params.threshold:
                return person
        return None

    def key_person(self, owner: str, person_id: str | None, how: str) -> KeyPerson | None:
        """The person with its photos, or None (no person, or it is gone)."""
        person = self.people_store.get(owner, person_id) if person_id else None
        if person is None or person_id is None:
            return None
        members: dict[str, Face] = {}
        faces = self.people_store.faces_of(owner, person_id, with_vectors=True)  # ``members`` scores them
        for face in sorted(faces, key=lambda f: f.get("assigned_by") != USER):
            members.setdefault(face["photo_id"], face)
        return KeyPerson(person["person_id"], person.get("name"), how, members)

    def decisions_of(self, owner: str, hits: list[Hit]) -> dict[str, Face]:
        """face_id → the person fields of each hit's face: read once for all the lists a search
        answers (its results and the faces just below its decision)."""
        return {r["face_id"]: r for r in self.people_store.decisions(owner, list({h[0] for h in hits}))}

    def compete(
        self,
        owner: str,
        hits: list[Hit],
        person_id: str | None,
        not_people: frozenset = frozenset(),
        rows: dict[str, Face] | None = None,
    ) -> list[Hit]:
        """``hits`` without the faces of other people than ``person_id`` and those rejected from it
        (with ``person_id`` None: without the faces of the people in ``not_people``, those the key
        face was rejected from). ``rows``: ``decisions_of`` the hits, when already read."""
        if not hits or (person_id is None and not not_people):
            return hits
        if rows is None:
            rows = self.decisions_of(owner, hits)
        kept = []
        for hit in hits:
            row = rows.get(hit[0], {})
            held_by = row.get("person_id")
            if person_id is not None and (
                held_by not in (None, person_id) or person_id in (row.get("rejected_from") or ())
            ):
                continue
            if held_by in not_people:
                continue
            kept.append(hit)
        return kept

    def members(
        self, owner: str, key: KeyPerson, model_version: str, vector, key_norm: KeyNormalisation | None
    ) -> dict:
        """photo_id → (face_id, cosine, score, match) of each of the person's photos indexed with
        ``model_version``, scored against the key as search scores them (-inf where a face has no
        cohort statistics)."""
        query = np.asarray(vector, np.float32)
        out = {}
        for face in key.members.values():
            found = face.get("embedding")
            if face.get("model_version") != model_version or found is None or found.shape != query.shape:
                continue
            similarity = float(found @ query)
            score = similarity
            if key_norm is not None:
                stats = (face.get("cohort_mean"), face.get("cohort_std"))
                score = -np.inf if None in stats else float(key_norm.scores(np.array([similarity]), *stats)[0])
            match = CONFIRMED if face.get("assigned_by") == USER else SAME_PERSON
            out[face["photo_id"]] = (face["face_id"], similarity, score, match)
        return out
