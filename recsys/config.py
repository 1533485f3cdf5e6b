"""Settings: one typed object, read from the environment (prefix ``RECSYS_``, nested with ``__``).

``RECSYS_HOME`` is the data directory (default ``./.recsys``); ``RECSYS_DATABASE_URL`` overrides the embedded SQLite
file. Nested sections, e.g. ``RECSYS_ENCODER__PRESET=ViT-B-32-laion`` or ``RECSYS_INDEX__KEEP_GENERATIONS=5``.
Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from recsys import config_checks
from recsys.config_checks import without_password as without_password  # re-exported: callers import it here


class StoreSettings(BaseModel):
    batch_size: int = Field(default=5000, ge=1)
    """Rows per bulk insert during imports."""
    max_bad_fraction: float = Field(default=0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    """An import whose bad rows exceed this share of the file is treated as a garbled file and rolled back."""
    loop_connections: int = Field(default=16, ge=1)
    """PostgreSQL connections per server process for the reads requests make on the event loop, besides
    SQLAlchemy's pool (up to 30) for everything else: with `recsys serve --workers N` the server may open
    N x (this + 30), to fit under the database's max_connections (100 by default)."""
    loop_connection_lifetime_s: float = Field(default=3600.0, gt=0)
    """An event-loop PostgreSQL connection older than this is closed when returned and replaced (psycopg_pool's
    ``max_lifetime``, jittered by 5%): connections follow a failover or a changed server setting without a restart."""
    loop_connection_idle_s: float = Field(default=600.0, gt=0)
    """Event-loop connections beyond the first left unused this long are closed (psycopg_pool's ``max_idle``)."""
    request_read_timeout_s: float = Field(default=5.0, gt=0)
    """Each database call of an API request (the event loop's reads, and every statement, commit and connect in
    worker threads) gives up after this long with StoreUnavailable (HTTP 503 and Retry-After) instead of hanging
    with a hung database; on SQLite, a lock held by another writer (an import) gives StoreBusy (503) after it."""


