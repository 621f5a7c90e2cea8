"""Slack listeners, one module per surface. Each acks fast, parses, hands over to `bot`, answers."""

from slack_bolt.async_app import AsyncApp

from bot.core import Bot

from . import actions, commands, config, edit, events, follow, functions, home, installs, links, modal, shortcuts


def register(app: AsyncApp, bot: Bot) -> None:
    # Bolt tries each listener's matcher in the order registered, until one matches: the everyday
    # requests (/ticket, the shortcuts, the form's submission) first.
    commands.register(app, bot)
    shortcuts.register(app, bot)
    modal.register(app, bot)
    config.register(app, bot)
    actions.register(app, bot)
    home.register(app, bot)
    events.register(app, bot)
    edit.register(app, bot)
    follow.register(app, bot)
    functions.register(app, bot)
    links.register(app, bot)
    installs.register(app, bot)
