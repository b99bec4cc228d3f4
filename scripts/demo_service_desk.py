#!/usr/bin/env python3
"""The service desk's demo, through the public gateway (called by scripts/demo_data.py
after the customers exist; runs alone too): business-hours calendars for Tehran and
Berlin, SLA policies per loyalty tier and for high-value customers, groups with their
routing, agents, knowledge-base articles in Persian and English, and tickets of the
demo customers in every status.

Idempotent: configuration is saved by id (an upsert), an article or ticket that exists
already (same title; same customer and subject) is skipped. It calls as a support lead
(``demo-loader``), with a token signed by the local key (var/auth).
"""
from __future__ import annotations

import os
import sys

import grpc

from crm.v1 import contacts_pb2, contacts_pb2_grpc, service_desk_pb2 as sd, service_desk_pb2_grpc
from crm_gateway import client, devauth

GATEWAY = os.environ.get("GATEWAY_ADDR", "127.0.0.1:50051")
H = 3600
PRIORITIES = ("low", "normal", "high", "urgent")
WEEK = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

CALENDARS = [
    # Iran's working week: Saturday to Wednesday, Thursday mornings; Nowruz and Sizdah Bedar closed.
    ("tehran-office", "Tehran office", "Asia/Tehran",
     [(d, "08:00", "17:00") for d in ("saturday", "sunday", "monday", "tuesday", "wednesday")]
     + [("thursday", "08:00", "13:00")],
     ["2026-03-20", "2026-03-21", "2026-03-22", "2026-03-23", "2026-03-24", "2026-04-02"]),
    ("berlin-office", "Berlin office", "Europe/Berlin",
     [(d, "09:00", "18:00") for d in WEEK[:5]],
     ["2026-12-24", "2026-12-25", "2026-12-26", "2026-12-31", "2027-01-01"]),
    ("around-the-clock", "Around the clock", "UTC", [(d, "00:00", "24:00") for d in WEEK], []),
]
# id, name, tiers, segments, calendar, {priority: (first response, resolution)} in business seconds
POLICIES = [
    ("standard", "Standard (bronze and not yet members)", [], [], "berlin-office",
     {"low": (16 * H, 5 * 8 * H), "normal": (8 * H, 3 * 8 * H), "high": (4 * H, 2 * 8 * H), "urgent": (2 * H, 8 * H)}),
    ("silver", "Silver members", ["silver"], [], "berlin-office",
     {"low": (8 * H, 4 * 8 * H), "normal": (4 * H, 2 * 8 * H), "high": (2 * H, 8 * H), "urgent": (H, 4 * H)}),
    ("gold", "Gold members", ["gold"], [], "berlin-office",
     {"low": (4 * H, 2 * 8 * H), "normal": (2 * H, 8 * H), "high": (H, 4 * H), "urgent": (1800, 2 * H)}),
    ("platinum", "Platinum members, around the clock", ["platinum"], [], "around-the-clock",
     {"low": (2 * H, 8 * H), "normal": (H, 4 * H), "high": (1800, 2 * H), "urgent": (900, H)}),
    ("high-value", "High lifetime value", [], ["high"], "around-the-clock",
     {"low": (2 * H, 8 * H), "normal": (H, 6 * H), "high": (1800, 3 * H), "urgent": (900, H)}),
    ("tehran-customers", "Customers served from Tehran (gold and up)", ["gold", "platinum"], ["medium", "high"],
     "tehran-office", {"low": (2 * H, 8 * H), "normal": (H, 5 * H), "high": (1800, 3 * H), "urgent": (900, 2 * H)}),
]
GROUPS = [
    ("support", "General support", ["question", "other"], ["chat", "bot"], "escalations"),
    ("delivery", "Delivery team", ["late_delivery", "wrong_delivery", "out_of_stock"], [], "escalations"),
    ("quality", "Repairs and quality", ["incorrect_repair", "poor_product_quality"], [], "escalations"),
    ("billing", "Billing", ["billing"], [], "escalations"),
    ("escalations", "Support leads", [], [], ""),
]
AGENTS = [("agent-neda", "Neda Karimi", ["support", "delivery"]), ("agent-jonas", "Jonas Weber", ["delivery", "billing"]),
          ("agent-claire", "Claire Martin", ["support", "billing"]), ("agent-reza", "Reza Tavakoli", ["quality"]),
          ("lead-sara", "Sara Ahmadi", ["escalations"])]
