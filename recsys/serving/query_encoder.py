"""The query encoder of a read path: the heads the served index generation was built with.

A build in another process (``recsys build`` beside a running server) fits new heads and publishes an index of
their vectors; queries encoded by the heads this process loaded first would then miss that index's space (a 409 on
every search until a restart). The encoder follows the served generation instead, loaded again when it changes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from recsys.config import Settings
from recsys.serving.generations import Generations

if TYPE_CHECKING:
    from recsys.encoders.base import Encoder


class QueryEncoder:
    """Loads on first use (a few seconds); thread-safe."""

    def __init__(self, settings: Settings, generations: Generations) -> None:
        self.settings, self.generations = settings, generations
        self._encoder: Encoder | None = None
        self._for: str | None = None
        """The served encoder id the loaded encoder was chosen for."""
        self._lock = threading.Lock()

    def get(self) -> Encoder:
        served = self.generations.loaded
        want = served.reader.manifest.encoder_id if served is not None else None
        enc = self._encoder
        if enc is None or (want is not None and want != self._for):
            with self._lock:
                enc = self._encoder
                if enc is None or (want is not None and want != self._for):
                    from recsys.encoders.encoder import encoder_for

                    # loaded once per served encoder id, also when those heads are gone and another one answers
                    enc = self._encoder = encoder_for(self.settings, want)
                    self._for = want or enc.id
        return enc

    def use(self, encoder: Encoder | None) -> None:
        """Answer with ``encoder``; None: load again on the next query (new heads)."""
        self._encoder = encoder
        self._for = encoder.id if encoder is not None else None
