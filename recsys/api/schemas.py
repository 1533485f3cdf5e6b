"""Request and response shapes of the HTTP API: the OpenAPI contract clients code against.

Every input is bounded here (lengths, counts, finite numbers), so bad input is a 422 before any domain code runs.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from recsys.api.filter_schema import Filter, Finite, ShortText
from recsys.api.ids import Id, NewId, encodable, trimmed_id
from recsys.encoders.base import Modality
from recsys.store.limits import (
    MAX_ATTRIBUTE_TEXT,
    MAX_EVENT_ID,
    MAX_K,
    MAX_LIST,
    MAX_MEDIA_URI,
    MAX_QUERY,
    MAX_TEXT,
    PRINTABLE,
)

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=r"^[^\x00]*$")]
Query = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY, pattern=r"^[^\x00]*$")]
K = Annotated[int, Field(ge=1, le=MAX_K, description="number of results")]
Diversity = Annotated[float, Field(ge=0.0, le=1.0, description="MMR weight: 0 keeps the ranker's order")]
SearchMode = Literal["vector", "lexical", "hybrid"]
MODE_DOC = ("hybrid: keyword and vector results fused by reciprocal rank; vector or lexical: one side (lexical fills k "
            "from the vectors). Default: hybrid, or vector when modality is text or image")
LexicalWeight = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False,
                                       description="hybrid mode: the keyword ranking's share of the fusion "
                                                   "(default 0.5; 0 ranks by vectors alone over both lists)")]
EventType = Literal["view", "click", "add_to_cart", "purchase", "rating", "like", "dislike", "impression"]
RecommendationId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)]
CursorText = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_=-]+$")]
ShownHours = Annotated[float, Field(ge=0.0, le=24.0 * 366, allow_inf_nan=False,
                                    description="leave out items shown to the user within this many hours (their "
                                                "served lists and posted impressions); 0: off. Default: the "
                                                "feedback.exclude_shown_hours setting")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


M = TypeVar("M", bound=BaseModel)


Exclude = Annotated[list[Id], Field(max_length=10_000, description="item ids never to return")]
RuleKey = Annotated[str, StringConstraints(min_length=1, max_length=400, pattern=PRINTABLE)]
"""An item id or ``category:NAME`` of a business rule (the query string's ``boost``/``bury`` keys alike)."""


def _item_key(v: str) -> str:
    if v.startswith("category:"):  # no item has such an id: the pin acted on nothing, and said nothing
        raise ValueError("a pin takes an item id, not a category (boosts and bury take category:NAME)")
    return v


PinKey = Annotated[Id, AfterValidator(_item_key)]
"""The item id of a pin (``category:NAME`` refused)."""
Position = Annotated[int, Field(strict=True)]
"""A pin's 1-based position: a JSON integer (``true`` or ``"1"`` is refused, not read as a place)."""


def _store_time(v: Any, ahead: bool = False) -> Any:
    """A time field's input as the store reads one: a number (or number text) is unix seconds, as in import files
    and the CLI (pydantic alone reads one above 2e10 as milliseconds: 99999999999 became 1973, not a refusal); ISO
    8601 text is left to pydantic's parser, then checked on its datetime. Refused: a time outside 1970..2200 in UTC
    (1970-01-01T00:30+01:00 is 1969; "divide by 1000" for milliseconds) and, unless ``ahead``, one ahead of the
    clock (an event's; a ``now`` may lie ahead, for replays)."""
    from recsys.store.importers.records import datetime_of, is_number_text, out_of_range, parse_ts

    seconds = (isinstance(v, int | float) and not isinstance(v, bool)) or is_number_text(v)
    if not seconds and not isinstance(v, datetime):
        return v
    if not ahead:
        dt = parse_ts(v)
    elif not 1970 <= (dt := datetime_of(v)).year <= 2200:
        raise out_of_range(v, dt)
    return dt if seconds else v  # a datetime given keeps its offset


def _now_time(v: Any) -> Any:
    return _store_time(v, ahead=True)


EventTime = Annotated[datetime, BeforeValidator(_store_time), AfterValidator(_store_time)]
Now = Annotated[datetime, BeforeValidator(_now_time), AfterValidator(_now_time)]
"""A ``now`` a client gives (a body's or a query string's): read as an event's time, but it may lie ahead."""
NOW_DOC = "rank as of this time: ISO 8601 (naive = UTC) or unix seconds"


# -- results --------------------------------------------------------------------------------------------------
class ItemSummary(BaseModel):
    title: str = ""
    category: str | None = None
    price: float | None = None
    image_url: str | None = Field(default=None, description="the item's image on this server (/media/{id})")


class ScoredItemOut(BaseModel):
    item_id: str
    score: float | None
    sources: list[str] = Field(default_factory=list)
    explanation: dict[str, Any] | None = Field(
        default=None, description="with `explain`: `score`, `sources`, `ranker`, `index_generation`, `reason` "
                                  "(`repeat`, `similar`, `history`, `popular`; `pinned` or `exploration` for an item a "
                                  "list rule put there) and `because_of`: the user's history item closest to the pick "
                                  "(its reason only for `repeat` and `similar`), or null")
    item: ItemSummary | None = Field(default=None, description="what a client shows (RECSYS_API__RESULT_DETAILS)")


class Meta(BaseModel):
    request_id: str | None = None
    index_generation: str | None = None
    ranker_version: str | None = None
    recommendation_id: str | None = Field(default=None, description="this list's id: send it with the events it "
                                                                    "leads to (impressions, clicks, purchases)")
    next: str | None = Field(default=None, description="the next page's cursor (personal and session lists): pass "
                                                       "it as `cursor`; the next page repeats no item of this feed")
    experiment: str | None = Field(default=None, description="the experiment this list was served under, if any")
    variant: str | None = Field(default=None, description="the user's variant in that experiment")
    unknown_items: list[str] | None = Field(
        default=None, description="a session's posted items, or the item ids a request's pins, boosts or bury name, "
                                  "that are not in the catalogue: left out; and `category:NAME` keys naming a "
                                  "category no item has")
    unknown_filter_values: list[dict[str, Any]] | None = Field(
        default=None, description="the filter's category and attribute values that no item has (values match "
                                  "ignoring case and surrounding spaces), each as `{field, value, closest}`: "
                                  "`field` `category` or `attributes.KEY`, `closest` up to 3 known values like it; "
                                  "an attribute no item has also gets `closest_fields`. The first 20 only")
    unknown_filter_values_more: int | None = Field(default=None, description="how many values no item has go unlisted")


class Debug(BaseModel):
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Results(BaseModel):
    """A list of results, best first."""

    items: list[ScoredItemOut]
    meta: Meta = Field(default_factory=Meta)
    debug: Debug | None = None


# -- queries --------------------------------------------------------------------------------------------------
class RecommendRequest(_Strict):
    k: K = 20
    filter: Filter | None = None
    exclude: Exclude = Field(default_factory=list)
    diversity: Diversity | None = None
    explain: bool = False
    debug: bool = False
    now: Now | None = Field(default=None, description=f"{NOW_DOC} (replays and backtests): only the user's events "
                                                      "before it count. Default: the server's clock (ranking.clock)")
    cursor: CursorText | None = Field(default=None, description="a previous page's meta.next: the next page of "
                                                                "that feed, without the items it showed")
    exclude_shown_hours: ShownHours | None = None
    boosts: dict[RuleKey, float] = Field(default_factory=dict, max_length=1000,
                                     description="business boosts: {item_id: b} or {\"category:NAME\": b}, b in "
                                                 "units of the list's score spread (negative demotes)")
    bury: list[RuleKey] = Field(default_factory=list, max_length=1000,
                            description="item ids or category:NAME put below every other item (usually out of "
                                        "the list)")
    pins: dict[PinKey, Position] = Field(default_factory=dict, max_length=100,
                                         description="{item_id: position}: the item at that 1-based position, "
                                                     "tagged 'pinned'")
    exploration: float | None = Field(default=None, ge=0.0, le=1.0,
                                      description="share of the list sampled from new and long-tail items, tagged "
                                                  "'exploration'")


class SessionEvent(_Strict):
    """An event of an anonymous session: the user is implied."""

    item_id: Id
    type: EventType
    value: Finite | None = Field(default=None, description="a price paid, a rating...: finite, within -1e12..1e12")
    timestamp: EventTime | None = Field(default=None, description="ISO 8601 (naive = UTC) or unix seconds; the time "
                                                                   "it arrives when left out")

    @field_validator("value")
    @classmethod
    def _sane_value(cls, v: float | None) -> float | None:
        from recsys.store.importers.records import check_event_value

        return check_event_value(v)  # the store's bound: a sum of such values overflowed ranking's price per item


class EventIn(SessionEvent):
    """An event of a user, with an optional client id for idempotency."""

    user_id: NewId
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_EVENT_ID,
                                               pattern=r"^[^\x00]+$")] | None = Field(
        default=None, description="client event id: the same event again (a retry) is acknowledged as a duplicate, "
                                  "not stored twice; another event under a used id is an error"
    )
    recommendation_id: RecommendationId | None = Field(
        default=None, description="the meta.recommendation_id of the list this event answers (attribution)")
    position: Annotated[int, Field(ge=0, lt=2**31)] | None = Field(
        default=None, description="the item's 0-based position in that list")


