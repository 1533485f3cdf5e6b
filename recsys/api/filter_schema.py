"""The item filter of the POST bodies (``filter``) and the text and number types it shares with
:mod:`recsys.api.schemas`.

One rule for every route, GET query parameters included: attribute values match as
:class:`recsys.index.ItemFilter` compares them (as text, ignoring case and surrounding whitespace: 42 matches a
stored 42 or "42", true a stored True), and an empty list is no constraint, as an absent GET parameter is (a form
with nothing ticked); before, a POST's empty list selected nothing while the same filter on trending selected all.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from recsys.store.limits import MAX_LIST, MAX_SHORT_TEXT

ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT_TEXT, pattern=r"^[^\x00]*$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
AttrScalar = ShortText | bool | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | Finite
"""An attribute value to match: the scalar types items store (``ItemPut.attributes``); an integer within 64 bits."""
AttrFilter = AttrScalar | Annotated[list[AttrScalar], Field(max_length=MAX_LIST)]


class Filter(BaseModel):
    """Item filters, applied inside retrieval so a filtered request still returns k items when k exist. An empty
    list (``categories``, an attribute's values) is no constraint."""

    model_config = ConfigDict(extra="forbid")

    categories: Annotated[list[ShortText], Field(max_length=MAX_LIST)] | None = None
    price_min: Finite | None = None
    price_max: Finite | None = None
    in_stock: bool | None = None
    attributes: Annotated[dict[ShortText, AttrFilter],
                          Field(max_length=100, description="attribute values (text, numbers or booleans, matched "
                                                            "as text ignoring case); a list matches any of them, "
                                                            "an empty list is no constraint")] | None = None

    @model_validator(mode="after")
    def _range(self) -> Filter:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min is greater than price_max")
        if self.categories == []:
            self.categories = None
        if self.attributes is not None:
            self.attributes = {k: v for k, v in self.attributes.items() if v != []} or None
        return self

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())
