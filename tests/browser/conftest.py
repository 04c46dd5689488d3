"""Browser tests: the web UI in Debian's Chromium (Playwright for Python), against the local stack with a
fake DashScope (categories by picture size) and a small exported face model (the CPU worker starts).

`make test` installs Chromium (`make browser`); Playwright cannot download its own browser here. Every
page's console is watched: an error or an uncaught exception fails the test that caused it. Screenshots
go to test-artefacts/browser/ (git-ignored)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.fakes.dashscope_server import FakeDashScope

CHROMIUM = os.environ.get("PHOTOPIPE_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTEFACTS = ROOT / "test-artefacts" / "browser"
KEY = "sk-browser-0123456789"
# Waits, not timings: a busy 2-core machine can take seconds for a cold function or a page's first paint.
expect.set_options(timeout=20_000)
PASSWORD = "a-browser-password"


# ------------------------------------------------------------------ photos the fake model tells apart
@cache
def _picture(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def jpeg(name: str, size: tuple[int, int], quality: int = 88) -> bytes:
    buf = io.BytesIO()
    _picture(name).resize(size).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# The fake model answers by the shape of the 1440 px preview it is sent (the photos below are smaller, so the
# preview keeps their size): a person, a cat, a coffee, a rocket.
CATEGORY_BY_SIZE = {
    (512, 512): ("single_person", "one person in a spacesuit"),
    (600, 400): ("pets", "a cat looking at the camera"),
    (480, 320): ("pets", "a cat looking at the camera"),
    (640, 426): ("foods", "a cup of coffee"),
    (427, 640): ("travel_scenery", "a rocket at a launch site"),
    (500, 350): ("travel_scenery", "stars in the night sky"),
}


def answer_for(image: bytes) -> str:
    size = Image.open(io.BytesIO(image)).size
    category, reason = CATEGORY_BY_SIZE.get(size, ("other", "something else"))
    return json.dumps({"category": category, "confidence": 0.93, "reason": reason})


# ------------------------------------------------------------------ the stack
@dataclass
class WebStack:
    stack: LocalStack
    fake: FakeDashScope
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.stack.api_url

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kw)

    def register(self, username: str) -> dict[str, Any]:
        """An account made over the API (for tests whose subject is not signing up)."""
        resp = self.api(
            "POST",
            "/auth/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert resp.status_code == 201, resp.text
        self.users[username] = resp.json()
        return resp.json()

    def grant_admin(self, username: str) -> None:
        """The admin flag, set as `photopipe admin grant USERNAME` sets it."""
        wiring.set_admin(username, env=self.stack.environment)

    def wait_for_state(
        self, token: str, image_id: str, states: set[str], timeout: float = 90
    ) -> dict[str, Any]:
        """Set-up only (the UI never polls): until the photo reaches one of `states`."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.api("GET", f"/images/{image_id}", token).json()
            if record.get("state") in states:
                return dict(record)
            assert time.monotonic() < deadline, record
            time.sleep(0.3)

    def upload(self, token: str, filename: str, body: bytes, content_type: str = "image/jpeg") -> str:
        resp = self.api(
            "POST",
            "/uploads",
            token,
            json={"filename": filename, "content_type": content_type, "size": len(body)},
        )
        assert resp.status_code == 201, resp.text
        created = resp.json()
        post = requests.post(
            created["upload"]["url"],
            data=created["upload"]["fields"],
            files={"file": (filename, body, content_type)},
            timeout=30,
        )
        assert post.status_code in (200, 201, 204), post.text
        return str(created["image_id"])


