"""Who may see client data in a chat: the one access decision of commands, buttons and digests.

A person may see reports with a role (admin from ADMIN_IDS, or a granted lead); in a group only
while the group is enabled. A digest is a report like `/clients`: it passes the same decision
when it is sent, for the group it goes to, or for the user of the private chat it goes to (a
private chat's id is its user's id; groups and channels have negative ids).
"""

from dataclasses import dataclass
from typing import Literal

from bot.storage.chats import is_enabled
from bot.storage.engine import Executor
from bot.storage.people import Role, role_of

Needed = Literal["lead", "admin"]
# Why a chat may not see data, as stored on a paused subscription and in the digest ledger.
GROUP_DISABLED = "group disabled"
NO_ROLE = "no role"
NOT_ADMIN = "not admin"


@dataclass(frozen=True, slots=True)
class Access:
    # None: not asked (a private chat, or a command that works in any group).
    group_enabled: bool | None
    role: Role | None
    # Whether a person asks; a digest to a group has none.
    person: bool

    def refusal(self, needed: Needed = "lead") -> str | None:
        """None when allowed; otherwise why not."""
        if self.group_enabled is False:
            return GROUP_DISABLED
        if not self.person:
            return None if self.group_enabled else NO_ROLE
        if self.role is None:
            return NO_ROLE
        if needed == "admin" and self.role != "admin":
            return NOT_ADMIN
        return None


async def decide(
    executor: Executor,
    admin_ids: frozenset[int],
    *,
    user_id: int | None,
    group_id: int | None = None,
) -> Access:
    """The facts the decision needs: the group's enabled flag (when a group is given) and the
    person's role (when a person asks)."""
    enabled = None if group_id is None else await is_enabled(executor, group_id)
    role = None if user_id is None else await role_of(executor, user_id, admin_ids)
    return Access(group_enabled=enabled, role=role, person=user_id is not None)


async def chat_access(executor: Executor, admin_ids: frozenset[int], chat_id: int) -> Access:
    """A digest's audience: a group (enabled or not) or the user of a private chat."""
    if chat_id < 0:
        return await decide(executor, admin_ids, user_id=None, group_id=chat_id)
    return await decide(executor, admin_ids, user_id=chat_id)