class SessionRequest(RecommendRequest):
    events: Annotated[list[SessionEvent], Field(min_length=1, max_length=MAX_LIST)]


USER_DOC = ("the user the list is shown to (optional): recorded with the list, and assigns their variant when an "
            "experiment runs on this surface (its modality, unless one is asked for)")
UserRef = Annotated[Id, AfterValidator(trimmed_id)]
"""A user a list is shown to: trimmed as stored, as a path's id, so the list's events (which carry the stored id)
are attributed to it and the user has one variant on every surface."""


class SearchTextRequest(_Strict):
    query: Query
    k: K = 20
    modality: Modality | None = Field(None, description="default: the user's variant's, else fused")
    user_id: UserRef | None = Field(None, description=USER_DOC)
    mode: SearchMode | None = Field(None, description=MODE_DOC)
    lexical_weight: LexicalWeight | None = None
    filter: Filter | None = None
    exclude: Exclude = Field(default_factory=list)


class SimilarRequest(_Strict):
    k: K = 20
    modality: Modality | None = Field(None, description="default: the user's variant's, else fused")
    user_id: UserRef | None = Field(None, description=USER_DOC)
    filter: Filter | None = None
    exclude: Exclude = Field(default_factory=list)


Weight = Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)]


class MoreLikeTheseRequest(_Strict):
    positive: Annotated[dict[Id, Weight], Field(min_length=1, max_length=MAX_LIST)]
    negative: Annotated[dict[Id, Weight], Field(max_length=MAX_LIST)] = Field(default_factory=dict)
    k: K = 20
    filter: Filter | None = None
    exclude: Exclude = Field(default_factory=list)


