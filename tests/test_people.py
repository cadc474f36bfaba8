"""People: the store's person fields, the API's answers to bad input, and on real faces the whole
loop: grouping on indexing, naming, corrections that stick through regrouping and reindexing,
merging, suggestions and search by person."""

import json
from unittest import mock

import pytest

import app as app_module
from chalicelib.reindex import enqueue
from chalicelib.shared.boxes import box_iou
from chalicelib.stores.people_store import PeopleStore
from local_stack.aws import client
from local_stack.pump import EventPump
from tests.conftest import stored_face
from tests.face_fixtures import FACEDATA, needs_facedata
from tests.test_indexing import drain, empty, face_endpoint, indexing, upload  # noqa: F401 (fixtures)
from tests.test_search import b64, search
from tests.test_store_contract import make_store


@pytest.fixture(params=["memory", "embedded"])
def stores(request, tmp_path):
    for photos in make_store(request.param, tmp_path / "store"):
        people = PeopleStore(photos.db)
        people.ensure_indexes()
        yield photos, people


def decisions(face: dict) -> tuple:
    """A face's person fields, as a merge and its undo change them."""
    return face.get("person_id"), face.get("assigned_by"), sorted(face.get("rejected_from") or [])


def face(photo_id, index, box, vector=(1.0, 0.0)):
    return stored_face(photo_id, index, box, vector, version="v1", score=0.9)


def test_decisions_follow_the_face_across_a_reindex_in_another_order(stores):
    photos, people = stores
    pid = "a" * 32
    photos.replace_faces("u", pid, [face(pid, 0, [0, 0, 100, 100]), face(pid, 1, [300, 0, 100, 100])])
    p, q = people.create("u", "P")["person_id"], people.create("u")["person_id"]
    people.set_by_user("u", f"{pid}-001", p, None)
    people.set_by_user("u", f"{pid}-000", None, q)  # "not Q"
    # A new bundle finds the faces in the other order, boxes slightly moved, plus a new face.
    new = [face(pid, 0, [305, 4, 98, 100]), face(pid, 1, [2, 0, 100, 96]), face(pid, 2, [600, 0, 50, 50])]
    carried = people.carry_decisions("u", pid, new)
    photos.replace_faces("u", pid, carried)
    stored = {f["face_index"]: f for f in photos.list_faces("u", pid)}
    assert stored[0]["person_id"] == p and stored[0]["assigned_by"] == "user"
    assert stored[1].get("person_id") is None and stored[1]["rejected_from"] == [q]
    assert stored[2].get("person_id") is None and not stored[2].get("rejected_from")


def test_the_algorithm_never_overrides_the_user(stores):
    photos, people = stores
    pid = "b" * 32
    photos.replace_faces("u", pid, [face(pid, 0, [0, 0, 10, 10]), face(pid, 1, [50, 0, 10, 10])])
    p, q = people.create("u")["person_id"], people.create("u")["person_id"]
    people.set_by_user("u", f"{pid}-000", p, None)
    assert not people.set_by_algorithm("u", f"{pid}-000", q)  # confirmed by the user
    people.set_by_user("u", f"{pid}-001", None, q)
    assert not people.set_by_algorithm("u", f"{pid}-001", q)  # rejected from Q
    assert people.set_by_algorithm("u", f"{pid}-001", p)  # another person is fine
    assert not people.set_by_algorithm("other", f"{pid}-001", None)  # another owner's face: nothing
    assert photos.list_faces("u", pid)[1]["assigned_by"] == "auto"


