"""The photo types the album accepts: one table, read by the API, the indexer, the face endpoint,
the CLI and (through ``web/config.json``) the web client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaType:
    """An image type the album takes: its extensions and whether browsers show it."""

    extensions: tuple[str, ...]  # the first one names the stored object
    browsers_show: bool  # else the indexer keeps a JPEG preview to show


MEDIA_TYPES = {
    "image/jpeg": MediaType((".jpg", ".jpeg"), True),
    "image/png": MediaType((".png",), True),
    "image/webp": MediaType((".webp",), True),
    "image/heic": MediaType((".heic",), False),
    "image/heif": MediaType((".heif",), False),
    "image/gif": MediaType((".gif",), True),  # its first frame, as the photo apps do
}
SUPPORTED = frozenset(MEDIA_TYPES)
BROWSER_TYPES = frozenset(name for name, kind in MEDIA_TYPES.items() if kind.browsers_show)
BY_EXTENSION = {ext: name for name, kind in MEDIA_TYPES.items() for ext in kind.extensions}


def extension(content_type: str) -> str:
    """The extension an object of this (supported) type is stored under."""
    return MEDIA_TYPES[content_type].extensions[0]
