"""memstudio: Memory Studio from the command line, against the local stack or AWS.

    python -m memstudio login you@example.com            (asks for the password)
    python -m memstudio upload ~/Pictures/2026 [--parallel 8]   (resumable: rerun to finish)
    python -m memstudio list [--all]
    python -m memstudio show PHOTO_ID
    python -m memstudio search key.jpg [--face N] [--limit 30]
    python -m memstudio delete PHOTO_ID [PHOTO_ID ...]
    python -m memstudio people [--hidden]            (biggest first)
    python -m memstudio person PERSON_ID             (its photos, newest first)
    python -m memstudio name PERSON_ID "Grandma"
    python -m memstudio merge TARGET_ID SOURCE_ID [SOURCE_ID ...]
    python -m memstudio review [PERSON_ID]           ("Is this …?": y / n / s, q to stop)
    python -m memstudio reindex [--owner SUB] [--function memory-studio-prod-reindex]
    python -m memstudio purge-user EMAIL      (operators: with the stage's environment, or the local stack)
    python -m memstudio disable-user EMAIL    (operators: no more sign-ins, every token void at once)

The API is --api, else $MEMSTUDIO_API, else the running local stack (.local/stack.json).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from .session import CliError, Session
from .uploads import CONTENT_TYPES, upload_folder

LOCAL_STACK = Path(__file__).resolve().parent.parent / ".local" / "stack.json"


def default_api() -> str:
    """The API to talk to: ``MEMSTUDIO_API``, else the local stack's."""
    if os.environ.get("MEMSTUDIO_API"):
        return os.environ["MEMSTUDIO_API"]
    if LOCAL_STACK.exists():
        return json.loads(LOCAL_STACK.read_text())["api_url"]
    raise CliError("no API given: pass --api URL, set MEMSTUDIO_API, or start the local stack (./dev up)")


def cmd_login(args) -> int:
    """``memstudio login``: sign in and keep the session."""
    password = args.password or os.environ.get("MEMSTUDIO_PASSWORD") or getpass.getpass(f"password for {args.email}: ")
    session = Session.login(args.api, args.email, password)
    print(f"signed in to {session.api} as {args.email}")
    return 0


def cmd_logout(args) -> int:
    """``memstudio logout``: sign out, revoking the refresh token."""
    Session.load(args.api).logout()
    print(f"signed out of {args.api}; the refresh token is revoked")
    return 0


