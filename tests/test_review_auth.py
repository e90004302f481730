"""Review app access control: sessions, roles, CSRF, password storage (FastAPI TestClient)."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from fixtures_review import PASSWORD
from qc.review.app import create_app
from qc.review.store import users


@pytest.fixture
def app(review_env):
    return create_app(review_env.settings, ledger=review_env.ledger, secret="test-secret",
                      release_command=lambda: 0)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in; returns the session's CSRF token (from the queue page)."""
    page = client.get("/login")
    r = client.post("/login", data={"username": username, "password": password, "csrf": csrf_of(page.text)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/queue").text)


def fill(path: str, fid: str) -> str:
    return path.replace("{fid}", fid).replace("{kind}", "original")


def test_every_review_url_refuses_anonymous(app, review_env):
    client = TestClient(app)
    fid = review_env.fid("film_12")
    checked = 0
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path == "/login":
            continue
        for method in route.methods:
            r = client.request(method, fill(route.path, fid), data={"csrf": "x"}, follow_redirects=False)
            checked += 1
            if method == "GET" and not route.path.startswith("/api/") and "preview" not in route.path:
                assert r.status_code == 303 and r.headers["location"] == "/login", (method, route.path, r.status_code)
            else:
                assert r.status_code == 401, (method, route.path, r.status_code)
    assert checked >= 10
    assert review_env.ledger.get(review_env.key("film_12")).state == "flagged"


def test_forged_or_expired_session_cookie_is_refused(app, review_env):
    client = TestClient(app)
    client.cookies.set("ff_review_session", "eyJ1Ijoicml0YSJ9.forged.sig")
    assert client.get("/api/queue").status_code == 401
    other = create_app(review_env.settings, ledger=review_env.ledger, secret="another-secret")
    c2 = TestClient(other)
    login(c2, "rita")
    client.cookies.set("ff_review_session", c2.cookies.get("ff_review_session"))
    assert client.get("/api/queue").status_code == 401


@pytest.mark.parametrize("action,data", [
    ("approve", {"PatientID": "01234576"}),
    ("reject", {"reason": "wrong patient"}),
    ("reprocess", {"denoise_off": "1"}),
])
def test_viewer_cannot_decide(app, review_env, action, data):
    client = TestClient(app)
    csrf = login(client, "victor")
    key = review_env.key("film_12")
    before = review_env.ledger.get(key)
    r = client.post(f"/films/{review_env.fid('film_12')}/{action}", data={**data, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403
    after = review_env.ledger.get(key)
    assert (after.state, after.record, after.updated_at) == (before.state, before.record, before.updated_at)
    assert review_env.ledger.audit_log(key) == []


def test_viewer_can_look_but_not_release(app, review_env):
    client = TestClient(app)
    csrf = login(client, "victor")
    page = client.get(f"/films/{review_env.fid('film_12')}")
    assert page.status_code == 200
    assert 'id="approve-button"' not in page.text and "viewers cannot decide" in page.text
    assert client.post("/release", data={"csrf": csrf}).status_code == 403
    assert app.state.release.snapshot()["started_at"] is None


def test_post_without_or_with_wrong_csrf_token_is_refused(app, review_env):
    client = TestClient(app)
    login(client, "rita")
    key = review_env.key("film_12")
    url = f"/films/{review_env.fid('film_12')}/approve"
    assert client.post(url, data={"PatientID": "01234576"}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"PatientID": "01234576", "csrf": "not-the-token"}, follow_redirects=False).status_code == 403
    assert review_env.ledger.get(key).state == "flagged"
    assert review_env.ledger.audit_log(key) == []


def test_login_form_needs_its_csrf_token(app):
    client = TestClient(app)
    r = client.post("/login", data={"username": "rita", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    assert "ff_review_session" not in client.cookies


def test_wrong_password_is_refused(app):
    client = TestClient(app)
    page = client.get("/login")
    r = client.post("/login", data={"username": "rita", "password": "wrong password", "csrf": csrf_of(page.text)},
                    follow_redirects=False)
    assert r.status_code == 401
    assert client.get("/queue", follow_redirects=False).status_code == 303


def test_session_cookie_flags(app):
    client = TestClient(app)
    page = client.get("/login")
    r = client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": csrf_of(page.text)},
                    follow_redirects=False)
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("ff_review_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie


def test_secure_flag_is_configurable(review_env):
    app = create_app(review_env.settings, ledger=review_env.ledger, secret="s", secure_cookies=True)
    r = TestClient(app, base_url="https://testserver").get("/login")
    assert "Secure" in r.headers["set-cookie"]


def test_passwords_are_stored_as_argon2_hashes(review_env):
    with review_env.ledger.engine.connect() as conn:
        rows = conn.execute(select(users.c.username, users.c.password_hash)).all()
    assert {u for u, _ in rows} == {"rita", "victor"}
    for _u, h in rows:
        assert h.startswith("$argon2id$")
        assert PASSWORD not in h


def test_reviewer_decisions_validate_fields(app, review_env):
    client = TestClient(app)
    csrf = login(client, "rita")
    fid, key = review_env.fid("film_12"), review_env.key("film_12")
    header = review_env.films["film_12"]["record"]["header"]
    bad = {**header, "StudyDate": "2019-13-45", "PatientName": "D'ANGELO\\MARCO", "csrf": csrf}
    r = client.post(f"/films/{fid}/approve", data=bad, follow_redirects=False)
    assert r.status_code == 422
    assert "date must be YYYYMMDD" in r.text
    assert review_env.ledger.get(key).state == "flagged"
    r = client.post(f"/films/{review_env.fid('film_01')}/reject", data={"reason": "  ", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 422
    assert review_env.ledger.get(review_env.key("film_01")).state == "flagged"
    good = {**header, "PatientID": "01234576", "StudyDate": "20190910", "csrf": csrf}
    assert client.post(f"/films/{fid}/approve", data=good, follow_redirects=False).status_code == 303
    row = review_env.ledger.get(key)
    assert row.state == "approved"
    assert row.record["review"]["overrides"]["PatientID"] == "01234576"
    assert row.record["review"]["decided_by"] == "rita"
    (entry,) = review_env.ledger.audit_log(key)
    assert entry["user"] == "rita" and entry["action"] == "approve"
    expected = {k: {"old": header[k], "new": v} for k, v in (("PatientID", "01234576"), ("StudyDate", "20190910"))
                if header[k] != v}
    assert "PatientID" in expected  # the label's ID contradicts the manifest's
    assert entry["changes"] == expected
    # a second decision on the same film is a conflict, not a silent overwrite
    r = client.post(f"/films/{review_env.fid('film_12')}/reject", data={"reason": "x", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 409


def test_no_patient_data_in_urls(app, review_env):
    client = TestClient(app)
    login(client, "rita")
    header = review_env.films["film_12"]["record"]["header"]
    for page in ("/queue", f"/films/{review_env.fid('film_12')}"):
        html = client.get(page).text
        urls = re.findall(r'(?:href|src|action)="([^"]*)"', html)
        assert urls
        for u in urls:
            for v in (header["PatientID"], "ANGELO", header["PatientBirthDate"]):
                assert v not in u, (page, u)


def test_previews_render_real_pixels(app, review_env):
    import io

    from PIL import Image

    client = TestClient(app)
    login(client, "rita")
    fid = review_env.fid("film_12")
    sizes = {}
    for kind in ("original", "processed", "label"):
        r = client.get(f"/films/{fid}/preview/{kind}.png?size=512")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        im = Image.open(io.BytesIO(r.content))
        assert im.mode == "L" and max(im.size) <= 512
        sizes[kind] = im.size
    # the label crop is much smaller than the film; the processed film is the straightened crop
    assert sizes["label"][1] < sizes["processed"][1]
    auto = client.get(f"/films/{fid}/preview/processed.png?size=256").content
    narrow = client.get(f"/films/{fid}/preview/processed.png?size=256&wc=50&ww=10").content
    assert auto != narrow


def test_reprocess_settings_choices():
    from qc.review.store import FieldErrors, settings_overrides

    assert settings_overrides(None, False, True) == {"geometry": {"fix_polarity": False}}
    assert settings_overrides("2", True, True) == {"geometry": {"rotation_k": 2, "fix_orientation": False, "fix_polarity": False},
                                                   "denoise": {"method": "off"}}
    with pytest.raises(FieldErrors):
        settings_overrides("", False, False)


def test_reprocess_records_settings_and_keeps_the_film_flagged(app, review_env):
    client = TestClient(app)
    csrf = login(client, "rita")
    fid, key = review_env.fid("film_12"), review_env.key("film_12")
    r = client.post(f"/films/{fid}/reprocess", data={"rotation_k": "7", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 422
    r = client.post(f"/films/{fid}/reprocess", data={"denoise_off": "1", "polarity_as_scanned": "1", "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and "error" not in r.headers["location"]
    row = review_env.ledger.get(key)
    assert row.state == "flagged"
    assert row.record["review"]["settings_overrides"] == {"geometry": {"fix_polarity": False}, "denoise": {"method": "off"}}
    assert row.record["reprocessed"]["state"] in ("flagged", "processed"), row.record["reprocessed"]
    # the manifest finding of the first run is kept: the manifest was not consulted again
    assert "manifest_disagree" in row.record["qc_flags"]
    (entry,) = review_env.ledger.audit_log(key)
    assert entry["action"] == "reprocess"
    assert entry["changes"]["settings_overrides"]["new"] == {"geometry": {"fix_polarity": False}, "denoise": {"method": "off"}}
    # the next re-process starts from these settings (it replaces them): both boxes come ticked
    page = client.get(f"/films/{fid}").text
    assert 'id="denoise-off" checked' in page and 'id="polarity-as-scanned" checked' in page
    assert "selected>" not in page.split('id="rotation-k"')[1].split("</select>")[0]  # no rotation was chosen
    r = client.post(f"/films/{fid}/reprocess", data={"rotation_k": "2", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/films/{fid}").text
    assert '<option value="2" selected>' in page and 'id="polarity-as-scanned" checked' not in page
    assert list((review_env.work_dir / "staging").glob("*.dcm")) == []
