"""The web explorer's pages: Jinja2 templates, static CSS/JS and the data helpers in :mod:`recsys.api.web.pages`.

The routes are in :mod:`recsys.api.routes.web`.
"""
