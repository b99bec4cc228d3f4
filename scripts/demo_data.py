#!/usr/bin/env python3
"""Load believable demo customers into a running CRM, through the public gateway.

Idempotent: a customer who exists already (same email) is skipped, purchases earn
once per order reference, redemptions carry a request id. It calls as an integration
(the role of an import job), with a token signed by the local key (var/auth).
"""
from __future__ import annotations

import os
import random
import sys

import grpc

from crm_gateway import client, devauth
from crm.v1 import common_pb2, contacts_pb2, contacts_pb2_grpc, loyalty_pb2, loyalty_pb2_grpc

import demo_marketing
import demo_sales
import demo_service_desk

GATEWAY = os.environ.get("GATEWAY_ADDR", "127.0.0.1:50051")

# given, family, email local part, phone, locale, city, country, tags, stage, club member?
PEOPLE = [
    ("سارا", "احمدی", "sara.ahmadi", "+98 912 ۳۴۵ ۶۷۸۹", "fa-IR", "Tehran", "IR", ["vip"], "customer", True),
    ("علی", "رضایی", "ali.rezaei", "0098 935 ۱۱۲ ۲۳۳۴", "fa-IR", "Isfahan", "IR", [], "customer", True),
    ("مریم", "حسینی", "maryam.hosseini", "+98 901 222 3344", "fa-IR", "Shiraz", "IR", ["newsletter"], "lead", False),
    ("رضا", "کریمی", "reza.karimi", "+98 912 ۹۸۷ ۶۵۴۳", "fa-IR", "Tabriz", "IR", ["wholesale"], "opportunity", True),
    ("نگار", "محمدی", "negar.mohammadi", "+98 919 555 0101", "fa-IR", "Mashhad", "IR", ["vip"], "evangelist", True),
    ("امیر", "جعفری", "amir.jafari", "+98 936 444 1212", "fa-IR", "Rasht", "IR", [], "subscriber", False),
    ("زهرا", "موسوی", "zahra.mousavi", "+98 910 300 4050", "fa-IR", "Qom", "IR", ["newsletter"], "customer", True),
    ("حسین", "نوری", "hossein.nouri", "+98 917 808 9090", "fa-IR", "Kerman", "IR", [], "marketing_qualified", False),
    ("لیلا", "صادقی", "leila.sadeghi", "+98 938 765 4321", "fa-IR", "Yazd", "IR", ["vip"], "customer", True),
    ("Parisa", "Tehrani", "parisa.tehrani", "+49 30 1234 5678", "de-DE", "Berlin", "DE", [], "customer", True),
    ("Anna", "Schmidt", "anna.schmidt", "+49 89 555 0199", "de-DE", "Munich", "DE", ["b2b"], "sales_qualified", False),
    ("Lukas", "Müller", "lukas.mueller", "+49 40 123 9876", "de-DE", "Hamburg", "DE", [], "customer", True),
    ("Sophie", "Martin", "sophie.martin", "+33 1 42 68 53 00", "fr-FR", "Paris", "FR", ["newsletter"], "customer", True),
    ("Hugo", "Bernard", "hugo.bernard", "+33 4 91 55 11 22", "fr-FR", "Marseille", "FR", [], "lead", False),
    ("Olivia", "Smith", "olivia.smith", "+44 20 7946 0018", "en-GB", "London", "GB", ["vip"], "evangelist", True),
    ("James", "Taylor", "james.taylor", "+44 161 496 0300", "en-GB", "Manchester", "GB", [], "customer", True),
    ("Emma", "Johnson", "emma.johnson", "+1 415 555 0132", "en-US", "San Francisco", "US", ["b2b"], "opportunity", False),
    ("Noah", "Williams", "noah.williams", "+1 212 555 0175", "en-US", "New York", "US", [], "customer", True),
    ("Ava", "Brown", "ava.brown", "+1 312 555 0148", "en-US", "Chicago", "US", ["newsletter"], "subscriber", False),
    ("Liam", "Garcia", "liam.garcia", "+1 305 555 0110", "en-US", "Miami", "US", [], "customer", True),
    ("Sofía", "Hernández", "sofia.hernandez", "+34 91 123 45 67", "es-ES", "Madrid", "ES", ["vip"], "customer", True),
    ("Mateo", "López", "mateo.lopez", "+52 55 1234 5678", "es-MX", "Mexico City", "MX", [], "lead", False),
    ("Giulia", "Rossi", "giulia.rossi", "+39 06 1234 5678", "it-IT", "Rome", "IT", [], "customer", True),
    ("Marco", "Bianchi", "marco.bianchi", "+39 02 8765 4321", "it-IT", "Milan", "IT", ["wholesale"], "customer", True),
    ("Yuki", "Tanaka", "yuki.tanaka", "+81 3 1234 5678", "ja-JP", "Tokyo", "JP", [], "customer", True),
    ("Min-jun", "Kim", "minjun.kim", "+82 2 312 3456", "ko-KR", "Seoul", "KR", ["b2b"], "sales_qualified", False),
    ("Fatima", "Al-Sayed", "fatima.alsayed", "+971 4 555 0123", "ar-AE", "Dubai", "AE", ["vip"], "customer", True),
    ("Omar", "Haddad", "omar.haddad", "+961 1 555 321", "ar-LB", "Beirut", "LB", [], "lead", False),
    ("Aylin", "Yılmaz", "aylin.yilmaz", "+90 212 555 0147", "tr-TR", "Istanbul", "TR", [], "customer", True),
    ("Arjun", "Patel", "arjun.patel", "+91 22 5555 0123", "en-IN", "Mumbai", "IN", ["wholesale"], "customer", True),
    ("Priya", "Sharma", "priya.sharma", "+91 80 5555 0456", "en-IN", "Bengaluru", "IN", [], "subscriber", False),
    ("Lars", "Andersen", "lars.andersen", "+45 32 12 34 56", "da-DK", "Copenhagen", "DK", [], "customer", True),
    ("Ingrid", "Johansson", "ingrid.johansson", "+46 8 123 456 78", "sv-SE", "Stockholm", "SE", ["newsletter"], "customer", True),
    ("Chen", "Wei", "chen.wei", "+86 10 1234 5678", "zh-CN", "Beijing", "CN", [], "opportunity", False),
    ("Kwame", "Mensah", "kwame.mensah", "+233 30 255 0123", "en-GH", "Accra", "GH", [], "customer", True),
    ("Thandiwe", "Nkosi", "thandiwe.nkosi", "+27 21 555 0198", "en-ZA", "Cape Town", "ZA", ["vip"], "customer", True),
]
OWNERS = ["agent-neda", "agent-jonas", "agent-claire"]
INTERACTIONS = [
    ("email", "inbound", "Asked about delivery times for the autumn collection"),
    ("phone", "outbound", "Follow-up call after the last purchase; happy with the product"),
    ("chat", "inbound", "Wanted to change the shipping address of an open order"),
    ("store", "inbound", "Visited the flagship store and tried the new range"),
    ("meeting", "outbound", "Quarterly review of the wholesale agreement"),
]


