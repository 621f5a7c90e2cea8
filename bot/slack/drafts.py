"""Modal state → a validated form, or inline errors keyed by block id.

Slack may send an untouched optional input as a missing key, `null` or `[]`; all mean "empty".
Anything of the wrong shape is treated as empty too, and a required field that ends up empty gets
an inline error, so a malformed payload never crashes the handler.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from clients.base import FormField

from .views import DESCRIPTION_BLOCK, FIELD_BLOCK_PREFIX, ON_BEHALF_BLOCK, SHARE_BLOCK, TITLE_BLOCK, VALUE

# Slack's date picker gives the person's local date; without their time zone, the earliest "today"
# anywhere (UTC-12) is the only safe bound for "in the past".
EARLIEST_OFFSET = dt.timedelta(hours=-12)


@dataclass
class Form:
    title: str = ""
    description: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    share: bool = False
    requester_id: str | None = None  # "Requester" picker: filing on behalf of someone
    errors: dict[str, str] = field(default_factory=dict)

    def values_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in self.values.items()}


def values_from_json(fields: list[FormField], raw: dict[str, Any]) -> dict[str, Any]:
    kinds = {f.id: f.kind for f in fields}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if kinds.get(key) == "date" and isinstance(value, str):
            out[key] = dt.date.fromisoformat(value)
        else:
            out[key] = value
    return out


def _element(values: dict[str, Any], block_id: str) -> dict[str, Any]:
    block = values.get(block_id)
    if not isinstance(block, dict):
        return {}
    element = block.get(VALUE)
    if not isinstance(element, dict):  # tolerate another action id: take the only element
        element = next((v for v in block.values() if isinstance(v, dict)), {})
    return element


def _text(element: dict[str, Any]) -> str:
    value = element.get("value")
    return value if isinstance(value, str) else ""


def today_anywhere(now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now + EARLIEST_OFFSET).date()


def parse_form(
    state: Any,
    fields: list[FormField],
    *,
    title_max_length: int,
    description_max_length: int,
    block_ids: set[str] | None = None,
    now: dt.datetime | None = None,
) -> Form:
    """`block_ids`: the blocks of the submitted view. A field whose block is not there (a modal
    opened by an older version of the bot) takes its default instead of an error nobody could see."""
    values = state.get("values") if isinstance(state, dict) else None
    values = values if isinstance(values, dict) else {}
    form = Form()

    form.title = " ".join(_text(_element(values, TITLE_BLOCK)).split())
    if not form.title:
        form.errors[TITLE_BLOCK] = "Please enter a title."
    elif len(form.title) > title_max_length:
        form.errors[TITLE_BLOCK] = f"Keep the title under {title_max_length} characters."

    form.description = _text(_element(values, DESCRIPTION_BLOCK)).strip()
    if len(form.description) > description_max_length:
        form.errors[DESCRIPTION_BLOCK] = (
            f"Keep the description under {description_max_length} characters "
            f"(it has {len(form.description)})."
        )

    for f in fields:
        block_id = FIELD_BLOCK_PREFIX + f.id
        if block_ids is not None and block_id not in block_ids:
            if f.default:
                form.values[f.id] = f.default
            continue
        element = _element(values, block_id)
        value, error = _field_value(f, element, now)
        if error:
            form.errors[block_id] = error
        elif value in (None, "") and f.required:
            form.errors[block_id] = f"{f.label} is required."
        elif value not in (None, ""):
            form.values[f.id] = value

    picked = _element(values, ON_BEHALF_BLOCK).get("selected_user")
    form.requester_id = picked if isinstance(picked, str) and picked else None

    selected = _element(values, SHARE_BLOCK).get("selected_options")
    form.share = isinstance(selected, list) and any(
        isinstance(o, dict) and o.get("value") == "share" for o in selected
    )
    return form


def _field_value(f: FormField, element: dict[str, Any], now: dt.datetime | None) -> tuple[Any, str | None]:
    if f.kind in ("text", "multiline"):
        text = _text(element).strip()
        if f.max_length and len(text) > f.max_length:
            return None, f"Keep this under {f.max_length} characters."
        return text, None
    if f.kind == "number":
        text = _text(element).strip()
        if not text:
            return None, None
        try:
            number = float(text)
        except ValueError:
            return None, "Enter a number."
        if not math.isfinite(number):  # "nan", "inf", "1e999": no number a ticket system takes
            return None, "Enter a number."
        return (int(number) if number.is_integer() else number), None
    if f.kind == "select":
        option = element.get("selected_option")
        value = option.get("value") if isinstance(option, dict) else None
        if value is not None and value not in {o.value for o in f.options}:
            return None, "Pick one of the listed options."
        return value, None
    if f.kind == "date":
        raw = element.get("selected_date")
        if not isinstance(raw, str) or not raw:
            return None, None
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            return None, "Pick a valid date."
        if f.future_only and day < today_anywhere(now):
            return None, "The due date is in the past: pick today or a later day."
        return day, None
    return None, None  # pragma: no cover
