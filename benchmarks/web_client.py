"""Speed the web client's user feels, in Chromium against the local stack, for this client and an
earlier one in the same run: the album's first paint with 1,000 photos, and upload-to-searchable
time per photo.

    .venv/bin/python -m benchmarks.web_client [--before 183c5b1] [--photos 1000]
        → benchmarks/results/web_client.json

One stack serves both clients (the earlier one's static files, taken from git, are swapped in where
the API reads them): the API, the store and the indexer are the same, so the difference is the
client's. The album is written straight into the store with real thumbnails in S3 (indexing 1,000
photos on 2 cores would take most of an hour): 1,000 photos of ../shared/facedata, their thumbnails
made the way the indexer makes them. First paint: a signed-in user opens the album (a reload, the
session kept), timed from navigation to the first screen of thumbnails decoded, median of 5.
Upload-to-searchable: 8 new photos through the upload page, timed from choosing them to every tile
indexed (the indexer on this machine's CPU), per photo.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Corr3ct-Horse!"
EMAIL = "bench-web@example.com"
PAINTS = 5
UPLOADS = 8
# The first screen of thumbnails is decoded: every album image inside the viewport has loaded.
FIRST_SCREEN = """() => {
  const shown = [...document.querySelectorAll('#grid img')].filter((img) => {
    const r = img.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.width > 0;
  });
  return shown.length >= 8 && shown.every((img) => img.complete && img.naturalWidth > 0);
}"""


def facedata_photos(limit: int) -> list[Path]:
    from tests.face_fixtures import FACEDATA

    photos = sorted(p for p in (FACEDATA / "people").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(photos) < limit + 3 * UPLOADS:
        raise SystemExit(f"../shared/facedata/people has {len(photos)} photos; {limit + 3 * UPLOADS} are needed")
    return photos


def seed_album(services, s3, bucket: str, owner: str, photos: list[Path]) -> None:
    """Indexed photo records and their thumbnails, as the indexer leaves them (no faces: the album's
    paint does not read them)."""
    from PIL import Image

    from chalicelib.records import timeline_at
    from chalicelib.shared.images import THUMBNAIL_SIZE, jpeg_rendition
    from chalicelib.stores.object_storage import thumbnail_key

    now, records = time.time(), []
    for n, path in enumerate(photos):
        image = Image.open(path).convert("RGB")
        photo_id, at = f"{n:032x}", datetime.fromtimestamp(now - n * 3600, UTC)
        thumbnail = thumbnail_key(owner, photo_id)
        body = jpeg_rendition(image, THUMBNAIL_SIZE)
        s3.put_object(Bucket=bucket, Key=thumbnail, Body=body, ContentType="image/jpeg")
        records.append(
            {
                "owner": owner,
                "photo_id": photo_id,
                "key": f"photos/{owner}/{photo_id}.jpg",
                "filename": path.name,
                "content_type": "image/jpeg",
                "declared_size": path.stat().st_size,
                "status": "indexed",
                "error": None,
                "face_count": 1,
                "width": image.width,
                "height": image.height,
                "taken_at": None,
                "uploaded_at": at,
                "timeline_at": timeline_at(at),
                "thumbnail_key": thumbnail,
                "model_version": "seeded",
            }
        )
    services.photo_store.add_photos(records)  # the quota counts them from these records


def client_files(revision: str | None, into: Path) -> Path:
    """The web client's static files at ``revision`` (git), or this checkout's."""
    here = ROOT / "chalicelib" / "edge" / "web"
    if revision is None:
        return here
    # The client's folder moved with the edge (0.5.0 kept it at chalicelib/web).
    folder = next(
        place
        for place in ("chalicelib/edge/web", "chalicelib/web")
        if subprocess.run(["git", "cat-file", "-e", f"{revision}:{place}"], cwd=ROOT).returncode == 0
    )
    archive = subprocess.run(["git", "archive", revision, folder], cwd=ROOT, check=True, capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    web = into / folder
    for vendored in here.glob("*.min.js"):  # fetched at build time, not in git
        shutil.copy(vendored, web / vendored.name)
    return web


# Where the last paint's time went: each request the page made (thumbnails summed), when it began and
# ended, in ms from navigation.
TIMELINE = """() => {
  const entries = performance.getEntriesByType('resource');
  const thumbs = entries.filter((e) => e.name.includes('/thumbs/'));
  const named = entries.filter((e) => !e.name.includes('/thumbs/')).map((e) =>
    [new URL(e.name).pathname.split('/').slice(-2).join('/') + (e.initiatorType === 'fetch' ? ' (fetch)' : ''),
     Math.round(e.startTime), Math.round(e.responseEnd)]);
  const nav = performance.getEntriesByType('navigation')[0];
  return { document: Math.round(nav.responseEnd), dom_ready: Math.round(nav.domContentLoadedEventEnd), requests: named,
           thumbnails: [thumbs.length, Math.round(Math.min(...thumbs.map((e) => e.startTime))),
                        Math.round(Math.max(...thumbs.map((e) => e.responseEnd)))] };
}"""


def measure(browser, api_url: str, uploads: list[Path], service_workers: str = "allow") -> dict:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, locale="en-US", service_workers=service_workers
    )
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{api_url}/")
    page.wait_for_selector("#form-signin")
    page.fill("#form-signin input[name=email]", EMAIL)
    page.fill("#form-signin input[name=password]", PASSWORD)
    page.click("#form-signin button[type=submit]")
    page.wait_for_selector("#view-album:not([hidden])")
    page.wait_for_function(FIRST_SCREEN)
    paints = []
    for _ in range(PAINTS):
        page.reload()
        page.wait_for_function(FIRST_SCREEN, polling=16)
        paints.append(page.evaluate("performance.now()"))
    timeline = page.evaluate(TIMELINE)

    started = time.perf_counter()
    page.click("nav a[data-view=upload]")
    page.set_input_files("#file-input", [str(p) for p in uploads])
    page.click("nav a[data-view=album]")
    names = [p.name for p in uploads]
    page.wait_for_function(
        "(names) => names.every((n) => "
        "document.querySelector(`#grid button[data-status=indexed][aria-label^='${n}']`))",
        arg=names,
        timeout=600_000,
        polling=100,
    )
    searchable_s = time.perf_counter() - started
    context.close()
    return {
        "first_paint_ms": {"median": round(statistics.median(paints)), "all": [round(p) for p in paints]},
        "last_paint_timeline_ms": timeline,
        "upload_to_searchable_s_per_photo": round(searchable_s / len(uploads), 2),
        "uploads": len(uploads),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="183c5b1", help="git revision of the earlier client")
    parser.add_argument("--photos", type=int, default=1000)
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer
    from playwright.sync_api import sync_playwright

    import chalicelib.edge.web_client as web_client
    from chalicelib.services import Services
    from chalicelib.settings import Settings
    from gpu_endpoint.bundle import DEFAULT_DIR
    from local_stack.__main__ import serve_api, start_pumps
    from local_stack.aws import client, create_confirmed_user, free_port, provision, sign_in
    from local_stack.endpoint import EndpointProcess
    from tests.test_web_e2e import CHROMIUM, CHROMIUM_FLAGS

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    photos = facedata_photos(args.photos)
    state = Path(tempfile.mkdtemp(prefix="web-client-"))
    moto_port, api_port, endpoint_port = free_port(), free_port(), free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    api_url = f"http://127.0.0.1:{api_port}"
    store = str(state / "store")
    info = provision(f"http://127.0.0.1:{moto_port}", "bench-web", api_url, store, cors_origins=(api_url,))
    environment = {**info.app_environment(), "ALLOWED_S3_BUCKETS": info.bucket}
    faces = EndpointProcess(DEFAULT_DIR, "127.0.0.1", endpoint_port, environment, state / "endpoint.log")
    pumps, results = [], {"photos": args.photos, "before": args.before}
    try:
        faces.wait_ready()
        info.endpoint_url = faces.url
        os.environ.update(info.app_environment())
        create_confirmed_user(info, EMAIL, PASSWORD)
        tokens = sign_in(info, EMAIL, PASSWORD)
        cognito = client("cognito-idp", info.aws_endpoint_url)
        attributes = cognito.get_user(AccessToken=tokens["AccessToken"])["UserAttributes"]
        owner = next(a["Value"] for a in attributes if a["Name"] == "sub")
        started = time.perf_counter()
        seed_album(
            Services(Settings.from_env(info.app_environment())),
            client("s3", info.aws_endpoint_url),
            info.bucket,
            owner,
            photos[: args.photos],
        )
        results["seed_s"] = round(time.perf_counter() - started, 1)

        server = serve_api("127.0.0.1", api_port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        pumps = start_pumps(info)
        spare = iter(photos[args.photos :])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            # The service worker (the app offline) is measured apart: it sees every thumbnail.
            runs = (
                ("before", args.before, "allow"),
                ("after", None, "allow"),
                ("after_no_service_worker", None, "block"),
            )
            for name, revision, service_workers in runs:
                web_client.WEB_DIR = client_files(revision, state / name)
                uploads = [next(spare) for _ in range(UPLOADS)]
                results[name] = measure(browser, api_url, uploads, service_workers)
                print(name, results[name], flush=True)
            browser.close()
        server.shutdown()
    finally:
        for pump in pumps:
            pump.stop()
        faces.stop()
        moto.stop()
    write_results("web_client.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
