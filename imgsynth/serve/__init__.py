"""``imgsynth serve``: the lecture's two interactive demos on a local web page.

* :mod:`imgsynth.serve.work` — the models the page may use, cached once loaded, and the one
  inference that runs at a time (the same pipelines as ``imgsynth inpaint`` / ``translate``).
* :mod:`imgsynth.serve.app` — the ASGI application (Starlette): the page, a small JSON/PNG API and
  the safety checks every request passes (Host, token, origin, size limits, headers).
* ``static/`` — the page itself: plain HTML, CSS and JavaScript modules, no framework, no CDN.

Nothing here imports torch at import time; the web stack (starlette, uvicorn, python-multipart)
is the optional ``serve`` extra.
"""
