"""memstudio against the whole local stack: sign in, upload a folder (resumable), watch it
index, list, search with a key photo, delete."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from local_stack.aws import StackInfo, create_confirmed_user
from memstudio.__main__ import main
from memstudio.session import CliError, Session, client_config, cognito
from memstudio.uploads import Journal
from tests.face_fixtures import FACEDATA, needs_facedata
from tests.stack_fixture import local_stack  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, needs_facedata]
PASSWORD = "Corr3ct-Horse!"


def test_cli_upload_search_delete(local_stack, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("MEMSTUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEMSTUDIO_API", raising=False)
    api = local_stack.api
    create_confirmed_user(StackInfo.read(local_stack.state / "stack.json"), "cli@example.com", PASSWORD)

    assert main(["--api", api, "login", "cli@example.com", "--password", "wrong-Passw0rd!"]) == 1
    assert "error:" in capsys.readouterr().err
    assert main(["--api", api, "list"]) == 1
    assert "not signed in" in capsys.readouterr().err
    assert main(["--api", api, "login", "cli@example.com", "--password", PASSWORD]) == 0
    session_file = next((tmp_path / "home").glob("session-*.json"))
    assert oct(session_file.stat().st_mode & 0o777) == "0o600"

    people = FACEDATA / "people" / "deepface"
    clooney = sorted((people / "George_Clooney").glob("*.jpg"))
    jolie = sorted((people / "Angelina_Jolie").glob("*.jpg"))
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    for photo in clooney[:2]:
        shutil.copy(photo, folder / f"clooney-{photo.name}")
    (folder / "notes.txt").write_text("not a photo: never sent")
    (folder / "2024" / "empty.jpg").write_bytes(b"")
    assert main(["--api", api, "upload", str(folder), "--quiet"]) == 1  # the empty file failed
    out, err = capsys.readouterr()
    assert "uploaded 2, already uploaded 0, failed 1" in out and "empty.jpg: empty file" in err

    # Resumable: a rerun sends only what is new since.
    (folder / "2024" / "empty.jpg").unlink()
    shutil.copy(clooney[2], folder / "2024" / f"clooney-{clooney[2].name}")
    for photo in jolie[:2]:
        shutil.copy(photo, folder / "2024" / f"jolie-{photo.name}")
    assert main(["--api", api, "upload", str(folder), "--quiet", "--parallel", "3"]) == 0
    assert "uploaded 3, already uploaded 2, failed 0" in capsys.readouterr().out

    session = Session.load(api)
    journal = Journal(session, folder).entries
    ids = {name: entry["photo_id"] for name, entry in journal.items()}
    clooney_ids = {pid for name, pid in ids.items() if "clooney" in name}
    deadline = time.time() + 180
    while time.time() < deadline:
        photos = session.call("GET", "photos")["photos"]
        if len(photos) == 5 and all(p["status"] == "indexed" for p in photos):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"not indexed in time: {photos}")
    assert main(["--api", api, "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("indexed") == 5 and "clooney-" in listing

    # The same bytes under another name are already in the album: the API says which photo.
    shutil.copy(clooney[0], folder / "copy-of-clooney.jpg")
    assert main(["--api", api, "upload", str(folder), "--quiet"]) == 0
    assert "uploaded 0, already uploaded 6, failed 0" in capsys.readouterr().out
    assert Journal(session, folder).entries["copy-of-clooney.jpg"]["photo_id"] == ids[f"clooney-{clooney[0].name}"]
    assert len(session.call("GET", "photos")["photos"]) == 5

    assert main(["--api", api, "search", str(clooney[3])]) == 0
    lines = capsys.readouterr().out.splitlines()
    ranked = [line.split()[1] for line in lines[1:]]
    assert len(ranked) >= 3 and set(ranked[:3]) == clooney_ids, lines

    assert main(["--api", api, "show", ranked[0]]) == 0
    assert json.loads(capsys.readouterr().out)["faces"]

    # People: the stack regroups a few seconds after the last upload (its people-jobs pump).
    deadline = time.time() + 120
    while time.time() < deadline:
        people = session.call("GET", "people")["people"]
        if any(p["photo_count"] == 3 for p in people):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no Clooney person in time: {people}")
    clooney_person = next(p["person_id"] for p in people if p["photo_count"] == 3)
    assert main(["--api", api, "name", clooney_person, "George"]) == 0
    assert main(["--api", api, "people"]) == 0
    assert f"{clooney_person}     3 faces     3 photos  George" in capsys.readouterr().out
    assert main(["--api", api, "person", clooney_person]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("George: 3 faces in 3 photos") and all(pid in shown for pid in clooney_ids)
    assert main(["--api", api, "merge", clooney_person, clooney_person]) == 1
    assert "merged into itself" in capsys.readouterr().err
    # "Is this George?" from the terminal: a word it does not know is asked again, s skips, y confirms.
    replies = iter(["maybe", "s", "y", "q"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(replies))
    assert main(["--api", api, "review", clooney_person]) == 0
    asked = capsys.readouterr().out
    assert asked.count("Is this George?") == 4 and "answer y, n, s or q" in asked  # asked again after "maybe"
    assert "skipped: George has 3 photos (+0)" in asked and "confirmed: George has 3 photos (+0)" in asked
    # Deleting moves to the trash; restore brings back; --forever and empty-trash delete for good.
    assert main(["--api", api, "delete", ranked[0], ranked[1]]) == 0
    assert capsys.readouterr().out.count("moved to the trash") == 2
    assert main(["--api", api, "trash"]) == 0
    listed = capsys.readouterr().out
    assert ranked[0] in listed and ranked[1] in listed and "deleted for good on" in listed
    assert main(["--api", api, "restore", ranked[1], "0" * 32]) == 1
    assert f"restored: {ranked[1]}" in capsys.readouterr().out
    assert main(["--api", api, "empty-trash"]) == 0
    assert "1 photo(s) deleted for good" in capsys.readouterr().out
    assert main(["--api", api, "show", ranked[0]]) == 1
    assert "404" in capsys.readouterr().err
    assert main(["--api", api, "delete", "--forever", ranked[1]]) == 0
    assert main(["--api", api, "show", ranked[1]]) == 1
    assert "404" in capsys.readouterr().err

    # Signing out revokes the refresh token and forgets the session.
    refresh_token = Session.load(api).refresh_token
    assert main(["--api", api, "logout"]) == 0
    assert not list((tmp_path / "home").glob("session-*.json"))
    with pytest.raises(CliError):
        cognito(
            client_config(api),
            "InitiateAuth",
            {
                "AuthFlow": "REFRESH_TOKEN_AUTH",
                "ClientId": client_config(api)["clientId"],
                "AuthParameters": {"REFRESH_TOKEN": refresh_token},
            },
        )

    # Operators delete a user's data and account without the user's token.
    stack_file = str(local_stack.state / "stack.json")
    for key, value in StackInfo.read(local_stack.state / "stack.json").app_environment().items():
        monkeypatch.setenv(key, value)  # what purge-user sets, undone after the test
    monkeypatch.delenv("PHOTO_BUCKET")
    assert main(["purge-user", "cli@example.com", "--stack-file", stack_file]) == 0
    assert "'photos': 3" in capsys.readouterr().out
    assert main(["--api", api, "login", "cli@example.com", "--password", PASSWORD]) == 1
    assert main(["purge-user", "cli@example.com", "--stack-file", stack_file]) == 1
    assert "no user" in capsys.readouterr().err


def test_the_cloud_reindex_is_started_not_waited_for(monkeypatch, capsys):
    """A 15-minute function invoked synchronously outlives the client's wait, and botocore retried
    it; it is queued as an event instead (Lambda answers 202). The answer is stubbed on a real client."""
    import boto3
    from botocore.stub import Stubber

    lambda_client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(boto3, "client", lambda name, **kw: lambda_client)
    with Stubber(lambda_client) as stub:
        expected = {
            "FunctionName": "memory-studio-prod-reindex",
            "InvocationType": "Event",
            "Payload": json.dumps({"owner": None, "model_version": None}).encode(),
        }
        stub.add_response("invoke", {"StatusCode": 202}, expected)
        assert main(["reindex", "--function", "memory-studio-prod-reindex"]) == 0
        stub.assert_no_pending_responses()
    assert "memory-studio-prod-reindex started" in capsys.readouterr().out
