from __future__ import annotations
import socket, subprocess, sys, time, uuid
from pathlib import Path
import pytest
from support.waiting import wait_for
from crm_common import clock
from crm_common.events import envelope
from marketing.service import MarketingService

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from mail_sink import Mailbox  # noqa

def free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@pytest.fixture
def sink(tmp_path):
    smtp, http = free(), free()
    p = subprocess.Popen([sys.executable, str(ROOT / "scripts/mail_sink.py"), "serve", "--dir", str(tmp_path), "--smtp-port", str(smtp), "--http-port", str(http)])
    wait_for(lambda: socket.create_connection(("127.0.0.1", smtp), 1), 10, retry_on=(OSError,))
    yield smtp, http, Mailbox(tmp_path)
    p.terminate(); p.wait()

def contact(cid, version=1, **kw):
    now = clock.to_iso(clock.now())
    base = {"id": cid, "version": version, "given_name": "Sara", "family_name": "Ahmadi", "display_name": "Sara Ahmadi",
            "emails": [{"address": f"{cid}@example.org", "primary": True}], "phones": [], "tags": ["vip"],
            "custom_fields": {}, "consents": {"email": {"granted": True, "source": "t", "at": now}},
            "created_at": now, "updated_at": now, "erased": False}
    base.update(kw)
    return base

def test_campaign(make_config, start_service, rpc, dispatch, sink):
    smtp, http, box = sink
    cfg = make_config("marketing", MARKETING_SMTP_URL=f"smtp://127.0.0.1:{smtp}", MARKETING_SMS_URL=f"http://127.0.0.1:{http}/sms", MARKETING_SEND_RETRY_WAIT_SECONDS="0.01")
    start_service(MarketingService, cfg)
    svc = rpc(cfg).marketing
    send = dispatch(cfg, "contacts")
    seg = svc.create_segment(name="vips", description="", kind="dynamic", rule={"field": "tags", "op": "contains_any", "value": ["vip"]}, idempotency_key=None)
    cids = [f"con_t{uuid.uuid4().hex[:10]}" for _ in range(5)]
    for c in cids:
        send("contact_created", envelope("contact_created", source="contacts", subject=c, data={"contact": contact(c)}))
    wait_for(lambda: svc.preview_segment(segment_id=seg["id"], rule=None, sample_size=0)["count"] == 5, 10)
    wait_for(lambda: svc.get_segment(segment_id=seg["id"])["fill_state"] == "done", 10)
    camp = svc.create_campaign(name="Spring", channel="email", email={"subject": "Hi {{ first_name }}", "body_text": "Hello {{ first_name }}, see https://shop.example/spring", "body_html": "<p>Hello {{ first_name }}</p><a href=\"https://shop.example/spring\">Shop</a>"}, sms=None, defaults={}, include_segment_ids=[seg["id"]], exclude_segment_ids=[], schedule_at=None, budget=None, cost_per_message=None, idempotency_key=None)
    print(svc.dry_run_campaign(campaign_id=camp["id"], decision=None, page_size=0, page_token=""))
    print(svc.send_campaign(campaign_id=camp["id"], idempotency_key=None))
    wait_for(lambda: svc.get_campaign_progress(campaign_id=camp["id"])["state"] == "completed", 30)
    print(svc.get_campaign_progress(campaign_id=camp["id"]))
    mails = box.emails()
    print(len(mails), mails[0]["subject"], Mailbox.text(mails[0]["message"])[:600])
    print(Mailbox.html(mails[0]["message"])[:800])
    msgs = svc.list_campaign_messages(campaign_id=camp["id"], status=None, page_size=0, page_token="")
    print(msgs["messages"][0])
    import pymongo
    from crm_common import config
    db = pymongo.MongoClient(config.mongodb_url())[cfg["MONGODB_DATABASE"]]
    for b in db.batches.find({}): print({k: v for k, v in b.items() if k != "messages"})
