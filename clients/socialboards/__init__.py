"""Socialboards Ticket API client and Socialboards' `TicketBackend`.

What the client relies on (seed 004, ../shared/backends/README.md, developers.socialboards.com):

* Auth: a refresh token is exchanged at `POST /token` (form `grant_type=refresh_token&refresh_token=...&
  client_id=...`) for an access token living about an hour, sent as `Authorization: Bearer`. Socialboards
  may return a new refresh token with every exchange; the old one then stops working. The client keeps
  the newest in memory and hands it to `on_refresh_token` so the bot can store it: a restart must start
  from the newest one (see `pick_refresh_token`). Exchanges never run concurrently (one would kill the
  other's token).
* Create: `POST /tickets` with `{title, message, isHtml, creator: {name, email, image, phoneNumber},
  categoryId, sentiment, sourceName, tags, customFields, ...}`; the answer is `{"data": <ticket id>,
  "errorCode": -1, "errorText": null}`. Every answer uses this envelope: an `errorCode` other than -1 is a
  failure, whatever the HTTP status.
* Discovery: root categories (`GET /categories`) and `GET /categories/{id}/subcategories` for the category
  select, custom field definitions (`GET /customfields`) for extra inputs.
* Lookup: `POST /tickets/list` with `from` (minimum creation time) finds the ticket of an earlier attempt
  by the submission reference in its message, so a retry after a lost answer makes no duplicate."""

from .backend import SocialboardsBackend, split_tags  # noqa: F401
from .client import SocialboardsClient  # noqa: F401
from .models import *  # noqa: F401,F403  the API's shapes