def test_a_merge_is_undone_once_only_while_it_is_recent(stores):
    from datetime import timedelta

    from chalicelib.clock import now_ms

    photos, people = stores
    pid = "e" * 32
    photos.replace_faces("u", pid, [face(pid, 0, [0, 0, 10, 10]), face(pid, 1, [50, 0, 10, 10])])
    p, q = people.create("u")["person_id"], people.create("u", "Ji-eun")["person_id"]
    people.set_by_algorithm("u", f"{pid}-000", p)
    people.set_by_user("u", f"{pid}-001", q, p)
    before = [decisions(f) for f in photos.list_faces("u", pid)]
    merge_id = people.keep_merge("u", p, [q])
    people.merge_into("u", q, p)
    people.remove("u", q)
    people.update("u", p, {"name": "Ji-eun"})  # the target takes the source's name
    assert people.take_merge("other", merge_id, now_ms() - timedelta(minutes=10)) is None  # another owner's
    assert people.take_merge("u", merge_id, now_ms() + timedelta(seconds=1)) is None  # too old
    kept = people.take_merge("u", merge_id, now_ms() - timedelta(minutes=10))
    assert sorted(people.restore_merge("u", kept)) == sorted([p, q])
    assert [decisions(f) for f in photos.list_faces("u", pid)] == before
    assert people.get("u", q)["name"] == "Ji-eun" and people.get("u", p)["name"] is None
    assert people.take_merge("u", merge_id, now_ms() - timedelta(minutes=10)) is None  # once


def test_counts_cover_and_listing(stores):
    photos, people = stores
    pids = ["c" * 32, "d" * 32]
    for pid in pids:
        photos.replace_faces("u", pid, [face(pid, 0, [0, 0, 10, 10]), face(pid, 1, [50, 0, 40, 40])])
    big, small, empty = (people.create("u")["person_id"] for _ in range(3))
    named_empty = people.create("u", "Grandma")["person_id"]
    for pid in pids:
        people.set_by_algorithm("u", f"{pid}-000", big)
    people.set_by_algorithm("u", f"{pids[0]}-001", big)
    people.set_by_user("u", f"{pids[1]}-001", small, None)
    people.refresh("u", [big, small, empty, named_empty])
    listed = people.page("u", 0, 10, include_hidden=False)
    assert [p["person_id"] for p in listed] == [big, small, named_empty]  # the unnamed empty one is gone
    assert (listed[0]["face_count"], listed[0]["photo_count"]) == (3, 2)
    assert listed[0]["cover_face_id"] == f"{pids[0]}-001"  # the largest face
    assert people.get("u", empty) is None
    people.update("u", small, {"hidden": True})
    assert small not in [p["person_id"] for p in people.page("u", 0, 10, include_hidden=False)]
    assert small in [p["person_id"] for p in people.page("u", 0, 10, include_hidden=True)]
    assert people.page("someone else", 0, 10, include_hidden=True) == []


@pytest.mark.parametrize(
    "method, route, body, status",
    [
        ("patch", "/people/{id}", {"name": "x" * 101}, 400),
        ("patch", "/people/{id}", {"name": "bad\x07name"}, 400),
        ("patch", "/people/{id}", {"hidden": "yes"}, 400),
        ("patch", "/people/{id}", {"colour": "red"}, 400),
        ("patch", "/people/{unknown}", {"name": "A"}, 404),
        ("get", "/people/not-an-id", None, 404),
        ("post", "/people/merge", {"target": "{id}", "sources": ["{id}"]}, 400),
        ("post", "/people/merge", {"target": "{id}", "sources": []}, 400),
        ("post", "/people/merge", {"target": "{id}", "sources": ["{unknown}"]}, 404),
        ("put", "/faces/{face}/person", {}, 400),
        ("put", "/faces/{face}/person", {"person_id": "{unknown}"}, 404),
        ("put", "/faces/{face}/person", {"new_person": True, "name": "\x00"}, 400),
        ("put", "/faces/0123-000/person", {"person_id": None}, 404),
        ("post", "/people/{id}/suggestions", {"answers": [{"face_id": "{face}"}]}, 400),
        ("post", "/people/{id}/suggestions", {"answers": []}, 400),
        ("get", "/people?limit=0", None, 400),
        ("get", "/people?cursor=x", None, 400),
    ],
)
def test_bad_input_gets_a_clear_4xx(api, make_user, services, method, route, body, status):
    user = make_user()
    pid = "e" * 32
    services.photo_store.replace_faces(user.sub, pid, [face(pid, 0, [0, 0, 10, 10])])
    person = services.people_store.create(user.sub, "Someone")["person_id"]
    values = {"{id}": person, "{unknown}": "f" * 32, "{face}": f"{pid}-000"}
    for name, value in values.items():
        route = route.replace(name, value)
    payload = json.dumps(body) if body is not None else None
    for name, value in values.items():
        payload = payload.replace(name, value) if payload else payload
    kwargs = {"body": payload} if payload is not None else {}
    response = getattr(api.http, method)(route, headers=user.headers, **kwargs)
    assert response.status_code == status, response.body
    assert response.json_body["message"]
    assert services.people_store.get(user.sub, person)["name"] == "Someone"  # nothing lost


