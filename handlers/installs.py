"""The app removed from a workspace or an org (installs by OAuth): `app_uninstalled` forgets the
install, `tokens_revoked` the revoked bot token. Work journaled for it then fails with that reason
(bot.installations.NotInstalled) instead of being retried. `team_access_revoked` (an org-wide app no
longer reaching some workspaces of the org) is acknowledged and logged: the org's install stays, and
Slack refuses its token's calls in those workspaces."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core import Bot
from bot.installations import Workspace

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    installations = bot.installations
    if installations is None:  # one SLACK_BOT_TOKEN: nothing is stored to forget
        return

    def workspace(context: Any) -> Workspace:
        return Workspace(context.team_id, context.enterprise_id, bool(context.is_enterprise_install))

    @app.event("app_uninstalled")
    async def uninstalled(ack: Any, context: Any) -> None:
        await ack()
        await installations.forget(workspace(context))

    @app.event("tokens_revoked")
    async def revoked(ack: Any, event: dict[str, Any], context: Any) -> None:
        await ack()
        if (event.get("tokens") or {}).get("bot"):  # the bot keeps no user tokens
            await installations.forget(workspace(context), everything=False)

    @app.event("team_access_revoked")
    async def access_revoked(ack: Any, event: dict[str, Any], context: Any) -> None:
        await ack()  # else Slack sends it again
        for team_id in event.get("team_ids") or []:
            log.warning("the org-wide install of org %s lost access to workspace %s (team_access_revoked): "
                        "Slack refuses its calls there", context.enterprise_id, team_id)
