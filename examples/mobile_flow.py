"""What a mobile app does with the Memory Studio API, step by step, in plain HTTPS calls.

    python examples/mobile_flow.py --api URL --email E --password P PHOTO [KEY_PHOTO]

1. read the API's client configuration (Cognito endpoint and app client id);
2. sign in with Cognito (``USER_PASSWORD_AUTH``; an app would use Amplify's SRP sign-in, which
   answers the same tokens) and keep the **ID token**;
3. ask for a presigned upload and POST the photo straight to S3 (form fields first, file last);
4. wait for indexing with the batch status call;
5. search the album with a key photo (uploaded the same way), and print the matches.

Every call is one ``requests`` call, so each maps to one call of URLSession, OkHttp or fetch.
The API is described in ``/openapi.yaml`` (rendered at ``/docs``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import time
from pathlib import Path

import requests

TIMEOUT = 30


def sign_in(http: requests.Session, api: str, email: str, password: str) -> str:
    config = http.get(f"{api}/web/config.json", timeout=TIMEOUT).json()  # 1.
    answer = http.post(  # 2. Cognito's own JSON API, as the AWS SDKs call it
        config["cognitoEndpoint"],
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
        },
        data=json.dumps(
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": config["clientId"],
                "AuthParameters": {"USERNAME": email, "PASSWORD": password},
            }
        ),
        timeout=TIMEOUT,
    )
    answer.raise_for_status()
    return answer.json()["AuthenticationResult"]["IdToken"]


def upload(http: requests.Session, api: str, token: str, photo: Path) -> str:
    """3. One photo; answers its photo_id (an album photo with the same bytes is answered as it)."""
    data = photo.read_bytes()
    file = {
        "filename": photo.name,
        "content_type": mimetypes.guess_type(photo.name)[0] or "image/jpeg",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    answer = http.post(f"{api}/photos/uploads", json={"files": [file]}, headers=_auth(token), timeout=TIMEOUT)
    answer.raise_for_status()
    ticket = answer.json()["uploads"][0]
    if "duplicate_of" in ticket:
        return ticket["duplicate_of"]
    posted = http.post(ticket["url"], data=ticket["fields"], files={"file": (photo.name, data)}, timeout=TIMEOUT)
    posted.raise_for_status()  # S3 answers 204
    return ticket["photo_id"]


def wait_until_indexed(http: requests.Session, api: str, token: str, photo_ids: list, timeout: float = 180) -> list:
    """4. Poll many photos in one call until none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http.post(f"{api}/photos/status", json={"photo_ids": photo_ids}, headers=_auth(token), timeout=TIMEOUT)
        answer.raise_for_status()
        photos = answer.json()["photos"]
        if all(p["status"] != "pending" for p in photos) or time.monotonic() > deadline:
            return photos
        time.sleep(1)


def search(http: requests.Session, api: str, token: str, key_photo: Path) -> dict:
    """5. Upload the key photo under keys/ (a presigned POST again), then search with it."""
    data = key_photo.read_bytes()
    file = {"filename": key_photo.name, "content_type": mimetypes.guess_type(key_photo.name)[0], "size": len(data)}
    answer = http.post(f"{api}/search/uploads", json=file, headers=_auth(token), timeout=TIMEOUT)
    answer.raise_for_status()
    key = answer.json()
    posted = http.post(key["url"], data=key["fields"], files={"file": (key_photo.name, data)}, timeout=TIMEOUT)
    posted.raise_for_status()
    answer = http.post(f"{api}/search", json={"key_id": key["key_id"]}, headers=_auth(token), timeout=60)
    if answer.status_code == 422:  # {"error": "no_face", "message": ...}
        return {"results": [], "error": answer.json()}
    answer.raise_for_status()
    return answer.json()


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def main(argv=None, http: requests.Session | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("photo", type=Path)
    parser.add_argument("key_photo", type=Path, nargs="?")
    args = parser.parse_args(argv)
    http = http or requests.Session()
    api = args.api.rstrip("/")
    token = sign_in(http, api, args.email, args.password)
    photo_id = upload(http, api, token, args.photo)
    photo = wait_until_indexed(http, api, token, [photo_id])[0]
    report = {"photo_id": photo_id, "status": photo["status"], "faces": photo["face_count"]}
    if args.key_photo:
        found = search(http, api, token, args.key_photo)
        report["matches"] = [{"photo_id": r["photo_id"], "score": r["score"]} for r in found["results"]]
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