PEOPLE = FACEDATA / "people/deepface" if FACEDATA else None


def reindex_as_if_new_bundle(services, aws_stack, owner: str, pump, expected: int) -> str:
    """Mark the user's album as indexed by a previous bundle, then reindex it through the queue with
    the served one (as a bundle rollout does); returns the served version."""
    for collection in (services.photo_store.faces, services.photo_store.photos):
        collection.update_many({"owner": owner}, {"$set": {"model_version": "previous-bundle"}})
    served = services.face_client.model_version()
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    assert enqueue(services.photo_store, sqs, aws_stack.queue_url, aws_stack.bucket, served, owner) == expected
    drain(pump)
    return served


def people_of(api, user) -> dict:
    """{frozenset of photo ids: person} of the user's people."""
    out = {}
    for person in api.http.get("/people?limit=100", headers=user.headers).json_body["people"]:
        photos = api.http.get(f"/people/{person['person_id']}/photos?limit=100", headers=user.headers).json_body
        out[frozenset(p["photo_id"] for p in photos["photos"])] = dict(person, photos=photos["photos"])
    return out


@pytest.fixture
def people_pump(indexing, aws_stack):  # noqa: F811
    """The people-jobs queue, emptied, with no debounce delay, and a pump into ``group_people``."""
    services, _ = indexing
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    empty(sqs, aws_stack.people_jobs_url)
    services.people_jobs.delay = 0
    return EventPump(sqs, aws_stack.people_jobs_url, app_module.group_people, wait_seconds=0)


