"""Who may do what from Slack: viewer < operator < admin (`slack.roles`).

Reads are for viewers; ack, silence, unsilence and the mode for operators;
a person's own subscriptions, quiet hours and on-call takeover for that
person (any role, as long as their Slack id is `people.NAME.slack`); taking
on-call for someone else for admins. A user in no list has no role and may
do nothing but ask for help.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable

from ..config.schema import Config, SlackRoles


class Role(enum.IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    def __str__(self) -> str:
        return self.name.lower()


OPERATOR_VERBS = frozenset({"ack", "silence", "unsilence", "mode set", "mode clear"})
SELF_VERBS = frozenset({"subscribe", "unsubscribe", "subscriptions", "quiet", "oncall take"})

# @usergroup handle -> its member ids; given by the bot (Slack's usergroups.* methods)
GroupMembers = Callable[[str], Awaitable[set[str]]]
GROUPS_FRESH = 300.0  # seconds a usergroup's membership is trusted


def needed(verb: str) -> Role:
    if verb == "help":
        return Role.NONE
    return Role.OPERATOR if verb in OPERATOR_VERBS else Role.VIEWER


def operators(config: Config) -> list[str]:
    """`roles.operator`, or by default the configured people who have a Slack member id."""
    roles = config.slack.roles if config.slack else SlackRoles()
    if roles.operator is not None:
        return list(roles.operator)
    return [p.slack for p in config.people.values() if p.slack and p.slack[0] in "UW"]


class Roles:
    def __init__(self, group_members: GroupMembers, clock: Callable[[], float] = time.time):
        self.group_members = group_members
        self.clock = clock
        self._groups: dict[str, tuple[float, set[str]]] = {}

    async def role_of(self, config: Config, user_id: str) -> Role:
        roles = config.slack.roles if config.slack else SlackRoles()
        for role, members in ((Role.ADMIN, roles.admin), (Role.OPERATOR, operators(config)),
                              (Role.VIEWER, roles.viewer)):
            if await self._listed(user_id, members):
                return role
        return Role.NONE

    async def _listed(self, user_id: str, members: list[str]) -> bool:
        if "*" in members or user_id in members:
            return True
        for handle in (m for m in members if m.startswith("@")):
            if user_id in await self._members(handle[1:]):
                return True
        return False

    async def _members(self, handle: str) -> set[str]:
        """A usergroup's members, cached; Slack unreachable: the last known, else nobody
        (a refusal says why; nobody is let in on a guess)."""
        now = self.clock()
        cached = self._groups.get(handle)
        if cached and now - cached[0] < GROUPS_FRESH:
            return cached[1]
        try:
            members = await self.group_members(handle)
        except Exception:
            return cached[1] if cached else set()
        self._groups[handle] = (now, members)
        return members


def person_of(config: Config, user_id: str) -> str | None:
    """The configured person whose `slack:` is this member id."""
    for pid, p in config.people.items():
        if p.slack == user_id:
            return pid
    return None


def refusal(verb: str, role: Role, person: str | None, acting_for: str | None = None
            ) -> str | None:
    """Why this user may not do `verb`, or None when they may."""
    need = needed(verb)
    if role < need:
        if role == Role.NONE:
            return ("you have no beamwatch role in this workspace; an admin adds you to "
                    "slack.roles in the config")
        return f"`{verb}` needs the {need} role; you are a {role}"
    if acting_for is not None and acting_for != person:
        return None if role >= Role.ADMIN else (
            f"only an admin may `{verb}` for someone else ({acting_for})")
    if verb in SELF_VERBS and person is None:
        return ("you are not linked to a configured person: an admin adds your Slack member "
                "id as people.NAME.slack in the config")
    return None
