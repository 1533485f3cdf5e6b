"""The web explorer's pages: Jinja2 templates, static CSS/JS, the data helpers in :mod:`recsys.api.web.pages` and
how a page is answered (checks, rendering, the error page) in :mod:`recsys.api.web.render`.

The routes are in :mod:`recsys.api.routes.web`.
"""
