"""Slack listeners, one module per surface. Each acks fast, parses, hands over to `bot`, answers."""

from slack_bolt.async_app import AsyncApp

from bot.core import Bot

from . import actions, commands, config, edit, events, follow, functions, home, installs, links, modal, shortcuts


def register(app: AsyncApp, bot: Bot) -> None:
    commands.register(app, bot)
    config.register(app, bot)
    shortcuts.register(app, bot)
    modal.register(app, bot)
    actions.register(app, bot)
    home.register(app, bot)
    events.register(app, bot)
    edit.register(app, bot)
    follow.register(app, bot)
    functions.register(app, bot)
    links.register(app, bot)
    installs.register(app, bot)
