"""A small Exchange Web Services server for tests: exchangelib's real code talks SOAP to it over HTTP.

It answers the operations exchangelib sends for sipflows — the version probe (ConvertId), GetFolder,
CreateItem (calendar items with ``SendMeetingInvitations``, messages with ``SendAndSaveCopy``, meeting
cancellations), UpdateItem, DeleteItem, GetItem and FindItem (calendar views and simple restrictions) —
and keeps everything in memory, so a test can assert what exchangelib sent and play the attendees'
answers back. Basic auth only; every request and every "sent" mail is recorded.

    with EwsServer(username="svc", password="pw", mailbox="sip@example.se") as ews:
        Configuration(service_endpoint=ews.url, credentials=Credentials("svc", "pw"), auth_type=BASIC)
"""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
NSMAP = {"s": SOAP, "m": M, "t": T}

# Exchange 2016 CU (15.1): what on-premises installations in Swedish municipalities and regions commonly run
SERVER_VERSION = {
    "MajorVersion": "15",
    "MinorVersion": "1",
    "MajorBuildNumber": "2507",
    "MinorBuildNumber": "6",
}
API_VERSION = "Exchange2016"

DISTINGUISHED_FOLDERS = {
    "root": ("Folder", None, "Top of Information Store"),
    "msgfolderroot": ("Folder", "IPF.Note", "Top of Information Store"),
    "calendar": ("CalendarFolder", "IPF.Appointment", "Calendar"),
    "inbox": ("Folder", "IPF.Note", "Inbox"),
    "sentitems": ("Folder", "IPF.Note", "Sent Items"),
    "drafts": ("Folder", "IPF.Note", "Drafts"),
    "deleteditems": ("Folder", "IPF.Note", "Deleted Items"),
}


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def local(tag: str) -> str:
    return etree.QName(tag).localname


def parse_ews_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class RecordedRequest:
    operation: str
    body: bytes
    headers: dict[str, str]
    element: Any  # the operation element (m:CreateItem, ...)


@dataclass
class SentMail:
    """What the mailbox would have sent: a meeting request/update/cancellation or a plain message."""

    kind: str  # meeting_request | meeting_update | meeting_cancellation | message
    recipients: tuple[str, ...]
    subject: str | None
    item_id: str | None
    message_id: str | None = None


@dataclass
class StoredItem:
    item_id: str
    change_key: str
    folder: str  # distinguished folder id
    element: Any  # t:CalendarItem or t:Message, as sent and updated
    create_attributes: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False
    deleted: bool = False

    @property
    def kind(self) -> str:
        return local(self.element.tag)

    def text(self, name: str) -> str | None:
        el = self.element.find(q(T, name))
        return el.text if el is not None else None

    @property
    def subject(self) -> str | None:
        return self.text("Subject")

    @property
    def uid(self) -> str | None:
        return self.text("UID")

    @property
    def location(self) -> str | None:
        return self.text("Location")

    @property
    def body(self) -> str | None:
        return self.text("Body")

    @property
    def body_type(self) -> str | None:
        el = self.element.find(q(T, "Body"))
        return el.get("BodyType") if el is not None else None

    @property
    def message_id(self) -> str | None:
        return self.text("InternetMessageId")

    @property
    def start(self) -> datetime | None:
        value = self.text("Start")
        return parse_ews_datetime(value) if value else None

    @property
    def end(self) -> datetime | None:
        value = self.text("End")
        return parse_ews_datetime(value) if value else None

    def _addresses(self, container: str, child: str) -> list[str]:
        el = self.element.find(q(T, container))
        if el is None:
            return []
        path = f"{{{T}}}Mailbox/{{{T}}}EmailAddress" if child == "Attendee" else q(T, "EmailAddress")
        return [str(a.findtext(path)) for a in el.findall(q(T, child))]

    @property
    def required_attendees(self) -> list[str]:
        return self._addresses("RequiredAttendees", "Attendee")

    @property
    def optional_attendees(self) -> list[str]:
        return self._addresses("OptionalAttendees", "Attendee")

    @property
    def to_recipients(self) -> list[str]:
        return self._addresses("ToRecipients", "Mailbox")

    def attendees(self) -> list[Any]:
        return [
            a
            for container in ("RequiredAttendees", "OptionalAttendees")
            for c in self.element.findall(q(T, container))
            for a in c.findall(q(T, "Attendee"))
        ]


