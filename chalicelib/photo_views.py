"""Photos as the API answers them: their fields, their times as clients read them, and signed URLs
for the original, the thumbnail and the preview. The album, search and people answer photos alike."""

from __future__ import annotations

from datetime import datetime, timedelta

from chalicelib.clock import utc
from chalicelib.records import Photo
from chalicelib.settings import Settings
from chalicelib.stores.object_storage import ObjectStorage


def iso(value) -> str | None:
    """A stored datetime as ISO 8601 UTC with a ``Z``; None stays None."""
    value = utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def taken_at(value) -> str | None:
    """As the indexer stored it; records of earlier versions hold the camera's local time as a
    datetime (stored without a zone): shown as local time, never with a ``Z``."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return value


class PhotoViews:
    """Presents photo records with URLs signed for ``settings.download_url_ttl`` seconds."""

    def __init__(self, object_storage: ObjectStorage, settings: Settings):
        self.object_storage, self.settings = object_storage, settings

    def thumbnail_url(self, photo: Photo) -> str | None:
        """The thumbnail's signed URL (None before indexing made one)."""
        thumbnail = photo.get("thumbnail_key")
        return self.object_storage.presigned_get(thumbnail, self.settings.download_url_ttl) if thumbnail else None

    def url(self, photo: Photo) -> str | None:
        """The original's signed URL, shown inline under its file name (None once it is gone)."""
        key = photo.get("key")
        if not key:
            return None
        filename, content_type = photo.get("filename") or "photo", photo.get("content_type")
        return self.object_storage.presigned_get(key, self.settings.download_url_ttl, content_type, filename)

    def present(self, photo: Photo) -> dict:
        """A photo as the API answers it: its fields and signed URLs for the original, thumbnail and
        preview. A list that shows less signs less: ``thumbnail_url`` and ``url`` alone."""
        ttl = self.settings.download_url_ttl
        preview = photo.get("preview_key")
        trashed_at = photo.get("trashed_at")
        key, filename, content_type = photo.get("key"), photo.get("filename") or "photo", photo.get("content_type")
        url = self.url(photo)
        return {
            "photo_id": photo["photo_id"],
            "filename": photo.get("filename"),
            "content_type": photo.get("content_type"),
            "status": photo["status"],
            "error": photo.get("error"),
            "face_count": photo.get("face_count", 0),
            "width": photo.get("width"),
            "height": photo.get("height"),
            "uploaded_at": iso(photo.get("uploaded_at")),
            "taken_at": taken_at(photo.get("taken_at")),
            "timeline_at": taken_at(photo.get("timeline_at")),
            "thumbnail_url": self.thumbnail_url(photo),
            "url": url,
            # What a browser can show: the original, or a JPEG of a HEIC original.
            "preview_url": self.object_storage.presigned_get(preview, ttl) if preview and url else url,
            "download_url": self.object_storage.presigned_get(key, ttl, content_type, filename, download=True)
            if key
            else None,
            "duplicate_of": photo.get("duplicate_of"),
            "trashed_at": iso(trashed_at),
            "purge_at": iso(utc(trashed_at) + timedelta(days=self.settings.trash_days)) if trashed_at else None,
        }
