"""Microsoft Graph transport: invitations and notices through Exchange Online once EWS is switched off.

Invitations become events in the SIP mailbox's calendar (``SIPFLOWS_GRAPH_MAILBOX``) with the attendee,
so Exchange Online sends the meeting request, tracks the answer, and sends the updates and cancellations
when sipflows PATCHes or cancels the event. Other notices are mails sent from that mailbox (``sendMail``)
with the ledger's Message-ID as ``internetMessageId``, so a resend is recognisable as with SMTP.

The model is the Exchange transport's: one event per notice, i.e. per meeting and attendee, so a retry,
an update or a cancellation touches that attendee's event only and never re-sends to the others. Graph
does not let a client choose an event's iCalendar UID, so each event carries two named MAPI properties of
our own (single-value extended properties): the *booking* key (the meeting's UID and a digest of the
attendee's address, as the Exchange transport's item UID) and the meeting's UID. A run that dies between
Graph creating the event and the ledger recording it finds the event again by its booking key before
creating anything; the create itself carries a ``transactionId`` derived from the booking and the notice
key, so Graph drops a repeated POST (a retry after a lost answer) too. Either way: one event.

App-only authentication through msal (client secret, a Prefect Secret block, or a certificate); the
token is cached per transport and, when Graph refuses it, fetched again once. Throttling (429, 503, and
the gateway's 502/504) is waited out as Graph's ``Retry-After`` asks, within a bounded total wait per
batch, and never counts against a notice. An unreachable, misconfigured or unauthorised Graph raises
``TransportUnavailable``: the transport as a whole cannot be used, no notice is to blame.

TLS is always verified, the same way for the token and the Graph calls: msal is given our httpx
connection (msal's documented minimal HTTP interface) instead of its own requests session. Left alone,
httpx would trust certifi or SSL_CERT_FILE/SSL_CERT_DIR and requests certifi or REQUESTS_CA_BUNDLE/
CURL_CA_BUNDLE; here every CA named in any of the four variables is trusted by both kinds of call.
"""

from sipflows.transports.graph.auth import certificate_credential, ssl_context, trusted_locations
from sipflows.transports.graph.client import GraphClient
from sipflows.transports.graph.common import (
    BOOKING_PROPERTY,
    MEETING_PROPERTY,
    AttendeeResponse,
    EventResponses,
    GraphConfigurationError,
    GraphReadError,
    booking_key,
    describe,
    graph_scope,
    parse_graph_time,
    transaction_id,
)
from sipflows.transports.graph.transport import GraphTransport

__all__ = [
    "BOOKING_PROPERTY",
    "MEETING_PROPERTY",
    "AttendeeResponse",
    "EventResponses",
    "GraphClient",
    "GraphConfigurationError",
    "GraphReadError",
    "GraphTransport",
    "booking_key",
    "certificate_credential",
    "describe",
    "graph_scope",
    "parse_graph_time",
    "ssl_context",
    "transaction_id",
    "trusted_locations",
]
