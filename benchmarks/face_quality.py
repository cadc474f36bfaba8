"""Detection quality on dlib's hand-labelled group photos, and the bundle's calibration.

.venv/bin/python -m benchmarks.face_quality   → benchmarks/results/face_quality.json
"""

from __future__ import annotations

import sys

from benchmarks.common import cpu_engine, write_results
from chalicelib.shared.images import decode_image
from model_factory.facedata import ground_truth_boxes, match_detections


def main() -> int:
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    per_photo, totals = [], {"faces": 0, "found": 0, "missed": 0, "false_positives": 0}
    for path, boxes in sorted(ground_truth_boxes(root).items()):
        faces = engine.detect(decode_image(path.read_bytes()).image)
        tp, fn, fp = match_detections(boxes, [f.box for f in faces])
        per_photo.append({"photo": path.name, "faces": len(boxes), "found": tp, "missed": fn, "false_positives": fp})
        for key, value in (("faces", len(boxes)), ("found", tp), ("missed", fn), ("false_positives", fp)):
            totals[key] += value
    totals["recall"] = totals["found"] / totals["faces"]
    results = {
        "bundle": engine.version,
        "detection_dlib_ground_truth": {"totals": totals, "photos": per_photo},
        "calibration": engine.manifest.calibration,
    }
    write_results("face_quality.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