# -- events ---------------------------------------------------------------------------------------------------
def each_valid(model: type[M], records: list[Any]) -> tuple[list[tuple[int, M]], dict[int, str]]:
    """The batch ``records`` checked one by one against ``model``: (index, record) for the valid ones, and for each
    invalid one what is wrong (a batch answers per record: one bad record does not refuse the others)."""
    good: list[tuple[int, M]] = []
    bad: dict[int, str] = {}
    for i, raw in enumerate(records):
        if not isinstance(raw, dict):
            kind = {str: "a string", list: "an array", bool: "a boolean", int: "a number", float: "a number"}
            bad[i] = f"the record is not a JSON object (got {kind.get(type(raw), 'null')})"
            continue
        try:
            good.append((i, model.model_validate(raw)))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            bad[i] = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
    return good, bad


class EventBatch(_Strict):
    # records are checked one by one in the route (each_valid), documented as EventIn
    events: Annotated[list[Annotated[Any, WithJsonSchema(EventIn.model_json_schema())]],
                      Field(min_length=1, max_length=MAX_LIST)]


class EventResultOut(BaseModel):
    index: int
    status: Literal["stored", "duplicate", "error"]
    event_id: int | None = None
    error: str | None = None
    warning: str | None = Field(default=None, description="stored, but worth a look (an event on a deleted item)")


class EventBatchResult(BaseModel):
    results: list[EventResultOut]
    stored: int
    duplicates: int
    errors: int


# -- items ----------------------------------------------------------------------------------------------------
AttrValue = str | int | float | bool | None


class ItemPut(_Strict):
    """An item's fields without its id (``PUT /v1/items/{item_id}`` names it in the path); ``image`` is a file path
    or URL the server can read."""

    title: Text = ""
    description: Text = ""
    category: ShortText | None = None
    price: Annotated[Finite, Field(ge=0)] | None = None
    in_stock: bool = True
    image: Annotated[str, StringConstraints(max_length=MAX_MEDIA_URI, pattern=r"^[^\x00]*$")] | None = None
    attributes: Annotated[dict[ShortText, AttrValue], Field(max_length=200)] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _finite_attrs(cls, v: dict[str, AttrValue]) -> dict[str, AttrValue]:
        for key, val in v.items():
            if isinstance(val, float) and not math.isfinite(val):
                raise ValueError(f"attribute {key!r} is not finite")
            if isinstance(val, str) and ("\x00" in val or len(val) > MAX_ATTRIBUTE_TEXT or not encodable(val)):
                raise ValueError(f"attribute {key!r} has a NUL or lone surrogate or is over {MAX_ATTRIBUTE_TEXT} chars")
        return v


class ItemIn(ItemPut):
    """An item in the generic importer's canonical fields."""

    item_id: NewId


class ItemBatch(_Strict):
    # records are checked one by one in the route (each_valid), documented as ItemIn
    items: Annotated[list[Annotated[Any, WithJsonSchema(ItemIn.model_json_schema())]],
                     Field(min_length=1, max_length=MAX_LIST)]


class ItemBatchResult(BaseModel):
    results: list[dict[str, Any]]


class ItemOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    item_id: str


class Deleted(BaseModel):
    item_id: str
    deleted: bool = True


class UserDeleted(BaseModel):
    user_id: str
    deleted: bool = True
    events: int = Field(description="how many of the user's events were removed")


# -- operations -----------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    store: bool
    index_generation: str | None = None
    ranker_version: str | None = None
    encoder_id: str | None = None
    not_served: list[str] = Field(default_factory=list,
                                  description="what this server cannot answer now (e.g. recommendations)")
    reason: str | None = Field(default=None, description="why it is not ready or not serving everything")


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """An RFC 9457 problem (``application/problem+json``) with the stable ``code`` and the ``request_id``; ``error``
    repeats them in the shape clients relied on before."""

    type: str = Field(description="urn:recsys:problem:<code>")
    title: str
    status: int
    detail: str
    instance: str = Field(description="the request's path")
    code: str
    request_id: str | None = None
    error: ErrorBody
