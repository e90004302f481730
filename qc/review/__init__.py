"""The QC review workflow: a small web app where reviewers decide on held films.

Modules
-------
store
    Review users (their own table in the ledger database), opaque film ids,
    field validation and the decisions (approve / reject / re-process) written
    to the ledger and its audit log.
auth
    Password hashing (argon2), signed session cookies and CSRF tokens.
previews
    Downscaled, windowed PNG previews rendered from the real pixels.
app
    The FastAPI application (:func:`create_app`).
cli
    ``filmflow review serve|add-user`` and ``filmflow release``.
"""
