"""Who may do what (crm_common/access.toml and crm_common.access): every RPC has a
permission, the roles grant only permissions that exist, scopes and masking do what
they say, and an internal token cannot be forged or outlive its expiry."""
from __future__ import annotations

import inspect
import time

import jwt
import pytest

from test_registry_matches_code import REG, SERVICES, service_class  # generates the gRPC code
from google.protobuf import descriptor_pool

from crm_common import access, registry
from crm_common.access import Principal
from crm_common.errors import PermissionDenied, Unauthenticated
from crm_common.nameko.entrypoints import CrmRpc

POLICY = access.policy()
ISSUE_ROLES = {"admin", "sales_manager", "sales_rep", "marketer", "support_agent", "support_lead", "analyst",
               "integration"}


def all_rpcs(cls) -> list[str]:
    return [name for name, member in inspect.getmembers(cls)
            if any(isinstance(e, CrmRpc) for e in getattr(member, "nameko_entrypoints", ()))]


@pytest.mark.parametrize("name", SERVICES)
def test_every_rpc_of_every_service_has_a_permission(name):
    """A new RPC without a permission in its registry entry fails here (and nobody could call it)."""
    missing = [m for m in all_rpcs(service_class(name)) if POLICY.permission(name, m) is None]
    assert not missing, f"declare a permission for {', '.join(f'{name}.{m}' for m in missing)} in its registry entry (permissions)"


def test_every_public_grpc_method_has_a_permission_and_none_is_public():
    for grpc_service, backer in REG.grpc_backers().items():
        for method in descriptor_pool.Default().FindServiceByName(grpc_service).methods:
            permission = POLICY.permission(backer.name, registry.snake_case(method.name))
            assert permission not in (None, access.PUBLIC), f"/{grpc_service}/{method.name}"
    assert POLICY.permission("gateway", "echo") == "diagnostics.echo"
    assert POLICY.permission("gateway", "list_audit") == "audit.read"   # crm.v1.Audit/ListAudit


def test_the_policy_names_only_real_rpcs_and_grants_only_real_permissions():
    known = {f"{s}.{m}" for s in SERVICES for m in all_rpcs(service_class(s))}
    assert set(POLICY.rpc) <= known, set(POLICY.rpc) - known
    permissions = set(POLICY.permissions())
    for role in POLICY.roles.values():
        assert set(role.grants) - {"*"} <= permissions, (role.name, set(role.grants) - permissions)
    assert ISSUE_ROLES <= set(POLICY.roles)


def rep(name="alice", team="north", roles=("sales_rep",)):
    return Principal(f"user:{name}", roles, team)


def test_scopes_are_the_widest_a_callers_roles_grant():
    assert POLICY.authorize(rep(), "contacts", "get_contact").scope == "own"
    assert POLICY.authorize(rep(roles=("sales_rep", "sales_manager")), "contacts", "get_contact").scope == "team"
    assert POLICY.authorize(rep(roles=("admin",)), "contacts", "erase_contact").scope == "all"
    own = POLICY.authorize(rep(), "contacts", "search_contacts")
    assert own.owner_filter() == {"owner": "alice"} and own.may_own("alice") and not own.may_own("bob")
    team = POLICY.authorize(rep(roles=("sales_manager",)), "contacts", "search_contacts")
    assert team.owner_filter() == {"team": "north"} and team.may_own("bob", "north") and not team.may_own("bob", "south")
    nobody = POLICY.authorize(rep(team="", roles=("sales_manager",)), "contacts", "search_contacts")
    assert not nobody.may_own("bob", "") and nobody.owner_filter() != {"team": ""}


@pytest.mark.parametrize("roles,rpc", [(("marketer",), "erase_contact"), (("analyst",), "update_contact"),
                                       (("support_agent",), "earn_points"), ((), "get_contact"),
                                       (("service",), "get_contact")])
def test_without_the_grant_the_call_is_denied_with_who_may(roles, rpc):
    service = "loyalty" if rpc == "earn_points" else "contacts"
    principal = rep(roles=tuple(r for r in roles if r != "service"))
    with pytest.raises(PermissionDenied) as ei:
        POLICY.authorize(principal, service, rpc)
    assert "may not" in str(ei.value) and "roles that may: " in str(ei.value) and "service" not in \
        str(ei.value).split("roles that may: ")[1].split(", ")


def test_no_principal_is_unauthenticated_but_ping_is_public():
    with pytest.raises(Unauthenticated, match="Bearer"):
        POLICY.authorize(None, "contacts", "get_contact")
    assert POLICY.authorize(None, "contacts", "ping") is None
    with pytest.raises(PermissionDenied, match="no permission declared"):
        POLICY.authorize(rep(roles=("admin",)), "contacts", "not_declared")


def test_the_gateway_never_hands_out_the_services_role():
    assert POLICY.known_roles(["service", "admin", "root", "analyst"]) == ("admin", "analyst")


def test_masking_keeps_shape_labels_and_domains_only():
    contact = {"id": "con_1", "display_name": "Sara Ahmadi", "birthday": "1990-04-01", "owner": "alice",
               "emails": [{"address": "sara@example.com", "label": "work", "primary": True}],
               "phones": [{"number": "+989121234567", "label": None}],
               "address": {"line1": "1 Tea St", "city": "Tehran", "country": "IR", "postal_code": ""}}
    masked = access.mask({"contacts": [contact]}, POLICY.personal_fields)["contacts"][0]
    assert masked["emails"] == [{"address": "s•••@example.com", "label": "work", "primary": True}]
    assert masked["phones"] == [{"number": "+•••", "label": None}]
    assert masked["address"] == {"line1": "1•••", "city": "T•••", "country": "IR", "postal_code": ""}
    assert masked["birthday"] == "1•••" and masked["display_name"] == "Sara Ahmadi" and masked["id"] == "con_1"
    assert not POLICY.personal_data(rep(roles=("analyst",)))
    assert POLICY.personal_data(rep(roles=("analyst", "support_agent")))


SECRET = "s" * 40


def test_internal_tokens_round_trip_and_refuse_forgery_and_expiry():
    tokens = access.InternalTokens(SECRET)
    principal = rep()
    assert tokens.verify(access.mint(principal, SECRET)) == Principal("user:alice", ("sales_rep",), "north")
    forged = access.mint(Principal("user:mallory", ("admin",)), "x" * 40)
    with pytest.raises(Unauthenticated, match="not valid"):
        tokens.verify(forged)
    unsigned = jwt.encode({**principal.claims(), "iss": "crm", "aud": "crm-internal", "iat": 0,
                           "exp": int(time.time()) + 60}, key=None, algorithm="none")
    with pytest.raises(Unauthenticated):
        tokens.verify(unsigned)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(access.mint(principal, SECRET, ttl=-60))
    with pytest.raises(Unauthenticated, match="no principal"):
        tokens.verify(None)
    with pytest.raises(RuntimeError, match="CRM_INTERNAL_SECRET"):
        access.InternalTokens("short")
