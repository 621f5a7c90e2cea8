"""Rezolve.ai ticketing API client and Rezolve.ai's `TicketBackend`.

What the client relies on (seed 003, ../shared/backends/README.md):

* Auth: a Keycloak client-credentials token (`POST {keycloak}/auth/realms/{realm}/protocol/openid-connect/
  token`), cached and renewed before it expires, renewed once more when the API says 401. Every API call
  also carries `x-tenantid` (must equal the token's `tenant_id` claim), `realmname`, `accept:
  application/json` and `issupportrequest: false`, and the query `type` (catalog type) and `module`.
* Create: `POST /api/v2/ticketing/ticket/create/{teamId}/{itemTypeId}?type=template&module=ticketing` with
  all five body keys (`source`, `summary`, `ticketBody` with `offerId` and field-uuid keys, `attachments`,
  `ticketRelation`). The answer's `objectId` ("CTC-0054") is the display id every later call uses;
  `ticket.etag` is needed by the next update, so it is kept.
* Discovery: `GET /api/v2/ticketing/ticket-type` (fields[] of each type: the form), answered OData style
  `{"data": {"value": [...], "@odata.count": n}}` and paged with `$skip` (a bare list under `data`, seen in
  older examples, is accepted too), and `GET /api/v2/ticketing/tenant/sc/offers` (the offer whose item type
  is ours). Both are cached with `ETag` / `If-None-Match`; an ETag is kept only with a body that was read
  successfully, so an answer the bot could not read is never served again from a 304.
* Search: `POST /api/v2/ticketing/ticket/list` with a full-text `search` for the submission reference.
  Its answer is not documented: a list under `data` or OData `data.value` is accepted, and a row matches
  when any text in it contains the reference.
* Errors: 400 `INPUT_VALIDATION_FAILURE` with reasons per field uuid (mapped back to form fields), 401
  `USER_PERMISSION_FAILURE`, 403 without a code, 404 with an HTML page (unknown team or item type), and
  elsewhere the `{success: false, error: {code, message, details}}` envelope. All become `BackendError`s
  with a plain message.

A 200 answer the bot cannot read (not JSON, or without the expected data) is a transient BackendError,
and ambiguous for a create (the ticket may exist).

The submission reference ("ref slack-…") reaches the ticket in the description field when
`description_field_id` is set, otherwise appended to the ticket type's first multi-line text field. After
an ambiguous create, `find_ticket` searches for it, so the retry does not make a second ticket. A ticket
type without any multi-line text field cannot carry the reference: there a lost create answer can still
end in a duplicate (the documented limitation)."""

from .backend import RezolveBackend, form_field, iso_date  # noqa: F401
from .client import RezolveClient, mentions  # noqa: F401
from .models import *  # noqa: F401,F403  the API's shapes
