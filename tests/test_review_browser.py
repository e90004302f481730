"""End to end in a real browser: log in, correct a flagged film's patient ID, approve, release, check the archive.

Real uvicorn on a free loopback port, Debian's chromium driven by Playwright.
Leaves a screenshot of the detail page in ``test-artifacts/review-detail.png``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from fixtures_review import PASSWORD
from pipeline import uids

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def browser_page():
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        yield page
        context.close()
        browser.close()


def images_loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_correct_approve_release_in_browser(review_server, browser_page):
    base, env = review_server
    page = browser_page
    fid = env.fid("film_12")
    key = env.key("film_12")

    # not logged in: the queue sends us to the login page
    page.goto(f"{base}/queue")
    assert page.url == f"{base}/login"
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/queue")
    assert page.locator("#queue tbody tr").count() == 2

    # open the flagged film with the keyboard-free way (click its link)
    page.click(f"a.film-link[href^='/films/{fid}']")
    page.wait_for_url(f"{base}/films/{fid}*")
    for sel in ("#img-original", "#img-processed", "#img-label"):
        page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }", arg=sel)
    assert page.locator("tr.disagree").count() >= 1  # PatientID disagrees with the manifest
    ocr_id = env.films["film_12"]["record"]["header"]["PatientID"]
    assert page.input_value("#f-PatientID") == ocr_id != "01234576"

    page.fill("#f-PatientID", "01234576")
    page.fill("#f-StudyDate", "20190910")
    page.keyboard.press("Escape")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-detail.png"))

    # the 'a' shortcut approves
    page.keyboard.press("a")
    page.wait_for_load_state("load")
    deadline = time.monotonic() + 10
    while env.ledger.get(key).state != "approved" and time.monotonic() < deadline:
        time.sleep(0.1)
    row = env.ledger.get(key)
    assert row.state == "approved"

    # release from the queue page (runs `filmflow release` in a subprocess)
    page.goto(f"{base}/queue")
    page.click("#release-button")
    page.wait_for_url(f"{base}/queue")
    deadline = time.monotonic() + 240
    while True:
        status = page.request.get(f"{base}/api/release").json()
        if not status["running"]:
            break
        assert time.monotonic() < deadline, "release did not finish"
        time.sleep(1)
    assert status["rc"] == 0, (env.work_dir / "logs" / "release.log").read_text(errors="replace")[-3000:]

    row = env.ledger.get(key)
    assert row.state == "archived", row.error
    files = [p for p in env.archive_dir.rglob("*.dcm") if "fileset" not in p.parts]
    assert len(files) == 1
    ds = dcmread(files[0])
    header = row.record["review"]["overrides"]
    expected = uids.film_uids(root=env.settings.dicom.uid_root, sha256=env.films["film_12"]["sha256"],
                              patient_id="01234576", study_date="20190910",
                              accession_number=header["AccessionNumber"])
    assert ds.PatientID == "01234576"
    assert ds.SOPInstanceUID == expected.sop_instance_uid

    (entry,) = env.ledger.audit_log(key)
    assert entry["user"] == "rita" and entry["action"] == "approve"
    assert entry["changes"]["PatientID"] == {"old": ocr_id, "new": "01234576"}

    # the other film is still waiting; the approved one left the queue
    page.goto(f"{base}/queue")
    assert page.locator("#queue tbody tr").count() == 1


def test_reprocess_with_polarity_as_scanned_in_browser(review_server, browser_page):
    """The re-process form's "polarity as scanned" (for ``inversion_doubtful``): ticked and sent
    from the page, recorded in the audit log, the film re-run with it and kept in the queue."""
    base, env = review_server
    page = browser_page
    fid, key = env.fid("film_01"), env.key("film_01")
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/queue")
    page.goto(f"{base}/films/{fid}")
    page.check("#polarity-as-scanned")
    page.click("#reprocess-button")
    page.wait_for_url(f"{base}/films/{fid}")
    row = env.ledger.get(key)
    assert row.state == "flagged"
    assert row.record["review"]["settings_overrides"] == {"geometry": {"fix_polarity": False}}
    assert row.record["reprocessed"]["state"] in ("flagged", "processed"), row.record["reprocessed"]
    (entry,) = env.ledger.audit_log(key)
    assert entry["user"] == "rita" and entry["action"] == "reprocess"
    assert "Re-processed with reviewer settings" in page.content()
