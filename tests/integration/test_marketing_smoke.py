from __future__ import annotations
import uuid, time
from support.waiting import wait_for
from crm_common import clock
from crm_common.events import envelope
from marketing.service import MarketingService


def contact(cid, version=1, **kw):
    now = clock.to_iso(clock.now())
    base = {"id": cid, "version": version, "given_name": "Sara", "family_name": "Ahmadi", "display_name": "Sara Ahmadi",
            "emails": [{"address": f"{cid}@example.org", "primary": True}], "phones": [], "tags": [],
            "custom_fields": {}, "consents": {"email": {"granted": True, "source": "t", "at": now}},
            "created_at": now, "updated_at": now, "erased": False}
    base.update(kw)
    return base


def test_smoke(make_config, start_service, rpc, dispatch, mongo_client):
    cfg = make_config("marketing")
    start_service(MarketingService, cfg)
    svc = rpc(cfg).marketing
    send = dispatch(cfg, "contacts")
    seg = svc.create_segment(name="gold", description="", kind="dynamic", rule={"all": [{"field": "tier", "op": "gte", "value": "gold"}]}, idempotency_key=None)
    print(seg)
    cid = f"con_t{uuid.uuid4().hex[:10]}"
    send("contact_created", envelope("contact_created", source="contacts", subject=cid, data={"contact": contact(cid)}))
    wait_for(lambda: svc.get_audience_profile(contact_id=cid)["known"], 10)
    dispatch(cfg, "loyalty")("tier_changed", envelope("tier_changed", source="loyalty", subject=cid, data={"contact_id": cid, "from_tier": "bronze", "to_tier": "gold", "points_earned_12m": 6000, "changed_at": clock.to_iso(clock.now())}))
    prof = wait_for(lambda: (p := svc.get_audience_profile(contact_id=cid))["segments"] and p, 10)
    print(prof)
    print(svc.preview_segment(segment_id=seg["id"], rule=None, sample_size=5))
    print(svc.get_segment(segment_id=seg["id"]))
    wait_for(lambda: svc.get_segment(segment_id=seg["id"])["fill_state"] == "done", 15)
    print(svc.get_segment(segment_id=seg["id"]))
