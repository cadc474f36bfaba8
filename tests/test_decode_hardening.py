"""Untrusted image bytes: every outcome is a decoded image or a clean ImageError, never a dead process.

The fuzzer mutates small valid JPEG, PNG, WebP and HEIC files (fixed seeds, bounded count) and
sends each through ``decode_image``, the path the indexer and the face endpoint use. A mutation
that kills the decoder is written to ``test-artifacts/fuzz/``; keep each new one as a case in
``tests/fuzz_cases/`` (``FUZZ_SAVE_CRASHERS=1`` writes them there directly).
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chalicelib.shared.images import DecodedImage, ImageError, decode_image
from chalicelib.shared.isolation import ChildFailed, run_isolated

HERE = Path(__file__).resolve().parent
CASES = HERE / "fuzz_cases"
SHARED_FUZZ = HERE.parent.parent / "shared" / "fuzz"
MUTATIONS_PER_FORMAT = 60

# Four-character box and chunk names the containers use: a mutation swaps one for another.
BOX_TYPES = [
    b"ftyp",
    b"meta",
    b"iinf",
    b"infe",
    b"iloc",
    b"iprp",
    b"ipco",
    b"ipma",
    b"hvcC",
    b"ispe",
    b"pitm",
    b"iref",
    b"Exif",
    b"mime",
    b"hvc1",
    b"av01",
    b"mdat",
    b"VP8 ",
    b"VP8L",
    b"VP8X",
    b"ALPH",
    b"EXIF",
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"eXIf",
    b"iCCP",
]


def known_crashers() -> list:
    files = sorted(CASES.glob("*"))
    if SHARED_FUZZ.is_dir():
        files += [
            p for p in sorted(SHARED_FUZZ.iterdir()) if p.suffix.lower() != ".md" and not (CASES / p.name).exists()
        ]
    return files


def sample(fmt: str) -> bytes:
    """A small, real, valid file of the format (a gradient with noise, 48x64)."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3)
    pixels = np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the EXIF path is exercised too
    image.save(buffer, fmt, exif=exif.tobytes(), **({"quality": 80} if fmt != "PNG" else {}))
    return buffer.getvalue()


def mutations(data: bytes, seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        mutated = bytearray(data)
        kind = rng.choice(["flip", "flip", "truncate", "box", "bytes"])
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del mutated[rng.randint(8, len(mutated) - 1) :]
        elif kind == "box":
            present = [(i, box) for box in BOX_TYPES for i in _find_all(data, box)]
            if present:
                at, _ = rng.choice(present)
                mutated[at : at + 4] = rng.choice(BOX_TYPES)
        else:  # a run of random bytes (sizes, offsets, counts)
            at = rng.randrange(len(mutated))
            mutated[at : at + 4] = bytes(rng.randrange(256) for _ in range(4))
        yield kind, bytes(mutated)


def _find_all(data: bytes, needle: bytes):
    at = data.find(needle)
    while at != -1:
        yield at
        at = data.find(needle, at + 1)


def assert_clean(data: bytes):
    """Decoded, or refused with a 4xx ImageError; returns the error, if any."""
    try:
        decoded = decode_image(data)
    except ImageError as exc:
        assert 400 <= exc.status < 500 and exc.code and exc.message
        return exc
    assert isinstance(decoded, DecodedImage) and decoded.image.mode == "RGB"
    return None


@pytest.mark.parametrize("path", known_crashers(), ids=lambda p: p.name)
def test_known_crashers_are_clean_errors(path):
    error = assert_clean(path.read_bytes())
    assert error is not None and error.code == "unreadable_image"
    assert decode_image(sample("JPEG")).width == 48  # and decoding goes on in this process


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_mutated_files_never_kill_the_process(fmt, tmp_path):
    original = sample(fmt)
    assert assert_clean(original) is None
    crashers, outcomes = [], {"decoded": 0, "refused": 0}
    for kind, data in mutations(original, seed=sum(fmt.encode()), count=MUTATIONS_PER_FORMAT):
        error = assert_clean(data)
        outcomes["refused" if error else "decoded"] += 1
        if error is not None and "the decoder failed" in error.message:
            crashers.append((kind, data))
    assert sum(outcomes.values()) == MUTATIONS_PER_FORMAT
    assert outcomes["refused"] > 0  # the mutations really reach the decoder's error paths
    for kind, data in crashers:
        _keep(fmt, kind, data)


def _keep(fmt: str, kind: str, data: bytes) -> None:
    name = f"{fmt.lower()}-{kind}-{hashlib.sha256(data).hexdigest()[:12]}.bin"
    if (CASES / name).exists():
        return
    folder = CASES if os.environ.get("FUZZ_SAVE_CRASHERS") else HERE.parent / "test-artifacts" / "fuzz"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    print(f"new crasher kept as {folder / name}")


def test_multi_picture_jpeg_is_a_jpeg():
    """MPO (phones' multi-picture JPEG): accepted as JPEG, the first picture is the photo."""
    first = Image.new("RGB", (64, 48), (200, 30, 30))
    second = Image.new("RGB", (64, 48), (30, 30, 200))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    decoded = decode_image(buffer.getvalue())
    assert decoded.content_type == "image/jpeg"
    assert decoded.image.getpixel((32, 24))[0] > 150  # the red first picture


# The python3.11 Lambda runtime (Amazon Linux 2, glibc 2.26) has no os.memfd_create; a CPython built
# against old kernel headers has no os.pidfd_open. Isolation works without either.
WITHOUT = [(), ("memfd_create",), ("pidfd_open",), ("memfd_create", "pidfd_open")]


@pytest.mark.parametrize("missing", WITHOUT, ids=lambda names: "without " + (" ".join(names) or "nothing"))
def test_isolation_contains_crashes_hangs_and_memory_hogs(missing, monkeypatch):
    for name in missing:
        monkeypatch.delattr(os, name)
    with pytest.raises(ChildFailed) as crashed:
        run_isolated(ctypes.string_at, 0)  # a real invalid read: SIGSEGV in the child
    assert crashed.value.kind == "crashed" and crashed.value.signal_number == signal.SIGSEGV
    with pytest.raises(ChildFailed) as hung:
        run_isolated(time.sleep, 30, timeout=0.5)
    assert hung.value.kind == "timeout"
    with pytest.raises(MemoryError):
        run_isolated(bytearray, 3 * 1024**3, memory_bytes=256 * 1024**2)
    with pytest.raises(ImageError) as refused:  # the child's own errors come back whole
        run_isolated(_raise_image_error)
    assert (refused.value.status, refused.value.code) == (415, "unsupported_image_type")
    assert run_isolated(sum, [1, 2, 3]) == 6


def _raise_image_error():
    raise ImageError("no", 415, "unsupported_image_type")


def test_a_decode_out_of_memory_is_a_413(monkeypatch):
    import chalicelib.shared.images as images

    monkeypatch.setattr(images, "DECODE_MEMORY_BYTES", 64 * 1024**2)
    big = Image.new("RGB", (6000, 6000), (10, 20, 30))  # 108 MB decoded, a few KB as PNG
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=1)
    with pytest.raises(ImageError) as caught:
        decode_image(buffer.getvalue())
    assert (caught.value.status, caught.value.code) == (413, "too_many_pixels")
