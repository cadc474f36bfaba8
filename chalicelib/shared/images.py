"""Reading photos safely: real format from the bytes, size and pixel limits, EXIF orientation.

Shared by the indexing Lambda and the face endpoint, so both judge a photo the same way.
``decode_image`` runs the native decoders in a child process (``isolation``): a file that
crashes or exhausts a decoder becomes an ``ImageError``, never a dead process.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from chalicelib.shared.isolation import ChildFailed, run_isolated

try:  # HEIC/HEIF, as phones send them
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a pinned dependency
    HEIF_SUPPORTED = False

# MPO: the multi-picture JPEG many phones write (the first picture is the photo).
FORMAT_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
    "HEIC": "image/heic",
    "GIF": "image/gif",  # the first frame, as the photo apps do
}
MAX_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 50_000_000
MIN_SIDE = 16
# What one decode may take: time, and address space on top of what the process already has.
DECODE_TIMEOUT_S = 20.0
DECODE_MEMORY_BYTES = 2 * 1024**3

Image.init()  # every plugin imported here, once, rather than in each child


class ImageError(ValueError):
    """A photo that cannot be used; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_image"):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code

    def __reduce__(self):  # crosses the process boundary whole
        return ImageError, (self.message, self.status, self.code)


@dataclass
class DecodedImage:
    """An image decoded from untrusted bytes, upright, with what its bytes said it is."""

    image: Image.Image  # RGB, EXIF orientation applied
    content_type: str  # from the bytes, not the name
    width: int
    height: int
    taken_at: str | None  # ISO 8601 local time; with its UTC offset when the photo records one

    def __reduce__(self):
        # Out of the decoding child as one numpy buffer: a PIL image pickles through tobytes()
        # and several more copies (~150 ms for 12 MP).
        return _rebuild, (np.asarray(self.image), self.content_type, self.width, self.height, self.taken_at)


def _rebuild(pixels: np.ndarray, content_type: str, width: int, height: int, taken_at) -> DecodedImage:
    return DecodedImage(Image.fromarray(pixels), content_type, width, height, taken_at)


def _taken_at(exif) -> str | None:
    """When the photo was taken, as the camera's clock said: EXIF keeps local time, with the zone
    only in ``OffsetTimeOriginal`` (newer cameras and phones). With it: ``2021-05-01T14:03:00+09:00``;
    without it: ``2021-05-01T14:03:00``, local time of an unknown zone (never presented as UTC)."""
    details = exif.get_ifd(0x8769)
    raw = details.get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    if not raw:
        return None
    try:
        taken = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = str(details.get(0x9011) or "").strip("\x00 ")  # OffsetTimeOriginal, "+09:00"
    try:
        return datetime.fromisoformat(taken.isoformat() + offset).isoformat() if offset else taken.isoformat()
    except ValueError:  # a malformed offset: the local time alone
        return taken.isoformat()


def decode_image(
    data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, max_side: int | None = None
) -> DecodedImage:
    """Untrusted bytes → an RGB image, decoded in a child process; any failure is an ``ImageError``.
    ``max_side``: the image is wanted no larger than this, so a JPEG may be decoded at 1/2, 1/4 or
    1/8 scale (never below it); ``width`` and ``height`` are the photo's own all the same."""
    if not data:
        raise ImageError("the file is empty", 400, "empty_file")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {len(data)} bytes; the limit is {max_bytes}", 413, "file_too_large")
    try:
        return run_isolated(
            _decode, data, max_pixels, max_side, timeout=DECODE_TIMEOUT_S, memory_bytes=DECODE_MEMORY_BYTES
        )
    except ChildFailed as exc:
        if exc.kind == "timeout":
            raise ImageError(f"the image took too long to decode ({exc.reason})", 422, "decode_timeout") from exc
        raise ImageError(
            f"the file is not a readable image (the decoder failed: {exc.reason})", 400, "unreadable_image"
        ) from exc
    except MemoryError:
        raise ImageError("the image needs too much memory to decode", 413, "too_many_pixels") from None


def _decode(data: bytes, max_pixels: int, max_side: int | None = None) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            content_type = FORMAT_CONTENT_TYPES.get(image.format or "")
            if content_type is None:
                raise ImageError(
                    f"{image.format} images are not supported; send JPEG, PNG, WebP, GIF or HEIC",
                    415,
                    "unsupported_image_type",
                )
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"the image has {width}x{height} pixels; the limit is {max_pixels}", 413, "too_many_pixels"
                )
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animated WebP: the first frame is the photo
            exif = image.getexif()
            if exif.get(ExifTags.Base.Orientation) in (5, 6, 7, 8):
                width, height = height, width  # turned a quarter by exif_transpose
            if max_side is not None and max(image.size) > max_side:
                scale = max_side / max(image.size)  # draft keeps both sides at least this
                image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))  # JPEG only
            upright = ImageOps.exif_transpose(image)
            upright.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode safely ({exc})", 413, "too_many_pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"the file is not a readable image ({exc.__class__.__name__})", 400, "unreadable_image"
        ) from exc
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"the image is {width}x{height}; photos need at least {MIN_SIDE} px a side", 422, "image_too_small"
        )
    return DecodedImage(
        image=_to_rgb(upright),
        content_type=content_type,
        width=width,
        height=height,
        taken_at=_taken_at(exif),
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (CMYK, 16-bit, palette, alpha) as 8-bit RGB; transparency over white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


THUMBNAIL_SIZE, PREVIEW_SIZE = 512, 2048


def jpeg_rendition(image: Image.Image, size: int, quality: int = 85) -> bytes:
    """A JPEG no larger than ``size`` on its longer side (a thumbnail, a preview)."""
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def difference_hash(image: Image.Image) -> int:
    """A 64-bit perceptual hash (dHash: is each pixel brighter than its right neighbour, on a 9×8
    grey image). Re-encoding or resizing changes a few bits; another picture about half of them.
    Written out (five lines) rather than ``imagehash``, whose SciPy would not fit the Lambda package."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)
