"""The sales part of the demo: a sales team with territories, leads in every stage, a
pipeline with deals, activities, and orders whose points appear in loyalty by themselves.

Loaded once (it is skipped when the demo's territories exist already), through the
gateway, as the people who would do it: the sales manager sets up the team, each rep
works their own leads and deals, the shop's integration places orders.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf import timestamp_pb2

from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, sales_pb2, sales_pb2_grpc
from crm_gateway import client

REPS = [("agent-neda", "Neda Karimi", "iran", "Asia/Tehran"), ("agent-jonas", "Jonas Keller", "dach", "Europe/Berlin"),
        ("agent-claire", "Claire Dubois", "international", "Europe/Paris")]
TERRITORIES = [("Iran", ["IR"], "iran", 1), ("DACH", ["DE", "AT", "CH"], "dach", 1),
               ("Rest of the world", ["*"], "international", 9)]
# given, family, email, phone, title, company, size, industry, country, channel, source, campaign, fate
LEADS = [
    ("کاوه", "رستمی", "kaveh.rostami@example.ir", "+98 912 410 2030", "مدیر خرید", "فروشگاه‌های آفتاب", 320,
     "retail", "IR", "web_form", "google", "nowruz-sale", "converted"),
    ("شیرین", "نادری", "shirin.naderi@example.ir", "+98 935 221 7788", "بنیان‌گذار", "کافه شیرین", 12,
     "hospitality", "IR", "social", "instagram", "nowruz-sale", "qualified"),
    ("Felix", "Wagner", "felix.wagner@example.de", "+49 30 2200 1100", "Head of IT", "Wagner Logistik", 850,
     "logistics", "DE", "event", "trade-fair", "cebit", "converted"),
    ("Miriam", "Huber", "miriam.huber@example.at", "+43 1 555 0101", "Office Manager", "Huber & Partner", 40,
     "finance", "AT", "email", "newsletter", "spring", "working"),
    ("Luca", "Meier", "luca.meier@example.ch", "", "Student", "", 0, "", "CH", "web_form", "google", "spring",
     "disqualified"),
    ("Chloé", "Lefèvre", "chloe.lefevre@example.fr", "+33 6 12 34 56 78", "Directrice commerciale", "Maison Lefèvre",
     120, "retail", "FR", "referral", "customer-referral", "", "qualified"),
    ("Ethan", "Clark", "ethan.clark@example.com", "+1 646 555 0190", "VP Operations", "Clark Foods", 2000,
     "manufacturing", "US", "web_form", "linkedin", "enterprise", "new"),
    ("Aiko", "Sato", "aiko.sato@example.jp", "", "Buyer", "Sato Trading", 60, "retail", "JP", "chat", "website", "",
     "new"),
]
# a demo customer's email, deal name, amount (EUR minor), stage or outcome, months to close
DEALS = [
    ("sara.ahmadi@example.com", "Corporate gift boxes", 1_850_000, "proposal", 1),
    ("reza.karimi@example.com", "Wholesale spring order", 4_200_000, "negotiation", 0),
    ("anna.schmidt@example.com", "Store fit-out", 9_500_000, "needs_analysis", 2),
    ("lukas.mueller@example.com", "Loyalty cards pilot", 650_000, "won", 0),
    ("sophie.martin@example.com", "Seasonal catalogue", 1_200_000, "lost", 0),
    ("emma.johnson@example.com", "US distribution", 12_000_000, "qualification", 3),
]
ROAD = ["qualification", "needs_analysis", "proposal", "negotiation"]
# a demo customer's email, order reference, lines (sku, name, qty, unit EUR minor), last status
ORDERS = [
    ("sara.ahmadi@example.com", "web-5001", [("TEA-GRN", "Green tea 250 g", 3, 1_290), ("POT-CER", "Teapot", 1, 5_900)],
     "delivered"),
    ("ali.rezaei@example.com", "web-5002", [("SAF-1G", "Saffron 1 g", 10, 990)], "paid"),
    ("negar.mohammadi@example.com", "store-771", [("SCARF-S", "Silk scarf", 2, 8_900)], "shipped"),
    ("olivia.smith@example.com", "web-5003", [("BAG-LTH", "Leather bag", 1, 24_900)], "paid"),
    ("noah.williams@example.com", "web-5004", [("TEA-BLK", "Black tea 500 g", 4, 1_590)], "refunded"),
    ("lukas.mueller@example.com", "partner-88", [("CARD-PLT", "Loyalty cards (pilot)", 500, 1_300)], "paid"),
    ("giulia.rossi@example.com", "web-5005", [("DATE-BOX", "Date box", 2, 2_490)], "placed"),
]


def load(channel: grpc.Channel, mint) -> str:
    """``mint(subject, roles, team)`` makes tokens of the local identity provider."""
    def stub(subject, roles, team=""):
        return sales_pb2_grpc.SalesServiceStub(client.authorized(channel, mint(subject, roles, team)))

    admin = stub("demo-admin", ["admin"])
    if admin.ListTerritories(sales_pb2.ListTerritoriesRequest(), timeout=10).territories:
        return "sales demo: already loaded"
    for rep_id, name, team, zone in REPS:
        admin.UpsertSalesRep(sales_pb2.UpsertSalesRepRequest(rep_id=rep_id, display_name=name, team=team,
                                                             lead_capacity=25, time_zone=zone), timeout=10)
    for name, countries, team, rank in TERRITORIES:
        admin.SetTerritory(sales_pb2.SetTerritoryRequest(name=name, countries=countries, team=team, rank=rank),
                           timeout=10)
    leads = _leads(admin)
    contacts = contacts_pb2_grpc.ContactsServiceStub(client.authorized(channel, mint("demo-admin", ["admin"], "")))
    by_email = {}
    for email, *_ in DEALS + ORDERS:
        found = contacts.SearchContacts(contacts_pb2.SearchContactsRequest(text=email, page_size=1), timeout=10)
        if found.contacts:
            by_email[email] = found.contacts[0]
    deals = _deals(admin, by_email)
    shop = stub("demo-shop", ["integration"])
    orders = _orders(shop, by_email)
    _activities(admin, by_email)
    return f"sales demo: {len(REPS)} reps, {leads} leads, {deals} deals, {orders} orders"


def _leads(admin) -> int:
    for (given, family, email, phone, title, company, size, industry, country, channel, source, campaign,
         fate) in LEADS:
        lead = admin.CaptureLead(sales_pb2.CaptureLeadRequest(
            lead=sales_pb2.Lead(given_name=given, family_name=family, email=email, phone=phone, job_title=title,
                                company_name=company, company_size=size, industry=industry, country=country),
            channel=channel, attribution=sales_pb2.Attribution(source=source, campaign=campaign)), timeout=10).lead
        if fate in ("working", "qualified", "converted"):
            admin.TrackLeadActivity(sales_pb2.TrackLeadActivityRequest(lead_id=lead.id, kind="web_visit",
                                                                       detail="pricing page"), timeout=10)
        if fate in ("qualified", "converted"):
            admin.QualifyLead(sales_pb2.QualifyLeadRequest(lead_id=lead.id), timeout=10)
        if fate == "converted":
            admin.ConvertLead(sales_pb2.ConvertLeadRequest(
                lead_id=lead.id, create_deal=True, deal=sales_pb2.DealDraft(
                    name=f"{company}: first order", amount=common_pb2.Money(amount_minor=size * 10_000,
                                                                            currency="EUR"))), timeout=15)
        if fate == "disqualified":
            admin.DisqualifyLead(sales_pb2.DisqualifyLeadRequest(lead_id=lead.id, reason="no_budget",
                                                                 note="student project"), timeout=10)
    return len(LEADS)


def _deals(admin, by_email) -> int:
    today = datetime.now(timezone.utc)
    made = 0
    for email, name, amount, stage, months in DEALS:
        contact = by_email.get(email)
        if contact is None:
            continue
        close = (today + timedelta(days=30 * months)).strftime("%Y-%m-%d")
        deal = admin.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
            name=name, contact_id=contact.id, amount=common_pb2.Money(amount_minor=amount, currency="EUR"),
            expected_close_date=close, owner=contact.owner)), timeout=10)
        target = stage if stage in ROAD else "negotiation"
        for step in ROAD[1:ROAD.index(target) + 1]:
            admin.MoveDeal(sales_pb2.MoveDealRequest(deal_id=deal.id, stage_id=step), timeout=10)
        if stage == "won":
            admin.WinDeal(sales_pb2.WinDealRequest(deal_id=deal.id, note="signed"), timeout=10)
        elif stage == "lost":
            admin.LoseDeal(sales_pb2.LoseDealRequest(deal_id=deal.id, reason="price",
                                                     note="chose a cheaper printer"), timeout=10)
        made += 1
    return made


def _orders(shop, by_email) -> int:
    made = 0
    for email, ref, lines, status in ORDERS:
        contact = by_email.get(email)
        if contact is None:
            continue
        order = shop.PlaceOrder(sales_pb2.PlaceOrderRequest(
            contact_id=contact.id, external_ref=ref, channel=ref.split("-")[0] if ref.startswith(("web", "store"))
            else "partner", currency="EUR",
            lines=[sales_pb2.OrderLine(sku=sku, name=name, quantity=qty,
                                       unit_price=common_pb2.Money(amount_minor=price, currency="EUR"))
                   for sku, name, qty, price in lines]), timeout=10)
        steps = {"placed": [], "paid": ["pay"], "shipped": ["pay", "ship"], "delivered": ["pay", "ship", "deliver"],
                 "refunded": ["pay", "refund"]}[status]
        for step in steps:
            if step == "pay":
                shop.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id, payment_ref=f"psp-{ref}"), timeout=10)
            elif step == "ship":
                shop.ShipOrder(sales_pb2.ShipOrderRequest(order_id=order.id, carrier="Post", tracking_ref=f"T{ref}"),
                               timeout=10)
            elif step == "deliver":
                shop.DeliverOrder(sales_pb2.DeliverOrderRequest(order_id=order.id), timeout=10)
            else:
                shop.RefundOrder(sales_pb2.RefundOrderRequest(order_id=order.id, reason="arrived damaged"),
                                 timeout=10)
        made += 1
    return made


def _activities(admin, by_email) -> None:
    now = datetime.now(timezone.utc)
    plans = [("sara.ahmadi@example.com", "call", "Call about the gift boxes", -timedelta(hours=3)),
             ("reza.karimi@example.com", "meeting", "Negotiation meeting", timedelta(hours=5)),
             ("anna.schmidt@example.com", "task", "Send the store fit-out proposal", timedelta(days=2))]
    for email, kind, subject, delta in plans:
        contact = by_email.get(email)
        if contact is None:
            continue
        due = timestamp_pb2.Timestamp()
        due.FromDatetime(now + delta)
        admin.CreateActivity(sales_pb2.CreateActivityRequest(activity=sales_pb2.Activity(
            kind=kind, subject=subject, due_at=due, owner=contact.owner,
            regarding=sales_pb2.Regarding(type="contact", id=contact.id))), timeout=10)