@dataclass
class _Failure:
    operation: str | None
    status: int
    response_code: str | None
    back_off_ms: int | None
    remaining: int


class EwsError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class EwsServer:
    """An in-memory Exchange mailbox behind a SOAP endpoint on 127.0.0.1 (free port, own thread)."""

    def __init__(
        self, username: str = "svc-sip", password: str = "pw", mailbox: str = "sip@example.se"
    ) -> None:
        self.username = username
        self.password = password
        self.mailbox = mailbox
        self.requests: list[RecordedRequest] = []
        self.items: dict[str, StoredItem] = {}
        self.sent: list[SentMail] = []
        self.rejected_recipients: set[str] = set()  # addresses Exchange refuses (ErrorInvalidRecipients)
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> EwsServer:
        server = self

        class Handler(_Handler):
            ews = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="ews-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._httpd is not None
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}/EWS/Exchange.asmx"

    # --- test controls ---------------------------------------------------------------------------------

    def fail(
        self,
        operation: str | None = None,
        *,
        status: int = 200,
        response_code: str | None = "ErrorServerBusy",
        back_off_ms: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` requests for ``operation`` (None: any) fail.

        ``status`` 500/503 answers with that HTTP status and a non-SOAP body; otherwise a SOAP fault with
        ``response_code`` (ErrorServerBusy carries ``back_off_ms`` as BackOffMilliseconds, like Exchange).
        """
        with self._lock:
            self._failures.append(_Failure(operation, status, response_code, back_off_ms, times))

    def recover(self) -> None:
        """Forget every failure still planned: the server is healthy again."""
        with self._lock:
            self._failures.clear()

    def set_response(self, item_id: str, email: str, response_type: str, when: datetime | None) -> None:
        """Play an attendee's answer into the organiser's item, as Exchange does on a meeting response."""
        with self._lock:
            item = self.items[item_id]
            for attendee in item.attendees():
                if (attendee.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress") or "").lower() != email.lower():
                    continue
                for name in ("ResponseType", "LastResponseTime"):
                    old = attendee.find(q(T, name))
                    if old is not None:
                        attendee.remove(old)
                etree.SubElement(attendee, q(T, "ResponseType")).text = response_type
                if when is not None:
                    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    etree.SubElement(attendee, q(T, "LastResponseTime")).text = stamp
                item.change_key = self._change_key()
                return
            raise KeyError(f"{email} is not an attendee of {item_id}")

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]

    def calendar_items(self) -> list[StoredItem]:
        return [i for i in self.items.values() if i.kind == "CalendarItem" and not i.deleted]

    def messages(self, folder: str = "sentitems") -> list[StoredItem]:
        return [
            i for i in self.items.values() if i.kind == "Message" and i.folder == folder and not i.deleted
        ]

    # --- SOAP ------------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return base64.b64encode(f"AAMk-sip-item-{next(self._ids)}".encode()).decode()

    def _change_key(self) -> str:
        return base64.b64encode(f"CQAAAB-{next(self._ids)}".encode()).decode()

    def authorised(self, header: str | None) -> bool:
        # requests encodes basic credentials as Latin-1, other clients as UTF-8: IIS takes either
        pair = f"{self.username}:{self.password}"
        accepted = set()
        for encoding in ("latin-1", "utf-8"):
            try:
                accepted.add("Basic " + base64.b64encode(pair.encode(encoding)).decode())
            except UnicodeEncodeError:
                continue
        return header in accepted

    def take_failure(self, operation: str) -> _Failure | None:
        with self._lock:
            for f in self._failures:
                if f.remaining > 0 and f.operation in (None, operation):
                    f.remaining -= 1
                    return f
        return None

    def handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        envelope = etree.fromstring(body)
        soap_body = envelope.find(q(SOAP, "Body"))
        op_elem = soap_body[0]
        operation = local(op_elem.tag)
        with self._lock:
            self.requests.append(RecordedRequest(operation, body, headers, op_elem))
        failure = self.take_failure(operation)
        if failure is not None:
            if failure.status != 200:
                return failure.status, b"<html><body>Service Unavailable</body></html>"
            return 500, self._fault(failure.response_code or "ErrorServerBusy", failure.back_off_ms)
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            return 500, self._fault("ErrorInvalidRequest", None, f"{operation} is not supported here")
        with self._lock:
            messages = handler(op_elem)
        return 200, self._envelope(operation, messages)

    def _envelope(self, operation: str, messages: list[Any]) -> bytes:
        env = etree.Element(q(SOAP, "Envelope"), nsmap=NSMAP)
        header = etree.SubElement(env, q(SOAP, "Header"))
        etree.SubElement(header, q(T, "ServerVersionInfo"), {**SERVER_VERSION, "Version": API_VERSION})
        body = etree.SubElement(env, q(SOAP, "Body"))
        response = etree.SubElement(body, q(M, f"{operation}Response"))
        container = etree.SubElement(response, q(M, "ResponseMessages"))
        for message in messages:
            container.append(message)
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    def _fault(
        self,
        code: str,
        back_off_ms: int | None,
        text: str = "The server cannot service this request right now.",
    ) -> bytes:
        env = etree.Element(q(SOAP, "Envelope"), nsmap=NSMAP)
        body = etree.SubElement(env, q(SOAP, "Body"))
        fault = etree.SubElement(body, q(SOAP, "Fault"))
        etree.SubElement(fault, "faultcode").text = (
            "a:ErrorServerBusy" if code == "ErrorServerBusy" else "s:Client"
        )
        etree.SubElement(fault, "faultstring").text = text
        detail = etree.SubElement(fault, "detail")
        e = "http://schemas.microsoft.com/exchange/services/2006/errors"
        etree.SubElement(detail, f"{{{e}}}ResponseCode").text = code
        etree.SubElement(detail, f"{{{e}}}Message").text = text
        if back_off_ms is not None:
            msg_xml = etree.SubElement(detail, q(T, "MessageXml"))
            value = etree.SubElement(msg_xml, q(T, "Value"), {"Name": "BackOffMilliseconds"})
            value.text = str(back_off_ms)
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    @staticmethod
    def _message(operation: str, children: list[Any] | None = None, error: EwsError | None = None) -> Any:
        msg = etree.Element(q(M, f"{operation}ResponseMessage"))
        if error is not None:
            msg.set("ResponseClass", "Error")
            etree.SubElement(msg, q(M, "MessageText")).text = error.text
            etree.SubElement(msg, q(M, "ResponseCode")).text = error.code
            etree.SubElement(msg, q(M, "DescriptiveLinkKey")).text = "0"
            return msg
        msg.set("ResponseClass", "Success")
        etree.SubElement(msg, q(M, "ResponseCode")).text = "NoError"
        for child in children or []:
            msg.append(child)
        return msg

    def _item_id_elem(self, item: StoredItem) -> Any:
        return etree.Element(q(T, "ItemId"), {"Id": item.item_id, "ChangeKey": item.change_key})

    def _folder_of(self, elem: Any) -> str:
        if elem is None:
            return "drafts"
        child = elem[0]
        if local(child.tag) == "DistinguishedFolderId":
            return str(child.get("Id"))
        folder_id = str(child.get("Id"))
        prefix = "folder-"
        return folder_id[len(prefix) :] if folder_id.startswith(prefix) else folder_id

    def _find(self, item_id: str | None) -> StoredItem:
        item = self.items.get(item_id or "")
        if item is None or item.deleted:
            raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
        return item

    # ConvertId is what exchangelib uses to probe the server version; answer like Exchange does for a bogus id
    def op_ConvertId(self, op: Any) -> list[Any]:
        ids = op.find(q(M, "SourceIds"))
        return [
            self._message("ConvertId", error=EwsError("ErrorInvalidIdMalformed", "Id is malformed."))
            for _ in (ids if ids is not None else [None])
        ]

    def op_GetFolder(self, op: Any) -> list[Any]:
        out = []
        for fid in op.find(q(M, "FolderIds")):
            name = str(fid.get("Id"))
            if local(fid.tag) == "FolderId":
                name = name.removeprefix("folder-")
            if name not in DISTINGUISHED_FOLDERS:
                out.append(
                    self._message("GetFolder", error=EwsError("ErrorFolderNotFound", "Folder not found."))
                )
                continue
            tag, folder_class, display = DISTINGUISHED_FOLDERS[name]
            folders = etree.Element(q(M, "Folders"))
            folder = etree.SubElement(folders, q(T, tag))
            etree.SubElement(folder, q(T, "FolderId"), {"Id": f"folder-{name}", "ChangeKey": "AQAAAA=="})
            if name != "root":
                etree.SubElement(
                    folder, q(T, "ParentFolderId"), {"Id": "folder-root", "ChangeKey": "AQAAAA=="}
                )
            if folder_class:
                etree.SubElement(folder, q(T, "FolderClass")).text = folder_class
            etree.SubElement(folder, q(T, "DisplayName")).text = display
            etree.SubElement(folder, q(T, "TotalCount")).text = "0"
            etree.SubElement(folder, q(T, "ChildFolderCount")).text = "0"
            etree.SubElement(folder, q(T, "UnreadCount")).text = "0"
            out.append(self._message("GetFolder", [folders]))
        return out

    def op_CreateItem(self, op: Any) -> list[Any]:
        disposition = op.get("MessageDisposition")
        saved_folder = op.find(q(M, "SavedItemFolderId"))
        out = []
        for elem in op.find(q(M, "Items")):
            kind = local(elem.tag)
            try:
                if kind == "CalendarItem":
                    out.append(self._create_calendar_item(elem, op.attrib))
                elif kind == "Message":
                    out.append(
                        self._create_message(elem, disposition, self._folder_of(saved_folder), op.attrib)
                    )
                elif kind == "CancelCalendarItem":
                    out.append(self._cancel(elem))
                else:
                    raise EwsError("ErrorInvalidRequest", f"{kind} is not supported here")
            except EwsError as e:
                out.append(self._message("CreateItem", error=e))
        return out

    def _check_recipients(self, addresses: list[str]) -> None:
        if any(a.casefold() in {r.casefold() for r in self.rejected_recipients} for a in addresses):
            raise EwsError("ErrorInvalidRecipients", "At least one recipient isn't valid.")

    def _create_calendar_item(self, elem: Any, attrs: Any) -> Any:
        item = StoredItem(self._new_id(), self._change_key(), "calendar", elem, dict(attrs))
        self._check_recipients(item.required_attendees + item.optional_attendees)
        _store_body_as_exchange_does(elem)
        for name in ("ItemId", "ParentFolderId"):
            for old in elem.findall(q(T, name)):
                elem.remove(old)
        if item.uid is None:
            etree.SubElement(elem, q(T, "UID")).text = f"{item.item_id}@ews.test"
        for attendee in item.attendees():
            if attendee.find(q(T, "ResponseType")) is None:
                etree.SubElement(attendee, q(T, "ResponseType")).text = "Unknown"
        self.items[item.item_id] = item
        recipients = tuple(a.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress") for a in item.attendees())
        if attrs.get("SendMeetingInvitations") in ("SendToAllAndSaveCopy", "SendOnlyToAll") and recipients:
            self.sent.append(SentMail("meeting_request", recipients, item.subject, item.item_id))
        items = etree.Element(q(M, "Items"))
        cal = etree.SubElement(items, q(T, "CalendarItem"))
        cal.append(self._item_id_elem(item))
        return self._message("CreateItem", [items])

    def _create_message(self, elem: Any, disposition: str | None, folder: str, attrs: Any) -> Any:
        item = StoredItem(self._new_id(), self._change_key(), folder, elem, dict(attrs))
        if disposition == "SaveOnly":
            item.folder = folder
        elif disposition == "SendAndSaveCopy":
            item.folder = folder if folder != "drafts" else "sentitems"
        if item.message_id is None:
            etree.SubElement(elem, q(T, "InternetMessageId")).text = f"<{item.item_id}@ews.test>"
        if disposition in ("SendOnly", "SendAndSaveCopy"):
            if not item.to_recipients:
                raise EwsError("ErrorInvalidRecipients", "At least one recipient isn't valid.")
            self._check_recipients(list(item.to_recipients))
            self.sent.append(
                SentMail("message", tuple(item.to_recipients), item.subject, item.item_id, item.message_id)
            )
        if disposition != "SendOnly":
            self.items[item.item_id] = item
        items = etree.Element(q(M, "Items"))
        if disposition == "SaveOnly":
            msg = etree.SubElement(items, q(T, "Message"))
            msg.append(self._item_id_elem(item))
        return self._message("CreateItem", [items])

    def _cancel(self, elem: Any) -> Any:
        ref = elem.find(q(T, "ReferenceItemId"))
        item = self._find(ref.get("Id") if ref is not None else None)
        if item.cancelled:
            raise EwsError("ErrorItemNotFound", "The meeting is already cancelled.")
        item.cancelled = True
        item.change_key = self._change_key()
        recipients = tuple(a.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress") for a in item.attendees())
        self.sent.append(SentMail("meeting_cancellation", recipients, item.subject, item.item_id))
        return self._message("CreateItem", [etree.Element(q(M, "Items"))])

    def op_UpdateItem(self, op: Any) -> list[Any]:
        mode = op.get("SendMeetingInvitationsOrCancellations")
        out = []
        for change in op.find(q(M, "ItemChanges")):
            try:
                item = self._find(change.find(q(T, "ItemId")).get("Id"))
                for update in change.find(q(T, "Updates")):
                    uri = update.find(q(T, "FieldURI"))
                    name = str(uri.get("FieldURI")).split(":", 1)[1] if uri is not None else None
                    if name is None:
                        continue
                    for old in item.element.findall(q(T, name)):
                        item.element.remove(old)
                    if local(update.tag) in ("SetItemField", "AppendToItemField"):
                        carrier = update[len(update) - 1]
                        for new in carrier:
                            item.element.append(new)
                _store_body_as_exchange_does(item.element)
                for attendee in item.attendees():
                    if attendee.find(q(T, "ResponseType")) is None:
                        etree.SubElement(attendee, q(T, "ResponseType")).text = "Unknown"
                item.change_key = self._change_key()
                if item.kind == "CalendarItem" and mode in ("SendToAllAndSaveCopy", "SendOnlyToAll"):
                    recipients = tuple(
                        a.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress") for a in item.attendees()
                    )
                    self.sent.append(SentMail("meeting_update", recipients, item.subject, item.item_id))
                items = etree.Element(q(M, "Items"))
                wrapper = etree.SubElement(items, q(T, item.kind))
                wrapper.append(self._item_id_elem(item))
                conflicts = etree.Element(q(M, "ConflictResults"))
                etree.SubElement(conflicts, q(T, "Count")).text = "0"
                out.append(self._message("UpdateItem", [items, conflicts]))
            except EwsError as e:
                out.append(self._message("UpdateItem", error=e))
        return out

    def op_DeleteItem(self, op: Any) -> list[Any]:
        mode = op.get("SendMeetingCancellations")
        out = []
        for ref in op.find(q(M, "ItemIds")):
            try:
                item = self._find(ref.get("Id"))
                item.deleted = True
                if item.kind == "CalendarItem" and mode in ("SendToAllAndSaveCopy", "SendOnlyToAll"):
                    recipients = tuple(
                        a.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress") for a in item.attendees()
                    )
                    self.sent.append(SentMail("meeting_cancellation", recipients, item.subject, item.item_id))
                out.append(self._message("DeleteItem"))
            except EwsError as e:
                out.append(self._message("DeleteItem", error=e))
        return out

    def _render(self, item: StoredItem, shape: Any) -> Any:
        """The item as GetItem/FindItem return it: its id, then the requested properties."""
        base = shape.findtext(q(T, "BaseShape")) if shape is not None else "AllProperties"
        wanted: set[str] | None = None
        if base == "IdOnly":
            wanted = set()
            extra = shape.find(q(T, "AdditionalProperties"))
            for uri in extra if extra is not None else []:
                if uri.get("FieldURI"):
                    wanted.add(str(uri.get("FieldURI")).split(":", 1)[1])
        out = etree.Element(item.element.tag)
        out.append(self._item_id_elem(item))
        props = list(item.element) + self._server_props(item)
        for child in props:
            if not isinstance(child.tag, str) or local(child.tag) in ("ItemId", "ParentFolderId"):
                continue
            if wanted is None or local(child.tag) in wanted:
                out.append(_copy(child))
        return out

    def _server_props(self, item: StoredItem) -> list[Any]:
        extra = []

        def prop(name: str, text: str) -> None:
            el = etree.Element(q(T, name))
            el.text = text
            extra.append(el)

        if item.kind == "CalendarItem":
            organizer = etree.Element(q(T, "Organizer"))
            mbx = etree.SubElement(organizer, q(T, "Mailbox"))
            etree.SubElement(mbx, q(T, "EmailAddress")).text = self.mailbox
            etree.SubElement(mbx, q(T, "RoutingType")).text = "SMTP"
            extra.append(organizer)
            prop("IsCancelled", "true" if item.cancelled else "false")
            prop("IsMeeting", "true" if item.attendees() else "false")
            prop(
                "MeetingRequestWasSent",
                "true" if item.create_attributes.get("SendMeetingInvitations") else "false",
            )
            prop("CalendarItemType", "Single")
        return [e for e in extra if item.element.find(e.tag) is None]

    def op_GetItem(self, op: Any) -> list[Any]:
        shape = op.find(q(M, "ItemShape"))
        out = []
        for ref in op.find(q(M, "ItemIds")):
            try:
                item = self._find(ref.get("Id"))
                items = etree.Element(q(M, "Items"))
                items.append(self._render(item, shape))
                out.append(self._message("GetItem", [items]))
            except EwsError as e:
                out.append(self._message("GetItem", error=e))
        return out

    def op_FindItem(self, op: Any) -> list[Any]:
        shape = op.find(q(M, "ItemShape"))
        view = op.find(q(M, "CalendarView"))
        restriction = op.find(q(M, "Restriction"))
        out = []
        for folder_elem in op.find(q(M, "ParentFolderIds")):
            name = str(folder_elem.get("Id")).removeprefix("folder-")
            found = [i for i in self.items.values() if i.folder == name and not i.deleted]
            if view is not None:
                start = parse_ews_datetime(str(view.get("StartDate")))
                end = parse_ews_datetime(str(view.get("EndDate")))
                found = [i for i in found if i.start and i.end and i.start < end and i.end > start]
            if restriction is not None:
                found = [i for i in found if _matches(i.element, restriction[0])]
            root = etree.Element(q(M, "RootFolder"))
            root.set("TotalItemsInView", str(len(found)))
            root.set("IncludesLastItemInRange", "true")
            items = etree.SubElement(root, q(T, "Items"))
            for item in found:
                items.append(self._render(item, shape))
            out.append(self._message("FindItem", [root]))
        return out


def _store_body_as_exchange_does(item_elem: Any) -> None:
    """Exchange keeps an HTML body as a whole document: the text a client sent comes back rewrapped."""
    body = item_elem.find(q(T, "Body"))
    if (
        body is not None
        and body.get("BodyType") == "HTML"
        and not (body.text or "").lstrip().startswith("<html")
    ):
        body.text = (
            '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n'
            f"</head>\r\n<body>\r\n{body.text or ''}\r\n</body>\r\n</html>\r\n"
        )


def _copy(elem: Any) -> Any:
    return etree.fromstring(etree.tostring(elem))


def _matches(elem: Any, condition: Any) -> bool:
    """Evaluate a simple EWS restriction (And/Or/Not/IsEqualTo/Exists on field URIs) against an item."""
    kind = local(condition.tag)
    if kind == "And":
        return all(_matches(elem, c) for c in condition)
    if kind == "Or":
        return any(_matches(elem, c) for c in condition)
    if kind == "Not":
        return not _matches(elem, condition[0])
    uri = condition.find(q(T, "FieldURI"))
    name = str(uri.get("FieldURI")).split(":", 1)[1] if uri is not None else ""
    value = elem.findtext(q(T, name))
    if kind == "Exists":
        return value is not None
    constant = condition.find(f"{{{T}}}FieldURIOrConstant/{{{T}}}Constant")
    expected = constant.get("Value") if constant is not None else None
    if kind == "IsEqualTo":
        return value == expected
    if kind == "IsNotEqualTo":
        return value != expected
    raise ValueError(f"restriction {kind} is not supported by the test server")


class _Handler(BaseHTTPRequestHandler):
    ews: EwsServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        del format, args

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if not self.ews.authorised(self.headers.get("Authorization")):
            self._reply(401, b"", {"WWW-Authenticate": 'Basic realm="ews.test"'})
            return
        try:
            status, payload = self.ews.handle(body, dict(self.headers.items()))
        except Exception as exc:  # a bug in the test server must show up, not hang the client
            status, payload = 500, f"test server error: {exc!r}".encode()
        self._reply(status, payload, {"Content-Type": "text/xml; charset=utf-8"})

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def iter_requests(ews: EwsServer, operation: str) -> Iterator[RecordedRequest]:
    return (r for r in ews.requests if r.operation == operation)
