"""The review web app (FastAPI): queue, film detail, decisions, release.

URLs carry only opaque film ids (:func:`qc.review.store.film_id`) and non-patient
filters (batch name, QC code). Pages need a logged-in user (otherwise a redirect
to ``/login``); image and JSON endpoints answer 401; deciding needs the
``reviewer`` role (403 for viewers) and the session's CSRF token (403 without).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from filmflow.config import Settings
from filmflow.ledger import Ledger, default_ledger_url
from qc.review import previews, store
from qc.review.auth import PRELOGIN_COOKIE, SESSION_COOKIE, Session, SessionSigner, load_secret, tokens_match
from qc.review.store import EDITABLE_FIELDS, ReviewError, User, UserStore

log = logging.getLogger("filmflow.review")

HERE = Path(__file__).resolve().parent

SHORTCUTS = [
    ("j / k", "next / previous film (queue and detail page)"),
    ("Enter", "open the selected film (queue)"),
    ("/", "focus the filter (queue) or the first field (detail)"),
    ("a", "approve with the values in the form"),
    ("r", "reject (focuses the reason; Enter in the reason submits)"),
    ("p", "re-process with the chosen settings"),
    ("z", "open the processed film at full size"),
    ("Esc", "leave a text field"),
]


_SEVERITY_RANK = {"info": 0, "review": 1, "fail": 2}


class NeedLogin(Exception):
    """Raised by page handlers without a session: answered with a redirect (pages) or 401."""

    def __init__(self, api: bool) -> None:
        self.api = api


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


class ReleaseRunner:
    """Runs ``filmflow release`` in a subprocess, one at a time, and remembers the last outcome."""

    def __init__(self, settings: Settings, work_dir: Path, command: Callable[[], int] | None = None) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self._command = command or self._subprocess
        self._lock = threading.Lock()
        self.state: dict[str, Any] = {"running": False, "rc": None, "started_at": None, "finished_at": None, "by": ""}

    def _subprocess(self) -> int:
        env = dict(os.environ)
        # the exact settings of this server, section by section (pydantic-settings reads JSON values)
        for section, values in self.settings.model_dump(mode="json").items():
            env[f"FILMFLOW_{section.upper()}"] = json.dumps(values)
        env.pop("FILMFLOW_CONFIG", None)
        # Prefect's ephemeral API server needs longer than its 20 s default on a busy host
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "release.log", "ab") as out:
            proc = subprocess.run([sys.executable, "-m", "filmflow.cli", "release"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=str(self.work_dir), check=False)
        return proc.returncode

    def start(self, by: str) -> bool:
        with self._lock:
            if self.state["running"]:
                return False
            self.state.update(running=True, rc=None, started_at=time.time(), finished_at=None, by=by)
        threading.Thread(target=self._run, name="filmflow-release", daemon=True).start()
        return True

    def _run(self) -> None:
        rc = 1
        try:
            rc = int(self._command() or 0)
        except Exception:  # the page must learn that it failed; details go to the server log
            log.exception("release run failed")
            rc = 1
        finally:
            with self._lock:
                self.state.update(running=False, rc=rc, finished_at=time.time())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.state)


def create_app(
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    secure_cookies: bool = False,
    secret: str | None = None,
    session_max_age_s: int = 8 * 3600,
    release_command: Callable[[], int] | None = None,
) -> FastAPI:
    """Build the review app.

    Parameters
    ----------
    settings : Settings
        filmflow settings (work folder, ledger URL, scan/geometry options for previews).
    ledger : Ledger, optional
        An open ledger; by default the one of ``settings``.
    secure_cookies : bool
        Set the ``Secure`` cookie flag (serve behind HTTPS).
    secret : str, optional
        Session-signing key; default :func:`qc.review.auth.load_secret`.
    release_command : callable, optional
        What the "Release approved" button runs (returns an exit code); default
        ``filmflow release`` in a subprocess with this server's settings.
    """
    work_dir = Path(settings.run.work_dir).resolve()
    ledger = ledger or Ledger(settings.run.ledger_url or default_ledger_url(work_dir))
    user_store = UserStore(ledger)
    signer = SessionSigner(secret or load_secret(work_dir), max_age_s=session_max_age_s, secure=secure_cookies)
    cache = previews.PreviewCache(settings)
    runner = ReleaseRunner(settings, work_dir, release_command)
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    app = FastAPI(title="filmflow review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ledger, app.state.users, app.state.release = ledger, user_store, runner
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        return response

    @app.exception_handler(NeedLogin)
    async def _need_login(request: Request, exc: NeedLogin) -> Response:
        if exc.api or request.method != "GET":
            return JSONResponse({"detail": "not authenticated"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return JSONResponse({"detail": exc.message}, status_code=403)

    # -- helpers ---------------------------------------------------------------------------------
    def auth(request: Request, *, api: bool = False) -> tuple[User, Session]:
        sess = signer.read_session(request.cookies.get(SESSION_COOKIE))
        user = user_store.get(sess.username) if sess else None
        if sess is None or user is None:
            raise NeedLogin(api)
        return user, sess

    async def auth_post(request: Request, *, decide: bool = True) -> tuple[User, Session, Any]:
        user, sess = auth(request, api=True)
        form = await request.form()
        token = form.get("csrf") or request.headers.get("x-csrf-token")
        if not tokens_match(sess.csrf, str(token) if token else None):
            raise Forbidden("missing or invalid CSRF token; reload the page")
        if decide and not user.can_decide:
            raise Forbidden("your role (viewer) cannot make decisions")
        return user, sess, form

    def film_or_404(fid: str, states: tuple[str, ...] | None = None):
        row = store.find_film(ledger, fid, states)
        if row is None:
            raise _NotFound()
        return row

    def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"shortcuts": SHORTCUTS, **ctx}, status_code=status)

    # -- login -----------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str = "") -> Response:
        token, cookie = signer.new_prelogin()
        resp = render(request, "login.html", {"csrf": token, "error": error, "user": None})
        resp.set_cookie(PRELOGIN_COOKIE, cookie, max_age=3600, **signer.cookie_kwargs())
        return resp

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        expected = signer.read_prelogin(request.cookies.get(PRELOGIN_COOKIE))
        if not tokens_match(expected, str(form.get("csrf") or "")):
            raise Forbidden("missing or invalid CSRF token; reload the login page")
        user = user_store.authenticate(str(form.get("username") or ""), str(form.get("password") or ""))
        if user is None:
            log.info("review login refused")
            token, cookie = signer.new_prelogin()
            resp = render(request, "login.html", {"csrf": token, "error": "Wrong user name or password.", "user": None}, 401)
            resp.set_cookie(PRELOGIN_COOKIE, cookie, max_age=3600, **signer.cookie_kwargs())
            return resp
        _sess, cookie = signer.new_session(user.username)
        resp = RedirectResponse("/queue", status_code=303)
        resp.set_cookie(SESSION_COOKIE, cookie, max_age=signer.max_age_s, **signer.cookie_kwargs())
        resp.delete_cookie(PRELOGIN_COOKIE, path="/")
        log.info("review login: %s", user.username)
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await auth_post(request, decide=False)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- pages -----------------------------------------------------------------------------------
    @app.get("/")
    def root(request: Request) -> Response:
        auth(request)
        return RedirectResponse("/queue", status_code=303)

    def queue_rows(batch: str, code: str) -> list[dict[str, Any]]:
        out = []
        for row in store.queue(ledger, batch=batch, code=code):
            fields = row.record.get("fields") or {}
            confs = [f.get("confidence", 0) for f in fields.values()]
            out.append({
                "id": store.film_id(row.source_path), "state": row.state, "batch": row.batch,
                "source_file": row.record.get("source_file", Path(row.source_path).name),
                "codes": store.qc_codes(row), "confidence": min(confs) if confs else None,
                "updated_at": time.strftime("%Y-%m-%d %H:%M", time.localtime(row.updated_at)),
                "decided_by": (row.record.get("review") or {}).get("decided_by", ""),
                "error": row.error.split(":", 1)[0] if row.error else "",
            })
        return out

    def filter_choices() -> tuple[list[str], list[str]]:
        batches, codes = set(), set()
        for row in ledger.rows(states=store.QUEUE_STATES):
            batches.add(row.batch)
            codes.update(store.qc_codes(row))
        return sorted(batches), sorted(codes)

    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(request: Request, batch: str = "", code: str = "") -> Response:
        user, sess = auth(request)
        batches, codes = filter_choices()
        return render(request, "queue.html", {
            "user": user, "csrf": sess.csrf, "films": queue_rows(batch, code), "batch": batch, "code": code,
            "batches": batches, "codes": codes, "release": runner.snapshot(),
            "approved_count": sum(1 for _ in ledger.rows(states=("approved",))),
        })

    @app.get("/api/queue")
    def queue_api(request: Request, batch: str = "", code: str = "") -> Response:
        auth(request, api=True)
        return JSONResponse({"films": queue_rows(batch, code)})

    @app.get("/films/{fid}", response_class=HTMLResponse)
    def film_page(request: Request, fid: str, batch: str = "", code: str = "", wc: str = "", ww: str = "",
                  error: str = "") -> Response:
        user, sess = auth(request)
        row = film_or_404(fid)
        return render(request, "detail.html", detail_context(row, user, sess, batch, code, wc, ww, {}, error))

    def detail_context(row, user, sess, batch, code, wc, ww, form_errors, error, values=None) -> dict[str, Any]:
        fid = store.film_id(row.source_path)
        ids = [f["id"] for f in queue_rows(batch, code)]
        pos = ids.index(fid) if fid in ids else -1
        rec = row.record
        recon = rec.get("reconciliation") or {}
        disagree = {d.get("keyword"): d for d in recon.get("disagreements", [])}
        header = store.current_header(row)
        review = rec.get("review") or {}
        if values is None:
            values = dict(review.get("overrides") or {}) or header
        fields = []
        for kw in EDITABLE_FIELDS:
            f = (rec.get("fields") or {}).get(kw) or {}
            manifest_vals = [str(c.get(kw, "")) for c in recon.get("candidates", []) if kw in c]
            fields.append({
                "keyword": kw, "ocr": f.get("value", ""), "confidence": f.get("confidence"),
                "raw": f.get("raw", ""), "header": header.get(kw, ""), "value": values.get(kw, ""),
                "manifest": manifest_vals, "disagree": kw in disagree, "error": form_errors.get(kw, ""),
                "low": f.get("confidence") is not None and f.get("confidence") < settings.qc.min_field_confidence,
            })
        win = previews.Window.parse(wc, ww)
        q = f"wc={win.center}&ww={win.width}" if win.center is not None else ""
        audit = [
            {**a, "at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["at"]))}
            for a in ledger.audit_log(row.source_path)
        ]
        nav = f"batch={batch}&code={code}" if (batch or code) else ""
        return {
            "user": user, "csrf": sess.csrf, "fid": fid, "row": row, "rec": rec, "fields": fields,
            "qc": sorted(rec.get("qc", []), key=lambda q: -_SEVERITY_RANK.get(q.get("severity"), 0)), "recon": recon, "disagree": disagree, "review": review,
            "candidates": recon.get("candidates", []), "keywords": list(EDITABLE_FIELDS),
            "win": win, "imgq": q, "audit": audit, "nav": nav, "batch": batch, "code": code,
            "prev_id": ids[pos - 1] if pos > 0 else "", "next_id": ids[pos + 1] if 0 <= pos < len(ids) - 1 else "",
            "position": (pos + 1, len(ids)), "form_errors": form_errors, "error": error,
            "decidable": row.state == "flagged" and user.can_decide,
            "source_file": rec.get("source_file", Path(row.source_path).name),
        }

    @app.get("/films/{fid}/preview/{kind}.png")
    def preview(request: Request, fid: str, kind: str, size: int = 900, wc: str = "", ww: str = "") -> Response:
        auth(request, api=True)
        row = film_or_404(fid)
        try:
            png = cache.render(kind, row.source_path, row.sha256, row.record, size=size, window=previews.Window.parse(wc, ww))
        except previews.PreviewError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return Response(png, media_type="image/png")

    @app.get("/api/films/{fid}")
    def film_api(request: Request, fid: str) -> Response:
        auth(request, api=True)
        row = film_or_404(fid)
        return JSONResponse({"id": fid, "state": row.state, "batch": row.batch, "qc": row.record.get("qc", []),
                             "review": row.record.get("review") or {}})

    # -- decisions -------------------------------------------------------------------------------
    def after(fid: str, form: Any) -> Response:
        nav = str(form.get("nav") or "")
        nav = nav if all(c.isalnum() or c in "=&-_." for c in nav) else ""
        nxt = str(form.get("next_id") or "")
        target = nxt if nxt and len(nxt) == 40 and all(c in "0123456789abcdef" for c in nxt) else ""
        if target:
            return RedirectResponse(f"/films/{target}" + (f"?{nav}" if nav else ""), status_code=303)
        return RedirectResponse("/queue" + (f"?{nav}" if nav else ""), status_code=303)

    def decision_error(request: Request, row, user, sess, exc: ReviewError, values=None) -> Response:
        if exc.status == 403:
            raise Forbidden(str(exc))
        errors = getattr(exc, "errors", {})
        ctx = detail_context(row, user, sess, "", "", "", "", errors, str(exc) if not errors else "Please fix the marked fields.", values)
        return render(request, "detail.html", ctx, status=exc.status)

    @app.post("/films/{fid}/approve")
    async def approve(request: Request, fid: str) -> Response:
        user, sess, form = await auth_post(request)
        row = film_or_404(fid)
        values = {k: str(form.get(k, "")) for k in EDITABLE_FIELDS}
        try:
            store.approve(ledger, row, user, values, reason=str(form.get("note") or ""))
        except ReviewError as exc:
            return decision_error(request, row, user, sess, exc, values)
        log.info("film %s approved by %s", fid[:10], user.username)
        return after(fid, form)

    @app.post("/films/{fid}/reject")
    async def reject(request: Request, fid: str) -> Response:
        user, sess, form = await auth_post(request)
        row = film_or_404(fid)
        try:
            store.reject(ledger, row, user, str(form.get("reason") or ""))
        except ReviewError as exc:
            return decision_error(request, row, user, sess, exc)
        log.info("film %s rejected by %s", fid[:10], user.username)
        return after(fid, form)

    @app.post("/films/{fid}/reprocess")
    async def reprocess(request: Request, fid: str) -> Response:
        from flows.release import reprocess_flagged

        user, sess, form = await auth_post(request)
        row = film_or_404(fid)
        try:
            so = store.settings_overrides(form.get("rotation_k"), bool(form.get("denoise_off")),
                                          bool(form.get("polarity_as_scanned")))
            store.request_reprocess(ledger, row, user, so, reason=str(form.get("note") or ""))
        except ReviewError as exc:
            return decision_error(request, row, user, sess, exc)
        import anyio

        try:
            await anyio.to_thread.run_sync(reprocess_flagged, ledger, row.source_path, settings, work_dir / "staging")
        except Exception as exc:  # the request is recorded; tell the reviewer the re-run itself failed
            log.exception("film %s: re-process failed", fid[:10])
            return RedirectResponse(f"/films/{fid}?error=reprocess_failed_{type(exc).__name__}", status_code=303)
        return RedirectResponse(f"/films/{fid}", status_code=303)

    @app.post("/release")
    async def release(request: Request) -> Response:
        user, _sess, _form = await auth_post(request)
        started = runner.start(user.username)
        log.info("release requested by %s (%s)", user.username, "started" if started else "already running")
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"started": started, **runner.snapshot()})
        return RedirectResponse("/queue", status_code=303)

    @app.get("/api/release")
    def release_status(request: Request) -> Response:
        auth(request, api=True)
        return JSONResponse(runner.snapshot())

    @app.exception_handler(_NotFound)
    async def _not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "no such film"}, status_code=404)

    return app


class _NotFound(Exception):
    pass
