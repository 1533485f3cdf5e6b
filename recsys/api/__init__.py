"""The recommendation HTTP API (FastAPI): ``create_app(settings, recommender)``; run it with ``recsys serve``."""

from recsys.api.app import create_app

__all__ = ["create_app"]
