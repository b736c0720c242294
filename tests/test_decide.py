"""The decision table, row by row (DESIGN.md), as a pure function."""

from __future__ import annotations

import pytest

from gateway.models import Action, Caller, Outcome, Share, Target
from gateway.pipeline.decide import decide

NOW = 1_000_000.0
BOB = Caller("bob", "jwt")
ANON = Caller(None, "anonymous")
RO = Share("sh_ro", "s1", "alice", True, None, "abc", NOW - 10)
RW = Share("sh_rw", "s1", "alice", False, None, "abc", NOW - 10)
REVOKED = Share("sh_x", "s1", "alice", False, None, "abc", NOW - 10, revoked_at=NOW - 1)
EXPIRED = Share("sh_y", "s1", "alice", False, None, "abc", NOW - 10, expires_at=NOW)
SAME, OTHER, NONE = Target("s1"), Target("s2"), Target(None, "share_no_target")


@pytest.mark.parametrize(
    ("caller", "token", "share", "action", "target", "outcome", "user", "status", "reason"),
    [
        # no token: the caller acts as themself
        (BOB, False, None, Action.WRITE, None, Outcome.AS_CALLER, "bob", 200, "no_share_token"),
        (ANON, False, None, Action.READ, None, Outcome.DENY, None, 401, "identity_missing"),
        (ANON, False, None, Action.PUBLIC, None, Outcome.AS_CALLER, None, 200, "no_share_token"),
        # target equals the share's session
        (BOB, True, RO, Action.READ, SAME, Outcome.AS_OWNER, "alice", 200, "share_read"),
        (BOB, True, RW, Action.READ, SAME, Outcome.AS_OWNER, "alice", 200, "share_read"),
        (BOB, True, RW, Action.WRITE, SAME, Outcome.AS_OWNER, "alice", 200, "share_write"),
        (BOB, True, RO, Action.WRITE, SAME, Outcome.DENY, None, 403, "share_read_only"),
        (ANON, True, RO, Action.READ, SAME, Outcome.AS_OWNER, "alice", 200, "share_read"),
        (ANON, True, RO, Action.WRITE, SAME, Outcome.DENY, None, 403, "share_read_only"),
        # owner-only actions: token ignored
        (BOB, True, RW, Action.OWNER_ONLY, None, Outcome.AS_CALLER, "bob", 200, "share_owner_only"),
        (ANON, True, RW, Action.OWNER_ONLY, None, Outcome.DENY, None, 403, "share_owner_only"),
        # another session or none provable: token ignored
        (BOB, True, RW, Action.WRITE, OTHER, Outcome.AS_CALLER, "bob", 200, "share_other_session"),
        (BOB, True, RO, Action.READ, OTHER, Outcome.AS_CALLER, "bob", 200, "share_other_session"),
        (BOB, True, RW, Action.WRITE, NONE, Outcome.AS_CALLER, "bob", 200, "share_no_target"),
        (BOB, True, RW, Action.READ, Target(None, "share_task_unbound"), Outcome.AS_CALLER, "bob", 200,
         "share_task_unbound"),
        (ANON, True, RW, Action.READ, OTHER, Outcome.DENY, None, 403, "share_other_session"),
        (ANON, True, RW, Action.READ, NONE, Outcome.DENY, None, 403, "share_no_target"),
        # unmatched routes: a token never widens them
        (BOB, True, RW, Action.UNMATCHED, None, Outcome.AS_CALLER, "bob", 200, "share_route_unscoped"),
        (ANON, True, RW, Action.UNMATCHED, None, Outcome.DENY, None, 403, "share_route_unscoped"),
        (ANON, True, None, Action.PUBLIC, None, Outcome.AS_CALLER, None, 200, "share_not_needed"),
        # unknown, revoked, expired: one answer for all three
        (BOB, True, None, Action.READ, None, Outcome.DENY, None, 403, "share_invalid"),
        (BOB, True, REVOKED, Action.READ, SAME, Outcome.DENY, None, 403, "share_invalid"),
        (BOB, True, EXPIRED, Action.READ, SAME, Outcome.DENY, None, 403, "share_invalid"),
    ],
)
def test_decision_table(
    caller: Caller, token: bool, share: Share | None, action: Action, target: Target | None,
    outcome: Outcome, user: str | None, status: int, reason: str,
) -> None:
    d = decide(caller, token_present=token, share=share, action=action, target=target, now=NOW)
    assert (d.outcome, d.effective_user, d.status, d.reason_id) == (outcome, user, status, reason)
    assert (d.share is not None) == (outcome is Outcome.AS_OWNER or reason == "share_read_only")


def test_invalid_shares_share_one_message() -> None:
    messages = {
        decide(BOB, token_present=True, share=s, action=Action.READ, target=SAME, now=NOW).message
        for s in (None, REVOKED, EXPIRED)
    }
    assert len(messages) == 1


def test_owner_identity_only_for_the_shares_session() -> None:
    """Exhaustive: the owner's identity is sent only for the share's session and an allowed action."""
    for share in (RO, RW, REVOKED, EXPIRED, None):
        for action in Action:
            for target in (SAME, OTHER, NONE, None):
                for caller in (BOB, ANON):
                    d = decide(caller, token_present=True, share=share, action=action, target=target,
                               now=NOW)
                    if d.effective_user == "alice":
                        assert share is not None
                        assert share.usable_at(NOW)
                        assert target == SAME
                        assert action is Action.READ or (action is Action.WRITE and not share.read_only)
