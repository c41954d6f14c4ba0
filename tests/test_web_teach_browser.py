"""Teach a new label from the page, in the system's headless Chromium driven by WebDriver (no mocks of the page):
draw a region on the live picture, collect crops of two real objects shown there in turn, train, accept, and
see the region's live label become a taught label; then the same from the crops of the review queue
(docs/review.md). Over HTTPS (web.tls auto): the browser trusts the service's self-signed certificate by its
public key's SHA-256 pin alone (--ignore-certificate-errors-spki-list), not by ignoring certificate errors.
Screenshots of each step go to $EDGEREC_SHOTS (e.g. docs/img; unset: the test's temporary folder)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PHOTOS, load_script
from test_web_teach import service, write_config

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMEDRIVER is None or CHROMIUM is None or shutil.which("openssl") is None,
                                reason="needs chromium, chromedriver and openssl (Debian: apt-get install chromium "
                                       "chromium-driver openssl)")

SHELF = (0.5, 0.25, 0.4, 0.6)
"""Where the objects are put, as fractions x, y, w, h of the frame."""
OBJECTS = (("rodent", "squirrel_cls.jpg", "fox squirrel"), ("puppy", "chicky_512.jpg", "Pekinese"))
"""The taught label, the photo, and what the embedded ImageNet model calls it in the box (72-80% sure)."""
PHASE_S, FPS, SIZE = 3.0, 10.0, (320, 240)


def alternating_clip(path: Path) -> Path:
    """A still scene (a photo of a cat, sensor noise) with a squirrel, then a small dog, each PHASE_S seconds,
    in the SHELF box: two different real objects in turn in one place."""
    msc = load_script("make_still_clip")
    scene = msc.cover(msc.read(PHOTOS / "chelsea.jpg"), SIZE)
    shown = [msc.pasted(scene, msc.Paste(PHOTOS / photo, SHELF, 0.0)) for _, photo, _ in OBJECTS]
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, SIZE)
    for i in range(round(2 * PHASE_S * FPS)):
        noisy = shown[int(i // (PHASE_S * FPS))] + rng.normal(0, 2.0, scene.shape)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    return path


def spki_pin(cert: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of `cert`: what Chromium pins (the PEM public key's body is the
    DER SubjectPublicKeyInfo)."""
    public = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], capture_output=True,
                            text=True, check=True).stdout
    der = base64.b64decode("".join(line for line in public.splitlines() if not line.startswith("-----")))
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def browser(tmp_path):
    """Chromium trusting the self-signed certificate the service will find in STATE/tls (made here, before it
    starts: the service then keeps it, as on a second start)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from edge.web.tls import self_signed

    files, _ = self_signed(tmp_path / "state")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1320", f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run",
                     f"--ignore-certificate-errors-spki-list={spki_pin(files.cert)}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str, tmp_path: Path, element=None) -> Path:
    """The page (or one `element` of it) as JPEG (quality 70: each under 150 kB) into $EDGEREC_SHOTS or tmp_path."""
    folder = Path(os.environ.get("EDGEREC_SHOTS") or tmp_path)
    png = (element or driver).screenshot_as_png if element is not None else driver.get_screenshot_as_png()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    path = folder / f"teach-{name}.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert path.stat().st_size < 150_000
    return path


def wait(condition, timeout: float = 15.0, what: str | Callable[[], str] = "") -> object:
    """`condition()` until it is true; `what` (or what it returns, read at the end) names it in the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.1)


