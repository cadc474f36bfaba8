"""What decoding in a child process costs: in-process vs isolated decode of real-size photos,
measured alternately in one run (this machine is shared and noisy, so the ratio is what counts).

    .venv/bin/python -m benchmarks.decode_isolation   → benchmarks/results/decode_isolation.json
"""

from __future__ import annotations

import io
import statistics
import time

import numpy as np
from PIL import Image

from benchmarks.common import write_results
from chalicelib.shared.images import MAX_PIXELS, _decode, decode_image

ROUNDS = 15


def photo(width: int, height: int, fmt: str) -> bytes:
    """A photo-like image (smooth gradient plus sensor noise) of the given size."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 50, height)[:, None, None]
    pixels = np.clip(ramp + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, quality=90)
    return buffer.getvalue()


def timed(fn, data: bytes) -> float:
    started = time.perf_counter()
    fn(data)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    cases = {
        "1 MP JPEG": photo(1155, 866, "JPEG"),
        "12 MP JPEG": photo(4032, 3024, "JPEG"),
        "12 MP HEIC": photo(4032, 3024, "HEIF"),
    }
    results = {"rounds": ROUNDS, "cases": {}}
    for name, data in cases.items():
        inside, isolated = [], []
        for _ in range(ROUNDS):  # alternating, so both see the same machine load
            inside.append(timed(lambda d: _decode(d, MAX_PIXELS), data))
            isolated.append(timed(decode_image, data))
        p50_in, p50_iso = statistics.median(inside), statistics.median(isolated)
        results["cases"][name] = {
            "bytes": len(data),
            "in_process_p50_ms": round(p50_in, 1),
            "isolated_p50_ms": round(p50_iso, 1),
            "overhead_ms": round(p50_iso - p50_in, 1),
            "ratio": round(p50_iso / p50_in, 2),
        }
    write_results("decode_isolation.json", results)


if __name__ == "__main__":
    main()
