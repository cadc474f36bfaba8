"""Per-person decisions learned from the owner's answers (issue #38, item 2), tried in the simulated
owner before any is built: does a decision each person learns from its answers beat today's rules?

Each rule is a ``Simulation`` of ``benchmarks.simulated_owner`` with one change; the owner answers
the product's questions in the product's order, and Find, search by person and the grouping are
judged after 5, 10 and 20 answers a person. The rules:

- ``today``: the product (the people compete; a person in two halves is first asked about the half
  it confirmed nothing of, and a "no" takes that half out; other answers move single faces);
- ``without_half_questions``: the product before the half questions;
- ``rejected_lookalikes``: a face nearer (best normalised score) to a face the owner rejected from
  the person than to the person's key faces is not the person's: never asked about, suggested or
  found for it (a stranger with many photos is answered once, not once a photo);
- ``no_splits``: after each answer, the person's grouped faces nearer a face rejected from it than
  to its confirmed faces leave it and join whom their neighbours vote for (a person grouped from two
  look-alikes comes apart at the first "no" to the wrong one);
- ``person_threshold``: the person's own score threshold for faces outside it, fitted to its answered
  candidates (the fewest wrong of its yes and no answers), above the bundle's;
- ``merge_question``: the opposite of the half question, for people split in two: after the half
  questions, "Is this <name>?" about the face of the other person whose faces link closest to this
  one's (mean pair score ≥ ``MERGE_LINK``); a yes merges the two, a no is never asked again.

Judged on the calibration identities only (the two ``calibration.fold_albums``, each judged against
a cohort of the other fold's faces), by the worse fold's Find F1, as the question order is chosen:
a rule is built only if it wins there. Held-out identities are never scored here.

    .venv/bin/python -m benchmarks.person_decisions   → benchmarks/results/person_decisions.json
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.common import majority, write_results
from benchmarks.search_quality import summarise
from benchmarks.simulated_owner import Owner, Simulation, calibration_folds, owner_setup
from model_factory import calibration

RULES = ("today", "without_half_questions", "rejected_lookalikes", "no_splits", "person_threshold", "merge_question")
ANSWERS = (5, 10, 20)
MERGE_LINK = 2.0  # ``merge_question``: the mean normalised pair score two people need to be asked about
ORDER = "alternate"  # the product's (``benchmarks.simulated_owner`` chose it on the same folds)


class RuleSimulation(Simulation):
    """The simulated owner with one per-person rule (``RULES``)."""

    rule = "today"

    def answered(self, per_person: int, order: str) -> Owner:
        self.log: dict = {}  # person → (score against the person, yes) of each answered candidate
        self.apart: set = set()  # (person, person) the owner said are not one
        return super().answered(per_person, order)

    def next_question(self, owner: Owner, person: int, order: str, step: int):
        members = np.nonzero(owner.labels == person)[0]
        if self.rule == "merge_question" and len(members) and self.half_question(owner, members) is None:
            merge = self.merge_question(owner, person, members)
            if merge is not None:
                return merge
        return super().next_question(owner, person, order, step)

    def merge_question(self, owner: Owner, person: int, members: np.ndarray):
        """("merge", the face of the other person linking closest to this one that stands for it)."""
        best, chosen = MERGE_LINK, None
        for other in sorted(set(owner.labels[owner.labels >= 0].tolist()) - {person}):
            if (person, other) in self.apart:
                continue
            faces = np.nonzero(owner.labels == other)[0]
            scores = self.scores[np.ix_(members, faces)]
            scores = np.where(np.isfinite(scores), scores, 0.0)
            if scores.mean() >= best:
                best, chosen = float(scores.mean()), int(faces[int(np.argmax(scores.mean(axis=0)))])
        return ("merge", chosen) if chosen is not None else None

    def answer(self, owner: Owner, person: int, kind: str, face: int) -> None:
        members = np.nonzero(owner.labels == person)[0]
        if kind == "merge":
            other = int(owner.labels[face])
            named = [self.identities[i] for i in members if self.identities[i]]
            owner.answers += 1
            if named and self.identities[face] == majority(named):
                owner.labels[owner.labels == other] = person
                owner.confirmed[owner.labels == person] = True  # a merge is the owner's word on both
            else:
                self.apart |= {(person, other), (other, person)}
                owner.rejected[face].add(person)
            return
        score = float(self.person_scores(owner, members)[face])
        super().answer(owner, person, kind, face)
        if kind == "candidate":
            self.log.setdefault(person, []).append((score, bool(owner.labels[face] == person)))
        if self.rule == "no_splits":
            self.split(owner, person)

    def rejected_from(self, owner: Owner, person: int) -> np.ndarray:
        return np.array([i for i, r in enumerate(owner.rejected) if person in r], int)

    def nearer_rejected(self, owner: Owner, person: int, positives: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Per face: nearer a face rejected from the person than to any of ``positives``."""
        negatives = self.rejected_from(owner, person)
        if not len(negatives) or not len(positives) or not len(faces):
            return np.zeros(len(faces), bool)
        return self.scores[np.ix_(faces, negatives)].max(axis=1) > self.scores[np.ix_(faces, positives)].max(axis=1)

    def split(self, owner: Owner, person: int) -> None:
        members = np.nonzero(owner.labels == person)[0]
        grouped = members[~owner.confirmed[members]]
        leaving = grouped[self.nearer_rejected(owner, person, members[owner.confirmed[members]], grouped)]
        owner.labels[leaving] = -1
        for face in leaving:
            owner.rejected[face].add(person)  # for the vote only: taken back below
            owner.labels[face] = self.vote(owner, face)
            owner.rejected[face].discard(person)

    def person_keeps(self, owner: Owner, person: int) -> np.ndarray | None:
        members = np.nonzero(owner.labels == person)[0]
        everyone = np.arange(len(owner.labels))
        if self.rule == "rejected_lookalikes":
            keys = np.array(sorted(members, key=lambda f: not owner.confirmed[f])[:30], int)
            return ~self.nearer_rejected(owner, person, keys, everyone)
        if self.rule == "person_threshold":
            answered = getattr(self, "log", {}).get(person, [])
            if not any(not yes for _, yes in answered):
                return None
            cuts = sorted({score for score, _ in answered if np.isfinite(score)})
            wrong = [sum((s >= t) != yes for s, yes in answered) for t in cuts]
            threshold = cuts[int(np.argmin(wrong))] if cuts else -np.inf
            return self.person_scores(owner, members) >= threshold
        return None