# Module-scoped, not session: the stack, its environment (the fake model, the model dir) and its pollers end
# with this module, so the test files xdist runs after it in the same process never see them.
@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=KEY) as server:
        server.responder = answer_for
        yield server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `photopipe models export --reduced` writes: the real architecture, narrow, random weights."""
    from photopipe_export.arch import GfpganConfig
    from photopipe_export.export import export_gfpgan

    out = tmp_path_factory.mktemp("gfpgan-small")
    export_gfpgan(
        None, out, config=GfpganConfig(out_size=512, num_style_feat=64, num_mlp=2, narrow=0.0625), fp16=False
    )
    return out


@pytest.fixture(scope="module")
def web(fake_llm: FakeDashScope, model_dir: Path) -> Iterator[WebStack]:
    wiring.reset()
    parameters.clear_caches()
    env = {
        "DASHSCOPE_API_KEY": KEY,
        "DASHSCOPE_HTTP_BASE_URL": fake_llm.base_url,
        "PHOTOPIPE_MODEL_DIR": str(model_dir),
    }
    stack = LocalStack(
        ROOT / "template.yaml", port=0, stack_name="photopipe-browser", write_state=False, env_overrides=env
    )
    with stack:
        yield WebStack(stack, fake_llm)
    wiring.reset()
    parameters.clear_caches()


# ------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (apt-get install chromium)"
        )
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    yield browser
    browser.close()


@dataclass
class Console:
    """Errors on the page's console. Chromium also logs each HTTP error answer ("Failed to load resource:
    the server responded with a status of 400"): a test that provokes a refusal names the status with
    `allow(400)`; any other is an error."""

    errors: list[str] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)

    def allow(self, *statuses: int) -> None:
        self.allowed.update(statuses)

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        refused = re.match(
            r"Failed to load resource: the server responded with a status of (\d+)", message.text
        )
        if refused and int(refused.group(1)) in self.allowed:
            return
        self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def console() -> Console:
    return Console()


def _new_page(browser: Browser, console: Console, **context: Any) -> Page:
    ctx = browser.new_context(accept_downloads=True, **context)
    page = ctx.new_page()
    page.on("console", console.on_message)
    page.on("pageerror", console.on_page_error)
    return page


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    page = _new_page(browser, console, viewport={"width": 1280, "height": 900}, locale="en-US")
    yield page
    page.context.close()
    assert console.errors == [], "\n".join(console.errors)


@pytest.fixture
def second_page(browser: Browser, console: Console) -> Iterator[Page]:
    """Another person's browser (its own storage), watched like `page`."""
    page = _new_page(browser, console, viewport={"width": 1280, "height": 900}, locale="en-US")
    yield page
    page.context.close()


@pytest.fixture
def phone(browser: Browser, console: Console) -> Iterator[Page]:
    page = _new_page(
        browser,
        console,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    yield page
    page.context.close()
    assert console.errors == [], "\n".join(console.errors)


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot in test-artefacts/browser/ (looked at by a person, not compared)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn where the page was scrolled to
    page.screenshot(path=str(path), full_page=True)
    return path


def signed_in(page: Page, web: WebStack, username: str) -> None:
    """Open the UI already signed in as `username` (registered over the API)."""
    answer = web.users.get(username) or web.register(username)
    session = {
        "token": answer["token"],
        "refresh_token": answer.get("refresh_token"),
        "expires_at": 4_102_444_800_000,
        "user": answer["user"],
    }
    page.add_init_script(f"localStorage.setItem('photopipe.session', {json.dumps(json.dumps(session))})")
    page.goto(web.url + "/")


DROP_FOLDER_JS = """
async ({ files, batch }) => {
  // A drop of folders as the browser gives it: FileSystemEntry objects whose directory readers answer at
  // most `batch` entries per readEntries call (Chromium: 100), then an empty batch.
  const root = { children: new Map() };
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    const parts = f.path.split("/");
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.children.has(dir)) node.children.set(dir, { name: dir, children: new Map() });
      node = node.children.get(dir);
    }
    const name = parts[parts.length - 1];
    node.children.set(name, { name, file: new File([bytes], name, { type: f.type }) });
  }
  const entry = (node) =>
    node.file
      ? { isFile: true, isDirectory: false, name: node.name, file: (ok) => setTimeout(() => ok(node.file)) }
      : {
          isFile: false,
          isDirectory: true,
          name: node.name,
          createReader() {
            const all = [...node.children.values()].map(entry);
            let at = 0;
            return {
              readEntries(ok) {
                const chunk = all.slice(at, at + batch);
                at += chunk.length;
                setTimeout(() => ok(chunk));
              },
            };
          },
        };
  const items = [...root.children.values()].map((node) => ({ kind: "file", webkitGetAsEntry: () => entry(node) }));
  const zone = document.querySelector("[aria-label][role=region]");
  const drop = new Event("drop", { bubbles: true, cancelable: true });
  Object.defineProperty(drop, "dataTransfer", { value: { items, files: [] } });
  zone.dispatchEvent(drop);
}
"""


def drop_folder(page: Page, files: dict[str, tuple[bytes, str]], batch: int = 100) -> None:
    """Drop folders (paths with '/') onto the upload page's drop zone."""
    payload = [
        {"path": path, "b64": base64.b64encode(body).decode(), "type": kind}
        for path, (body, kind) in files.items()
    ]
    page.evaluate(DROP_FOLDER_JS, {"files": payload, "batch": batch})