def cmd_upload(args) -> int:
    """``memstudio upload``: upload a folder's photos, resuming where a run stopped."""
    uploaded, skipped, failures = upload_folder(
        Session.load(args.api), Path(args.folder), args.parallel, progress=not args.quiet
    )
    print(f"uploaded {uploaded}, already uploaded {skipped}, failed {len(failures)}")
    for failure in failures:
        print(f"  failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_list(args) -> int:
    """``memstudio list``: the album's photos, newest first."""
    session, cursor = Session.load(args.api), None
    while True:
        page = session.call("GET", "photos", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        for p in page["photos"]:
            note = f"  ({p['error']})" if p["error"] else ""
            when = (p.get("timeline_at") or "")[:10]
            print(f"{p['photo_id']}  {when:10}  {p['status']:8}  {p['face_count']:2} faces  {p['filename']}{note}")
        cursor = page["next_cursor"]
        if not cursor or not args.all:
            if cursor:
                print("… more: --all lists every photo")
            return 0


def cmd_show(args) -> int:
    """``memstudio show``: one photo as the API answers it."""
    print(json.dumps(Session.load(args.api).call("GET", f"photos/{args.photo_id}"), indent=2))
    return 0


def cmd_search(args) -> int:
    """``memstudio search``: the album's photos of a key photo's face."""
    from .uploads import post_file

    session, key = Session.load(args.api), Path(args.photo)
    content_type = CONTENT_TYPES.get(key.suffix.lower())
    if content_type is None or not key.is_file():
        raise CliError(f"{key}: not a photo file (JPEG, PNG, WebP, GIF or HEIC)")
    upload = session.call(
        "POST", "search/uploads", {"filename": key.name, "content_type": content_type, "size": key.stat().st_size}
    )
    post_file(upload, key, content_type)
    result = session.call("POST", "search", {"key_id": upload["key_id"], "face": args.face, "limit": args.limit})
    faces = len(result["key_faces"])
    print(
        f"key face {result['used_face'] + 1} of {faces}; threshold {result['threshold']:.3f}; "
        f"{len(result['results'])} match(es), best first"
    )
    for hit in result["results"]:
        print(f"{hit['similarity']:.3f}  {hit['photo_id']}")
    return 0


def _in_chunks(ids: list[str], size: int = 100):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def cmd_delete(args) -> int:
    """Into the trash (restorable); ``--forever`` deletes them for good at once."""
    session, missing = Session.load(args.api), []
    for chunk in _in_chunks(args.photo_ids):
        answer = session.call("POST", "photos/trash", {"photo_ids": chunk})
        missing += answer["not_found"]
        for photo_id in answer["trashed"]:
            if args.forever:
                session.call("DELETE", f"trash/{photo_id}")
            print(f"{'deleted for good' if args.forever else 'moved to the trash'}: {photo_id}")
    for photo_id in missing:
        print(f"no such photo: {photo_id}", file=sys.stderr)
    return 1 if missing else 0


def cmd_trash(args) -> int:
    """``memstudio trash``: the photos in the trash."""
    session = Session.load(args.api)
    for p in every_row(session, "trash", "photos"):
        print(f"{p['photo_id']}  deleted for good on {p['purge_at'][:10]}  {p['filename']}")
    return 0


def cmd_restore(args) -> int:
    """``memstudio restore``: bring photos back from the trash."""
    session, missing = Session.load(args.api), []
    for chunk in _in_chunks(args.photo_ids):
        answer = session.call("POST", "trash/restore", {"photo_ids": chunk})
        missing += answer["not_found"]
        for photo_id in answer["restored"]:
            print(f"restored: {photo_id}")
    for photo_id in missing:
        print(f"not in the trash: {photo_id}", file=sys.stderr)
    return 1 if missing else 0


def cmd_empty_trash(args) -> int:
    """``memstudio empty-trash``: delete everything in the trash for good."""
    session, purged = Session.load(args.api), 0
    while True:
        answer = session.call("DELETE", "trash")
        purged += answer["purged"]
        if not answer["remaining"]:
            print(f"{purged} photo(s) deleted for good")
            return 0


def every_row(session: Session, path: str, rows: str, **params):
    """Every row of a paginated listing, page after page."""
    cursor = None
    while True:
        page = session.call("GET", path, params={"limit": 100, **params, **({"cursor": cursor} if cursor else {})})
        yield from page[rows]
        cursor = page["next_cursor"]
        if not cursor:
            return


def cmd_people(args) -> int:
    """``memstudio people``: the album's people."""
    for p in every_row(Session.load(args.api), "people", "people", **({"hidden": "true"} if args.hidden else {})):
        name = (p["name"] or "Unnamed") + ("  (hidden)" if p["hidden"] else "")
        print(f"{p['person_id']}  {p['face_count']:4} faces  {p['photo_count']:4} photos  {name}")
    return 0


def cmd_person(args) -> int:
    """``memstudio person``: one person and their photos."""
    session = Session.load(args.api)
    person = session.call("GET", f"people/{args.person_id}")
    print(f"{person['name'] or 'Unnamed'}: {person['face_count']} faces in {person['photo_count']} photos")
    for p in every_row(session, f"people/{args.person_id}/photos", "photos"):
        print(f"{p['photo_id']}  face {p['face_id']}  {p['assigned_by'] or ''}  {p['filename']}")
    return 0


def cmd_name(args) -> int:
    """``memstudio name``: name a person."""
    person = Session.load(args.api).call("PATCH", f"people/{args.person_id}", {"name": args.name})
    print(f"{person['person_id']} is now {person['name'] or 'Unnamed'}")
    return 0


def cmd_merge(args) -> int:
    """``memstudio merge``: make several people one."""
    merged = Session.load(args.api).call("POST", "people/merge", {"target": args.target, "sources": args.sources})
    person = merged["person"]
    print(f"merged into {person['person_id']} ({person['name'] or 'Unnamed'}): {person['face_count']} faces")
    return 0


ANSWER_WORDS = {"y": {"accept": True}, "n": {"accept": False}, "s": {"skip": True}}


def next_question(session: Session, person_id: str | None) -> dict | None:
    """The next "Is this …?" of one person, or of the whole album; None when there is none."""
    if person_id is None:
        found = session.call("GET", "people/questions", params={"limit": 1})["questions"]
        return found[0] if found else None
    found = session.call("GET", f"people/{person_id}/suggestions", params={"limit": 1})["suggestions"]
    if not found:
        return None
    person = session.call("GET", f"people/{person_id}")
    return dict(found[0], person={"person_id": person_id, "name": person["name"]})


def cmd_review(args) -> int:
    """ "Is this …?" one question at a time, answered y / n / s (skip), q to stop."""
    session = Session.load(args.api)
    while (question := next_question(session, args.person_id)) is not None:
        person = question["person"]
        name = person["name"] or f"person {person['person_id']}"
        print(f"Is this {name}? photo {question['photo_id']}, face {question['face_id']}: {question['url']}")
        if question.get("kind") == "half" and question.get("with_faces"):
            print(f"  and {question['with_faces']} more faces like it: a no takes them out too")
        try:
            reply = input("y yes / n no / s skip / q stop: ").strip().lower()[:1]
        except EOFError:
            return 0
        if reply == "q":
            return 0
        if reply not in ANSWER_WORDS:
            print("answer y, n, s or q")
            continue
        body = {"answers": [dict(face_id=question["face_id"], **ANSWER_WORDS[reply])]}
        done = session.call("POST", f"people/{person['person_id']}/suggestions", body)
        change = done["person"]["photo_count"] - done["photos_before"]
        print(f"{done['answers'][0]['result']}: {name} has {done['person']['photo_count']} photos ({change:+d})")
    print("no more questions")
    return 0


def cmd_reindex(args) -> int:
    """Operators: the local stack's reindex, or the deployed reindex Lambda."""
    if args.function is None:
        from local_stack.__main__ import reindex

        return reindex(argparse.Namespace(owner=args.owner, model_version=args.model_version))
    import boto3

    payload = {"owner": args.owner, "model_version": args.model_version}
    # Asynchronously: the function may run 15 minutes, longer than a client waits for an answer
    # (and a client that gave up would invoke it again). Lambda queues the event and retries it.
    response = boto3.client("lambda").invoke(
        FunctionName=args.function, InvocationType="Event", Payload=json.dumps(payload).encode()
    )
    if response.get("StatusCode") != 202:
        raise CliError(
            f"{args.function} was not started: {response.get('FunctionError') or response.get('StatusCode')}"
        )
    print(
        f"{args.function} started; its progress is in its log (aws logs tail /aws/lambda/{args.function} --follow), "
        "and running it again resumes where it stopped"
    )
    return 0


def cmd_purge_user(args) -> int:
    """``memstudio purge-user`` (operator): delete a user's account and data."""
    from .ops import purge_user, stage_settings

    removed = purge_user(stage_settings(Path(args.stack_file)), args.username)
    print(f"deleted user {args.username} ({removed['sub']}): {removed}")
    return 0


def cmd_disable_user(args) -> int:
    """``memstudio disable-user`` (operator): disable a user and end their sessions."""
    from .ops import disable_user, stage_settings

    sub = disable_user(stage_settings(Path(args.stack_file)), args.username)
    print(f"disabled user {args.username} ({sub}): no sign-in, every token refused")
    return 0


def main(argv=None) -> int:
    """``memstudio``."""
    parser = argparse.ArgumentParser(
        prog="memstudio", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", help="the API's base URL")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("login", help="sign in (tokens kept in ~/.config/memstudio, mode 600)")
    p.add_argument("email")
    p.add_argument("--password", help="default: $MEMSTUDIO_PASSWORD, else asked")
    p.set_defaults(func=cmd_login)
    p = sub.add_parser("logout", help="sign out: revoke the refresh token and forget the session")
    p.set_defaults(func=cmd_logout)
    p = sub.add_parser("upload", help="upload every photo of a folder (recursive, resumable)")
    p.add_argument("folder")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("list", help="the album by date taken, newest first")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="one photo with its faces")
    p.add_argument("photo_id")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("search", help="the album's photos of the person in a key photo")
    p.add_argument("photo")
    p.add_argument("--face", type=int, default=0, help="which face of the key photo (0 = largest)")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("delete", help="move photos to the trash (--forever: delete them for good)")
    p.add_argument("photo_ids", nargs="+")
    p.add_argument("--forever", action="store_true", help="delete for good at once, not into the trash")
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("trash", help="the photos in the trash, with the day each is deleted for good")
    p.set_defaults(func=cmd_trash)
    p = sub.add_parser("restore", help="bring photos back from the trash")
    p.add_argument("photo_ids", nargs="+")
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("empty-trash", help="delete every photo in the trash for good")
    p.set_defaults(func=cmd_empty_trash)
    p = sub.add_parser("people", help="the people found in the album, biggest first")
    p.add_argument("--hidden", action="store_true", help="hidden people too")
    p.set_defaults(func=cmd_people)
    p = sub.add_parser("person", help="one person's photos, newest first")
    p.add_argument("person_id")
    p.set_defaults(func=cmd_person)
    p = sub.add_parser("name", help="name a person")
    p.add_argument("person_id")
    p.add_argument("name")
    p.set_defaults(func=cmd_name)
    p = sub.add_parser("merge", help="merge people into the first one (it keeps its name)")
    p.add_argument("target")
    p.add_argument("sources", nargs="+")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("review", help='answer "Is this …?" one question at a time (y / n / s / q)')
    p.add_argument("person_id", nargs="?", help="one person's questions (default: the whole album's)")
    p.set_defaults(func=cmd_review)
    p = sub.add_parser("reindex", help="operators: re-embed photos with the served model bundle")
    p.add_argument("--owner", help="only this user's photos (Cognito sub)")
    p.add_argument("--model-version", help="target bundle (default: what the endpoint serves)")
    p.add_argument("--function", help="the deployed reindex Lambda (AWS); without it, the local stack")
    p.set_defaults(func=cmd_reindex)
    p = sub.add_parser("purge-user", help="operators: delete a user's data and account")
    p.add_argument("username", help="the Cognito user name (the email address)")
    p.add_argument("--stack-file", default=str(LOCAL_STACK), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_purge_user)
    p = sub.add_parser("disable-user", help="operators: stop a user signing in, and void their tokens")
    p.add_argument("username", help="the Cognito user name (the email address)")
    p.add_argument("--stack-file", default=str(LOCAL_STACK), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_disable_user)
    args = parser.parse_args(argv)
    try:
        if args.command not in ("reindex", "purge-user", "disable-user"):
            args.api = (args.api or default_api()).rstrip("/")
        return args.func(args)
    except (CliError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