@needs_facedata
def test_people_on_real_faces_and_corrections_that_stick(api, make_user, indexing, people_pump, aws_stack):  # noqa: F811
    services, pump = indexing

    def regroup():
        response = api.http.post("/people/recluster", headers=alice.headers)
        assert response.status_code == 202 and response.json_body["status"] == "queued"
        drain(people_pump)

    alice, bob = make_user("alice"), make_user("bob")
    jolie = sorted((PEOPLE / "Angelina_Jolie").glob("*.jpg"))[:5]
    clooney = sorted((PEOPLE / "George_Clooney").glob("*.jpg"))[:4]
    ids = {
        "jolie": [upload(api, alice, p.read_bytes(), "image/jpeg") for p in jolie],
        "clooney": [upload(api, alice, p.read_bytes(), "image/jpeg") for p in clooney],
    }
    group = upload(api, alice, (FACEDATA / "groups/dlib/2008_002470.jpg").read_bytes(), "image/jpeg")
    drain(pump)
    drain(people_pump)  # the regrouping the indexer asked for (debounced: one job runs)

    # Grouped on indexing: one person each, no person holds two faces of the group photo.
    found = people_of(api, alice)
    assert frozenset(ids["jolie"]) in found and frozenset(ids["clooney"]) in found, found.keys()
    for person in found.values():
        photo_ids = [f["photo_id"] for f in services.people_store.faces_of(alice.sub, person["person_id"])]
        assert len(photo_ids) == len(set(photo_ids))  # never two faces of one photo (the group photo's)
    assert api.http.get(f"/photos/{group}", headers=alice.headers).json_body["face_count"] >= 2
    jolie_person = found[frozenset(ids["jolie"])]
    clooney_person = found[frozenset(ids["clooney"])]
    assert jolie_person["face_count"] == 5 and jolie_person["cover"]["thumbnail_url"]
    jp, cp = jolie_person["person_id"], clooney_person["person_id"]

    # People-aware Find. A Jolie face of the album as the key: Jolie, the person, answers. At a
    # plain cosine cut of 0, which lets Clooney's faces through on the key alone, none of them is a
    # result: they are another person of the album. Every other photo of hers is (same_person).
    key = jolie_person["photos"][0]
    served = services.face_client.model_version()
    vector = services.photo_store.get_face(alice.sub, key["face_id"])["embedding"]
    on_the_key_alone = {h[1] for h in services.vector_index.nearest(alice.sub, served, vector, 100, 0.0)}
    assert set(ids["clooney"]) <= on_the_key_alone
    body = {"photo_id": key["photo_id"], "face_id": key["face_id"], "threshold": 0.0, "limit": 100}
    found = search(api, alice, body).json_body
    assert found["person"] == {"person_id": jp, "name": None, "how": "album_face"}
    matches = {r["photo_id"]: r["match"] for r in found["results"]}
    assert not set(ids["clooney"]) & set(matches)
    assert {p for p, m in matches.items() if m == "same_person"} == set(ids["jolie"]) - {key["photo_id"]}
    # A new photo of her, from outside the album: its face is matched to her person by its neighbours.
    outside = sorted((PEOPLE / "Angelina_Jolie").glob("*.jpg"))[5]
    found = search(api, alice, {"image_base64": b64(outside), "limit": 100}).json_body
    assert found["person"] == {"person_id": jp, "name": None, "how": "matched"}
    assert {r["photo_id"] for r in found["results"] if r["match"] == "same_person"} == set(ids["jolie"])
    assert not set(ids["clooney"]) & {r["photo_id"] for r in found["results"] + found["possible"]}
    # Search by person decides the same way: Clooney's photos are his person's, never suggested for her.
    by_person = search(api, alice, {"person_id": jp, "limit": 100}).json_body["results"]
    assert {r["photo_id"] for r in by_person} & set(ids["clooney"]) == set()
    assert {r["photo_id"] for r in by_person if r["match"] == "member"} == set(ids["jolie"])

    # Name; the name survives a regrouping.
    response = api.http.patch(f"/people/{jp}", headers=alice.headers, body=json.dumps({"name": "Angelina"}))
    assert response.status_code == 200 and response.json_body["name"] == "Angelina"
    # "Not this person" on one Jolie face: it leaves, and regrouping never puts it back.
    out_face = next(p["face_id"] for p in jolie_person["photos"])
    response = api.http.put(f"/faces/{out_face}/person", headers=alice.headers, body=json.dumps({"person_id": None}))
    assert response.status_code == 200 and response.json_body["rejected_from"] == [jp]
    regroup()
    person = api.http.get(f"/people/{jp}", headers=alice.headers).json_body
    assert person["name"] == "Angelina" and person["face_count"] == 4
    assert services.people_store.face(alice.sub, out_face).get("person_id") != jp
    # ... and Find with her as the key never returns it, even at a cut that lets every face through.
    body = {"photo_id": key["photo_id"], "face_id": key["face_id"], "threshold": 0.0, "limit": 100}
    rejected_photo = services.people_store.face(alice.sub, out_face)["photo_id"]
    assert rejected_photo not in {r["photo_id"] for r in search(api, alice, body).json_body["results"]}

    # "Is this Angelina?": the rejected face is never suggested again; a "no" is a rejection.
    response = api.http.get(f"/people/{jp}/suggestions", headers=alice.headers)
    assert response.status_code == 200
    assert out_face not in [s["face_id"] for s in response.json_body["suggestions"]]
    other = next(p["face_id"] for p in clooney_person["photos"][1:])
    body = {"answers": [{"face_id": other, "accept": False}]}
    response = api.http.post(f"/people/{jp}/suggestions", headers=alice.headers, body=json.dumps(body))
    assert response.status_code == 200
    assert response.json_body["answers"] == [{"face_id": other, "result": "rejected", "person_id": cp}]
    assert jp in services.people_store.face(alice.sub, other)["rejected_from"]

    # A confirmed move survives regrouping; a merge keeps the target's name and survives too.
    moved = next(p["face_id"] for p in clooney_person["photos"])
    response = api.http.put(f"/faces/{moved}/person", headers=alice.headers, body=json.dumps({"person_id": jp}))
    assert response.status_code == 200 and response.json_body["assigned_by"] == "user"
    before = {f["face_id"]: decisions(f) for f in services.people_store.faces.find({"owner": alice.sub})}
    response = api.http.post("/people/merge", headers=alice.headers, body=json.dumps({"target": jp, "sources": [cp]}))
    assert response.status_code == 200, response.body
    merged, undo = response.json_body["person"], response.json_body["undo"]
    assert undo["expires_in"] == 600

    # Undone: both people again, each face's decisions as they were; once, and only by its owner.
    path = f"/people/merge/{undo['merge_id']}"
    assert api.http.delete(path, headers=bob.headers).status_code == 404
    response = api.http.delete(path, headers=alice.headers)
    assert response.status_code == 200, response.body
    assert {p["person_id"]: p["name"] for p in response.json_body["people"]} == {jp: "Angelina", cp: None}
    assert {f["face_id"]: decisions(f) for f in services.people_store.faces.find({"owner": alice.sub})} == before
    assert api.http.delete(path, headers=alice.headers).status_code == 404
    response = api.http.post("/people/merge", headers=alice.headers, body=json.dumps({"target": jp, "sources": [cp]}))
    assert response.status_code == 200, response.body
    merged = response.json_body["person"]
    assert merged["name"] == "Angelina" and merged["face_count"] == 4 + 4
    assert jp not in services.people_store.face(alice.sub, other)["rejected_from"]  # the merge is the latest word
    assert api.http.get(f"/people/{cp}", headers=alice.headers).status_code == 404
    regroup()
    after = api.http.get(f"/people/{jp}", headers=alice.headers).json_body
    assert after["name"] == "Angelina" and after["face_count"] == 8  # a merge is the user's word: kept
    assert services.people_store.face(alice.sub, moved)["person_id"] == jp
    assert services.people_store.face(alice.sub, out_face).get("person_id") != jp

    # Search by person: its photos, plus (as suggestions) the rejected face's photo is not forced in.
    response = api.http.post("/search", headers=alice.headers, body=json.dumps({"person_id": jp, "limit": 100}))
    assert response.status_code == 200, response.body
    members = {r["photo_id"] for r in response.json_body["results"] if r["match"] == "member"}
    assert members == {f["photo_id"] for f in services.people_store.faces_of(alice.sub, jp)}

    # A new bundle: the album marked as indexed by a previous one, then reindexed. Every face is
    # embedded again and keeps its person, its confirmation and its rejection (matched by box).
    served = reindex_as_if_new_bundle(services, aws_stack, alice.sub, pump, expected=10)
    drain(people_pump)
    assert {f["model_version"] for f in services.photo_store.list_faces(alice.sub, ids["jolie"][0])} == {served}
    kept = services.people_store.face(alice.sub, moved)
    assert kept["person_id"] == jp and kept["assigned_by"] == "user"
    assert jp in services.people_store.face(alice.sub, out_face)["rejected_from"]
    assert services.people_store.face(alice.sub, out_face).get("person_id") != jp
    assert api.http.get(f"/people/{jp}", headers=alice.headers).json_body["name"] == "Angelina"

    # Deleting the grouping keeps the photos; the faces become unassigned.
    assert api.http.delete(f"/people/{jp}", headers=alice.headers).status_code == 204
    assert api.http.get(f"/photos/{ids['jolie'][0]}", headers=alice.headers).status_code == 200
    assert not services.people_store.faces_of(alice.sub, jp)


