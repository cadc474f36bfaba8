"""Uploading a folder: presigned POSTs in parallel, a progress bar, and a journal so that a
rerun (after Ctrl-C, a crash or a network failure) sends only what has not arrived yet."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests

from chalicelib.shared.media_types import BY_EXTENSION

from .session import Session, client_config, state_dir

# What the API accepts, by file extension.
CONTENT_TYPES = BY_EXTENSION  # extension → type


def photos_in(folder: Path) -> list[Path]:
    """The photos under ``folder``, by the types the album takes."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in CONTENT_TYPES)


class Journal:
    """What was uploaded from a folder, per API and user: relative path → size, mtime, photo id."""

    def __init__(self, session: Session, folder: Path):
        key = hashlib.sha1(f"{session.api}|{session.sub}|{folder.resolve()}".encode()).hexdigest()[:16]
        self.path = state_dir() / f"uploads-{key}.json"
        self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._lock = threading.Lock()

    @staticmethod
    def signature(path: Path) -> list:
        """What says a file is unchanged since it was uploaded: its size and time."""
        stat = path.stat()
        return [stat.st_size, int(stat.st_mtime)]

    def done(self, name: str, path: Path) -> bool:
        """Whether this file, unchanged, was uploaded already."""
        entry = self.entries.get(name)
        return entry is not None and entry["signature"] == self.signature(path)

    def record(self, name: str, path: Path, photo_id: str) -> None:
        """Remember that the file was uploaded as ``photo_id``."""
        with self._lock:
            self.entries[name] = {"signature": self.signature(path), "photo_id": photo_id}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries))
            tmp.replace(self.path)


def file_sha256(path: Path) -> str:
    """A file's SHA-256, hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def post_file(upload: dict, path: Path, content_type: str) -> None:
    """A presigned POST of one file straight to S3."""
    with open(path, "rb") as handle:
        response = requests.post(
            upload["url"], data=upload["fields"], timeout=300, files={"file": (path.name, handle, content_type)}
        )
    if response.status_code >= 300:
        raise RuntimeError(f"storage refused it ({response.status_code})")


def upload_folder(
    session: Session, folder: Path, parallel: int = 4, progress: bool = True
) -> tuple[int, int, list[str]]:
    """Returns (uploaded now, already there — by the journal or by the API's SHA-256 check —,
    failures as 'name: reason')."""
    from tqdm import tqdm

    limits = client_config(session.api)  # the stage's own upload limits
    max_bytes, batch = limits["maxUploadBytes"], limits["maxFilesPerRequest"]
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    journal = Journal(session, folder)
    files = photos_in(folder)
    todo = [p for p in files if not journal.done(str(p.relative_to(folder)), p)]
    skipped = len(files) - len(todo)
    # Checked here so one bad file cannot make the API refuse its whole batch.
    failures = [
        f"{p.relative_to(folder)}: " + ("empty file" if p.stat().st_size == 0 else "larger than the limit")
        for p in todo
        if not 0 < p.stat().st_size <= max_bytes
    ]
    todo = [p for p in todo if 0 < p.stat().st_size <= max_bytes]
    uploaded = 0
    with (
        tqdm(
            total=sum(p.stat().st_size for p in todo),
            unit="B",
            unit_scale=True,
            disable=not progress,
            desc=f"{len(todo)} photos",
        ) as bar,
        ThreadPoolExecutor(parallel) as pool,
    ):
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            body = {
                "files": [
                    {
                        "filename": p.name,
                        "content_type": CONTENT_TYPES[p.suffix.lower()],
                        "size": p.stat().st_size,
                        "sha256": file_sha256(p),
                    }
                    for p in chunk
                ]
            }
            try:
                uploads = session.call("POST", "photos/uploads", body)["uploads"]
            except Exception as exc:  # the whole batch was refused: say why for each file
                failures += [f"{p.relative_to(folder)}: {exc}" for p in chunk]
                bar.update(sum(p.stat().st_size for p in chunk))
                continue
            for u, p in zip(uploads, chunk):
                if u.get("duplicate_of"):  # the same bytes are already in the album
                    journal.record(str(p.relative_to(folder)), p, u["duplicate_of"])
                    skipped += 1
                    bar.update(p.stat().st_size)
            jobs = {
                pool.submit(post_file, u, p, CONTENT_TYPES[p.suffix.lower()]): (u, p)
                for u, p in zip(uploads, chunk)
                if not u.get("duplicate_of")
            }
            for job in as_completed(jobs):
                upload, path = jobs[job]
                name = str(path.relative_to(folder))
                try:
                    job.result()
                    journal.record(name, path, upload["photo_id"])
                    uploaded += 1
                except Exception as exc:
                    failures.append(f"{name}: {exc}")
                bar.update(path.stat().st_size)
    return uploaded, skipped, failures
