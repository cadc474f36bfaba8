"""A simulated owner: answers the app's own questions ("Is this Ji-eun?") with the truth, a few per
person, and how Find, search by person and the grouping improve with them.

The album is ``benchmarks.search_quality``'s (every labelled photo of every source plus the group
photos' faces as unlabelled distractors), its people what regrouping finds with the bundle's grouping
calibration. For each person, in turn, the owner is asked the app's next question and answers it with
the person's majority identity as the truth, as ``chalicelib.people`` takes answers:

- the questions, as ``chalicelib.people.People.suggestions`` asks them: the person's half question
  first (``grouping.doubtful_half``), then its grouped (not confirmed) faces that fit it least (the
  lowest mean normalised score to its 3 closest other faces) and faces not in it that match its faces
  (``People.candidates``), best first, in the order ``--order`` names (the product alternates);
- "yes" confirms the face into the person; "no" to the half question takes the half's unconfirmed
  faces out together, as a new person, each rejected from this one; "no" to another grouped face
  takes it out, rejects it, and lets its neighbours vote it into another person
  (``PeopleAware.vote``, the rule new faces join people by); "no" to a face outside the person
  rejects it from the person.

Then Find (``chalicelib.people_aware``: each album face with ≥ 2 other photos of its identity as the
key) and search by person are judged as ``benchmarks.search_quality`` and ``benchmarks.people_quality``
judge them, and the grouping by BCubed, after 0, 5, 10 and 20 answers per person.

Which order the product asks in is chosen here on the calibration identities only: the two
``calibration.fold_albums`` (each fold an album judged against a cohort of the other fold's faces),
best worse-fold Find F1 after 5 answers per person. Held-out identities are reported, never chosen on.

    .venv/bin/python -m benchmarks.simulated_owner   → benchmarks/results/simulated_owner.json

The answers are applied by this module's mirror of the product's rules (numpy over the album's
vectors), not through the API: the people routes are tested end to end in ``tests/test_people.py``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import numpy as np

from benchmarks.common import cpu_engine, majority, write_results
from benchmarks.search_quality import (
    EAST_ASIAN,
    Album,
    album_people,
    cached_album,
    expanded,
    search_rows,
    summarise,
    voted_person,
)
from chalicelib.grouping import GroupingParams, doubtful_half, normalised_pair_scores
from model_factory import calibration
from model_factory.build_bundle import COHORT_SOURCES

ANSWERS = (0, 5, 10, 20)
ORDERS = ("members_first", "candidates_first", "alternate")
SUPPORT_NEIGHBOURS = 3  # as chalicelib.people: a grouped face's fit is its mean score to this many of the person
MAX_KEY_FACES = 30  # as chalicelib.people: a person's faces used as search keys (confirmed first)


@dataclass
class Owner:
    """The album's people as the owner's answers leave them."""

    labels: np.ndarray  # person per face (album photos, then distractors); -1 for nobody
    confirmed: np.ndarray  # faces the owner said yes to
    rejected: list = field(default_factory=list)  # per face: the persons it is not
    answers: int = 0


class Simulation:
    """The product's people rules over an album's vectors, and an owner who answers with the truth."""

    ask_halves = True  # ``People.half_question``: asked before the person's other questions

    def __init__(self, album: Album, norm: dict, grouping: GroupingParams):
        self.album, self.norm, self.grouping = album, norm, grouping
        vectors = np.vstack([album.vectors, album.groups])
        stats = np.vstack([album.stats, album.group_stats])
        self.scores = normalised_pair_scores(vectors, stats, vectors, stats)
        np.fill_diagonal(self.scores, -np.inf)
        self.raw = vectors @ vectors.T
        self.identities = np.concatenate([album.identities, np.full(len(album.groups), "")])
        self.people = album_people(album, grouping)
        self.keys = np.nonzero(album.is_key)[0]
        self.ranking, self.group_ranking, passing = expanded(album, self.keys, norm)
        self.verdicts = np.hstack(passing)  # the key's own decision (served search), per key

    # The owner ---------------------------------------------------------------------
    def answered(self, per_person: int, order: str) -> Owner:
        owner = Owner(self.people.copy(), np.zeros(len(self.people), bool), [set() for _ in self.people])
        for person in range(int(self.people.max()) + 1):
            for step in range(per_person):
                question = self.next_question(owner, person, order, step)
                if question is None:
                    break
                self.answer(owner, person, *question)
        return owner

    def next_question(self, owner: Owner, person: int, order: str, step: int):
        members = np.nonzero(owner.labels == person)[0]
        if len(members) == 0:
            return None
        if self.ask_halves and (half := self.half_question(owner, members)) is not None:
            return ("half", int(members[half[1]]))
        doubtful = self.doubtful_members(owner, members)
        candidates = self.candidates(owner, person, members)
        first, second = (doubtful, candidates) if order == "members_first" else (candidates, doubtful)
        if order == "alternate" and step % 2 == 0:
            first, second = doubtful, candidates
        chosen = first[:1] or second[:1]
        return chosen[0] if chosen else None

    def half_question(self, owner: Owner, members: np.ndarray):
        """``grouping.doubtful_half`` of the person (``People.half_question``)."""
        scores = self.scores[np.ix_(members, members)]
        return doubtful_half(scores, owner.confirmed[members], ~owner.confirmed[members])

    def doubtful_members(self, owner: Owner, members: np.ndarray) -> list:
        """("member", face) of the person's grouped faces, the least fitting first."""
        if len(members) < 2:
            return []
        fits = []
        for face in members[~owner.confirmed[members]]:
            others = self.scores[face, members[members != face]]
            fits.append((float(np.sort(others)[::-1][:SUPPORT_NEIGHBOURS].mean()), int(face)))
        return [("member", face) for _, face in sorted(fits)]

    def candidates(self, owner: Owner, person: int, members: np.ndarray) -> list:
        """("candidate", face) of faces matching the person's key faces, best first: not in it, not
        rejected from it, not confirmed elsewhere (``People.candidates``)."""
        best = self.person_scores(owner, members)
        best[members] = -np.inf
        best[owner.confirmed] = -np.inf
        keeps = self.person_keeps(owner, person)
        if keeps is not None:
            best[~keeps] = -np.inf
        eligible = [int(f) for f in np.argsort(-best) if np.isfinite(best[f])]
        return [("candidate", f) for f in eligible if person not in owner.rejected[f]]

    def person_scores(self, owner: Owner, members: np.ndarray) -> np.ndarray:
        """Each face's best normalised score against the person's key faces (confirmed first) that
        passes the search decision; -inf where none does."""
        keys = sorted(members, key=lambda f: not owner.confirmed[f])[:MAX_KEY_FACES]
        passing = (self.raw[keys] >= self.norm["raw_floor"]) & (self.scores[keys] >= self.norm["threshold"])
        return np.where(passing, self.scores[keys], -np.inf).max(axis=0)

    def person_keeps(self, owner: Owner, person: int) -> np.ndarray | None:
        """Which faces outside the person its own decision still allows (None: all); the product
        has no per-person decision (``benchmarks.person_decisions`` tries some)."""
        return None

    def answer(self, owner: Owner, person: int, kind: str, face: int) -> None:
        members = np.nonzero(owner.labels == person)[0]
        named = [self.identities[i] for i in members if self.identities[i]]
        truth = majority(named) if named else None
        owner.answers += 1
        if truth is not None and self.identities[face] == truth:
            owner.labels[face], owner.confirmed[face] = person, True
            return
        if kind == "half" and (half := self.half_question(owner, members)) is not None and members[half[1]] == face:
            leaving = members[half[0] & ~owner.confirmed[members]]
            owner.labels[leaving] = int(owner.labels.max()) + 1  # a person of their own
            for f in leaving:
                owner.rejected[f].add(person)
            return
        owner.rejected[face].add(person)
        if kind in ("member", "half"):
            owner.labels[face] = self.vote(owner, face)

    def vote(self, owner: Owner, face: int) -> int:
        """``PeopleAware.vote``: the best mean score among its k nearest faces scoring ≥ the
        grouping threshold, persons it was rejected from left out; -1 for nobody."""
        scores = self.scores[face]
        near = [j for j in np.argsort(-scores)[: self.grouping.k] if scores[j] >= self.grouping.threshold]
        links: dict = {}
        for j in near:
            person = int(owner.labels[j])
            if person >= 0 and person not in owner.rejected[face]:
                links.setdefault(person, []).append(scores[j])
        return max(links, key=lambda p: float(np.mean(links[p]))) if links else -1

    # What the owner then sees ------------------------------------------------------
    def find(self, owner: Owner, key_photo: bool = False) -> list:
        """Per key, ``search_rows``'s row for people-aware Find with an album face as the key, or
        (``key_photo``) with that face as a new photo from outside the album, whose person is the
        one its nearest album faces vote for (``search_quality.voted_person``; the album's people
        are as the answers left them, the key's face among them, as ``people_aware_levers`` has it)."""
        n = len(self.album.vectors)
        verdicts = self.decided(owner, key_photo)
        decided = (verdicts[:, :n], verdicts[:, n:])
        return search_rows(self.ranking, self.group_ranking, self.album.identities, self.keys, 0.0, decided)

    def decided(self, owner: Owner, key_photo: bool = False) -> np.ndarray:
        """Per key (``find``), which faces Find returns."""
        verdicts = self.verdicts.copy()
        labels = owner.labels
        keeps: dict = {}
        for k, i in enumerate(self.keys):
            person = voted_person(self.album, labels, i, self.grouping) if key_photo else labels[i]
            if person < 0:  # nobody known: its own decision, but never a person it was rejected from
                if owner.rejected[i] and not key_photo:
                    verdicts[k] &= ~np.isin(labels, list(owner.rejected[i]))
                continue
            not_rejected = np.array([person not in r for r in owner.rejected])
            if person not in keeps:
                keeps[person] = self.person_keeps(owner, person)
            if keeps[person] is not None:
                not_rejected &= keeps[person]
            verdicts[k] = (verdicts[k] & (labels < 0) & not_rejected) | (labels == person)
        return verdicts

    def by_person(self, owner: Owner) -> list:
        """(person's majority identity, precision, recall) of search by person, per person."""
        out = []
        for person in range(int(owner.labels.max()) + 1):
            members = np.nonzero(owner.labels == person)[0]
            named = [self.identities[i] for i in members if self.identities[i]]
            if not named:
                continue
            truth = majority(named)
            others = (owner.labels >= 0) & (owner.labels != person)
            found = set(members.tolist()) | {f for _, f in self.candidates(owner, person, members) if not others[f]}
            relevant = set(np.nonzero(self.identities == truth)[0].tolist())
            out.append((truth, len(found & relevant) / len(found), len(found & relevant) / len(relevant)))
        return out


