"""The app removed from a workspace or an org (installs by OAuth): `app_uninstalled` forgets the
install, `tokens_revoked` the revoked bot token. Work journaled for it then fails with that reason
(bot.installations.NotInstalled) instead of being retried."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.core import Bot
from bot.installations import Workspace


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
