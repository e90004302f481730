"""Passwords, sessions and CSRF tokens of the review app.

* Passwords: argon2id hashes (``argon2-cffi`` defaults, RFC 9106); the plain
  text is never stored or logged.
* Sessions: an itsdangerous-signed, timestamped cookie holding the user name
  and the session's CSRF token; sent ``HttpOnly`` and ``SameSite=Strict``,
  ``Secure`` when configured (behind TLS). The role is looked up again on each
  request, so changing a user's role takes effect at once.
* CSRF: every form carries the session's token; a state-changing POST whose
  token does not match (constant-time compare) is refused with 403.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_hasher = PasswordHasher()

SESSION_COOKIE = "ff_review_session"
#: Cookie of a not-yet-logged-in browser: carries the login form's CSRF token only.
PRELOGIN_COOKIE = "ff_review_prelogin"


def hash_password(password: str) -> str:
    """argon2id hash (``$argon2id$...``) of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def load_secret(work_dir: Path) -> str:
    """The session-signing key: ``$FILMFLOW_REVIEW_SECRET``, else a random key kept in
    ``WORK_DIR/review-secret`` (mode 0600) so sessions survive a restart."""
    env = os.environ.get("FILMFLOW_REVIEW_SECRET", "")
    if env:
        return env
    path = Path(work_dir) / "review-secret"
    if path.is_file():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key)
    return key


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str


class SessionSigner:
    """Signs and reads the session and pre-login cookies.

    Parameters
    ----------
    secret : str
        Signing key.
    max_age_s : int
        Session lifetime; older cookies are refused.
    secure : bool
        Send cookies with the ``Secure`` flag (required behind HTTPS).
    """

    def __init__(self, secret: str, *, max_age_s: int = 8 * 3600, secure: bool = False) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="filmflow-review-session")
        self._p = URLSafeTimedSerializer(secret, salt="filmflow-review-prelogin")
        self.max_age_s = max_age_s
        self.secure = secure

    def new_session(self, username: str) -> tuple[Session, str]:
        s = Session(username=username, csrf=secrets.token_urlsafe(32))
        return s, self._s.dumps({"u": s.username, "c": s.csrf})

    def read_session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data: Any = self._s.loads(cookie, max_age=self.max_age_s)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("c"), str):
            return None
        return Session(username=data["u"], csrf=data["c"])

    def new_prelogin(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        return token, self._p.dumps(token)

    def read_prelogin(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            data = self._p.loads(cookie, max_age=3600)
        except (BadSignature, SignatureExpired):
            return None
        return data if isinstance(data, str) else None

    def cookie_kwargs(self) -> dict[str, Any]:
        return {"httponly": True, "samesite": "strict", "secure": self.secure, "path": "/"}


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time CSRF token comparison; False when either is missing."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