def main() -> int:
    rnd = random.Random(42)  # the same demo every time
    token = devauth.init().mint("demo-loader", ["integration"])
    with grpc.insecure_channel(GATEWAY) as plain:
        grpc.channel_ready_future(plain).result(timeout=15)
        channel = client.authorized(plain, token)
        contacts = contacts_pb2_grpc.ContactsServiceStub(channel)
        loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
        created = existing = 0
        for n, (given, family, local, phone, locale, city, country, tags, stage, member) in enumerate(PEOPLE):
            contact = contacts_pb2.Contact(
                given_name=given, family_name=family, locale=locale, tags=tags, lifecycle_stage=stage,
                owner=OWNERS[n % len(OWNERS)], birthday=f"19{60 + n % 35}-{1 + n % 12:02d}-{1 + n % 27:02d}",
                emails=[contacts_pb2.Email(address=f"{local}@example.com", label="home", primary=True)],
                phones=[contacts_pb2.Phone(number=phone, label="mobile")],
                address=contacts_pb2.Address(city=city, country=country))
            contact.consents["email"].CopyFrom(contacts_pb2.Consent(granted=rnd.random() < 0.7, source="demo"))
            if member:
                contact.consents["loyalty"].CopyFrom(contacts_pb2.Consent(granted=True, source="demo"))
            try:
                contact_id = contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10).id
                created += 1
                for channel_name, direction, summary in rnd.sample(INTERACTIONS, k=rnd.randint(1, 3)):
                    contacts.LogInteraction(contacts_pb2.LogInteractionRequest(
                        contact_id=contact_id, channel=channel_name, direction=direction, summary=summary), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                contact_id = search_id(contacts, f"{local}@example.com")
                existing += 1
            if member:
                earn_and_redeem(loyalty, contact_id, n, rnd)
        print(f"demo data: {created} customers created, {existing} already there")
        print(demo_sales.load(plain, lambda subject, roles, team: devauth.init().mint(subject, roles, team)))
        print(demo_service_desk.load(client.authorized(plain, devauth.init().mint("demo-loader", ["support_lead"]))))
        print(demo_marketing.load(plain, lambda subject, roles, team: devauth.init().mint(subject, roles, team),
                                  demo_marketing.MAILBOX))
    return 0


def search_id(contacts, email: str) -> str:
    found = contacts.SearchContacts(contacts_pb2.SearchContactsRequest(text=email, page_size=1), timeout=10)
    return found.contacts[0].id


def earn_and_redeem(loyalty, contact_id: str, n: int, rnd: random.Random) -> None:
    enroll = loyalty_pb2.EnrollRequest(contact_id=contact_id)
    loyalty.Enroll(enroll, timeout=10)  # idempotent; the consent event enrols too
    currency = "EUR"
    for k in range(rnd.randint(1, 6)):
        amount = rnd.choice([1_999, 4_550, 12_000, 35_900, 89_000, 250_000, 1_200_000])
        loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(
            contact_id=contact_id, source="pos", source_ref=f"demo-{n:02d}-{k}",
            amount=common_pb2.Money(amount_minor=amount, currency=currency)), timeout=10)
    if n % 3 == 0:
        try:
            loyalty.RedeemPoints(loyalty_pb2.RedeemPointsRequest(
                contact_id=contact_id, points=50, reason="Welcome voucher", idempotency_key=f"demo-redeem-{n:02d}"),
                timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise


if __name__ == "__main__":
    sys.exit(main())
