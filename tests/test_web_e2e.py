"""The web client end to end in headless Chromium against the whole local stack
(``python -m local_stack up``: moto, the model server on CPU, the API, the event pump),
with real photos from ../shared/facedata.  Screenshots land in test-artifacts/web/."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.face_fixtures import FACEDATA, needs_facedata
from tests.stack_fixture import local_stack  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    needs_facedata,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)"),
]


def people(name: str):
    return sorted((FACEDATA / "people" / "deepface" / name).iterdir())


@pytest.fixture(scope="module")
def browser(local_stack):  # noqa: F811
    """One Chromium for the module (Playwright's sync API runs one at a time)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser):
    # bypass_csp: the page's policy forbids eval, which wait_for_function needs (the app itself never evals).
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page.set_default_timeout(30_000)
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmations
    page.on("console", lambda message: print(f"browser {message.type}: {message.text}"))
    yield page
    page.context.close()


def people_listed(page, count: int) -> None:
    """The People page, asked again each second until it lists ``count`` people (the stack groups
    people a few seconds after the last upload)."""
    for _ in range(60):
        if page.locator("#people li button").count() >= count:
            return
        page.wait_for_timeout(1000)
        page.click("nav a[data-view=people]")  # reloads the list
    raise AssertionError(f"fewer than {count} people listed after a minute")


def label_of(aria_label: str) -> str:
    """A tile's file name, from its aria-label ("name: status")."""
    return aria_label.rsplit(": ", 1)[0]


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_up_upload_index_view_search_delete(page, local_stack, tmp_path):  # noqa: F811
    stack = local_stack.api
    katy, angelina = people("Katy_Perry"), people("Angelina_Jolie")
    page.goto(f"{stack}/")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#view-auth").is_visible() and page.locator("#nav").is_hidden()
    shot(page, "01-sign-in")

    # Sign up, confirm (moto accepts any code), sign in.
    email, password = "e2e@example.com", "Corr3ct-Horse!"
    page.click("#tab-signup")
    # The pool's own rules (read from the pool: 10+ characters and classes), not a guess of the page.
    rules = page.text_content("#signup-rules")
    assert rules.startswith("At least 10 characters") and "upper-case" in rules and "number" in rules, rules
    assert page.get_attribute("#form-signup input[name=password]", "minlength") == "10"
    page.fill("#form-signup input[name=email]", email)
    page.fill("#form-signup input[name=password]", password)
    page.click("#form-signup button[type=submit]")
    page.wait_for_selector("#form-confirm:not([hidden])")
    assert page.input_value("#form-confirm input[name=email]") == email
    page.fill("#form-confirm input[name=code]", "123456")
    page.click("#form-confirm button[type=submit]")
    page.wait_for_selector("#form-signin:not([hidden])")
    page.fill("#form-signin input[name=password]", password)
    page.click("#form-signin button[type=submit]")
    page.wait_for_selector("#view-album:not([hidden])")
    assert "e2e@example.com" in page.text_content("#status")
    assert "token" not in page.url.lower() and "eyj" not in page.url.lower()  # no token in a URL
    page.wait_for_selector("#album-empty:not([hidden])")
    assert page.text_content("#album-empty h3") == "Welcome to Memory Studio"
    shot(page, "01b-empty-album")

    # Upload four photos of each of two people, and one file that is not a photo.
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    page.click("nav a[data-view=upload]")
    page.set_input_files("#file-input", [str(p) for p in katy[:4] + angelina[:4]] + [str(bad)])
    try:
        page.wait_for_function("document.querySelectorAll('#uploads li[data-state=done]').length === 8")
    finally:
        shot(page, "02-upload")
    failed = page.locator("#uploads li[data-state=failed]")
    assert failed.count() == 1 and "not a supported photo type" in failed.text_content()
    assert "failed" in page.text_content("#status")
    shot(page, "02-upload")

    # The album shows them pending, then indexed without a reload; the upload page's message stays there.
    page.click("nav a[data-view=album]")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 8")
    assert "failed" not in page.text_content("#status")
    if page.locator("#grid button[data-status=pending]").count():
        shot(page, "02b-pending")
    page.wait_for_function(
        "document.querySelectorAll('#grid button[data-status=indexed]').length === 8", timeout=180_000
    )
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "03-album")
    names = {
        el.get_attribute("data-photo-id"): el.query_selector("button").get_attribute("aria-label")
        for el in page.locator("#grid li").element_handles()
    }
    katy_ids = [pid for pid, label in names.items() if any(label.startswith(p.name) for p in katy[:4])]
    angelina_ids = [pid for pid, label in names.items() if any(label.startswith(p.name) for p in angelina[:4])]
    assert len(katy_ids) == 4 and len(angelina_ids) == 4

    # The same photo again (the browser sends its SHA-256): already in the album, nothing uploaded.
    page.click("nav a[data-view=upload]")
    page.set_input_files("#file-input", str(katy[0]))
    page.wait_for_selector("#uploads li[data-state=duplicate]")
    assert "already in your album" in page.text_content("#uploads li[data-state=duplicate]")
    # Without crypto.subtle (plain http) the indexer finds it by its bytes: its new tile goes again.
    page.evaluate("Object.defineProperty(globalThis.crypto, 'subtle', {value: undefined})")
    page.set_input_files("#file-input", str(katy[1]))
    page.wait_for_function("document.querySelectorAll('#uploads li[data-state=done]').length === 9")
    page.click("nav a[data-view=album]")
    assert page.locator("#grid li").count() == 9  # shown pending until the indexer has read it
    page.wait_for_function("document.querySelectorAll('#grid li').length === 8", timeout=60_000)

    # The photo view draws the face boxes.
    page.click(f"#grid li[data-photo-id='{katy_ids[0]}'] button")
    page.wait_for_selector("#photo-dialog[open]")
    page.wait_for_function("document.querySelectorAll('#photo-boxes rect').length >= 1")
    assert "face" in page.text_content("#photo-info")
    shot(page, "04-photo")
    # Previous / next walk the album in its order, with the arrow keys too.
    order = [el.get_attribute("data-photo-id") for el in page.locator("#grid li").element_handles()]
    first = label_of(names[katy_ids[0]])
    forward = order.index(katy_ids[0]) + 1 < len(order)
    page.click("#photo-next" if forward else "#photo-prev")
    page.wait_for_function(f"document.querySelector('#photo-title').textContent !== {first!r}")
    page.keyboard.press("ArrowLeft" if forward else "ArrowRight")
    page.wait_for_function(f"document.querySelector('#photo-title').textContent === {first!r}")
    page.click("#photo-dialog form button")

    # Find with a key photo of Katy Perry that is not in the album: her photos come first.
    page.click("nav a[data-view=find]")
    page.set_input_files("#key-input", str(katy[4]))
    page.wait_for_function("document.querySelectorAll('#results li').length >= 1", timeout=60_000)
    ranked = [el.get_attribute("data-photo-id") for el in page.locator("#results li").element_handles()]
    assert ranked[0] in katy_ids
    top = ranked[: len([r for r in ranked if r in katy_ids])]
    assert set(top) <= set(katy_ids), ranked  # no stranger ranks above any of her photos
    # The key is shown with its face boxed (one face: no chooser); matches are said in words.
    page.wait_for_selector("#key-faces:not([hidden]) #key-boxes rect.chosen")
    assert page.locator("#key-face-buttons button").count() == 0
    # She is already a person of the album (grouped on indexing): her photos are "Same person".
    words = page.locator("#results .similarity").all_text_contents()
    assert words[0] == "Same person" and set(words) <= {"Same person", "Very likely", "Likely"}, words
    assert "a person in your album" in page.text_content("#find-summary")
    assert "score" in page.get_attribute("#results li button", "title")
    shot(page, "05-find")

    # Two keys in a row, the first one's answer arriving last: the page shows the second key's answer
    # only (it once drew the first key's results under the second key).
    katys_answer = set(ranked)
    held = []
    page.route("**/search", lambda route: held.append(route) if not held else route.continue_())
    page.set_input_files("#key-input", str(katy[5]))
    while not held:
        page.wait_for_timeout(100)
    page.set_input_files("#key-input", str(angelina[5]))  # neither key is in the album
    page.wait_for_function("document.querySelectorAll('#results li').length >= 1", timeout=60_000)
    held[0].continue_()  # Katy's answer, late
    page.wait_for_timeout(3000)
    page.unroute("**/search")
    shown = [el.get_attribute("data-photo-id") for el in page.locator("#results li").element_handles()]
    assert shown[0] in angelina_ids and not set(shown) & katys_answer & set(katy_ids), shown
    assert "Searching" not in page.text_content("#find-summary")

    # A key photo with several faces: the chooser, the searched face highlighted.
    page.set_input_files("#key-input", str(FACEDATA / "groups" / "dlib" / "2008_002470.jpg"))
    page.wait_for_function("document.querySelectorAll('#key-face-buttons button').length === 6", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#key-boxes rect').length === 6")
    page.click("#key-face-buttons button >> nth=2")
    page.wait_for_selector("#key-face-buttons button:nth-child(3)[aria-pressed=true]")
    assert page.locator("#key-boxes rect.chosen").count() == 1
    shot(page, "05b-face-chooser")

    # A key photo without a face: the page says why nothing was searched.
    blank = tmp_path / "sky.jpg"
    Image.linear_gradient("L").resize((640, 480)).convert("RGB").save(blank, "JPEG")
    page.set_input_files("#key-input", str(blank))
    page.wait_for_function("document.querySelector('#find-summary').textContent.includes('No face was found')")
    assert page.locator("#results li").count() == 0 and page.text_content("#status") == ""  # said once, on the page
    shot(page, "05c-no-face-key")

    # "More of this person" from a face box in Angelina Jolie's photo.
    page.click("nav a[data-view=album]")
    page.click(f"#grid li[data-photo-id='{angelina_ids[0]}'] button")
    page.wait_for_selector("#photo-dialog[open] #photo-faces button")
    page.click("#photo-faces button >> nth=0")
    page.wait_for_selector("#view-find:not([hidden])")
    page.wait_for_function(
        f"document.querySelector('#results li')?.dataset.photoId !== undefined "
        f"&& {str(angelina_ids)}.includes(document.querySelector('#results li').dataset.photoId)"
    )
    # The key is that face in its photo; the photo itself is not a result.
    page.wait_for_selector("#key-faces:not([hidden]) #key-boxes rect.chosen")
    assert angelina_ids[0] not in [
        el.get_attribute("data-photo-id") for el in page.locator("#results li").element_handles()
    ]
    assert "is not listed" in page.text_content("#find-summary")
    assert page.text_content("#status") == ""  # the no-face message stayed with its search
    shot(page, "06-more-of-this-person")

    # People: Katy Perry and Angelina Jolie each become a person (the stack regroups a few seconds
    # after the last upload); open one, name it, and the list shows the name.
    page.click("nav a[data-view=people]")
    page.wait_for_selector("#view-people:not([hidden])")
    people_listed(page, 2)
    labels = [el.text_content() for el in page.locator("#people li").element_handles()]
    assert sum("4 photo(s)" in label for label in labels) == 2, labels
    shot(page, "07-people")
    # The album's questions, one at a time above the people; s skips one and the next is asked.
    page.wait_for_selector("#album-questions:not([hidden]) #album-question li")
    first = page.get_attribute("#album-question li", "data-face-id")
    page.keyboard.press("s")
    page.wait_for_function(f"document.querySelector('#album-question li')?.dataset.faceId !== '{first}'")
    page.click("#people li button >> nth=0")
    page.wait_for_selector("#person:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#person-photos li').length === 4")
    person_photos = {el.get_attribute("data-photo-id") for el in page.locator("#person-photos li").element_handles()}
    assert person_photos in (set(katy_ids), set(angelina_ids))
    page.fill("#person-name input[name=name]", "Someone I know")
    page.click("#person-name button[type=submit]")
    page.wait_for_function("document.querySelector('#status').textContent.includes('Someone I know')")
    shot(page, "08-person")
    # "Is this Someone I know?": the person's own grouped faces are asked too (all four are hers);
    # the keyboard answers: s skips one (it goes), y confirms the next and says what it did.
    page.wait_for_load_state("networkidle")
    page.wait_for_function("document.querySelectorAll('#suggestions li').length >= 2")
    asked = page.locator("#suggestions li").count()
    page.click("#person-summary")  # the focus leaves the name field: keys answer, they do not type
    page.keyboard.press("s")
    page.wait_for_function(f"document.querySelectorAll('#suggestions li').length === {asked - 1}")
    page.keyboard.press("y")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Noted.')")
    assert page.locator("#suggestions li").count() == asked - 2
    # The photo view asks too: a face the grouping placed has "Yes, <name>", which confirms it.
    for n in range(4):
        page.click(f"#person-photos li button >> nth={n}")
        page.wait_for_selector("#photo-dialog[open] .face-row")
        confirm = page.locator("#photo-faces button:visible", has_text="Yes, Someone I know")
        if confirm.count():
            confirm.first.click()
            page.wait_for_function("document.querySelector('#status').textContent === 'Confirmed.'")
            # The photo view is drawn again: the face is the user's now, nothing left to ask.
            page.wait_for_function(
                "![...document.querySelectorAll('#photo-faces button')]"
                ".some(b => !b.hidden && b.textContent === 'Yes, Someone I know')"
            )
            break
        page.click("#photo-dialog form button")
    else:
        raise AssertionError("no face of hers left to confirm in the photo view")
    page.click("#photo-dialog form button")
    page.click("nav a[data-view=album]")
    page.click("nav a[data-view=people]")
    page.wait_for_function(
        "[...document.querySelectorAll('#people li')].some(li => li.textContent.startsWith('Someone I know'))"
    )

    # Merge the named person into the other one (it takes the name: the target had none): 8 photos.
    # The other person is chosen by face, both are shown before the merge, and the merge can be undone.
    page.click("#people li button >> text=Someone I know")
    page.wait_for_selector("#person:not([hidden])")
    page.wait_for_load_state("networkidle")  # the page is drawn by its last opening, not an earlier one

    def merge_with_the_other() -> None:
        page.click("#person-merge")
        page.wait_for_selector("#picker[open] #picker-people li")
        assert page.locator("#picker-people li").count() == 1
        assert page.text_content("#picker-people li").startswith("Unnamed")  # an undo gave back no name
        assert page.locator("#picker-people li .face[style*=background-image]").count() == 1
        page.click("#picker-people li button")
        page.wait_for_selector("#merge-dialog[open]")
        assert page.locator("#merge-faces .face[style*=background-image]").count() == 2
        shot(page, "08a-merge-confirm")
        page.click("#merge-dialog button[value=merge]")
        page.wait_for_function("document.querySelectorAll('#person-photos li').length === 8")

    merge_with_the_other()
    assert page.input_value("#person-name input[name=name]") == "Someone I know"
    assert page.text_content("#toast-text") == "Merged into Someone I know."
    shot(page, "08b-merged")
    page.click("#toast-undo")
    page.wait_for_function("document.querySelector('#toast-text').textContent.startsWith('Undone')")
    page.wait_for_function("document.querySelectorAll('#person-photos li').length === 4")
    assert page.input_value("#person-name input[name=name]") == "Someone I know"
    page.wait_for_load_state("networkidle")
    merge_with_the_other()

    # "Not this person" from the photo view: the face leaves the person.
    page.click("nav a[data-view=album]")
    page.click(f"#grid li[data-photo-id='{katy_ids[2]}'] button")
    page.wait_for_selector("#photo-dialog[open] .face-row")
    assert "Someone I know" in page.text_content("#photo-faces .face-row")
    page.click("#photo-faces .face-row button >> text=Who is face 1?")
    page.wait_for_selector("#picker[open]")
    page.click("#picker-extras button[data-value=none]")
    page.wait_for_function("document.querySelector('#photo-faces .face-row')?.textContent.includes('no one yet')")
    shot(page, "08c-not-this-person")

    page.click("#photo-dialog form button")

    # The album is a timeline: month headers whose counts add up to the album.
    page.click("nav a[data-view=album]")
    page.wait_for_function("document.querySelectorAll('#grid section.month li').length === 8")
    counts = [int(t.split()[1]) for t in page.locator("#grid section.month h3 .count").all_text_contents()]
    assert sum(counts) == 8, counts

    # An image whose presigned URL has expired (simulated: a URL the bucket refuses) is fetched again.
    page.evaluate("const img = document.querySelector('#grid img'); img.src = img.src.replace('/thumbs/', '/gone/')")
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')]"
        ".every(i => !i.src.includes('/gone/') && i.complete && i.naturalWidth > 0)"
    )

    # Move a photo to the trash from the photo view: it leaves the album; the download link is there.
    page.click(f"#grid li[data-photo-id='{katy_ids[1]}'] button")
    page.wait_for_selector("#photo-dialog[open]")
    assert "response-content-disposition=attachment" in page.get_attribute("#photo-download", "href")
    page.click("#photo-delete")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 7")
    assert page.locator(f"#grid li[data-photo-id='{katy_ids[1]}']").count() == 0
    assert "trash" in page.text_content("#toast-text")
    page.click("#toast-undo")  # the message stands next to what was done, with Undo: it is back
    page.wait_for_selector(f"#grid li[data-photo-id='{katy_ids[1]}']")
    page.wait_for_function("document.querySelector('#toast-text').textContent.includes('back in the album')")
    page.click(f"#grid li[data-photo-id='{katy_ids[1]}'] button")
    page.wait_for_selector("#photo-dialog[open]")
    page.click("#photo-delete")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 7")

    # Select a run of photos (click, then shift-click) and move them to the trash at once.
    page.click("#select-mode")
    tiles = page.locator("#grid li button")
    tiles.nth(0).click()
    tiles.nth(2).click(modifiers=["Shift"])
    assert page.text_content("#selected-count") == "3 selected"
    shot(page, "09a-selecting")
    page.click("#selected-trash")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 4")

    # The trash: four photos; restore the first one trashed, delete the rest for good.
    page.click("#trash-link")
    page.wait_for_function("document.querySelectorAll('#trash-grid li').length === 4")
    shot(page, "09b-trash")
    page.click(f"#trash-grid li[data-photo-id='{katy_ids[1]}'] button >> text=Restore")
    page.wait_for_function("document.querySelectorAll('#trash-grid li').length === 3")
    page.click("#trash-empty")
    page.wait_for_selector("#trash-none:not([hidden])")
    page.click("#view-trash a[href='#album']")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 5")
    assert page.locator(f"#grid li[data-photo-id='{katy_ids[1]}']").count() == 1
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 5")  # still signed in, from storage

    # Phone-sized screen: a slim header, the five views in one row of tabs at the bottom; then the
    # profile page and sign-out.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.querySelector('header').getBoundingClientRect().height") < 56
    bottoms = page.evaluate("[...document.querySelectorAll('nav a')].map(e => e.getBoundingClientRect().bottom)")
    assert len(bottoms) == 5 and all(abs(b - 844) < 2 for b in bottoms), bottoms
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391)"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, wide
    shot(page, "09-album-phone")
    page.click("nav a[data-view=profile]")
    page.wait_for_selector("#view-profile:not([hidden])")  # the view changes on hashchange, after the click
    assert page.text_content("#profile-email") == email
    page.wait_for_function("document.querySelector('#profile-usage').textContent.startsWith('5 photos')")
    shot(page, "10-profile")
    # Download everything: one ZIP of the album's five originals, in folders by month, byte for byte.
    page.evaluate("window.showSaveFilePicker = undefined")  # a browser that cannot stream to a file
    with page.expect_download() as download:
        page.click("#download-all")
    archive = zipfile.ZipFile(download.value.path())
    assert len(archive.namelist()) == 5 and all(re.fullmatch(r"\d{4}-\d{2}/.+", n) for n in archive.namelist())
    sources = {p.name: p for p in katy + angelina}
    for entry in archive.namelist():
        assert archive.read(entry) == sources[entry.split("/", 1)[1]].read_bytes()
    page.wait_for_function("document.querySelector('#download-all-status').textContent.startsWith('Done: 5 photos')")
    page.click("#sign-out")
    page.wait_for_selector("#view-auth:not([hidden])")

    # Forgot the password: a code (moto accepts any), a new password, and signing in with it.
    page.click("#forgot-link")
    page.fill("#form-forgot input[name=email]", email)
    page.click("#form-forgot button[type=submit]")
    page.wait_for_selector("#form-reset:not([hidden])")
    assert "10 characters" in page.text_content("#reset-rules")
    shot(page, "11-new-password")
    page.fill("#form-reset input[name=code]", "123456")
    page.fill("#form-reset input[name=password]", "Another-Passw0rd")
    page.click("#form-reset button[type=submit]")
    page.wait_for_selector("#form-signin:not([hidden])")
    page.fill("#form-signin input[name=password]", "Another-Passw0rd")
    page.click("#form-signin button[type=submit]")
    page.wait_for_selector("#view-album:not([hidden])")

    # A photo the indexer cannot read (its JPEG cut short): pending, then a failed tile with the reason.
    broken = tmp_path / "cut-short.jpg"
    broken.write_bytes(katy[3].read_bytes()[:3000])
    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("nav a[data-view=upload]")
    page.set_input_files("#file-input", str(broken))
    page.wait_for_selector("#uploads li[data-state=done]")
    page.click("nav a[data-view=album]")
    page.wait_for_selector("#grid button[aria-label^='cut-short.jpg']")
    if page.locator("#grid button[aria-label^='cut-short.jpg'][data-status=pending]").count():
        shot(page, "13a-pending-tile")
    page.wait_for_selector("#grid button[aria-label^='cut-short.jpg'][data-status=failed]", timeout=60_000)
    # The month headers count the new photo too (a failed photo stays in the album, with its reason).
    page.wait_for_function(
        "[...document.querySelectorAll('#grid section.month')].every(s => "
        "s.querySelector('h3 .count').textContent.split(' ')[1] == s.querySelectorAll('li').length)"
    )
    shot(page, "13b-failed-tile")

    # Sign out of all devices: this browser goes back to the sign-in page, and another device's token is void.
    from local_stack.aws import StackInfo, sign_in

    token = sign_in(StackInfo.read(local_stack.state / "stack.json"), email, "Another-Passw0rd")["IdToken"]
    assert requests.get(f"{local_stack.api}/photos", headers={"Authorization": f"Bearer {token}"}, timeout=30).ok
    page.click("nav a[data-view=profile]")
    page.click("#sign-out-everywhere")  # the confirmation is accepted by the page's dialog handler
    page.wait_for_selector("#view-auth:not([hidden])")
    refused = requests.get(f"{local_stack.api}/photos", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"] == "token_revoked"


def sign_up(page, email: str, password: str = "Corr3ct-Horse!", then: str = "#view-album:not([hidden])") -> None:
    """A new account through the page (moto accepts any confirmation code), signed in: ``then`` shows."""
    page.click("#tab-signup")
    page.fill("#form-signup input[name=email]", email)
    page.fill("#form-signup input[name=password]", password)
    page.click("#form-signup button[type=submit]")
    page.wait_for_selector("#form-confirm:not([hidden])")
    page.fill("#form-confirm input[name=code]", "123456")
    page.click("#form-confirm button[type=submit]")
    page.wait_for_selector("#form-signin:not([hidden])")
    page.fill("#form-signin input[name=password]", password)
    page.click("#form-signin button[type=submit]")
    page.wait_for_selector(then)


QUEUE_KEYS = "idbKeyval.keys(idbKeyval.createStore('memstudio-uploads', 'queue'))"


def test_uploads_survive_a_lost_connection_and_a_reload(browser, local_stack):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{local_stack.api}/")
    page.wait_for_selector("body[data-ready=true]")
    sign_up(page, "queue@example.com")

    # S3 drops every upload, as a lost connection would (Cognito and the API still answer).
    def to_s3(route):
        request = route.request
        is_s3 = request.method == "POST" and not request.url.startswith(local_stack.api)
        if is_s3 and "x-amz-target" not in request.headers:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/*", to_s3)
    photos = people("Katy_Perry")[:3]
    page.click("nav a[data-view=upload]")
    page.set_input_files("#file-input", [str(p) for p in photos])
    page.wait_for_function("document.querySelectorAll('#uploads li[data-state=retrying]').length === 3")
    assert page.text_content("#upload-count").startswith("0 of 3 photos uploaded")
    assert "will try again" in page.text_content("#uploads li[data-state=retrying]")
    shot(page, "20-upload-retrying")

    # A reload (the tab closed, the phone restarted the browser): the queue is still there.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.click("nav a[data-view=upload]")
    page.wait_for_function("document.querySelectorAll('#uploads li').length === 3")
    assert len(page.evaluate(QUEUE_KEYS)) == 3
    page.click(f"#uploads button[aria-label='Cancel {photos[0].name}']")  # one is not wanted after all
    page.wait_for_function("document.querySelectorAll('#uploads li').length === 2")
    assert page.text_content("#upload-count").startswith("0 of 2 photos uploaded")

    # The connection comes back: the rest go on their own, nothing is uploaded twice, no ghost remains.
    page.unroute("**/*", to_s3)
    page.wait_for_function("document.querySelectorAll('#uploads li[data-state=done]').length === 2", timeout=90_000)
    assert page.text_content("#upload-count") == "2 of 2 photos uploaded"
    assert page.locator("#upload-cancel-all").is_hidden() and page.evaluate(QUEUE_KEYS) == []
    page.click("nav a[data-view=album]")
    page.reload()
    page.wait_for_selector("#view-album:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#grid li').length >= 2")
    labels = [label_of(b.get_attribute("aria-label")) for b in page.locator("#grid li button").element_handles()]
    assert sorted(labels) == sorted(p.name for p in photos[1:])
    context.close()


SERIOUS = ("critical", "serious")


def serious_findings(page, screen: str) -> list[str]:
    """axe-core's critical and serious findings on what the page shows now."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    return [
        f"{screen}: {v['id']} ({v['impact']}) at {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
        if v["impact"] in SERIOUS
    ]


def test_every_screen_is_accessible_on_a_phone_and_a_desktop_in_both_languages(browser, local_stack):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{local_stack.api}/")
    page.wait_for_selector("body[data-ready=true]")
    page.keyboard.press("Tab")  # the first Tab reaches the skip link, which goes to the content
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    findings = serious_findings(page, "sign-in")
    page.click("#tab-signup")
    findings += serious_findings(page, "sign-up")
    page.click("#tab-signin")
    sign_up(page, "a11y@example.com")
    findings += serious_findings(page, "empty album")
    # The first photos go in through the welcome's drop target; the upload page shows their progress.
    katy, angelina = people("Katy_Perry"), people("Angelina_Jolie")
    page.set_input_files("#album-file-input", [str(katy[0]), str(katy[1]), str(angelina[0]), str(angelina[1])])
    page.wait_for_selector("#view-upload:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#uploads li[data-state=done]').length === 4")
    findings += serious_findings(page, "upload")
    page.click("nav a[data-view=album]")
    findings += serious_findings(page, "album, pending")
    if page.locator("#album-progress:not([hidden])").count():  # unless the indexer was quicker
        assert re.fullmatch(r"[0-3] of 4 photos ready for Find", page.text_content("#album-progress-text"))
        shot(page, "14-album-progress")
    page.wait_for_function(
        "document.querySelectorAll('#grid button[data-status=indexed]').length === 4", timeout=180_000
    )
    page.wait_for_selector("#album-progress", state="hidden")
    page.click("#grid li button >> nth=3")  # one photo into the trash, so the trash has a tile
    page.wait_for_selector("#photo-dialog[open]")
    page.click("#photo-delete")
    page.wait_for_function("document.querySelectorAll('#grid li').length === 3")

    for language, width, height in (("en", 1280, 900), ("en", 390, 844), ("ko", 390, 844), ("ko", 1280, 900)):
        where = f"{language} {width}px"
        page.evaluate(f"localStorage.setItem('memstudio.language', '{language}')")
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        page.click("nav a[data-view=album]")
        page.wait_for_function("document.querySelectorAll('#grid button[data-status=indexed]').length === 3")
        findings += serious_findings(page, f"{where} album")
        page.click("#select-mode")
        page.click("#grid li button >> nth=0")
        findings += serious_findings(page, f"{where} album, selecting")
        page.click("#select-mode")
        page.click("#grid li button >> nth=0")
        page.wait_for_selector("#photo-dialog[open] .face-row")
        findings += serious_findings(page, f"{where} photo")
        page.click("#photo-dialog form button")
        page.click("nav a[data-view=upload]")
        findings += serious_findings(page, f"{where} upload")
        page.click("nav a[data-view=find]")
        findings += serious_findings(page, f"{where} find")
        page.set_input_files("#key-input", str(katy[4]))
        page.wait_for_function("document.querySelectorAll('#results li').length >= 1", timeout=60_000)
        page.wait_for_function("document.querySelector('#key-boxes rect')")
        findings += serious_findings(page, f"{where} find, results")
        page.click("nav a[data-view=people]")
        people_listed(page, 1)
        page.wait_for_load_state("networkidle")
        findings += serious_findings(page, f"{where} people")
        page.click("#people li button >> nth=0")
        page.wait_for_selector("#person:not([hidden]) #person-photos li")
        page.wait_for_load_state("networkidle")
        findings += serious_findings(page, f"{where} person")
        page.click("#person-merge")  # the picker of people by face, then the merge's confirmation
        page.wait_for_selector("#picker[open], #toast:not([hidden])")
        if page.locator("#picker[open]").count():
            findings += serious_findings(page, f"{where} person picker")
            page.click("#picker-people li button >> nth=0")
            page.wait_for_selector("#merge-dialog[open]")
            findings += serious_findings(page, f"{where} merge confirmation")
            page.click("#merge-dialog button[value=cancel]")
        else:
            findings += serious_findings(page, f"{where} toast")
        page.click("nav a[data-view=album]")
        page.click("#trash-link")
        page.wait_for_selector("#trash-grid li")
        findings += serious_findings(page, f"{where} trash")
        shot(page, f"a11y-{language}-{width}-trash")
        page.click("nav a[data-view=profile]")
        page.wait_for_function("document.querySelector('#profile-usage').textContent.length > 0")
        findings += serious_findings(page, f"{where} profile")
        if language == "en":  # the album's three photos; the quota also counts the one in the trash
            assert page.text_content("#profile-usage").startswith("3 photos · ")
        if language == "ko":
            shot(page, f"a11y-ko-{width}-profile")
    assert findings == []
    context.close()


def test_the_api_docs_render_under_the_pages_own_policy(page, local_stack):  # noqa: F811
    """/docs in a page that enforces the Content-Security-Policy (the module's page bypasses it)."""
    strict = page.context.browser.new_page()
    problems, refused = [], []  # console errors (a CSP violation is one), and answers >= 400
    strict.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    strict.on("response", lambda response: refused.append(response.url) if response.status >= 400 else None)
    strict.goto(f"{local_stack.api}/docs")
    strict.wait_for_selector(".opblock", timeout=30_000)
    assert strict.locator(".opblock").count() >= 30
    assert strict.locator("text=Memory Studio API").count() >= 1
    strict.screenshot(path=str(ARTIFACTS / "12-api-docs.png"), full_page=False)
    assert refused == [], refused  # the page names its icon: no guess at /favicon.ico
    assert all(text.startswith("Failed to load resource") for text in problems), problems
    strict.close()


# Words that stay as they are in Korean: file formats and units, English's own name in the language
# menu, and what the user typed or chose (an email, file names). Anything else in Latin letters on a
# Korean page is an untranslated string.
KEPT_IN_KOREAN = {"JPEG", "PNG", "WebP", "GIF", "HEIC", "kB", "MB", "GB", "English"}
UNTRANSLATED = """(kept) => {
  const shown = (el) => el.offsetParent !== null || el.getClientRects().length > 0;
  const texts = [document.title, document.body.innerText];
  for (const el of document.querySelectorAll("[aria-label], [placeholder], [title], img[alt]")) {
    if (!shown(el)) continue;
    for (const name of ["aria-label", "placeholder", "title", "alt"]) {
      if (el.getAttribute(name)) texts.push(el.getAttribute(name));
    }
  }
  const found = new Map();  // an untranslated word → where it was seen
  for (const text of texts) {
    const cleaned = text.replace(/[\\w.+-]+@[\\w.-]+/g, " ").replace(/[\\w-]+\\.(jpe?g|png|txt|heic|webp|gif)/gi, " ");
    for (const word of cleaned.match(/[A-Za-z]{2,}/g) || []) {
      if (!kept.includes(word)) found.set(word, text.slice(0, 80));
    }
  }
  return Object.fromEntries(found);
}"""


@pytest.fixture(scope="module")
def korean_page(browser):
    """A Korean phone: ko-KR, Asia/Seoul, 390×844, touch."""
    context = browser.new_context(
        locale="ko-KR",
        timezone_id="Asia/Seoul",
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
        bypass_csp=True,
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


# Two fingers moving apart on the photo, as a phone's touch screen reports them.
PINCH = """() => {
  const stage = document.querySelector('#photo-stage');
  const r = stage.getBoundingClientRect(), cx = r.x + r.width / 2, cy = r.y + r.height / 2;
  const send = (type, id, x) => stage.dispatchEvent(new PointerEvent(type, {
    pointerId: id, pointerType: 'touch', isPrimary: id === 1, clientX: x, clientY: cy, bubbles: true }));
  send('pointerdown', 1, cx - 20); send('pointerdown', 2, cx + 20);
  for (const d of [40, 60, 80]) { send('pointermove', 1, cx - d); send('pointermove', 2, cx + d); }
  send('pointerup', 1, cx - 80); send('pointerup', 2, cx + 80);
}"""


LOADED = (  # the album's thumbnails, at least one, all decoded
    "((images) => images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0))"
    "([...document.querySelectorAll('#grid img')])"
)
KEPT_INDEXED = (  # the album's record and thumbnail kept on the device for offline use
    "Promise.all([idbKeyval.values(idbKeyval.createStore('memstudio-offline', 'album')),"
    " caches.open('memstudio-thumbnails').then((cache) => cache.keys())])"
    ".then(([kept, thumbnails]) => kept.length === 1 && kept[0].photos.every((p) => p.status === 'indexed')"
    " && thumbnails.length === 1)"
)

# What the phone's share sheet sends: a multipart form POST to the share target's action.
SHARE_FORM = """() => {
  const form = document.createElement('form');
  Object.assign(form, { id: 'share-form', action: 'share', method: 'post', enctype: 'multipart/form-data' });
  form.innerHTML = '<input type="file" name="photos" id="share-photos">';
  document.body.append(form);
}"""


def untranslated(page) -> dict:
    return page.evaluate(UNTRANSLATED, sorted(KEPT_IN_KOREAN))


def test_a_korean_phone_sees_korean_everywhere(korean_page, local_stack, tmp_path):  # noqa: F811
    page = korean_page
    katy = people("Katy_Perry")
    page.goto(f"{local_stack.api}/")
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute("html", "lang") == "ko" and page.title() == "메모리 스튜디오"
    assert untranslated(page) == {}
    shot(page, "ko-01-sign-in")

    # Cognito's English errors are said in plain Korean.
    page.fill("#form-signin input[name=email]", "nobody@example.com")
    page.fill("#form-signin input[name=password]", "Wr0ng-Password!")
    page.click("#form-signin button[type=submit]")
    page.wait_for_function("document.querySelector('#status').textContent.length > 0")
    assert page.text_content("#status") == "이메일 또는 비밀번호가 맞지 않아요."

    email, password = "ko@example.com", "Corr3ct-Horse!"
    page.click("#tab-signup")
    assert page.text_content("#signup-rules").startswith("10자 이상") and untranslated(page) == {}
    page.fill("#form-signup input[name=email]", email)
    page.fill("#form-signup input[name=password]", password)
    page.click("#form-signup button[type=submit]")
    page.wait_for_selector("#form-confirm:not([hidden])")
    assert untranslated(page) == {}
    page.fill("#form-confirm input[name=code]", "123456")
    page.click("#form-confirm button[type=submit]")
    page.wait_for_selector("#form-signin:not([hidden])")
    page.fill("#form-signin input[name=password]", password)
    page.click("#form-signin button[type=submit]")
    page.wait_for_selector("#view-album:not([hidden])")
    assert untranslated(page) == {}

    # Upload two photos and one file that is not a photo: every state and message in Korean.
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    page.click("nav a[data-view=upload]")
    page.set_input_files("#file-input", [str(p) for p in katy[:2]] + [str(bad)])
    page.wait_for_function("document.querySelectorAll('#uploads li[data-state=done]').length === 2")
    assert "지원하지 않는 사진 형식" in page.text_content("#uploads li[data-state=failed]")
    assert untranslated(page) == {}
    shot(page, "ko-02-upload")

    # The album: month headers in Korean ("2026년 12월 · 2장"), tiles, the photo view.
    page.click("nav a[data-view=album]")
    page.wait_for_function(
        "document.querySelectorAll('#grid button[data-status=indexed]').length === 2", timeout=180_000
    )
    # The headers count what the album holds once the indexer has dated the photos (their months differ).
    page.wait_for_function(
        "[...document.querySelectorAll('#grid section.month')].every(s => "
        "s.querySelector('.count').textContent === `· ${s.querySelectorAll('li').length}장`)"
    )
    # Phone-first: the views in a tab bar at the bottom, four photos a row, nothing to tap under 44 px.
    nav = page.locator("#nav").bounding_box()
    assert abs(nav["y"] + nav["height"] - 844) < 1 and nav["width"] == 390
    tile = page.locator("#grid li button >> nth=0").bounding_box()
    assert tile["width"] < 390 / 4
    small = page.evaluate(
        "[...document.querySelectorAll('button, nav a, select, input')]"
        ".filter(el => el.getClientRects().length && el.type !== 'checkbox' && el.type !== 'file')"
        ".filter(el => el.getBoundingClientRect().height < 44 && !el.closest('#grid'))"
        ".map(el => el.outerHTML.slice(0, 60))"
    )
    assert small == []
    assert "년" in page.text_content("#grid section.month h3 .title")
    assert untranslated(page) == {}
    shot(page, "ko-02b-album")
    page.click("#grid li button >> nth=0")
    page.wait_for_selector("#photo-dialog[open] .face-row")
    assert untranslated(page) == {}
    shot(page, "ko-03-photo")
    # The photo view fills the phone's screen; a swipe goes to the next photo, a pinch zooms, a
    # double tap zooms back out.
    dialog = page.locator("#photo-dialog").bounding_box()
    assert (dialog["width"], dialog["height"]) == (390, 844)
    first = page.text_content("#photo-title")
    stage = page.locator("#photo-stage").bounding_box()
    y = stage["y"] + stage["height"] / 2
    page.mouse.move(stage["x"] + 300, y)
    page.mouse.down()
    page.mouse.move(stage["x"] + 150, y, steps=5)
    page.mouse.move(stage["x"] + 60, y, steps=5)
    page.mouse.up()
    page.wait_for_function(f"document.querySelector('#photo-title').textContent !== {first!r}")
    page.evaluate(PINCH)
    assert "scale(" in page.get_attribute("#photo-figure", "style")
    page.dblclick("#photo-stage")
    assert "scale(" not in (page.get_attribute("#photo-figure", "style") or "")
    page.click("#photo-dialog form button")

    # Find with a key photo, the trash, the profile: all Korean.
    page.click("nav a[data-view=find]")
    page.set_input_files("#key-input", str(katy[4]))
    page.wait_for_function("document.querySelectorAll('#results li').length >= 1", timeout=60_000)
    page.wait_for_function("!document.querySelector('#find-summary').textContent.includes('찾는 중')")
    assert untranslated(page) == {}
    shot(page, "ko-04-find")
    page.click("nav a[data-view=people]")
    page.wait_for_selector("#view-people:not([hidden])")
    page.wait_for_load_state("networkidle")
    assert untranslated(page) == {}
    shot(page, "ko-04b-people")
    page.click("nav a[data-view=album]")
    page.click("#trash-link")
    page.wait_for_selector("#view-trash:not([hidden])")
    page.wait_for_load_state("networkidle")
    assert "30일" in page.text_content("#trash-hint") and untranslated(page) == {}
    page.click("nav a[data-view=profile]")
    assert untranslated(page) == {} and page.input_value("#language") == "ko"

    # English on demand, remembered: the page is drawn again in English, still signed in.
    page.select_option("#language", "en")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("document.documentElement.lang === 'en'")
    page.click("nav a[data-view=album]")
    assert page.text_content("#album-title") == "Album"
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute("html", "lang") == "en"


def test_the_app_is_installable_and_opens_offline(browser, local_stack, tmp_path):  # noqa: F811
    """Chromium's own installability check, then the service worker's app shell with no network."""
    context = browser.browser_type.launch_persistent_context(  # an ordinary profile: no app installs in incognito
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        args=CHROMIUM_FLAGS,
        headless=True,
        locale="ko-KR",
        viewport={"width": 390, "height": 844},
        bypass_csp=True,
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{local_stack.api}/")
        page.wait_for_selector("body[data-ready=true]")
        cdp = context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [] and '"display": "standalone"' in manifest["data"]
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.evaluate("navigator.serviceWorker.controller !== null")
        assert page.locator("#offline").is_hidden()

        context.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator("#offline").is_visible() and "인터넷" in page.text_content("#offline")
        assert page.locator("#view-auth").is_visible() and page.text_content("#auth-title") == "환영합니다"
        shot(page, "ko-05-offline")
        context.set_offline(False)
        page.wait_for_selector("#offline", state="hidden")

        # A photo shared from the phone's gallery (the manifest's share target, a form POST the
        # service worker receives): kept on the phone, and uploaded once someone signs in.
        assert '"action": "../share"' in manifest["data"]
        page.evaluate(SHARE_FORM)
        page.set_input_files("#share-photos", str(people("Katy_Perry")[0]))
        page.evaluate("document.querySelector('#share-form').submit()")
        page.wait_for_url("**/#upload")
        page.wait_for_selector("body[data-ready=true]")
        sign_up(page, "share@example.com", then="#view-upload:not([hidden])")
        page.wait_for_function("document.querySelectorAll('#uploads li[data-state=done]').length === 1")
        assert page.text_content("#uploads li .name") == people("Katy_Perry")[0].name
        assert page.evaluate("idbKeyval.keys(idbKeyval.createStore('memstudio-shared', 'files'))") == []

        # The album opens offline with its recent photos and their thumbnails, kept on the phone.
        page.click("nav a[data-view=album]")
        page.wait_for_selector("#grid button[data-status=indexed] img", timeout=120_000)
        page.wait_for_function(LOADED)
        for _ in range(50):  # kept a moment after the album changes
            if page.evaluate(KEPT_INDEXED):
                break
            page.wait_for_timeout(200)
        assert page.evaluate(KEPT_INDEXED)
        context.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-kept-album=true]")
        assert page.locator("#offline").is_visible() and page.locator("#grid li").count() == 1
        page.wait_for_function(LOADED)
        shot(page, "ko-06-offline-album")
        context.set_offline(False)
        page.wait_for_selector("#nav:not([hidden])")  # the connection is back: the page starts again, signed in
        # Signing out forgets what was kept for this user.
        page.click("nav a[data-view=profile]")
        page.click("#sign-out")
        page.wait_for_selector("#view-auth:not([hidden])")
        assert page.evaluate("idbKeyval.keys(idbKeyval.createStore('memstudio-offline', 'album'))") == []
        assert page.evaluate("caches.open('memstudio-thumbnails').then((c) => c.keys()).then((k) => k.length)") == 0
    finally:
        context.close()
