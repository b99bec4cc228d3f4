"""Loyalty rules (services/loyalty/loyalty/domain.py): pure, no I/O."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crm_common.errors import FailedPrecondition, InvalidArgument
from crm_common.ids import derived_id
from crm_common.money import Money
from loyalty import domain as d

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CID = "con_1"
POLICY = d.Policy(ttl=timedelta(days=365))


def member(**kw) -> d.MemberState:
    return d.enroll(CID, T0).state if not kw else d.MemberState(member_id=d.member_id_for(CID), enrolled_at=T0, **kw)


def eur(units: int) -> Money:
    return Money(amount_minor=units * 100, currency="EUR")


def earn(state, units, ref, at=T0, policy=POLICY, source="shop"):
    return d.earn(state, CID, at, policy, source=source, source_ref=ref, amount=eur(units))


def redeem(state, points, at=T0, request_id=None, policy=POLICY):
    entry_id = d.redeem_entry_id(CID, request_id)
    return d.redeem(state, CID, at, policy, points=points, reason="gift", request_id=request_id, entry_id=entry_id)


def check_consistent(state: d.MemberState):
    assert state.balance == sum(lot["remaining"] for lot in state.lots)
    assert state.balance >= 0 and state.owed >= 0
    assert state.owed == 0 or state.balance == 0     # what is owed is owed only by an empty balance


# -- tiers and earning rule -----------------------------------------------------------------

@pytest.mark.parametrize("points,tier", [(0, "bronze"), (999, "bronze"), (1000, "silver"), (4999, "silver"),
                                         (5000, "gold"), (19999, "gold"), (20000, "platinum"), (10**9, "platinum")])
def test_tier_thresholds(points, tier):
    assert d.tier_for(points) == tier


@pytest.mark.parametrize("amount,tier,points", [
    (100, "bronze", 1), (199, "bronze", 1), (99, "bronze", 0), (12345, "bronze", 123),
    (12345, "silver", 153),   # 123 * 1.25 = 153.75 -> 153
    (12345, "gold", 184),     # 123 * 1.5 = 184.5 -> 184
    (12345, "platinum", 246), (300, "silver", 3),  # 3.75 -> 3
])
def test_points_for_purchase(amount, tier, points):
    assert d.points_for_purchase(amount, tier) == points


@pytest.mark.parametrize("amount", [0, -100])
def test_points_for_purchase_requires_positive_amount(amount):
    with pytest.raises(InvalidArgument) as err:
        d.points_for_purchase(amount, "bronze")
    assert err.value.violations[0]["field"] == "amount.amount_minor"


def test_ids_are_deterministic():
    assert d.member_id_for(CID) == derived_id("mem", CID)
    assert d.earn_entry_id("shop", "o1") == derived_id("led", "earn", "shop", "o1") != d.earn_entry_id("shop", "o2")
    assert d.redeem_entry_id(CID, "r1") == d.redeem_entry_id(CID, "r1")
    assert d.redeem_entry_id(CID, None) != d.redeem_entry_id(CID, None)
    assert d.expire_entry_id("led_x") == derived_id("led", "expire", "led_x")


# -- enrol / earn -----------------------------------------------------------------------------

def test_enroll_starts_active_bronze_empty():
    change = d.enroll(CID, T0)
    assert change.enrolled and not change.is_noop
    st = change.state
    assert (st.status, st.tier, st.balance, st.lots, st.member_id) == ("active", "bronze", 0, [], d.member_id_for(CID))


def test_earn_creates_lot_and_entry():
    change = earn(member(), 250, "o1")
    st = change.state
    assert st.balance == 250
    [lot] = st.lots
    assert lot["points"] == lot["remaining"] == 250
    assert lot["expires_at"] == T0 + timedelta(days=365)
    [entry] = change.entries
    assert entry["_id"] == change.result_entry_id == d.earn_entry_id("shop", "o1")
    assert (entry["kind"], entry["points"], entry["balance_after"], entry["seq"]) == ("earn", 250, 250, 1)
    assert entry["amount"] == {"amount_minor": 25000, "currency": "EUR"}
    check_consistent(st)


def test_earn_same_purchase_twice_is_a_duplicate():
    st = earn(member(), 10, "o1").state
    again = earn(st, 99, "o1")
    assert again.duplicate_of == d.earn_entry_id("shop", "o1")
    assert again.is_noop and again.state.balance == 10


def test_earn_does_not_mutate_input_state():
    st = member()
    earn(st, 10, "o1")
    assert st.balance == 0 and st.lots == []


def test_earn_uses_tier_before_the_purchase_and_tier_moves_up():
    st = earn(member(), 999, "o1").state
    assert st.tier == "bronze"
    change = earn(st, 100, "o2")  # bronze multiplier for this purchase
    assert change.entries[0]["points"] == 100
    assert change.tier_changed and (change.tier_from, change.state.tier) == ("bronze", "silver")
    nxt = earn(change.state, 100, "o3")
    assert nxt.entries[0]["points"] == 125 and not nxt.tier_changed


def test_opted_out_member_cannot_earn_but_duplicate_still_answers():
    st = earn(member(), 10, "o1").state
    st = d.set_consent(st, False, T0).state
    with pytest.raises(FailedPrecondition):
        earn(st, 10, "o2")
    assert earn(st, 10, "o1").duplicate_of


def test_zero_point_purchase_is_recorded():
    change = d.earn(member(), CID, T0, POLICY, source="shop", source_ref="tiny", amount=Money(amount_minor=99, currency="EUR"))
    assert change.entries[0]["points"] == 0 and change.state.balance == 0


# -- redeem -----------------------------------------------------------------------------------

def test_redeem_consumes_oldest_lots_first():
    st = earn(member(), 10, "a", at=T0).state
    st = earn(st, 20, "b", at=T0 + timedelta(days=1)).state
    change = redeem(st, 15, at=T0 + timedelta(days=2))
    rem = {lot["source_ref"]: lot["remaining"] for lot in change.state.lots}
    assert rem == {"a": 0, "b": 15}
    [entry] = change.entries
    assert entry["points"] == -15 and entry["balance_after"] == 15
    assert entry["lots"] == [{"lot_id": d.earn_entry_id("shop", "a"), "points": 10},
                             {"lot_id": d.earn_entry_id("shop", "b"), "points": 5}]
    check_consistent(change.state)


def test_redeem_more_than_balance_fails_with_message():
    st = earn(member(), 10, "a").state
    with pytest.raises(FailedPrecondition) as err:
        redeem(st, 11)
    assert str(err.value) == "insufficient points: balance 10, requested 11"
    assert err.value.details == {"balance": 10, "requested": 11}


def test_redeem_exact_balance_to_zero():
    st = earn(member(), 10, "a").state
    assert redeem(st, 10).state.balance == 0


@pytest.mark.parametrize("points", [0, -5])
def test_redeem_requires_positive_points(points):
    with pytest.raises(InvalidArgument):
        redeem(earn(member(), 10, "a").state, points)


def test_redeem_with_request_id_is_idempotent():
    st = earn(member(), 10, "a").state
    first = redeem(st, 4, request_id="r1")
    again = redeem(first.state, 4, request_id="r1")
    assert again.duplicate_of == first.result_entry_id == d.redeem_entry_id(CID, "r1")
    assert again.is_noop and again.state.balance == 6


def test_recent_requests_are_bounded():
    st = earn(member(), 1000, "a").state
    for i in range(d.RECENT_REQUESTS_KEPT + 5):
        st = redeem(st, 1, request_id=f"r{i}").state
    assert len(st.recent_requests) == d.RECENT_REQUESTS_KEPT
    assert d.find_request(st, f"r{d.RECENT_REQUESTS_KEPT + 4}") and d.find_request(st, "r0") is None


def test_redeem_never_spends_points_past_expiry():
    policy = d.Policy(ttl=timedelta(days=30))
    st = earn(member(), 10, "old", at=T0, policy=policy).state
    st = earn(st, 5, "new", at=T0 + timedelta(days=20), policy=policy).state
    later = T0 + timedelta(days=31)
    with pytest.raises(FailedPrecondition) as err:
        redeem(st, 6, at=later, policy=policy)
    assert "balance 5" in str(err.value)
    change = redeem(st, 5, at=later, policy=policy)
    assert [e["kind"] for e in change.entries] == ["expire", "redeem"]
    assert [e["balance_after"] for e in change.entries] == [5, 0]
    assert [e["seq"] for e in change.entries] == [3, 4]


# -- expiry, tiers going down, pruning --------------------------------------------------------

def test_review_expires_due_lots_oldest_first_and_only_remaining():
    policy = d.Policy(ttl=timedelta(days=10))
    st = earn(member(), 10, "a", at=T0, policy=policy).state
    st = earn(st, 20, "b", at=T0 + timedelta(days=5), policy=policy).state
    st = redeem(st, 4, at=T0 + timedelta(days=6), policy=policy).state  # a: 6 left
    change = d.review(st, CID, T0 + timedelta(days=11), policy)
    [entry] = change.entries
    assert entry["_id"] == d.expire_entry_id(d.earn_entry_id("shop", "a"))
    assert (entry["kind"], entry["points"], entry["balance_after"]) == ("expire", -6, 20)
    check_consistent(change.state)
    nothing = d.review(change.state, CID, T0 + timedelta(days=12), policy)
    assert nothing.is_noop
    both = d.review(st, CID, T0 + timedelta(days=16), policy)
    assert [e["points"] for e in both.entries] == [-6, -20] and both.state.balance == 0


def test_expiry_boundary_is_inclusive():
    policy = d.Policy(ttl=timedelta(seconds=2))
    st = earn(member(), 3, "a", at=T0, policy=policy).state
    assert d.review(st, CID, T0 + timedelta(seconds=1), policy).is_noop
    assert d.review(st, CID, T0 + timedelta(seconds=2), policy).state.balance == 0


def test_tier_goes_down_when_earnings_leave_the_window():
    st = earn(member(), 1200, "big", at=T0).state
    assert st.tier == "silver"
    policy = POLICY
    still = d.review(st, CID, T0 + timedelta(days=364), policy)
    assert not still.tier_changed
    later = T0 + timedelta(days=365, seconds=1)
    change = d.review(st, CID, later, policy)
    assert change.tier_changed and change.state.tier == "bronze" and change.tier_from == "silver"


def test_spent_lots_are_pruned_after_retention_but_kept_for_the_window():
    st = earn(member(), 10, "a", at=T0).state
    st = redeem(st, 10, at=T0).state
    assert len(d.review(st, CID, T0 + timedelta(days=300), POLICY).state.lots) == 1
    assert d.review(st, CID, T0 + timedelta(days=366), POLICY).state.lots == []


def test_retention_is_at_least_the_tier_window():
    assert d.Policy(ttl=timedelta(seconds=1)).retention == d.TIER_WINDOW
    assert d.Policy(ttl=timedelta(days=800)).retention == timedelta(days=800)


def test_points_earned_12m_counts_only_the_window():
    st = earn(member(), 100, "a", at=T0).state
    st = earn(st, 50, "b", at=T0 + timedelta(days=200)).state
    assert d.points_earned_12m(st.lots, T0 + timedelta(days=201)) == 150
    assert d.points_earned_12m(st.lots, T0 + timedelta(days=366)) == 50


def test_next_due_and_next_expiry():
    policy = d.Policy(ttl=timedelta(days=10))
    st = earn(member(), 10, "a", at=T0, policy=policy).state
    st = earn(st, 5, "b", at=T0 + timedelta(days=1), policy=policy).state
    assert d.next_due(st, T0 + timedelta(days=2)) == T0 + timedelta(days=3)  # heartbeat first
    assert d.next_due(st, T0 + timedelta(days=9, hours=12)) == T0 + timedelta(days=10)
    assert d.next_expiry(st) == {"points": 10, "at": T0 + timedelta(days=10)}
    empty = member()
    assert d.next_due(empty, T0) == T0 + d.REVIEW_HEARTBEAT
    assert d.next_expiry(empty) is None


def test_next_due_includes_tier_window_above_bronze():
    policy = d.Policy(ttl=timedelta(days=800))
    st = earn(member(), 1000, "a", at=T0, policy=policy).state
    st = redeem(st, 1000, at=T0, policy=policy).state
    assert st.tier == "silver"
    now = T0 + timedelta(days=364, hours=12)
    assert d.next_due(st, now) == T0 + d.TIER_WINDOW


# -- consent ------------------------------------------------------------------------------------

def test_consent_revoked_keeps_points_and_granted_reactivates():
    st = earn(member(), 10, "a").state
    out = d.set_consent(st, False, T0 + timedelta(hours=1))
    assert out.status_changed and out.state.status == "opted_out" and out.state.balance == 10
    back = d.set_consent(out.state, True, T0 + timedelta(hours=2))
    assert back.status_changed and back.state.status == "active"


def test_older_consent_decision_is_ignored():
    st = d.set_consent(member(), False, T0 + timedelta(hours=2)).state
    stale = d.set_consent(st, True, T0 + timedelta(hours=1))
    assert stale.is_noop and stale.state.status == "opted_out"


def test_same_consent_again_is_noop():
    assert d.set_consent(member(), True, T0).is_noop


def test_state_round_trips_through_document():
    st = earn(member(), 10, "a").state
    st = redeem(st, 3, request_id="r").state
    again = d.MemberState.from_doc(st.to_doc())
    assert again == st


# -- changes applied together, and taken back ------------------------------------------------

def test_changes_combine_into_one_in_order():
    st = earn(member(), 900, "a").state                       # 900 points, bronze
    first = earn(st, 200, "b")                                # -> silver
    second = redeem(first.state, 50)
    both = d.combine([first, second])
    assert both.state is second.state and both.entries == first.entries + second.entries
    assert both.tier_from == "bronze" and both.tier_changed and not both.is_noop
    check_consistent(both.state)


def test_void_takes_back_an_earn_and_a_redemption_exactly():
    st = earn(member(), 100, "a").state
    earned = earn(st, 40, "b")
    voided = d.void(earned.state, CID, T0, POLICY, earned.entries)
    assert voided.state.balance == 100 and [lot["lot_id"] for lot in voided.state.lots] == [st.lots[0]["lot_id"]]
    assert voided.voided and not voided.entries and not voided.is_noop
    spent = redeem(st, 30, request_id="r1")
    back = d.void(spent.state, CID, T0, POLICY, spent.entries)
    assert back.state.balance == 100 and back.state.lots == st.lots and back.state.recent_requests == []
    check_consistent(back.state)


def test_a_collided_change_answers_with_the_entry_that_exists():
    st = earn(member(), 100, "a").state
    change = earn(st, 10, "b")
    answer = d.collided(st, change, change.result_entry_id)
    assert answer.duplicate_of == change.result_entry_id and answer.state.balance == 100 and answer.is_noop


def test_an_earn_that_would_take_the_balance_over_the_maximum_is_refused_and_changes_nothing():
    state = earn(member(), 1000, "r1").state
    rich = d.MemberState(**{**state.__dict__, "balance": d.MAX_BALANCE - 5,
                            "lots": [{**state.lots[0], "points": d.MAX_BALANCE - 5, "remaining": d.MAX_BALANCE - 5}]})
    assert earn(rich, 2, "r2").state.balance == d.MAX_BALANCE - 1   # platinum by then: 2 x 2
    with pytest.raises(FailedPrecondition, match="over the most a member may hold"):
        earn(rich, 3, "r3")
    assert rich.balance == d.MAX_BALANCE - 5


@pytest.mark.parametrize("minor", [10**15 + 1, -(10**15) - 1, 2**63 - 1])
def test_money_beyond_the_largest_amount_is_invalid_naming_the_field(minor):
    with pytest.raises(InvalidArgument) as err:
        Money.from_wire({"amount_minor": minor, "currency": "EUR"})
    assert err.value.violations[0]["field"] == "amount.amount_minor"
    assert Money.from_wire({"amount_minor": 10**15, "currency": "EUR"}).amount_minor == 10**15


# -- orders refunded: reversal, points owed, settlement ------------------------------------------

def refund(state, ref, at=T0, policy=POLICY, source="shop"):
    return d.reverse(state, CID, at, policy, source=source, source_ref=ref, reason=f"order {ref} refunded")


class Ledger:
    """The entries a sequence of changes appends, checked against the state after each."""

    def __init__(self):
        self.entries: list[dict] = []

    def __call__(self, change: d.Change) -> d.MemberState:
        self.entries += change.entries
        st = change.state
        check_consistent(st)
        assert sum(e["points"] for e in self.entries) == st.balance
        assert sum(e["owed"] for e in self.entries) == st.owed
        assert [e["seq"] for e in self.entries] == list(range(1, len(self.entries) + 1))
        if self.entries:
            assert (self.entries[-1]["balance_after"], self.entries[-1]["owed_after"]) == (st.balance, st.owed)
        return st


def test_a_refund_takes_back_all_the_points_of_the_order():
    ledger = Ledger()
    st = ledger(earn(member(), 100, "o1"))
    st = ledger(earn(st, 40, "o2"))
    change = refund(st, "o1")
    st = ledger(change)
    [entry] = change.entries
    assert entry["_id"] == change.result_entry_id == d.reverse_entry_id(d.earn_entry_id("shop", "o1"))
    assert (entry["kind"], entry["points"], entry["owed"], entry["balance_after"]) == ("reverse", -100, 0, 40)
    assert (entry["source"], entry["source_ref"], entry["reason"]) == ("shop", "o1", "order o1 refunded")
    assert entry["lots"] == [{"lot_id": d.earn_entry_id("shop", "o1"), "points": 100}]
    assert st.owed == 0 and {lot["source_ref"]: lot["remaining"] for lot in st.lots} == {"o1": 0, "o2": 40}


def test_the_orders_own_points_go_first_then_the_oldest():
    days = [T0 + timedelta(days=i) for i in range(6)]
    st = earn(member(), 30, "old", at=days[0]).state
    st = earn(st, 50, "o1", at=days[1]).state
    st = earn(st, 20, "a", at=days[2]).state
    st = earn(st, 30, "b", at=days[3]).state
    untouched = refund(st, "o1", at=days[4])                      # o1 unspent: only its own points go
    assert {lot["source_ref"]: lot["remaining"] for lot in untouched.state.lots} == {"old": 30, "o1": 0, "a": 20,
                                                                                     "b": 30}
    st = redeem(st, 70, at=days[4]).state                         # old: 0, o1: 10 left
    change = refund(st, "o1", at=days[5])
    lot = d.earn_entry_id
    assert change.entries[0]["lots"] == [{"lot_id": lot("shop", "o1"), "points": 10},
                                         {"lot_id": lot("shop", "a"), "points": 20},
                                         {"lot_id": lot("shop", "b"), "points": 20}]
    assert {lot["source_ref"]: lot["remaining"] for lot in change.state.lots} == {"old": 0, "o1": 0, "a": 0, "b": 10}
    assert (change.state.balance, change.state.owed) == (10, 0)
    check_consistent(change.state)


def test_a_refund_of_points_partly_spent_leaves_zero_and_the_rest_owed():
    ledger = Ledger()
    st = ledger(earn(member(), 100, "o1"))
    st = ledger(redeem(st, 70))
    change = refund(st, "o1")
    st = ledger(change)
    [entry] = change.entries
    assert (entry["points"], entry["owed"], entry["balance_after"], entry["owed_after"]) == (-30, 70, 0, 70)
    assert (st.balance, st.owed) == (0, 70)


def test_a_refund_with_nothing_left_owes_everything():
    ledger = Ledger()
    st = ledger(earn(member(), 100, "o1"))
    st = ledger(redeem(st, 100))
    change = refund(st, "o1")
    st = ledger(change)
    assert (change.entries[0]["points"], change.entries[0]["lots"], st.owed) == (0, [], 100)


def test_a_later_earn_settles_what_is_owed_first():
    ledger = Ledger()
    st = ledger(earn(member(), 100, "o1"))
    st = ledger(redeem(st, 70))
    st = ledger(refund(st, "o1"))                       # 0 and 70 owed
    change = earn(st, 100, "o2")
    st = ledger(change)
    earned, settled = change.entries
    assert (earned["kind"], earned["points"], earned["balance_after"]) == ("earn", 100, 100)
    assert settled["_id"] == d.settle_entry_id(earned["_id"])
    assert (settled["kind"], settled["points"], settled["owed"]) == ("settle", -70, -70)
    assert (settled["balance_after"], settled["owed_after"], settled["source_ref"]) == (30, 0, "o2")
    assert settled["lots"] == [{"lot_id": earned["_id"], "points": 70}]
    assert change.result_entry_id == earned["_id"]
    assert (st.balance, st.owed) == (30, 0)
    nothing_owed = earn(st, 10, "o3")
    assert [e["kind"] for e in nothing_owed.entries] == ["earn"]


def test_owed_larger_than_a_later_earn_is_settled_by_several():
    ledger = Ledger()
    st = ledger(earn(member(), 500, "big"))
    st = ledger(redeem(st, 500))
    st = ledger(refund(st, "big"))                      # 500 owed
    for ref, points, owed_after in (("a", 200, 300), ("b", 250, 50), ("c", 80, 0)):
        change = earn(st, points, ref)
        st = ledger(change)
        assert change.entries[-1]["kind"] == "settle" and change.entries[-1]["owed_after"] == owed_after
    assert (st.balance, st.owed) == (30, 0)
    assert {lot["source_ref"]: lot["remaining"] for lot in st.lots} == {"big": 0, "a": 0, "b": 0, "c": 30}


def test_a_zero_point_earn_settles_nothing():
    st = refund(redeem(earn(member(), 10, "o1").state, 10).state, "o1").state
    change = d.earn(st, CID, T0, POLICY, source="shop", source_ref="tiny", amount=Money(amount_minor=99, currency="EUR"))
    assert [e["kind"] for e in change.entries] == ["earn"] and change.state.owed == 10


def test_a_refunded_orders_points_stop_counting_toward_the_tier():
    ledger = Ledger()
    st = ledger(earn(member(), 800, "o1"))
    st = ledger(earn(st, 300, "o2"))
    assert st.tier == "silver" and d.points_earned_12m(st.lots, T0) == 1100
    change = refund(st, "o2")
    st = ledger(change)
    assert change.tier_changed and (change.tier_from, st.tier) == ("silver", "bronze")
    assert d.points_earned_12m(st.lots, T0) == 800
    assert d.next_due(st, T0) == T0 + d.REVIEW_HEARTBEAT     # the reversed lot no longer matters to the tier


def test_settled_points_still_count_toward_the_tier():
    st = refund(redeem(earn(member(), 900, "o1").state, 900).state, "o1").state   # bronze, 900 owed
    change = earn(st, 1000, "o2")
    assert change.state.tier == "silver" and change.state.balance == 100


def test_a_refund_is_taken_back_once():
    ledger = Ledger()
    st = ledger(earn(member(), 100, "o1"))
    first = refund(st, "o1")
    st = ledger(first)
    again = refund(st, "o1")
    assert again.is_noop and again.duplicate_of == first.result_entry_id and again.state.balance == 0
    replayed_earn = earn(st, 100, "o1")                  # the paid event delivered again
    assert replayed_earn.is_noop and replayed_earn.duplicate_of == d.earn_entry_id("shop", "o1")
    assert refund(replayed_earn.state, "o1").is_noop


def test_a_refund_before_the_order_earned_changes_nothing_and_the_earn_then_reversed_ends_at_zero():
    ledger = Ledger()
    st = ledger(earn(member(), 25, "other"))
    early = refund(st, "o1")
    assert early.is_noop and early.duplicate_of is None and early.state == st
    st = ledger(earn(st, 100, "o1"))                     # the paid event arrives
    st = ledger(refund(st, "o1"))                        # ... and takes itself back, having seen the refund
    assert (st.balance, st.owed) == (25, 0) and [e["kind"] for e in ledger.entries] == ["earn", "earn", "reverse"]


def test_points_expired_unspent_are_not_taken_back_again():
    policy = d.Policy(ttl=timedelta(days=30))
    ledger = Ledger()
    st = ledger(earn(member(), 100, "o1", at=T0, policy=policy))
    st = ledger(redeem(st, 40, at=T0 + timedelta(days=1), policy=policy))     # 60 left in o1
    st = ledger(earn(st, 50, "o2", at=T0 + timedelta(days=20), policy=policy))
    change = refund(st, "o1", at=T0 + timedelta(days=31), policy=policy)      # o1's 60 expire first
    st = ledger(change)
    expired, reversed_ = change.entries
    assert (expired["kind"], expired["points"]) == ("expire", -60)
    assert (reversed_["kind"], reversed_["points"], reversed_["owed"]) == ("reverse", -40, 0)   # the 40 spent
    assert reversed_["lots"] == [{"lot_id": d.earn_entry_id("shop", "o2"), "points": 40}]
    assert (st.balance, st.owed) == (10, 0)


def test_a_refund_of_points_that_all_expired_takes_nothing_but_still_counts_once():
    policy = d.Policy(ttl=timedelta(days=30))
    ledger = Ledger()
    st = ledger(earn(member(), 1000, "o1", at=T0, policy=policy))
    st = ledger(d.review(st, CID, T0 + timedelta(days=31), policy))
    assert st.balance == 0 and st.tier == "silver"       # expired, still in the tier window
    change = refund(st, "o1", at=T0 + timedelta(days=32), policy=policy)
    st = ledger(change)
    [entry] = change.entries
    assert (entry["kind"], entry["points"], entry["owed"]) == ("reverse", 0, 0)
    assert st.tier == "bronze" and refund(st, "o1", at=T0 + timedelta(days=33), policy=policy).is_noop


def test_an_opted_out_member_is_still_taken_back():
    st = d.set_consent(earn(member(), 100, "o1").state, False, T0).state
    assert refund(st, "o1").state.balance == 0


def test_owed_round_trips_through_the_document():
    st = refund(redeem(earn(member(), 100, "o1").state, 100).state, "o1").state
    again = d.MemberState.from_doc(st.to_doc())
    assert again == st and again.owed == 100 and again.lots[0]["reversed"] is True
    legacy = {k: v for k, v in st.to_doc().items() if k != "owed"}     # stored before owed existed
    assert d.MemberState.from_doc(legacy).owed == 0


def test_void_takes_back_a_settlement_with_its_earn_and_a_reversal():
    st = refund(redeem(earn(member(), 100, "o1").state, 60).state, "o1").state    # 0, 60 owed
    earned = earn(st, 100, "o2")
    assert d.tied_to(earned.entries, {earned.result_entry_id}) == [earned.entries[1]]
    assert d.tied_to(earned.entries, {"led_other"}) == []
    back = d.void(earned.state, CID, T0, POLICY, earned.entries)
    assert (back.state.balance, back.state.owed) == (0, 60)
    assert [lot["source_ref"] for lot in back.state.lots] == ["o1"]
    check_consistent(back.state)
    st = redeem(earn(earn(member(), 100, "o1").state, 20, "o2").state, 110).state   # 10 left, in o2
    taken = refund(st, "o1")
    undone = d.void(taken.state, CID, T0, POLICY, taken.entries)
    assert (undone.state.balance, undone.state.owed, undone.state.tier) == (10, 0, st.tier)
    assert undone.state.lots == st.lots and "reversed" not in undone.state.lots[0]
    check_consistent(undone.state)


def test_the_timeline_names_the_purchase_in_words_a_person_knows():
    from loyalty.events import PointsEarned
    from loyalty.views import entry_view

    def summary(change):
        entry = entry_view({**change.entries[0], "occurred_at": T0})
        return PointsEarned(contact_id=CID, entry=entry, balance=entry["balance_after"]).timeline().summary

    assert summary(earn(member(), 10, "r-1", source="pos")) == "Earned 10 points (pos/r-1)"
    by_order = d.earn(member(), CID, T0, POLICY, source="order", source_ref="ord_1", amount=eur(10),
                      reason="order WEB-1001")
    assert summary(by_order) == "Earned 10 points (order WEB-1001)"


# -- reading sales' order events (loyalty/orders.py) -----------------------------------------------

def test_order_events_are_read_tolerantly_but_their_ids_strictly():
    from loyalty import orders

    data = {"order_id": "ord_1", "contact_id": CID, "total": {"amount_minor": 12599, "currency": "EUR"},
            "order": {"external_ref": " WEB-1001 ", "whatever": [1]}, "paid_at": "2026-01-01T00:00:00Z",
            "a_field_from_the_future": True}
    order = orders.paid(data)
    assert (order.order_id, order.contact_id, order.label) == ("ord_1", CID, "order WEB-1001")
    assert order.total == Money(amount_minor=12599, currency="EUR")
    assert orders.paid({**data, "order": "not a view"}).label == "order ord_1"      # odd shapes: the order id
    assert orders.paid({**data, "order": {"external_ref": 7}}).label == "order ord_1"
    refund = orders.refunded({**data, "reason": "damaged", "total": "ignored"})
    assert (refund.label, refund.refund_reason, refund.total) == ("order WEB-1001", "order WEB-1001 refunded: damaged",
                                                                  None)
    assert orders.refunded({**data, "reason": None}).refund_reason == "order WEB-1001 refunded"
    for field, value in (("order_id", "ord 1"), ("contact_id", {"$ne": 1}), ("contact_id", None)):
        with pytest.raises(InvalidArgument) as err:
            orders.refunded({**data, field: value})
        assert err.value.violations[0]["field"] == f"data.{field}"
    with pytest.raises(InvalidArgument) as err:
        orders.paid({**data, "total": {"amount_minor": "12599", "currency": "EUR"}})
    assert err.value.violations[0]["field"].startswith("data.total")