def sliced_find(album: Album, keys, rows, masks: dict) -> dict:
    return {name: summarise([r for r, k in zip(rows, keys) if mask[k]]) for name, mask in masks.items()}


def sliced_people(sim: Simulation, owner: Owner, masks: dict) -> dict:
    """Search by person (macro over people, by the slice of their majority identity) and BCubed."""
    photos = [f"single-{i}" for i in range(len(sim.album.vectors))]
    photos += [f"group-{p}" for p in sim.album.group_photo.tolist()]
    rows = sim.by_person(owner)
    out = {}
    for name, mask in masks.items():
        names = set(sim.album.identities[mask].tolist())
        chosen = [(p, r) for truth, p, r in rows if truth in names]
        face_mask = np.concatenate([mask, np.zeros(len(sim.album.groups), bool)])
        grouped = calibration.grouping_scores(owner.labels, sim.identities, photos, face_mask)
        out[name] = {
            "search_by_person": {
                "people": len(chosen),
                "precision": round(float(np.mean([p for p, _ in chosen])), 4) if chosen else None,
                "recall": round(float(np.mean([r for _, r in chosen])), 4) if chosen else None,
            },
            "grouping": {k: grouped[k] for k in ("bcubed_precision", "bcubed_recall", "bcubed_f1", "people_found")},
        }
    return out


