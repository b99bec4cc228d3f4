"""`make demo`'s loader against a private stack of its own (the whole demo, the service
desk's policies and sales' activities due in the past among it, must not reach the other
tests' stack): it loads (customers, loyalty, sales,
the service desk, marketing), tells the marketing story (segments by value and
expectation, one that follows the service desk's tickets, a campaign sent, opened and
clicked), and a second run changes nothing."""
from __future__ import annotations

import grpc
import pytest

from crm.v1 import marketing_pb2, marketing_pb2_grpc
from crm_gateway import client
from helpers import wait_for
from support.infra import drop_vhost, fresh_vhost

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_stack(start_stack):
    amqp_uri, vhost = fresh_vhost()
    try:
        with start_stack(amqp_uri) as st:
            yield st
    finally:
        drop_vhost(vhost)


@pytest.fixture
def channel(demo_stack):
    with grpc.insecure_channel(demo_stack.gateway_addr) as ch:
        yield client.authorized(ch, demo_stack.token("admin", subject="e2e-admin"))


def test_the_demo_loads_once_with_its_segments_and_a_campaign_opened_and_clicked(demo_stack, channel, monkeypatch,
                                                                                capsys):
    stack = demo_stack
    import demo_data
    import demo_marketing

    monkeypatch.setattr(demo_data, "GATEWAY", stack.gateway_addr)
    monkeypatch.setattr(demo_data.devauth, "init", lambda *args, **kwargs: stack.auth)
    monkeypatch.setattr(demo_marketing, "MAILBOX", stack.mailbox)
    assert demo_data.main() == 0
    marketing = marketing_pb2_grpc.MarketingServiceStub(channel)
    segments = {s.name: s for s in marketing.ListSegments(marketing_pb2.ListSegmentsRequest(page_size=500),
                                                          timeout=10).segments}
    assert {"Gold customers who prefer SMS", "Lapsed high-value customers", "Newsletter readers"} <= set(segments)
    wait_for(lambda: marketing.ListSegmentMembers(marketing_pb2.ListSegmentMembersRequest(   # the demo's open tickets
        segment_id=segments["Waiting on support"].id, page_size=1), timeout=10).members, 30)
    [campaign] = [c for c in marketing.ListCampaigns(marketing_pb2.ListCampaignsRequest(page_size=500),
                                                     timeout=10).campaigns if c.name == demo_marketing.CAMPAIGN]
    assert campaign.state == "completed"
    messages = marketing.ListCampaignMessages(marketing_pb2.ListCampaignMessagesRequest(
        campaign_id=campaign.id, status="sent", page_size=500), timeout=10).messages
    assert messages and any(m.opened_at.seconds for m in messages) and any(m.clicked_links for m in messages)
    capsys.readouterr()
    assert demo_data.main() == 0
    assert "marketing demo: already loaded" in capsys.readouterr().out