def jolie_and_clooney(api, user, indexing, people_pump, hers: int, his: int) -> tuple:
    """Her first ``hers`` photos and his first ``his`` uploaded, indexed and grouped: (her photo ids,
    his, her person, his person)."""
    _, pump = indexing
    jolie = [
        upload(api, user, p.read_bytes(), "image/jpeg")
        for p in sorted((PEOPLE / "Angelina_Jolie").glob("*.jpg"))[:hers]
    ]
    clooney = [
        upload(api, user, p.read_bytes(), "image/jpeg") for p in sorted((PEOPLE / "George_Clooney").glob("*.jpg"))[:his]
    ]
    drain(pump)
    drain(people_pump)
    found = people_of(api, user)
    assert frozenset(jolie) in found and frozenset(clooney) in found  # two people of the album, competing
    return jolie, clooney, found[frozenset(jolie)]["person_id"], found[frozenset(clooney)]["person_id"]


@needs_facedata
def test_questions_ask_what_matters_and_each_answer_is_learnt_at_once(api, make_user, indexing, people_pump):  # noqa: F811
    services, _ = indexing
    bob = make_user("bob")
    jolie, clooney, person, other = jolie_and_clooney(api, bob, indexing, people_pump, 5, 3)

    def album_questions() -> list:
        response = api.http.get("/people/questions?limit=5", headers=bob.headers)
        assert response.status_code == 200
        return [q["person"]["person_id"] for q in response.json_body["questions"]]

    # One question a person, none confirmed yet: the biggest first (a third person: faces behind him).
    assert album_questions()[:2] == [person, other]

    def questions() -> list:
        response = api.http.get(f"/people/{person}/suggestions?limit=50", headers=bob.headers)
        assert response.status_code == 200
        return response.json_body["suggestions"]

    def answer(face_id: str, **word) -> dict:
        body = json.dumps({"answers": [dict(face_id=face_id, **word)]})
        response = api.http.post(f"/people/{person}/suggestions", headers=bob.headers, body=body)
        assert response.status_code == 200, response.body
        return response.json_body

    # Her own grouped faces, the least fitting first, take turns with candidates (faces outside her
    # that match her; none here): all five are hers and none is confirmed, so all five are asked. Her
    # faces do not fall in two halves of two faces or more: no half question.
    asked = questions()
    assert [q["kind"] for q in asked] == ["member"] * 5
    members = [q["face_id"] for q in asked if q["kind"] == "member"]
    assert {services.people_store.face(bob.sub, f)["photo_id"] for f in members} == set(jolie)

    # A skip is remembered: never asked again. A yes confirms, and is not asked again either.
    assert answer(members[0], skip=True)["answers"] == [
        {"face_id": members[0], "result": "skipped", "person_id": person}
    ]
    assert answer(members[1], accept=True)["answers"][0]["result"] == "confirmed"
    assert {q["face_id"] for q in questions()} & set(members[:2]) == set()
    asked_in_album = album_questions()  # the people confirmed least are asked first: her last now
    assert asked_in_album[0] == other and asked_in_album[-1] == person

    # A no takes the face out at once, rejected from her, and its neighbours vote it elsewhere (no
    # other person is close here: nobody); the answer says what it did to her photos.
    out = members[2]
    done = answer(out, accept=False)
    assert done["answers"] == [{"face_id": out, "result": "rejected", "person_id": None}]
    assert (done["photos_before"], done["person"]["photo_count"]) == (5, 4)
    assert person in services.people_store.face(bob.sub, out)["rejected_from"]
    assert out not in {q["face_id"] for q in questions()}

    # Find learns it too: her photos are not results for that face any more (it is not her), and
    # the face is not a result for her.
    out_photo = services.people_store.face(bob.sub, out)["photo_id"]
    found = search(api, bob, {"photo_id": out_photo, "face_id": out, "threshold": 0.0, "limit": 100}).json_body
    assert found["person"] is None and not set(jolie) & {r["photo_id"] for r in found["results"]}
    key = next(f for f in members[3:])
    key_photo = services.people_store.face(bob.sub, key)["photo_id"]
    found = search(api, bob, {"photo_id": key_photo, "face_id": key, "threshold": 0.0, "limit": 100}).json_body
    assert found["person"]["person_id"] == person and out_photo not in {r["photo_id"] for r in found["results"]}
    assert {r["photo_id"] for r in found["results"] if r["match"] == "confirmed"} == {
        services.people_store.face(bob.sub, members[1])["photo_id"]
    }

    # Answers about faces of another person's photos and bad answers are 4xx, never lost input.
    for bad in ({"face_id": members[3]}, {"face_id": members[3], "accept": True, "skip": True}, {"face_id": 3}):
        body = json.dumps({"answers": [bad]})
        assert api.http.post(f"/people/{person}/suggestions", headers=bob.headers, body=body).status_code == 400