def holdout_slices(album: Album) -> dict:
    held = ~album.calibration
    return {
        **{f"holdout_{s}": (album.sources == s) & held for s in EAST_ASIAN},
        "holdout_east_asian": album.east_asian & held,
        "holdout_rest": ~album.east_asian & held,
        "holdout_all": held,
    }


def calibration_folds(album: Album, top_n: int) -> list:
    """The calibration identities' two ``fold_albums`` as albums of their own (no distractors)."""
    cal = album.calibration
    vectors, identities = album.vectors[cal], album.identities[cal]
    in_cohort = np.isin(album.sources[cal], COHORT_SOURCES)
    folds = []
    for members, mean, std in calibration.fold_albums(vectors, identities, in_cohort, top_n):
        folds.append(
            Album(
                vectors[members],
                np.zeros((0, vectors.shape[1]), np.float32),
                album.sources[cal][members],
                identities[members],
                np.full(int(members.sum()), "fold"),
                np.stack([mean, std], axis=1),
                np.zeros((0, 2)),
                np.zeros(0, np.int64),
            )
        )
    return folds


def choose_order(folds: list, norm: dict, grouping: GroupingParams, per_person: int = 5) -> dict:
    """Each order's Find F1 after ``per_person`` answers on each calibration fold; the best worse fold wins."""
    rows = {}
    sims = [Simulation(fold, norm, grouping) for fold in folds]
    for order in ORDERS:
        per_fold = []
        for sim in sims:
            found = summarise(sim.find(sim.answered(per_person, order)))
            per_fold.append({k: found[k] for k in ("precision", "recall", "f1")})
        rows[order] = {"folds": per_fold, "worse_fold_f1": min(f["f1"] for f in per_fold)}
    best = max(ORDERS, key=lambda o: rows[o]["worse_fold_f1"])
    return {"chosen": best, "answers_per_person": per_person, "orders": rows}


