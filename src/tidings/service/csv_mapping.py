"""How CSV columns become events: the mapping file (YAML) and its model.

A mapping names the time column and its format, the event-name column and how source names
map to ours (`view` -> `product_viewed`), the contact identifier, the event properties (from a
column, a constant or a small sandboxed template over the row), and optional grouping rules:

- `merge`: consecutive rows of one event name with the same group key and within `within` of
  the group's first row become ONE event whose `items` list holds each row's item properties
  (the purchase rows of one session form one order), dated at the group's last row (an order
  is complete when its last item is bought). With `id_property`, that property of
  each such event is the group key's values and the group's first row time (`s1-
  20191001T000100Z`), so two orders of one session have two ids;
- `accumulate`: every row emits an event whose `items` list holds every item seen so far for
  that group key (each cart row is the cart as it now stands). With `remove`, a row whose
  source event name is one of `remove.names` takes out the latest item whose `remove.match`
  properties equal its own instead (a `remove_from_cart` row), and the event is the cart
  without it.

The REES46 mapping that ships with the project is `mappings/rees46.yaml`.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from tidings.errors import ConfigError
from tidings.model.durations import parse_duration
from tidings.model.events import IdentifierKind


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueType(StrEnum):
    """How a cell's text is typed in the event."""

    string = "string"
    int = "int"
    float = "float"
    decimal = "decimal"  # kept exact: written as a number with the cell's own decimals
    bool = "bool"


class TimeSpec(_Frozen):
    column: str
    format: str = Field(default="iso", description="strptime format, or 'iso'")
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _zone(self) -> TimeSpec:
        ZoneInfo(self.timezone)
        return self


class NameSpec(_Frozen):
    column: str
    names: dict[str, str] = Field(default_factory=dict, description="source name -> event name")
    keep_unmapped: bool = False  # False: rows with an unlisted name are skipped and counted


class ContactSpec(_Frozen):
    identifier: IdentifierKind = IdentifierKind.ext_id
    column: str


class PropertySpec(_Frozen):
    column: str | None = None
    value: Any = None
    template: str | None = None
    type: ValueType = ValueType.string
    empty: Literal["omit", "null", "keep"] = "omit"

    @model_validator(mode="after")
    def _one_source(self) -> PropertySpec:
        given = [x for x in (self.column, self.template) if x is not None]
        if len(given) + (self.value is not None) != 1:
            raise ValueError("expected exactly one of 'column', 'value' or 'template'")
        return self


def _duration(value: Any) -> timedelta:
    return parse_duration(value)


class RemoveSpec(_Frozen):
    names: list[str] = Field(min_length=1, description="source event names that remove an item")
    match: list[str] = Field(min_length=1, description="item properties naming the item")


class GroupSpec(_Frozen):
    event: str
    how: Literal["merge", "accumulate"]
    by: list[str] = Field(min_length=1, description="columns forming the group key")
    within: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(minutes=5)
    items: str = "items"
    item_properties: list[str] = Field(default_factory=list)
    totals: dict[str, str] = Field(
        default_factory=dict, description="property -> item property summed over items"
    )
    id_property: str | None = Field(
        default=None, description="merge: this property = group key values + first row time"
    )
    remove: RemoveSpec | None = None

    @model_validator(mode="after")
    def _fits_how(self) -> GroupSpec:
        if self.id_property is not None and self.how != "merge":
            raise ValueError("'id_property' needs how: merge (one event per group)")
        if self.remove is not None:
            if self.how != "accumulate":
                raise ValueError("'remove' needs how: accumulate (a list that rows change)")
            unknown = [m for m in self.remove.match if m not in self.item_properties]
            if unknown:
                raise ValueError(f"remove.match: not in item_properties: {', '.join(unknown)}")
        return self


class Mapping(_Frozen):
    """A CSV column mapping."""

    time: TimeSpec
    event: NameSpec
    contact: ContactSpec
    properties: dict[str, PropertySpec] = Field(default_factory=dict)
    contact_properties: dict[str, PropertySpec] = Field(default_factory=dict)
    groups: list[GroupSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _removals_are_mapped(self) -> Mapping:
        for group in self.groups:
            for name in group.remove.names if group.remove else []:
                if self.event.names.get(name) != group.event:
                    raise ValueError(
                        f"groups: remove.names: {name!r} must be mapped to {group.event!r}"
                        " in event.names"
                    )
        return self

    def group_for(self, event_name: str) -> GroupSpec | None:
        """The grouping rule for an event name, if any."""
        return next((g for g in self.groups if g.event == event_name), None)


def load_mapping(path: Path) -> Mapping:
    """Read a mapping file; problems are a ConfigError naming the file and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Mapping.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {reasons}") from exc


def typed(text: str, kind: ValueType) -> Any:
    """A cell's text as the mapping's type; raises ValueError naming the expected type."""
    stripped = text.strip()
    if kind is ValueType.string:
        return text
    if kind is ValueType.int:
        return int(stripped)
    if kind is ValueType.float:
        return float(stripped)
    if kind is ValueType.decimal:
        try:
            number = Decimal(stripped)
        except InvalidOperation as exc:
            raise ValueError(f"expected a decimal number, found {text!r}") from exc
        # JSON has no decimal type: an int when whole, else a float of the same digits.
        return int(number) if number == number.to_integral_value() else float(number)
    if stripped.lower() in {"true", "1", "yes"}:
        return True
    if stripped.lower() in {"false", "0", "no"}:
        return False
    raise ValueError(f"expected true or false, found {text!r}")