@needs_facedata
def test_a_person_grouped_from_two_people_comes_apart_with_one_answer(api, make_user, indexing, people_pump):  # noqa: F811
    services, _ = indexing
    carol = make_user("carol")
    jolie, clooney, person, other = jolie_and_clooney(api, carol, indexing, people_pump, 3, 3)
    # As if the grouping had made the two one person (look-alikes do): his faces are hers, by the algorithm.
    his = [f["face_id"] for f in services.people_store.faces_of(carol.sub, other)]
    for face_id in his:
        assert services.people_store.set_by_algorithm(carol.sub, face_id, person)
    services.people_store.refresh(carol.sub, [person, other])

    def first_question() -> dict | None:
        return (questions_of(api, carol, person) or [None])[0]

    def answer(face_id: str, accept: bool) -> dict:
        body = json.dumps({"answers": [{"face_id": face_id, "accept": accept}]})
        response = api.http.post(f"/people/{person}/suggestions", headers=carol.headers, body=body)
        assert response.status_code == 200, response.body
        return response.json_body

    # The first question is about a half of the person, the face that stands for it; the owner
    # says the person is her. A yes confirms that face only; the next half question is the other half.
    question = first_question()
    assert question["kind"] == "half" and question["with_faces"] == 2
    if question["photo_id"] in jolie:
        assert answer(question["face_id"], True)["answers"][0]["result"] == "confirmed"
        question = first_question()
        assert question["kind"] == "half" and question["with_faces"] == 2
    assert question["photo_id"] in clooney

    # One "no" takes his whole half out, as a person of its own, each face rejected from her.
    done = answer(question["face_id"], False)
    (said,) = done["answers"]
    assert said["result"] == "rejected" and said["with_faces"] == 2 and said["person_id"] not in (None, person)
    assert (done["photos_before"], done["person"]["photo_count"]) == (6, 3)
    now = people_of(api, carol)
    assert frozenset(jolie) in now and now[frozenset(clooney)]["person_id"] == said["person_id"]
    assert all(person in services.people_store.face(carol.sub, f)["rejected_from"] for f in his)
    assert (first_question() or {}).get("kind") != "half"  # three faces left: no halves to ask about

    # A regrouping keeps them apart: none of his faces may join a group of her faces again.
    response = api.http.post("/people/recluster", headers=carol.headers)
    assert response.status_code == 202
    drain(people_pump)
    now = people_of(api, carol)
    assert now[frozenset(jolie)]["person_id"] == person and frozenset(clooney) in now

    # Find with one of her faces returns none of his photos any more.
    key = next(f for f in services.people_store.faces_of(carol.sub, person))
    body = {"photo_id": key["photo_id"], "face_id": key["face_id"], "limit": 100}
    results = search(api, carol, body).json_body["results"]
    assert not set(clooney) & {r["photo_id"] for r in results}

    # The other questions take turns, her own doubtful faces first after an even number of answers,
    # candidates first after an odd one: the order chosen on the calibration folds.
    hers = [(f["face_id"], f["photo_id"], 1.0) for f in services.people_store.faces_of(carol.sub, person)][:2]
    outside = [
        (f["face_id"], f["photo_id"], 5.0, "candidate", None)
        for f in services.people_store.faces_of(carol.sub, said["person_id"])
    ][:2]
    with (
        mock.patch.object(type(services.people), "doubtful_members", return_value=hers),
        mock.patch.object(type(services.people), "_candidate_questions", return_value=outside),
    ):
        for _ in range(2):
            even = services.people_store.get(carol.sub, person)["answers"] % 2 == 0
            turns = ["member", "candidate"] if even else ["candidate", "member"]
            assert [q["kind"] for q in questions_of(api, carol, person)] == turns * 2
            services.people_store.count_answers(carol.sub, person, 1)


