"""crm.v1.ContactsService -> the contacts service's RPCs (docs/rpc.md)."""
from __future__ import annotations

from crm.v1 import contacts_pb2, contacts_pb2_grpc
from crm_common.validation import Violations

from . import convert
from .base import Call, Servicer, check, page_size, require, rpc_method

SERVICE = "contacts"

CONSENT_CHANNELS = ("email", "sms", "phone", "loyalty")
INTERACTION_CHANNELS = ("email", "phone", "sms", "chat", "meeting", "web", "social", "store", "other")
DIRECTIONS = ("inbound", "outbound", "internal")


def _one_of(v: Violations, value: str, field: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        v.add(field, f"must be one of: {' '.join(allowed)}")


class ContactsServicer(Servicer, contacts_pb2_grpc.ContactsServiceServicer):
    default_service = SERVICE
    grpc_service = "crm.v1.ContactsService"

    @rpc_method
    async def CreateContact(self, request: contacts_pb2.CreateContactRequest, call: Call):
        if not request.HasField("contact"):
            check(_required("contact"))
        contact = convert.contact_input_to_dict(request.contact)
        v = Violations()
        for ch in contact.get("consents", {}):
            _one_of(v, ch, f"contact.consents[{ch}]", CONSENT_CHANNELS)
        check(v)
        return convert.contact_to_proto(await call(self.service, "create_contact", contact=contact))

    @rpc_method
    async def GetContact(self, request: contacts_pb2.GetContactRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        check(v)
        return convert.contact_to_proto(await call(self.service, "get_contact", contact_id=request.contact_id))

    @rpc_method
    async def UpdateContact(self, request: contacts_pb2.UpdateContactRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        if request.expected_version < 1:
            v.add("expected_version", "is required (the version you read, >= 1)")
        check(v)
        changes = convert.contact_changes_to_dict(request.contact, list(request.update_mask.paths))
        return convert.contact_to_proto(await call(
            self.service, "update_contact", contact_id=request.contact_id,
            expected_version=request.expected_version, changes=changes))

    @rpc_method
    async def SetConsent(self, request: contacts_pb2.SetConsentRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        _one_of(v, request.channel, "channel", CONSENT_CHANNELS)
        require(v, request.source, "source")
        check(v)
        return convert.contact_to_proto(await call(
            self.service, "set_consent", contact_id=request.contact_id, channel=request.channel,
            granted=request.granted, source=request.source))

    @rpc_method
    async def SearchContacts(self, request: contacts_pb2.SearchContactsRequest, call: Call):
        v = Violations()
        page_size(v, request.page_size)
        check(v)
        res = await call(self.service, "search_contacts",
                         text=request.text or None, tag=request.tag or None,
                         lifecycle_stage=request.lifecycle_stage or None,
                         owner=request.owner or None, page_size=request.page_size or 50,
                         page_token=request.page_token or None)
        out = contacts_pb2.SearchContactsResponse(next_page_token=res.get("next_page_token") or "")
        for c in res.get("contacts") or ():
            convert.contact_to_proto(c, out.contacts.add())
        return out

    @rpc_method
    async def LogInteraction(self, request: contacts_pb2.LogInteractionRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        _one_of(v, request.channel, "channel", INTERACTION_CHANNELS)
        _one_of(v, request.direction, "direction", DIRECTIONS)
        require(v, request.summary, "summary", max_len=10000)
        check(v)
        occurred_at = (convert.timestamp_to_iso(request.occurred_at)
                       if request.HasField("occurred_at") else None)
        return convert.timeline_entry_to_proto(await call(
            self.service, "log_interaction", contact_id=request.contact_id, channel=request.channel,
            direction=request.direction, summary=request.summary, occurred_at=occurred_at))

    @rpc_method
    async def ListTimeline(self, request: contacts_pb2.ListTimelineRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        page_size(v, request.page_size)
        check(v)
        res = await call(self.service, "list_timeline", contact_id=request.contact_id,
                         page_size=request.page_size or 50, page_token=request.page_token or None)
        out = contacts_pb2.ListTimelineResponse(next_page_token=res.get("next_page_token") or "")
        for e in res.get("entries") or ():
            convert.timeline_entry_to_proto(e, out.entries.add())
        return out

    @rpc_method
    async def EraseContact(self, request: contacts_pb2.EraseContactRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        check(v)
        return convert.contact_to_proto(await call(self.service, "erase_contact", contact_id=request.contact_id))

    @rpc_method
    async def CreateCompany(self, request: contacts_pb2.CreateCompanyRequest, call: Call):
        v = Violations()
        require(v, request.company.name, "company.name")
        check(v)
        c = request.company
        return convert.company_to_proto(await call(
            self.service, "create_company",
            company={"name": c.name, "domain": c.domain or None, "tags": list(c.tags)}))

    @rpc_method
    async def GetCompany(self, request: contacts_pb2.GetCompanyRequest, call: Call):
        v = Violations()
        require(v, request.company_id, "company_id")
        check(v)
        return convert.company_to_proto(await call(self.service, "get_company", company_id=request.company_id))

    @rpc_method
    async def LinkContactToCompany(self, request: contacts_pb2.LinkContactToCompanyRequest, call: Call):
        v = Violations()
        require(v, request.contact_id, "contact_id")
        require(v, request.company_id, "company_id")
        check(v)
        return convert.contact_to_proto(await call(
            self.service, "link_contact_to_company", contact_id=request.contact_id,
            company_id=request.company_id))


def _required(field: str) -> Violations:
    v = Violations()
    v.add(field, "is required")
    return v