def test_teach_a_new_label_from_the_page(tmp_path, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    clip = alternating_clip(tmp_path / "shelf.avi")
    config = write_config(tmp_path, clip, None, tls=True)  # the embedded ImageNet model, the whole frame at first
    find = lambda id_: browser.find_element(By.ID, id_)  # noqa: E731
    with service(config) as svc:
        browser.get(f"https://127.0.0.1:{svc.port}/")
        assert browser.execute_script("return location.protocol") == "https:" and svc.cert is not None
        picture = find("view")
        wait(lambda: browser.execute_script("return arguments[0].naturalWidth", picture), what="the live picture")

        # 1. draw the region on the live picture and save it
        width, height = picture.size["width"], picture.size["height"]
        x, y, w, h = SHELF
        ActionChains(browser).move_to_element_with_offset(picture, round((x - 0.5) * width) + 2,
                                                          round((y - 0.5) * height) + 2).click_and_hold() \
            .move_by_offset(round(w * width) - 4, round(h * height) - 4).release().perform()
        find("region-name").clear()
        find("region-name").send_keys("shelf")
        find("save-region").click()
        wait(lambda: "shelf" in svc.regions(), what="the drawn region to run")
        box = svc.regions()["shelf"]["box"]
        assert np.allclose(box, SHELF, atol=0.02), box
        wait(lambda: "saved shelf" in find("region-note").text and "shelf" in find("regions").text)
        screenshot(browser, "1-region", tmp_path)

        # 2. collect crops of each object under its label, while the region shows it (the ImageNet label says)
        wait(lambda: find("collect-region").get_attribute("value") == "shelf", what="the region in the collect list")
        every = find("collect-every")
        every.clear()
        every.send_keys("0.2")
        for label, _, imagenet in OBJECTS:  # from the start of its phase, for half of it
            wait(lambda imagenet=imagenet: svc.regions()["shelf"]["label"] != imagenet, timeout=2 * PHASE_S + 5,
                 what=f"the {imagenet} to go")
            wait(lambda imagenet=imagenet: svc.regions()["shelf"]["label"] == imagenet, timeout=2 * PHASE_S + 5,
                 what=f"the {imagenet} on the shelf")
            find("collect-label").clear()
            find("collect-label").send_keys(label)
            find("collect-start").click()
            time.sleep(PHASE_S / 2)
            find("collect-stop").click()
            wait(lambda: svc.request("GET", "/api/collect")[1]["active"] is False)
        crops = svc.request("GET", "/api/crops/camera/shelf")[1]["labels"]
        assert set(crops) == {"rodent", "puppy"} and min(len(files) for files in crops.values()) >= 3, crops
        wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#crops img")) == sum(map(len, crops.values())),
             what="the grid of crops")
        screenshot(browser, "2-collect", tmp_path)

        # 3. train, and see the validation result with its interval
        find("train").click()
        wait(lambda: "validation" in find("train-note").text, timeout=40, what="the training's result")
        note = find("train-note").text
        assert note.startswith("puppy, rodent: validation 100.0% (95%: "), note
        screenshot(browser, "3-train", tmp_path)

        # 4. accept: the region's live label becomes a taught one without stopping the camera
        frames_before = svc.status()["frames"]
        find("accept").click()
        wait(lambda: svc.regions()["shelf"]["label"] in ("rodent", "puppy"), what="a taught label")
        seen = set()
        wait(lambda: seen.add(find("regions").text) or {"rodent", "puppy"} <= {
            word for text in seen for word in text.split()}, timeout=2 * PHASE_S + 5,
             what=lambda: f"both taught labels; the table showed {sorted(seen)}")
        assert "v1: puppy, rodent" in find("versions").text
        screenshot(browser, "4-accept", tmp_path)
        assert svc.status()["frames"] > frames_before and svc.status()["healthy"]
        indices = [index for index, _, _ in svc.probe.frames]
        assert indices == list(range(indices[0], indices[0] + len(indices)))  # not one frame lost meanwhile
    assert time.monotonic() - started < 90


REVIEW = "[review]\nlow_score = 0.95\nmin_gap_s = 0.3\nper_hour = 100\nduplicate = 0.0\n"
"""Every inferred result of the shelf is below 95% (the ImageNet model is 72-80% sure), one every 0.3 s; the clip
is a still picture under sensor noise, whose crops of one object are near-duplicates: kept all the same."""