def questions_of(api, user, person_id: str) -> list:
    response = api.http.get(f"/people/{person_id}/suggestions?limit=10", headers=user.headers)
    assert response.status_code == 200, response.body
    return response.json_body["suggestions"]


@needs_facedata
def test_faces_drawn_and_removed_by_hand_survive_a_reindex(api, make_user, indexing, aws_stack):  # noqa: F811
    services, pump = indexing
    alice, bob = make_user("alice"), make_user("bob")
    photo_id = upload(api, alice, (FACEDATA / "groups/dlib/2008_002470.jpg").read_bytes(), "image/jpeg")
    drain(pump)
    photo = api.http.get(f"/photos/{photo_id}", headers=alice.headers).json_body
    detected = photo["faces"]
    assert len(detected) >= 2

    # A false detection removed; the same place drawn by hand (as a face the detector missed):
    # landmarks are found inside the box, so it is aligned; a box on a wall is embedded as it is.
    wrong = detected[0]
    assert api.http.delete(f"/faces/{wrong['face_id']}", headers=bob.headers).status_code == 404
    assert api.http.delete(f"/faces/{wrong['face_id']}", headers=alice.headers).status_code == 204

    def draw(user, box):
        return api.http.post(f"/photos/{photo_id}/faces", headers=user.headers, body=json.dumps({"box": box}))

    response = draw(alice, wrong["box"])
    assert response.status_code == 201, response.body
    drawn = response.json_body
    assert drawn["source"] == "manual" and drawn["aligned"] is True and drawn["face_id"].endswith("-500")
    wall = draw(alice, [0, 0, 40, 40]).json_body
    assert wall["aligned"] is False and wall["face_id"].endswith("-501")
    for box, status in (([0, 0, 10, 40], 400), ([0, 0, 40, photo["height"] + 1], 400), (["a", 0, 40, 40], 400)):
        assert draw(alice, box).status_code == status
    assert draw(alice, detected[1]["box"]).status_code == 409  # a face is already there
    assert draw(bob, [0, 0, 40, 40]).status_code == 404
    assert api.http.get(f"/photos/{photo_id}", headers=alice.headers).json_body["face_count"] == len(detected) + 1

    # A new bundle: the removed detection stays removed, the drawn faces are embedded again and keep
    # their ids (their person with them).
    served = reindex_as_if_new_bundle(services, aws_stack, alice.sub, pump, expected=1)
    after = {f["face_id"]: f for f in services.photo_store.list_faces(alice.sub, photo_id)}
    assert {f["model_version"] for f in after.values()} == {served}
    assert after[drawn["face_id"]]["source"] == "manual" and after[drawn["face_id"]]["aligned"] is True
    assert after[wall["face_id"]]["aligned"] is False
    assert len(after) == len(detected) + 1
    assert not any(f.get("source") != "manual" and box_iou(f["box"], wrong["box"]) >= 0.5 for f in after.values())