def judged(sim: RuleSimulation, per_person: int) -> dict:
    owner = sim.answered(per_person, ORDER)
    find = summarise(sim.find(owner))
    rows = sim.by_person(owner)
    photos = [f"single-{i}" for i in range(len(sim.album.vectors))]
    grouped = calibration.grouping_scores(owner.labels, sim.identities, photos, np.ones(len(photos), bool))
    return {
        "find": {k: find[k] for k in ("precision", "recall", "f1")},
        "search_by_person": {
            "precision": round(float(np.mean([p for _, p, _ in rows])), 4),
            "recall": round(float(np.mean([r for _, _, r in rows])), 4),
        },
        "grouping": {k: grouped[k] for k in ("bcubed_precision", "bcubed_recall")},
        "find_wrong_results": wrong_results(sim, owner),
    }


def wrong_results(sim: RuleSimulation, owner: Owner) -> dict:
    """Find's results of another identity than the key's, summed over the keys: faces of the key's
    own person, and the rest (faces of no person, or of a key of nobody known)."""
    n = len(sim.album.vectors)
    verdicts = sim.decided(owner)[:, :n]
    labels, identities = owner.labels[:n], sim.album.identities
    own = other = 0
    for k, i in enumerate(sim.keys):
        wrong = verdicts[k] & (identities != identities[i])
        mine = (labels == labels[i]) if labels[i] >= 0 else np.zeros(n, bool)
        own += int((wrong & mine).sum())
        other += int((wrong & ~mine).sum())
    return {"in_the_keys_person": own, "elsewhere": other}


def main() -> int:
    loaded = owner_setup()
    if loaded is None:
        return 1
    engine, album, norm, grouping = loaded
    sims = [RuleSimulation(fold, norm, grouping) for fold in calibration_folds(album, norm["top_n"])]
    rules: dict = {}
    for rule in RULES:
        rules[rule] = {}
        for per_person in ANSWERS:
            folds = []
            for sim in sims:
                sim.rule, sim.ask_halves = rule, rule != "without_half_questions"
                folds.append(judged(sim, per_person))
            worse = min(f["find"]["f1"] for f in folds)
            rules[rule][str(per_person)] = {"folds": folds, "worse_fold_find_f1": worse}
    today = {n: rules["today"][n]["worse_fold_find_f1"] for n in map(str, ANSWERS)}
    wins = [
        rule
        for rule in RULES[1:]
        if all(rules[rule][n]["worse_fold_find_f1"] > today[n] + 0.005 for n in map(str, ANSWERS))
    ]
    write_results(
        "person_decisions.json",
        {
            "bundle": engine.version,
            "order": ORDER,
            "judged_on": "calibration folds only (worse fold's Find F1); a win needs +0.005 at 5, 10 and 20 answers",
            "rules": rules,
            "rules_that_win": wins,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