def test_review_assign_train_and_accept_from_the_page(tmp_path, browser):
    """The review queue: crops the region met (the ImageNet model unsure of them), assigned from the page to two
    new labels, one discarded, then trained and accepted; the region's live label becomes a taught one."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    clip = alternating_clip(tmp_path / "shelf.avi")
    x, y, w, h = SHELF
    config = write_config(tmp_path, clip, None, regions=f'[[regions]]\nname = "shelf"\nbox = [{x}, {y}, {w}, {h}]\n'
                          + REVIEW, tls=True)
    find = lambda id_: browser.find_element(By.ID, id_)  # noqa: E731
    cards = lambda label: browser.find_elements(By.CSS_SELECTOR, f'#review-items figure[data-label="{label}"]')  # noqa: E731
    with service(config) as svc:
        browser.get(f"https://127.0.0.1:{svc.port}/")
        wait(lambda: find("collect-region").get_attribute("value") == "shelf", what="the region")

        # 1. the crops the region met, listed with their label, score and why they were kept
        names = [imagenet for _, _, imagenet in OBJECTS]
        wait(lambda: all(len(cards(name)) >= 5 for name in names), timeout=4 * PHASE_S + 10,
             what="five review crops of each object")
        caption = cards(names[0])[0].find_element(By.TAG_NAME, "figcaption").text
        assert caption.startswith(names[0]) and ("low score" in caption or "label change" in caption), caption
        assert "waiting" in find("review-count").text

        # the cards hold still under the pointer while new crops arrive (counted above), and move on when it leaves
        shown = lambda: [figure.get_attribute("data-file")  # noqa: E731
                         for figure in browser.find_elements(By.CSS_SELECTOR, "#review-items figure")]
        waiting = lambda: int(find("review-count").text.split()[1])  # noqa: E731
        ActionChains(browser).move_to_element(find("review-items")).perform()
        still, count = shown(), waiting()
        wait(lambda: waiting() >= count + 3, what="three more crops counted")
        assert shown() == still
        ActionChains(browser).move_to_element(find("review-new")).perform()
        wait(lambda: shown()[:len(still)] != still, what="the new crops shown once the pointer left")

        # 2. assign four of each object to a new label, discard one
        assigned = {}
        for (label, _, imagenet) in OBJECTS:
            chosen = cards(imagenet)[:4]
            for figure in chosen:
                figure.click()
            assigned[label] = {figure.get_attribute("data-file") for figure in chosen}
            # the list holds still under the pointer: the four clicked are the four selected
            selected = browser.find_elements(By.CSS_SELECTOR, "#review-items figure.on")
            assert {figure.get_attribute("data-file") for figure in selected} == assigned[label]
            find("review-new").clear()
            find("review-new").send_keys(label)
            if label == OBJECTS[-1][0]:
                screenshot(browser, "review", tmp_path, element=find("teach"))
            find("review-assign").click()
            wait(lambda label=label: f"4 assigned to {label}" in find("review-note").text,
                 what=lambda label=label: f"{label} assigned; the note said {find('review-note').text!r}")
        # the queue keeps filling while the page is open (new cards can push the list between a look and a
        # click), so the discarded crop is found as the one that left the queue
        before = {item["file"] for item in svc.request("GET", "/api/review/camera/shelf")[1]["items"]}
        cards(names[0])[0].click()
        find("review-discard").click()
        wait(lambda: "1 discarded" in find("review-note").text, what="the discard")
        crops = svc.request("GET", "/api/crops/camera/shelf")[1]["labels"]
        assert {label: set(files) for label, files in crops.items()} == assigned, crops
        left = {item["file"] for item in svc.request("GET", "/api/review/camera/shelf")[1]["items"]}
        discarded = before - left
        assert len(discarded) == 1 and not left & set().union(*assigned.values()), (before, left)
        assert not discarded & set().union(*(set(files) for files in crops.values()))
        wait(lambda: {o.text for o in find("review-label").find_elements(By.TAG_NAME, "option")} == set(assigned),
             what="the new labels in the review's label list")

        # 3. train and accept as after collecting: the region's label becomes a taught one
        find("train").click()
        wait(lambda: "validation" in find("train-note").text, timeout=40, what="the training's result")
        assert find("train-note").text.startswith("puppy, rodent: validation"), find("train-note").text
        find("accept").click()
        wait(lambda: svc.regions()["shelf"]["label"] in ("rodent", "puppy"), what="a taught label")
        assert "v1: puppy, rodent" in find("versions").text
        assert svc.status()["healthy"]
    assert time.monotonic() - started < 90
