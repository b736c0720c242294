"""The decision table (DESIGN.md): (caller, share, action, target) → ``Decision`` (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.models import Action, Caller, Decision, Outcome, Share, Target

READ_ONLY_MESSAGE = "share link is read-only"
INVALID_SHARE_MESSAGE = "share link is invalid, expired or revoked"
NOT_APPLICABLE_MESSAGE = "share link does not grant access to this resource"
DENIED_MESSAGE = "this route is not available through the gateway"
SESSION_ACTIONS = frozenset({Action.READ, Action.WRITE})


def target_of(context_id: str | None, bound: Sequence[str | None]) -> Target:
    """The session a request provably targets (DESIGN.md "A2A").

    ``context_id`` is the request's own ``contextId`` (or path session id);
    ``bound`` holds the context each task id it names is bound to (``None``:
    unbound). All of them must name one and the same session; an unbound task,
    two different sessions, or nothing at all (a new conversation) prove none.
    """
    if any(context is None for context in bound):
        return Target(None, "share_task_unbound")
    contexts = {c for c in (context_id, *bound) if c is not None}
    if not contexts:
        return Target(None, "share_no_target")
    if len(contexts) > 1:
        return Target(None, "share_task_other_session")
    return Target(contexts.pop())


def _as_caller(caller: Caller, reason_id: str) -> Decision:
    """Token ignored: the caller acts as themself; an anonymous caller gets nothing."""
    if caller.user_id is None:
        return Decision(Outcome.DENY, reason_id, status=403, message=NOT_APPLICABLE_MESSAGE)
    return Decision(Outcome.AS_CALLER, reason_id, effective_user=caller.user_id)


def decide(
    caller: Caller,
    *,
    token_present: bool,
    share: Share | None,
    action: Action,
    target: Target | None,
    now: float,
) -> Decision:
    """Apply the decision table.

    ``caller.user_id`` is ``None`` for an anonymous share holder. ``share`` is
    the share the token resolved to (``None`` when there is no token, when the
    token is unknown, or when the route never consults it). ``target`` is the
    session the request provably targets (``None`` when not session-scoped).
    Rows, in order:

    0. action is deny → 403 for everyone (``route_denied``), token or not;
    1. no token → caller's identity;
    2. action is owner-only/public/unmatched → token ignored, caller's identity;
    3. token unknown, revoked or expired → 403 (one body for all three);
    4. target is not provably the share's session → token ignored;
    5. read → owner; write on a read-write share → owner;
       write on a read-only share → 403 "share link is read-only".
    """
    if action is Action.DENY:
        return Decision(Outcome.DENY, "route_denied", status=403, message=DENIED_MESSAGE)
    if not token_present:
        if caller.user_id is None and action is not Action.PUBLIC:
            return Decision(Outcome.DENY, "identity_missing", status=401, message="authentication required")
        return Decision(Outcome.AS_CALLER, "no_share_token", effective_user=caller.user_id)
    if action not in SESSION_ACTIONS:
        if action is Action.PUBLIC:
            return Decision(Outcome.AS_CALLER, "share_not_needed", effective_user=caller.user_id)
        reason = "share_owner_only" if action in (Action.OWNER_ONLY, Action.ADMIN) else "share_route_unscoped"
        return _as_caller(caller, reason)
    if share is None or not share.usable_at(now):
        return Decision(Outcome.DENY, "share_invalid", status=403, message=INVALID_SHARE_MESSAGE)
    if target is None or target.session_id is None:
        return _as_caller(caller, target.reason_id if target else "share_no_target")
    if target.session_id != share.session_id:
        return _as_caller(caller, "share_other_session")
    if action is Action.WRITE and share.read_only:
        return Decision(Outcome.DENY, "share_read_only", share=share, status=403, message=READ_ONLY_MESSAGE)
    reason = "share_write" if action is Action.WRITE else "share_read"
    return Decision(Outcome.AS_OWNER, reason, effective_user=share.owner_id, share=share)
