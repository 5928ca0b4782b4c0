"""``easytl serve``: a fitted model behind HTTP (FastAPI + uvicorn, the ``serve`` extra).

:func:`create_app` builds the app (dynamic batching, upload limits, the page
at ``/``); ``easytl serve MODEL`` runs it with uvicorn.
"""

from .app import Limits, create_app

__all__ = ["Limits", "create_app"]