ARTICLES = [
    ("Refunds and returns", "en", ["refund", "return"],
     "You can return any item within 14 days of delivery. Start the return from your order page; the courier "
     "collects it for free.\nRefunds go back to the card you paid with within 5 working days of the return "
     "reaching us."),
    ("Delivery times", "en", ["delivery", "shipping"],
     "Orders ship within 2 working days. Delivery takes 3 to 5 working days in Germany and 5 to 10 days abroad.\n"
     "You get a tracking link by email as soon as your parcel leaves our warehouse."),
    ("Changing your delivery address", "en", ["address", "delivery"],
     "You can change the delivery address until your order ships: open the order and choose Change address. "
     "Once it has shipped, ask the courier to redirect it with the tracking link."),
    ("Warranty repairs", "en", ["warranty", "repair"],
     "Every product has a two-year warranty. Describe the fault in a ticket with a photo; we send a prepaid label "
     "and repair or replace the item within 10 working days."),
    ("مرجوع کردن کالا و بازگشت وجه", "fa", ["مرجوعی", "بازگشت وجه"],
     "کالای خریداری‌شده را تا ۱۴ روز پس از تحویل می‌توانید مرجوع کنید. درخواست مرجوعی را از صفحه سفارش ثبت کنید؛ "
     "پیک کالا را رایگان تحویل می‌گیرد.\nمبلغ تا ۵ روز کاری پس از رسیدن کالا به انبار به کارت شما بازگردانده می‌شود."),
    ("زمان ارسال و تحویل سفارش", "fa", ["ارسال", "تحویل"],
     "سفارش‌ها ظرف ۲ روز کاری ارسال می‌شوند و تحویل در تهران ۱ تا ۳ روز و در شهرستان‌ها ۳ تا ۷ روز طول می‌کشد.\n"
     "پس از ارسال، کد رهگیری برای شما پیامک می‌شود."),
    ("تغییر نشانی تحویل", "fa", ["نشانی", "آدرس"],
     "تا پیش از ارسال سفارش می‌توانید نشانی تحویل را از صفحه سفارش تغییر دهید. پس از ارسال، با کد رهگیری "
     "از شرکت پست درخواست تغییر مسیر کنید."),
    ("گارانتی و تعمیر", "fa", ["گارانتی", "تعمیر"],
     "همه کالاها دو سال گارانتی دارند. ایراد را با عکس در یک درخواست پشتیبانی شرح دهید تا برچسب ارسال رایگان "
     "برایتان بفرستیم؛ تعمیر یا تعویض ظرف ۱۰ روز کاری انجام می‌شود."),
]
# customer's email, subject, description, category, priority, channel, what happens next
TICKETS = [
    ("amir.jafari", "Parcel still not here", "Ordered two weeks ago, tracking has not moved since Monday.",
     "late_delivery", "high", "email", "new"),
    ("sara.ahmadi", "سفارشم هنوز نرسیده", "سفارش ۱۲۳۴ را ده روز پیش ثبت کردم و هنوز نرسیده است.",
     "late_delivery", "normal", "web_form", "open"),
    ("olivia.smith", "Wrong size delivered", "I ordered a medium jacket and received a small one.",
     "wrong_delivery", "normal", "email", "pending_customer"),
    ("lukas.mueller", "Repair came back broken", "The coffee grinder still makes the same noise after the repair.",
     "incorrect_repair", "urgent", "phone", "pending_third_party"),
    ("negar.mohammadi", "مبلغ دو بار کسر شده", "برای سفارش آخر دو بار از کارتم برداشت شده است.",
     "billing", "high", "phone", "resolved"),
    ("james.taylor", "Is the blue kettle back in stock?", "I'd like to buy two when it is available.",
     "out_of_stock", "low", "chat", "closed"),
    ("fatima.alsayed", "Poor stitching on the new bag", "The strap came loose after a week.",
     "poor_product_quality", "normal", "social", "open"),
    ("noah.williams", "Invoice address wrong", "Please correct the company name on invoice 8812.",
     "billing", "low", "email", "resolved"),
]


def targets(by_priority):
    return [sd.SlaTarget(priority=p, first_response_seconds=by_priority[p][0], resolution_seconds=by_priority[p][1])
            for p in PRIORITIES]


