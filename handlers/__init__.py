"""Slack listeners, one module per surface. Each acks fast, parses, hands over to `bot`, answers."""

from slack_bolt.async_app import AsyncApp

from bot.core import Bot

from . import commands, modal, shortcuts


def register(app: AsyncApp, bot: Bot) -> None:
    commands.register(app, bot)
    shortcuts.register(app, bot)
    modal.register(app, bot)
