"""Open WebUI as a person uses it: Debian's Chromium driven by Playwright (no browser download).

Selectors are the ones Open WebUI 0.12 renders: the login form's email and password inputs, the
chat box `#chat-input`, the model selector's aria-label, and `/c/<id>` links for saved chats.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from filelock import FileLock
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from controller.errors import NotReady
from controller.phases import wait_for

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# A page load waits on a condition, with room for a busy machine: with two test workers on two cores,
# Open WebUI's first page took over 60 s to show its login form.
UI_TIMEOUT_MS = 180_000
REPLY_DEADLINE_S = 120
# One Chromium at a time across pytest-xdist workers: two at once on two cores starve each other.
BROWSER_LOCK = Path(__file__).resolve().parents[2] / ".cache" / "browser.lock"


# Chromium without its watch on the host's network interfaces (no_netlink.c says why), built once.
NO_NETLINK_SOURCE = Path(__file__).with_name("no_netlink.c")


def no_netlink_library() -> Path:
    """The library compiled into .cache, named by the hash of its source and compiler command (each
    worker compiles to a file of its own and renames it into place, so two at once are harmless)."""
    command = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", str(NO_NETLINK_SOURCE), "-ldl", "-o"]
    key = hashlib.sha256(NO_NETLINK_SOURCE.read_bytes() + " ".join(command).encode()).hexdigest()[:12]
    library = BROWSER_LOCK.parent.resolve() / f"no_netlink-{key}.so"
    if not library.exists():
        library.parent.mkdir(exist_ok=True)
        partial = library.with_suffix(f".{os.getpid()}.partial")
        subprocess.run([*command, str(partial)], check=True)
        partial.rename(library)
    # The loader splits LD_PRELOAD at spaces and colons: such a path would be ignored without a word.
    if set(str(library)) & {" ", ":"}:
        raise RuntimeError(f"{library}: LD_PRELOAD cannot name a path with a space or a colon; move the checkout")
    return library


@contextmanager
def chromium(home: Path | None = None) -> Iterator[Browser]:
    """Debian's Chromium; with `home`, it reads the certificates it trusts from `home`/.pki/nssdb."""
    BROWSER_LOCK.parent.mkdir(exist_ok=True)
    with FileLock(BROWSER_LOCK), sync_playwright() as playwright:
        preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), str(no_netlink_library())]))
        env = {**os.environ, "LD_PRELOAD": preload} | ({"HOME": str(home)} if home else {})
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, env=env)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser) -> Page:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(UI_TIMEOUT_MS)
    # Printed for every failed request: pytest shows it beside a failure, and CI keeps only the output.
    page.on("requestfailed", lambda request: print(f"browser: {request.method} {request.url} failed: "
                                                   f"{request.failure}", flush=True))  # fmt: skip
    return page


def submit_login(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/auth")
    page.fill("input[type=email]", email)
    page.fill("input[type=password]", password)
    page.keyboard.press("Enter")


def trusting_home(folder: Path, ca_file: str) -> Path:
    """A home folder whose NSS database (where Chromium on Linux looks) trusts `ca_file` to issue
    server certificates, as a person's browser does once the site's root is imported."""
    nssdb = folder / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "site-root", "-t", "C,,", "-i", ca_file],
                   check=True, capture_output=True)  # fmt: skip
    return folder


def sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    submit_login(page, base_url, email, password)
    wait_for_chat_box(page, "after sign-in")
    dismiss_release_notes(page)


def wait_for_chat_box(page: Page, when: str) -> None:
    """Wait for the chat box; when it does not come, fail with what the page shows instead (its
    address and text, and a screenshot), since CI keeps only the test's output."""
    chat_box = page.locator("#chat-input")
    # Open WebUI's app shell shows "500: Internal Error" when one of its first API calls fails (seen
    # with two test workers on two cores); a person reloads the page, and so does this, twice at most.
    error_page = page.get_by_text("500: Internal Error")
    try:
        for _ in range(3):
            chat_box.or_(error_page).first.wait_for()
            if chat_box.is_visible():
                return
            page.reload()
        chat_box.wait_for()
    except PlaywrightTimeout:
        shown = page.locator("body").inner_text(timeout=10_000)[:1500]
        path = screenshot(page, f"no-chat-box-{when.replace(' ', '-')}")
        raise AssertionError(f"no chat box {when} within {UI_TIMEOUT_MS / 1000:.0f} s; the page at {page.url} "
                             f"shows ({path}):\n{shown}") from None  # fmt: skip


def dismiss_release_notes(page: Page) -> None:
    """A first sign-in shows "What's New"; a person closes it."""
    button = page.get_by_role("button", name="Okay, Let's Go!")
    if button.count():
        button.click()


def selected_model(page: Page) -> str:
    label = page.locator("#model-selector-model-button").get_attribute("aria-label") or ""
    return label.removeprefix("Selected model: ")


def send_message(page: Page, text: str) -> str:
    """Type into the chat box, press Enter, and return the id of the chat it lands in."""
    page.locator("#chat-input").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/c/[0-9a-f-]+$"))
    return page.url.rsplit("/", 1)[-1]


def token(page: Page) -> str:
    return page.evaluate("localStorage.token")


def assistant_reply(base_url: str, bearer: str, chat_id: str, after: str) -> dict:
    """Wait until the chat stores a finished assistant message answering the user message `after`."""

    def finished() -> dict:
        response = httpx.get(f"{base_url}/api/v1/chats/{chat_id}", headers={"Authorization": f"Bearer {bearer}"})
        response.raise_for_status()
        messages = response.json()["chat"]["history"]["messages"].values()
        asked = [m["id"] for m in messages if m["role"] == "user" and m.get("content") == after]
        replies = [m for m in messages if m["role"] == "assistant" and m.get("parentId") in asked]
        if not replies or not (replies[-1].get("done") or replies[-1].get("error")):
            raise NotReady(f"chat {chat_id} has no finished reply to {after!r} yet")
        return replies[-1]

    return wait_for("browser reply", finished, deadline_s=REPLY_DEADLINE_S)


def screenshot(page: Page, name: str) -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / ".artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path