def configure(desk) -> None:
    for cid, name, zone, hours, holidays in CALENDARS:
        desk.SaveCalendar(sd.SaveCalendarRequest(calendar=sd.Calendar(
            id=cid, name=name, time_zone=zone, holidays=holidays,
            hours=[sd.OpeningHours(day=d, opens=o, closes=c) for d, o, c in hours])), timeout=10)
    for pid, name, tiers, segments, calendar, by_priority in POLICIES:
        desk.SaveSlaPolicy(sd.SaveSlaPolicyRequest(policy=sd.SlaPolicy(
            id=pid, name=name, tiers=tiers, segments=segments, calendar_id=calendar,
            targets=targets(by_priority))), timeout=10)
    for gid, name, categories, channels, escalation in GROUPS:
        desk.SaveGroup(sd.SaveGroupRequest(group=sd.Group(id=gid, name=name, categories=categories,
                                                          channels=channels, escalation_group=escalation)), timeout=10)


def articles(desk) -> int:
    created = 0
    for title, locale, tags, body in ARTICLES:
        found = desk.SearchArticles(sd.SearchArticlesRequest(query=title, locale=locale, include_drafts=True),
                                    timeout=10).hits
        if any(h.article.title == title for h in found):
            continue
        desk.CreateArticle(sd.CreateArticleRequest(article=sd.Article(
            title=title, locale=locale, tags=tags, body=body, status="published")), timeout=10)
        created += 1
    return created


def tickets(desk, contacts) -> int:
    created = 0
    for local, subject, description, category, priority, channel, fate in TICKETS:
        found = contacts.SearchContacts(contacts_pb2.SearchContactsRequest(text=f"{local}@example.com", page_size=1),
                                        timeout=10).contacts
        if not found:
            continue
        contact_id = found[0].id
        mine = desk.ListTickets(sd.ListTicketsRequest(contact_id=contact_id), timeout=10).tickets
        if any(t.subject == subject for t in mine):
            continue
        if fate == "new":     # the delivery team is busy: it waits in the queue
            desk.SetAgentAvailability(sd.SetAgentAvailabilityRequest(agent_id="agent-jonas", available=False), timeout=10)
            desk.SetAgentAvailability(sd.SetAgentAvailabilityRequest(agent_id="agent-neda", available=False), timeout=10)
        t = desk.OpenTicket(sd.OpenTicketRequest(contact_id=contact_id, subject=subject, description=description,
                                                 category=category, priority=priority, channel=channel), timeout=10)
        if fate == "new":
            for agent in ("agent-jonas", "agent-neda"):
                desk.SetAgentAvailability(sd.SetAgentAvailabilityRequest(agent_id=agent, available=True), timeout=10)
        created += 1
        play(desk, t.id, fate)
    return created


def play(desk, ticket_id: str, fate: str) -> None:
    def status(to, reason=""):
        desk.ChangeTicketStatus(sd.ChangeTicketStatusRequest(ticket_id=ticket_id, status=to, pending_reason=reason),
                                timeout=10)

    if fate == "new":
        return
    desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=ticket_id, body="Thank you for writing to us. We are on it."),
                       timeout=10)
    desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=ticket_id, internal=True,
                                               body="Checked the order history; see the carrier's notes."), timeout=10)
    if fate == "pending_customer":
        desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=ticket_id, body="Could you send us a photo of the label?"),
                           timeout=10)
        status("pending", "customer")
    elif fate == "pending_third_party":
        status("pending", "third_party")
    elif fate in ("resolved", "closed"):
        desk.RecordCustomerReply(sd.RecordCustomerReplyRequest(ticket_id=ticket_id, body="Thanks, that solved it!"),
                                 timeout=10)
        status("resolved")
        desk.RecordSatisfaction(sd.RecordSatisfactionRequest(ticket_id=ticket_id, score=5 if fate == "closed" else 4,
                                                             comment="Quick and friendly"), timeout=10)
        if fate == "closed":
            status("closed")


def load(channel) -> str:
    """Everything above over ``channel`` (a support lead's); returns a one-line summary."""
    desk = service_desk_pb2_grpc.ServiceDeskServiceStub(channel)
    contacts = contacts_pb2_grpc.ContactsServiceStub(channel)
    configure(desk)
    new_articles = articles(desk)
    for aid, name, groups in AGENTS:
        desk.SaveAgent(sd.SaveAgentRequest(agent=sd.Agent(id=aid, name=name, groups=groups, available=True)),
                       timeout=10)
    new_tickets = tickets(desk, contacts)
    return (f"service desk: {len(CALENDARS)} calendars, {len(POLICIES)} policies, {len(GROUPS)} groups, "
            f"{len(AGENTS)} agents; {new_articles} articles and {new_tickets} tickets created")


def main() -> int:
    token = devauth.init().mint("demo-loader", ["support_lead"])
    with grpc.insecure_channel(GATEWAY) as plain:
        grpc.channel_ready_future(plain).result(timeout=15)
        print(load(client.authorized(plain, token)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
