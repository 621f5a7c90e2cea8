"""Serval public API client (https://public.api.serval.com) and Serval's `TicketBackend`.

Models use the API's exact field names (lowerCamelCase). Bodies are sent with `exclude_none`,
because every Serval schema is `additionalProperties: false` and a stray `null` is noise.

Beyond creating tickets, the back end shows a team's custom fields in the form (their definitions
cached with the teams and priorities) and sets their values right after the create, adds messages
to a ticket, edits a ticket, and finds a requester's open tickets whose titles resemble a new one."""

from .backend import ServalBackend, custom_form_field, meaningful_words  # noqa: F401
from .client import ServalClient  # noqa: F401
from .models import *  # noqa: F401,F403  the API's shapes
