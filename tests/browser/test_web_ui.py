"""The web UI as a person uses it, in a real browser against the local stack: found by label and role,
with every page's console watched (an error fails the test) and a screenshot of each page."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from pathlib import Path

import cv2
import jwt
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, Route, expect

from photopipe.auth.tokens import TokenService
from photopipe.models.users import User
from tests.browser.conftest import PASSWORD, Console, WebStack, drop_folder, jpeg, shot, signed_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LIVE = 60_000  # ms: how long a change pushed over the live updates may take on a busy 2-core machine


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _photo_files(tmp_path: Path) -> tuple[list[Path], dict[str, tuple[bytes, str]]]:
    picked = []
    for name, picture, size in [
        ("cat.jpg", "chelsea", (600, 400)),
        ("astronaut.jpg", "astronaut", (512, 512)),
    ]:
        path = tmp_path / name
        path.write_bytes(jpeg(picture, size))
        picked.append(path)
    folder = {
        "trip/coffee.jpg": (jpeg("coffee", (640, 426)), "image/jpeg"),
        "trip/rocket.jpg": (jpeg("rocket", (427, 640)), "image/jpeg"),
        "trip/more/cat-small.jpg": (jpeg("chelsea", (480, 320), quality=80), "image/jpeg"),
    }
    return picked, folder


def test_register_upload_by_picker_and_folder_watch_filter_open_delete(
    page: Page, web: WebStack, tmp_path: Path
) -> None:
    # GIVEN a new visitor
    page.goto(web.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "01-sign-in")
    page.get_by_role("link", name="Create account").click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "02-register")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Your library")).to_be_visible()
    expect(page.get_by_role("link", name="Credits: 10")).to_be_visible()
    expect(page.get_by_text("Live updates on")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    # WHEN they upload two photos with the file picker and drop a folder with three more (one in a subfolder)
    nav(page, "Upload")
    picked, folder = _photo_files(tmp_path)
    page.get_by_label("Choose photos").set_input_files([str(p) for p in picked])
    drop_folder(page, folder)

    # THEN each goes from uploading to done as the live updates report it processed (the UI never polls)
    expect(page.get_by_text("5 of 5 done, 0 failed")).to_be_visible(timeout=LIVE)
    expect(page.locator("li[data-status=done]")).to_have_count(5)
    expect(page.get_by_text("trip/more/cat-small.jpg")).to_be_visible()
    shot(page, "03-upload-done")

    # AND the library shows them classified, badges changed live, without a reload
    nav(page, "Library")
    cards = page.get_by_role("list", name="5 photos shown").get_by_role("listitem")
    expect(cards).to_have_count(5)
    expect(cards.locator("[data-state=classified]")).to_have_count(5, timeout=LIVE)
    expect(page.get_by_role("img", name="coffee.jpg")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "04-library")

    # WHEN they filter by category and by state
    page.get_by_label("Category").select_option(label="Pets")
    expect(page.get_by_role("list", name="2 photos shown").get_by_role("listitem")).to_have_count(2)
    expect(page.get_by_role("link", name="Open cat.jpg")).to_be_visible()
    expect(page.get_by_role("link", name="Open cat-small.jpg")).to_be_visible()
    shot(page, "05-library-filtered")
    page.get_by_label("Category").select_option(label="Any")
    page.get_by_label("State").select_option(label="Rejected")
    expect(page.get_by_text("No photos yet.")).to_be_visible()
    page.get_by_label("State").select_option(label="Any")
    expect(page.get_by_role("list", name="5 photos shown").get_by_role("listitem")).to_have_count(5)

    # AND open one: what it is, in the UI's language
    page.get_by_role("link", name="Open coffee.jpg").click()
    expect(page.get_by_role("heading", name="coffee.jpg")).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Food")
    expect(facts).to_contain_text("640 \u00d7 426")  # the multiplication sign the page shows
    expect(facts).to_contain_text("JPEG")
    expect(facts).to_contain_text("93%")
    expect(facts).to_contain_text("a cup of coffee")
    expect(facts).to_contain_text("the vision model")
    expect(page.get_by_role("img", name="Preview of coffee.jpg")).to_be_visible()
    shot(page, "06-photo")
    page.get_by_label("Language").select_option("zh")
    expect(facts).to_contain_text("美食记录")
    expect(page.get_by_role("button", name="删除这张照片")).to_be_visible()
    shot(page, "07-photo-zh")
    page.get_by_label("语言").select_option("en")

    # AND delete it
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this photo").click()
    expect(page.get_by_role("list", name="4 photos shown").get_by_role("listitem")).to_have_count(4)
    expect(page.get_by_role("link", name="Open coffee.jpg")).to_have_count(0)

    # AND select two and delete them together
    page.get_by_label("Select rocket.jpg").check()
    page.get_by_label("Select astronaut.jpg").check()
    expect(page.get_by_text("2 selected")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text("Deleted 2 photos.")).to_be_visible()
    expect(page.get_by_role("list", name="2 photos shown").get_by_role("listitem")).to_have_count(2)
    assert page.evaluate("window.__sameDocument") is True


def test_a_non_image_says_why_it_was_refused(
    page: Page, web: WebStack, tmp_path: Path, console: Console
) -> None:
    console.allow(400)  # POST /uploads refuses the text file: the UI shows why
    signed_in(page, web, "grace")
    nav(page, "Upload")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    disguised = tmp_path / "holiday.jpg"
    disguised.write_text("this is plain text wearing a .jpg name\n" * 20)

    page.get_by_label("Choose photos").set_input_files([str(notes), str(disguised)])

    # the API refuses the text file at once; ingest rejects the disguised one after reading it
    expect(
        page.get_by_text("notes.txt: content_type 'text/plain' is not a supported image type")
    ).to_be_visible()
    expect(page.get_by_text("holiday.jpg: unsupported file type: it looks like plain text")).to_be_visible(
        timeout=LIVE
    )
    expect(page.get_by_role("button", name="Retry: notes.txt")).to_be_visible()
    shot(page, "08-upload-refused")
    nav(page, "Library")
    expect(page.locator("[data-state=rejected]")).to_have_count(1)
    page.get_by_role("link", name="Open holiday.jpg").click()
    expect(page.get_by_role("alert")).to_have_text(
        "This photo was rejected: unsupported file type: it looks like plain text. Accepted formats: JPEG, "
        "PNG, WebP, GIF, BMP, TIFF, AVIF, HEIC"
    )
    shot(page, "09-photo-rejected")


def test_enhance_shows_progress_then_the_slider_and_downloads(
    page: Page, web: WebStack, tmp_path: Path
) -> None:
    answer = web.register("margaret")
    token = answer["token"]
    first = web.upload(token, "portrait.jpg", jpeg("astronaut", (384, 384)))
    second = web.upload(token, "portrait-2.jpg", jpeg("astronaut", (320, 320)))
    signed_in(page, web, "margaret")
    page.get_by_role("link", name="Open portrait.jpg").click()
    expect(page.get_by_role("button", name="Enhance")).to_be_visible(timeout=LIVE)

    page.get_by_role("button", name="Enhance").click()
    expect(page.get_by_text("Output size multiplier")).to_be_visible()
    page.get_by_label("Scale", exact=True).select_option("2")
    page.get_by_label("Fast: faces of 48 px and more").check()
    expect(page.get_by_label("Tile size (px)")).to_have_value("400")
    shot(page, "10-enhance-form")
    page.get_by_role("button", name="Start enhancement").click()

    # progress first (the job is queued), then the result with the comparison slider
    expect(page.get_by_role("progressbar", name="Progress")).to_be_visible()
    expect(page.get_by_role("heading", name="Enhancement: Completed")).to_be_visible(timeout=120_000)
    slider = page.get_by_role("slider", name="Before/after position")
    expect(slider).to_be_visible()
    expect(page.get_by_role("img", name="After")).to_be_visible()
    slider.focus()
    page.keyboard.press("ArrowRight")
    expect(slider).to_have_value("51")
    expect(page.get_by_role("link", name="Credits: 9")).to_be_visible()
    shot(page, "11-enhance-result")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the result").click()
    saved = tmp_path / "result.jpg"
    download_info.value.save_as(saved)
    assert download_info.value.suggested_filename == "portrait-enhanced.jpg"
    assert Image.open(saved).size == (768, 768)

    # a batch of two from the library, then its ZIP
    nav(page, "Library")
    page.get_by_label("Select portrait.jpg").check()
    page.get_by_label("Select portrait-2.jpg").check()
    page.get_by_role("button", name="Enhance").click()
    page.get_by_role("button", name="Start enhancement").click()
    expect(page.get_by_role("heading", name="Batch enhancement")).to_be_visible()
    expect(page.get_by_text("2 of 2 finished")).to_be_visible(timeout=180_000)
    shot(page, "12-batch")
    with page.expect_download(timeout=120_000) as zip_info:
        page.get_by_role("button", name="Download all as ZIP").click()
    archive = tmp_path / "batch.zip"
    zip_info.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        photos = [n for n in z.namelist() if n.endswith(".jpg")]
        assert len(photos) == 2
        assert all(Image.open(io.BytesIO(z.read(n))).format == "JPEG" for n in photos)
    assert first != second


def test_statistics_for_an_admin_and_refused_to_a_plain_user(
    page: Page, second_page: Page, web: WebStack, console: Console
) -> None:
    admin = web.register("stats-admin")
    photo = web.upload(admin["token"], "someone.jpg", jpeg("astronaut", (512, 512)))
    web.wait_for_state(admin["token"], photo, {"classified"})
    web.grant_admin("stats-admin")  # after registering: the UI must read the flag from GET /profile
    web.register("plain-user")

    # an admin sees today's figures, the chart, the trend, the prompt and the fleet
    signed_in(page, web, "stats-admin")
    nav(page, "Statistics")
    expect(page.get_by_role("heading", name="Statistics", exact=True)).to_be_visible()
    figures = page.locator("dl.figures")
    expect(figures.get_by_text("Requests")).to_be_visible(timeout=LIVE)
    expect(page.get_by_text("Refreshed at")).to_be_visible()
    requests_today = figures.locator(".figure").filter(has_text="Requests").locator("dd")
    expect(requests_today).not_to_have_text("0")
    expect(page.get_by_role("img", name="Bar chart of photos per category")).to_be_visible()
    expect(page.get_by_role("img", name="Bar chart of photos per category")).to_contain_text("Single person")
    expect(page.get_by_role("img", name="Chart of requests and cache hits per day")).to_be_visible()
    expect(page.get_by_role("heading", name="Prompt in use")).to_be_visible()
    expect(page.locator("pre.prompt")).to_contain_text(
        "Classify this photo into exactly one of these categories"
    )
    expect(page.get_by_role("heading", name="GPU fleet")).to_be_visible()
    expect(page.get_by_role("row", name="local-")).to_have_count(1, timeout=LIVE)
    shot(page, "13-stats-admin")

    # a plain user is not offered the statistics, and the page does not even ask for them
    asked: list[str] = []
    second_page.on("request", lambda r: asked.append(r.url) if "/api/v1/stats/" in r.url else None)
    signed_in(second_page, web, "plain-user")
    expect(second_page.get_by_role("heading", name="Your library")).to_be_visible()
    main_nav = second_page.get_by_role("navigation", name="Main")
    expect(main_nav.get_by_role("link", name="Upload", exact=True)).to_be_visible()
    expect(main_nav.get_by_role("link", name="Statistics", exact=True)).to_have_count(0)
    second_page.goto(web.url + "/#/stats")
    expect(second_page.get_by_text("The statistics are for administrators")).to_be_visible()
    expect(second_page.get_by_role("img", name="Bar chart of photos per category")).to_have_count(0)
    shot(second_page, "14-stats-refused")
    assert asked == []
    assert console.errors == [], "\n".join(console.errors)  # second_page's console: no 403


def test_classify_test_page_answers_and_a_known_photo_is_not_sent(
    page: Page, web: WebStack, tmp_path: Path
) -> None:
    photo = tmp_path / "night-sky.jpg"
    photo.write_bytes(jpeg("hubble_deep_field", (500, 350)))  # a picture no other test sends
    signed_in(page, web, "tester")
    nav(page, "Classify test")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/api/v1/classify") else None)

    page.get_by_label("Choose a photo").set_input_files(str(photo))
    expect(page.locator(".verdict")).to_have_text("Travel & scenery")
    expect(page.locator("dl.facts")).to_contain_text("the vision model")
    shot(page, "15-classify")
    assert len(sent) == 1

    # the same photo again: the cache knows it, so it is not sent at all
    page.get_by_label("Choose a photo").set_input_files(str(photo))
    expect(page.get_by_text("From the cache: the photo was not sent.")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("the exact cache (same bytes)")
    assert len(sent) == 1


def test_buy_credits_shows_a_qr_code_that_decodes_to_the_order(page: Page, web: WebStack) -> None:
    signed_in(page, web, "buyer")
    nav(page, "Buy credits")
    expect(page.get_by_text("Balance: 10 credits")).to_be_visible()
    page.get_by_role("button", name="Buy 10 credits for ¥1.00").click()
    qr = page.get_by_role("img", name="QR code for WeChat Pay")
    expect(qr).to_be_visible()
    shot(page, "16-buy-qr")

    png = base64.b64decode(qr.evaluate("c => c.toDataURL('image/png')").split(",", 1)[1])
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert picture is not None
    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(picture)
    assert decoded.startswith("weixin://wxpay/bizpayurl?pr=")
    assert decoded == qr.get_attribute("data-code-url")

    # the sandbox sends its signed notify to the real callback; the order and the balance then change live
    page.evaluate("window.__sameDocument = true")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/" in r.url else None)
    page.get_by_role("button", name="Pay in the sandbox").click()
    expect(page.get_by_text("Paid: 10 credits added.")).to_be_visible(timeout=LIVE)
    expect(page.get_by_role("link", name="Credits: 20")).to_be_visible(timeout=LIVE)
    expect(page.get_by_text("Balance: 20 credits")).to_be_visible()
    shot(page, "16b-buy-paid")
    assert page.evaluate("window.__sameDocument") is True
    assert asked == [], asked  # nothing asked for: order.updated and credits.updated said it


def test_an_expired_session_is_renewed_once_and_sign_out_ends_it(
    page: Page, web: WebStack, console: Console
) -> None:
    # GIVEN a browser whose stored access token has expired, with its refresh token still good
    answer = web.register("renewer")
    claims = jwt.decode(answer["token"], options={"verify_signature": False})
    assert web.stack.clients is not None
    secret = web.stack.clients.secretsmanager.get_secret_value(SecretId=web.stack.ref("JwtSecret"))
    service = TokenService(
        secret=secret["SecretString"], issuer=claims["iss"], audience=claims["aud"], ttl_seconds=3600
    )
    user = User.model_validate(answer["user"])
    expired = service.issue(user, now=time.time() - 7200, session_id=claims.get("sid"))
    web.users["renewer"] = answer | {"token": expired}
    refreshes: list[str] = []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/auth/refresh") else None)

    # WHEN they open the UI: the library, the balance, the profile and the socket all want a token
    signed_in(page, web, "renewer")

    # THEN it is renewed once, and everything works without signing in again
    expect(page.get_by_role("heading", name="Your library")).to_be_visible()
    expect(page.get_by_role("link", name="Credits: 10")).to_be_visible()
    expect(page.get_by_text("Live updates on")).to_be_visible()
    assert len(refreshes) == 1
    stored = json.loads(page.evaluate("localStorage.getItem('photopipe.session')"))
    assert stored["token"] != expired
    assert stored["refresh_token"] != answer["refresh_token"]  # rotated

    # AND an access token the API calls expired mid-session (401 token_expired) is renewed, then retried
    console.allow(401)
    expired_once = {"left": 1}

    def expire_once(route: Route) -> None:
        if expired_once["left"]:
            expired_once["left"] -= 1
            body = {"error": {"code": "token_expired", "message": "the token has expired; log in again"}}
            route.fulfill(status=401, json=body)
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/credits\?limit=1$"), expire_once)
    with page.expect_response(lambda r: "/api/v1/credits?limit=1" in r.url and r.status == 200) as retried:
        nav(page, "Buy credits")
    assert retried.value.ok
    expect(page.get_by_role("heading", name="Buy credits")).to_be_visible()
    expect(page.get_by_text("Balance: 10 credits")).to_be_visible()
    assert expired_once["left"] == 0
    assert len(refreshes) == 2

    # AND signing out ends the session on the server: its refresh token is refused afterwards
    last = json.loads(page.evaluate("localStorage.getItem('photopipe.session')"))["refresh_token"]
    with page.expect_response(lambda r: r.url.endswith("/auth/logout")) as logout:
        page.get_by_role("button", name="Sign out").click()
    assert logout.value.status == 204
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert web.api("POST", "/auth/refresh", json={"refresh_token": last}).status_code == 401


def test_api_docs_render_under_their_csp(page: Page, web: WebStack) -> None:
    page.goto(web.url + "/api/v1/docs")
    expect(page.get_by_role("heading", name="photopipe")).to_be_visible()
    expect(page.get_by_text("/api/v1/classify", exact=True)).to_be_visible()
    expect(page.get_by_text("/api/v1/images/{image_id}", exact=True).first).to_be_visible()
    shot(page, "17-api-docs")


def test_phone_width_labels_and_keyboard(phone: Page, web: WebStack) -> None:
    signed_in(phone, web, "phone-user")
    # follows the browser's language (zh-CN here)
    expect(phone.get_by_role("heading", name="我的图库")).to_be_visible()
    for route in ["#/", "#/upload", "#/classify", "#/buy", "#/stats"]:
        phone.goto(f"{web.url}/{route}")
        phone.wait_for_load_state("networkidle")
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} is wider than the phone by {overflow}px"
        unnamed = phone.evaluate(UNNAMED_CONTROLS_JS)
        assert unnamed == [], f"{route}: controls without a label or name: {unnamed}"
        shot(phone, f"18-phone-{route.strip('#/') or 'library'}")

    # everything by keyboard: tab from the top to the upload link and open it
    phone.goto(f"{web.url}/#/")
    for _ in range(12):
        phone.keyboard.press("Tab")
        if phone.evaluate("document.activeElement.textContent.trim()") == "上传":
            break
    phone.keyboard.press("Enter")
    expect(phone.get_by_role("heading", name="上传照片")).to_be_visible()


UNNAMED_CONTROLS_JS = """
() => [...document.querySelectorAll("input, select, textarea, button, a[href]")]
  .filter((el) => {
    const name = (el.labels && [...el.labels].map((l) => l.textContent).join(" ")) || el.getAttribute("aria-label")
      || (el.tagName === "BUTTON" || el.tagName === "A" ? el.textContent : "") || el.getAttribute("title");
    return !(name && name.trim());
  })
  .map((el) => el.outerHTML.slice(0, 120))
"""


def test_a_dropped_folder_is_read_past_the_first_hundred_entries(page: Page, web: WebStack) -> None:
    signed_in(page, web, "folder-reader")
    found = page.evaluate(
        """async () => {
          const { filesFromDrop } = await import("/js/files.js");
          const files = Array.from({ length: 250 }, (_, i) => new File(["x"], `p${i}.jpg`, { type: "image/jpeg" }));
          const file = (f) => ({ isFile: true, isDirectory: false, name: f.name, file: (ok) => ok(f) });
          const dir = {
            isFile: false, isDirectory: true, name: "big",
            createReader() {
              let at = 0;
              return { readEntries(ok) { const chunk = files.slice(at, at + 100).map(file); at += chunk.length; setTimeout(() => ok(chunk)); } };
            },
          };
          const out = await filesFromDrop({ entries: [dir], files: [] });
          return out.map((f) => f.path);
        }"""
    )
    assert len(found) == 250
    assert found[0] == "big/p0.jpg"
    assert found[-1] == "big/p249.jpg"