class EncoderSettings(BaseModel):
    preset: str = "recsys-lite"
    device: str = "auto"
    """"auto" picks CUDA when present (fp16), else CPU."""
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    """How the frozen towers run: ``torch``; ``onnx`` (ONNX Runtime on the CPU, same weights exported once, features
    equal to torch's within 1e-4); ``onnx-int8`` (the text tower quantised to int8: its own feature cache and heads).
    ``auto``: onnx on the CPU when onnxruntime is installed (``recsys[onnx]``), else torch. recsys-lite only."""
    batch_size: int = Field(default=32, ge=1)
    """Media decoded and run through the image tower at a time."""
    num_workers: int = Field(default=1, ge=0)
    """Processes decoding media beside the tower (0: decode in the main process)."""
    text_fields: dict[str, float] = Field(
        default_factory=lambda: {"title": 1.0, "category": 1.0, "attributes.colour": 1.0,
                                 "attributes.perceived_colour": 0.5, "attributes.pattern": 0.5,
                                 "attributes.genres": 0.5, "description": 0.5}
    )
    """Item fields (or ``attributes.KEY``) that make the item text, with their weights in the text vector."""
    generated_text_below: int = Field(default=40, ge=0)
    """An item whose title and description together are shorter than this many characters also uses its generated
    description (``recsys items describe``) as a text field, weight ``text_fields["generated_description"]`` (1.0
    when absent); 0 never uses it."""
    modality_weights: dict[str, float] = Field(default_factory=lambda: {"text": 1.0, "image": 1.0})

    @field_validator("text_fields")
    @classmethod
    def _text_fields(cls, v: dict[str, float]) -> dict[str, float]:
        return config_checks.text_fields(v)

    @field_validator("modality_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - {"text", "image"})
        if unknown:
            raise ValueError(f"unknown modality {unknown}; the weights are for text and image")
        bad = {k: w for k, w in v.items() if not (math.isfinite(w) and w >= 0)}
        if bad or not any(w > 0 for w in v.values()):
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {v}")
        return v
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_image_bytes: int = Field(default=30_000_000, ge=1)
    video_frames: int = Field(default=4, ge=1, le=64)
    """Frames sampled per video; bounded because eight times as many decoded frames are held while sampling."""


class IndexSettings(BaseModel):
    factory: str | None = None
    """FAISS factory string; None chooses by catalogue size."""
    exact_threshold: int = 50_000
    keep_generations: int = Field(default=3, ge=1)
    ivf_threshold: int = 2_000_000
    """From this many items the default index is IVF-PQ (re-ranked from the full vectors on disk)."""
    hnsw_m: int = Field(default=32, ge=2)
    ef_construction: int = Field(default=80, ge=1)
    ef_search: int = Field(default=128, ge=0)  # FAISS searches at least k wide anyway
    nprobe: int = Field(default=32, ge=1)
    rerank_factor: int = Field(default=10, ge=1)
    """A lossy index (PQ) fetches ``k * rerank_factor`` candidates, re-scored exactly from the stored vectors."""
    train_sample: int = Field(default=100_000, ge=1)
    exact_subset_max: int = 20_000
    """A filter that keeps at most this many items is answered by exact search over just those items."""
    delta_max_fraction: float = 0.1
    """Changes up to this share of the catalogue go into a delta generation; more trigger a full rebuild."""
    verify_on_load_mb: float = Field(default=4096, ge=0)
    """A generation up to this size is checked against its SHA-256 checksums each time it is loaded (about 1 s per
    GB); a larger one only against its file sizes (``recsys index verify`` hashes it on request)."""


class RankingSettings(BaseModel):
    exclude_purchased: bool = False
    exclude_seen: bool = False
    repurchase: bool = True
    diversity: float = Field(default=0.0, ge=0.0, le=1.0)
    """MMR weight in [0, 1]: 0 keeps the ranker's order."""
    seed: int = 0
    max_repeat_share: float = Field(default=0.4, ge=0.0, le=1.0)
    """Share of a personal list that may be items already in the user's history (the rest is for discovery; their
    own items have ``GET /v1/users/{id}/buy-again``). 1 lifts the cap (e.g. a music or grocery domain)."""
    max_per_group: int = Field(default=2, ge=0)
    """Items of one variant group (the same product in several colours) per list; 0 lifts the cap."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the ranker's knobs (:class:`recsys.ranking.params.RankingParams`: candidate sizes, model,
    training), e.g. ``RECSYS_RANKING__PARAMS='{"similar_k": 200}'``; applied at the next ``recsys train``."""
    clock: str = "auto"
    """The time requests are ranked at (trend windows, recency, what counts as history): ``wall``, ``data`` (the
    day after the newest event the ranker was trained on, a few live events far ahead of the rest left out:
    :meth:`~recsys.ranking.stats.ItemStats.data_end`; for a historical dataset such as H&M), ``auto`` (``wall``
    unless that event is older than ``stale_days``, then ``data``) or a pinned ISO 8601 time."""
    stale_days: float = 30.0

    @field_validator("clock")
    @classmethod
    def _known_clock(cls, v: str) -> str:
        # checked when settings are read, so a typo fails at start-up rather than on every request
        if v not in ("auto", "wall", "data"):
            try:
                year = datetime.fromisoformat(v).year
            except ValueError:
                raise ValueError(f"ranking.clock must be auto, wall, data or an ISO 8601 time, not {v!r}") from None
            if not 1678 <= year <= 2261:  # the years pandas' nanosecond times hold: else every request fails
                raise ValueError(f"ranking.clock {v!r} is not between the years 1678 and 2261")
        return v

    @field_validator("params")
    @classmethod
    def _known_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        from recsys.ranking.params import RankingParams

        RankingParams.checked(v)
        return v
    live_stats_s: float = Field(default=0.0, ge=0.0)
    """Recount popularity, distinct users, trends, first sales and prices from every stored event at most this
    often (seconds) when new events arrived, without retraining the model; 0 (default) keeps the statistics of the
    ranker's training. Either way each shopper's own events that the statistics miss are added per request."""
    live_stats_pairs: bool = False
    """Recount the co-occurrence pairs too (off: the training's pairs, whose scale the model learned)."""
    warm_lists_max: int = Field(default=50_000, ge=0)
    """The server computes every item's kept neighbour lists (the ``similar`` and ``content`` sources) in the
    background after loading a catalogue of at most this many items, instead of on each item's first sight; 0: off."""
    result_cache_size: int = 20_000
    """Recommendation lists kept per process, keyed by everything they depend on (0: off)."""
    result_cache_mb: float = Field(default=256.0, ge=0)
    """The result cache's memory bound per process, in MiB (estimated from the lists' JSON; 0: entries only). Any
    read key can fill the cache (long lists for random user ids): entries alone do not bound memory."""
    serving_threads: int = Field(default=1, ge=1)
    """Rankings run at once per API process (the rest wait without holding a thread). Ranking holds the GIL for most
    of its ~5 ms, so more threads contend: on 2 cores, uncached req/s at concurrency 16 fell from 178 (1 thread) to
    159 (2), 130 (4) and 110 (8). Scale with processes instead (`recsys serve --workers N`)."""


class ApiSettings(BaseModel):
    metrics_public: bool = False
    """/metrics without an API key (for a Prometheus scraper on a private network); every other route still needs
    one. Off: scrapers send a read key (``authorization`` in the scrape config)."""
    result_details: bool = True
    """Each result carries what a client shows (title, category, price, image_url): one database read per list
    ranked or searched, none for a cached list. False for the leanest answers (ids, scores, sources)."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    auth: bool = True
    """Require API keys. Allowed off only when binding to loopback."""
    forwarded_allow_ips: str = ""
    """The reverse proxies whose ``X-Forwarded-For`` names the client (comma-separated addresses, or ``*``); empty:
    none, the client is the socket's peer (else any caller could pick the address its rate limit is counted on)."""
    rate_limit_per_minute: int = Field(default=6000, ge=0)
    """Requests per minute per API key (per client address without auth, and for unknown keys); 0: off."""
    rate_limit_storage: str = "memory://"
    """Where rate limits are counted (the `limits` library's storage URI). ``memory://`` counts in each process, so
    ``--workers N`` or R replicas admit up to N (R) times the limit; ``redis://host:6379`` shares the count."""
    rate_limit_strategy: Literal["sliding-window-counter", "moving-window", "fixed-window"] = \
        "sliding-window-counter"
    """How a minute is counted: a weighted sliding window (two counters per key), an exact moving window (a
    timestamp per request), or fixed windows (up to twice the limit across a minute boundary)."""
    max_body_bytes: int = Field(default=10_000_000, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    max_image_bytes: int = Field(default=8_000_000, ge=1)
    max_image_pixels: int = Field(default=25_000_000, ge=1)
    image_formats: list[str] = Field(default_factory=lambda: ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
    media_roots: list[Path] = Field(default_factory=list)
    """Directories whose image files the API may serve and item writes may name, besides the data directory
    (``RECSYS_API__MEDIA_ROOTS='["/data/images"]'``). An image path outside them is refused when written through
    the API and never served."""
    session_hours: float = Field(default=12.0, gt=0, le=24 * 366, allow_inf_nan=False)
    """How long an explorer login lasts (a signed cookie; the API key itself is never put in a cookie). At most a
    year: the cookie's lifetime is a whole number of seconds (inf or 1e300 made every login fail)."""

    @field_validator("image_formats")
    @classmethod
    def _image_formats(cls, v: list[str]) -> list[str]:
        return config_checks.image_formats(v)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _forwarded_allow_ips(cls, v: str) -> str:
        return config_checks.forwarded_allow_ips(v)
    header_timeout_s: float = Field(default=10.0, ge=0)
    """A connection gets this long to send a request's headers, then a 408 and is closed (slow-header clients
    otherwise hold connections forever). 0: no limit."""
    refresh_seconds: float = Field(default=1.0, gt=0.0)
    """How often the server looks for newer index / ranker generations."""
    retry_after_seconds: int = Field(default=2, ge=0)
    """Retry-After sent with 503 answers while the store is unreachable."""
    worker_threads: int = Field(default=8, ge=1)
    """Requests served at once by the service layer (the rest queue): CPU-bound work gains nothing from more."""
    compute_threads: int = Field(default=1, ge=0)
    """Threads torch and FAISS may use per request in the server: requests already run in parallel, and more
    intra-op threads oversubscribe the cores (measured: 9x slower recommendations on 2 cores). 0 keeps the defaults."""
    otel: bool = False
    """OpenTelemetry tracing (the ``recsys[otel]`` extra): a span per request, child spans for the candidates,
    ranking and rules of recommendations. Also on when an OTEL_* exporter variable is set; see :mod:`recsys.tracing`."""


class FeedbackSettings(BaseModel):
    """The feedback loop: served lists recorded for attribution and feeds (``recsys.feedback``)."""

    record_served: bool = True
    """Record every list the API answers (id, source, items) in ``served_lists``, off the request path."""
    queue_size: int = Field(default=10_000, ge=1)
    """Served lists waiting to be written at most; beyond it they are dropped and counted, never waited for."""
    batch_size: int = Field(default=500, ge=1)
    """Served lists written per transaction."""
    exclude_shown_hours: float = Field(default=0.0, ge=0)
    """Personal recommendations leave out items shown to the user within this many hours (served lists and posted
    impressions); 0: off. A request's ``exclude_shown_hours`` overrides it."""


class ExperimentsSettings(BaseModel):
    """A/B experiments (``recsys.experiments``): variants of the served lists, users assigned by salted hash."""

    definitions: list[dict[str, Any]] = Field(default_factory=list)
    """The experiments, as JSON: ``RECSYS_EXPERIMENTS__DEFINITIONS='[{"name": "div", "variants": [{"name":
    "control", "share": 0.5}, {"name": "diverse", "share": 0.5, "diversity": 0.4}]}]'``; the fields are those of
    :class:`recsys.experiments.Experiment` and :class:`recsys.experiments.Variant`."""
    file: Path | None = None
    """A JSON file holding more definitions (a list, or ``{"experiments": [...]}``), read at start-up."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_nested_delimiter="__", extra="ignore")
    """Unknown ``RECSYS_*`` names are checked by :func:`config_checks.check_environment` (misspellings refused,
    others left)."""

    home: Path = Path(".recsys")
    database_url: str | None = None

    @field_validator("home", mode="before")
    @classmethod
    def _home_not_empty(cls, v: Any) -> Any:
        return config_checks.nonempty_home(v)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        return v if v is None else config_checks.check_database_url(v)

    @field_validator("home")
    @classmethod
    def _home_is_a_directory(cls, v: Path) -> Path:
        if v.exists() and not v.is_dir():
            raise ValueError(f"{v} is a file; the data directory must be a directory (or not exist yet)")
        return v

    store: StoreSettings = Field(default_factory=StoreSettings)
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    ranking: RankingSettings = Field(default_factory=RankingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    experiments: ExperimentsSettings = Field(default_factory=ExperimentsSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _NamedEnvSource(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _no_misspelt_variables(self) -> Settings:
        config_checks.check_environment(os.environ, Settings)
        return self

    @property
    def db_url(self) -> str:
        """The effective database URL: the configured one, or a SQLite file in the data directory."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.home / 'recsys.db').resolve()}"

    def path(self, *parts: str) -> Path:
        """A path inside the data directory, its parent created."""
        p = self.home.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


class _NamedEnvSource(EnvSettingsSource):
    """The environment, with a ``RECSYS_*`` value that is not the JSON its setting needs named (pydantic-settings
    names only the section: 'error parsing value for field "api"')."""

    def __call__(self) -> dict[str, Any]:
        try:
            return super().__call__()
        except SettingsError as e:
            from recsys.errors import ConfigError

            raise ConfigError(config_checks.not_json(os.environ, Settings) or str(e)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