def owner_setup():
    """(the served bundle on CPU, the benchmark album, its search normalisation, its grouping
    parameters), or None, said on stderr, without facedata or a calibrated bundle."""
    loaded = cpu_engine()
    if loaded is None:
        return None
    root, engine = loaded
    norm = engine.normalisation
    grouping = GroupingParams.from_model_info({"grouping": engine.grouping})
    if not norm or not norm.get("expansion") or grouping is None:
        print("this bundle has no normalisation or grouping calibration: rebuild it (./dev setup)", file=sys.stderr)
        return None
    return engine, cached_album(engine, root), norm, grouping


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", choices=ORDERS, action="append", help="orders reported on held-out (default all)")
    args = parser.parse_args(argv)
    loaded = owner_setup()
    if loaded is None:
        return 1
    engine, album, norm, grouping = loaded
    choice = choose_order(calibration_folds(album, norm["top_n"]), norm, grouping)
    sim = Simulation(album, norm, grouping)
    masks = holdout_slices(album)
    held_out: dict = {}
    for order in args.order or ORDERS:
        held_out[order] = {}
        for per_person in ANSWERS:
            owner = sim.answered(per_person, order)
            held_out[order][str(per_person)] = {
                "answers": owner.answers,
                "find_album_face": sliced_find(album, sim.keys, sim.find(owner), masks),
                "find_key_photo": sliced_find(album, sim.keys, sim.find(owner, key_photo=True), masks),
                **{"people": sliced_people(sim, owner, masks)},
            }
    write_results(
        "simulated_owner.json",
        {
            "bundle": engine.version,
            "album": {"photos": len(album.vectors), "distractor_faces": len(album.groups)},
            "order_chosen_on_calibration": choice,
            "holdout": held_out,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
