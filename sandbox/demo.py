"""``make demo``: the whole product on one machine, with no Slack workspace and no Serval account.

Starts, on loopback and with credentials made up for this run:

- the Serval sandbox (``sandbox/serval.py``), keeping its data in ``<data>/serval.db``;
- the Slack stand-in (``sandbox/slack.py``) with its page (``sandbox/slack_ui.py``, ``sandbox/static/``),
  which knows the app's commands and shortcuts from ``manifest.yml``, as Slack does;
- the real bot, ``python app.py --mode http``, wired to both: the stand-in sends it signed requests,
  it calls the stand-in's Web API and the sandbox's API. Its database and log are under ``<data>/``.

``<data>`` is ``data/demo/`` unless ``--data-dir`` says otherwise: the demo's own folder, apart from the
bot's real database (``data/tickets.db``), so ``--fresh`` and ``make clean`` never reach that one.

The workspace has a request channel, ``#help`` (``intake: auto`` in ``<data>/routing.yml``): every new
message there becomes a ticket. A :ticket: reaction or an ``@Tickets`` mention files a message or a
thread anywhere the bot is.

With ``--org`` the workspace is one of two of an Enterprise Grid org ("Sandbox Org": *Sandbox* and
*Sandbox West*, with its own ``#it-help`` and people), and the bot installs by OAuth as a company's
would: it runs with ``SLACK_CLIENT_ID`` / ``SLACK_CLIENT_SECRET`` instead of ``SLACK_BOT_TOKEN``, the page
links to its *Add to Slack* page (``GET /slack/install``), whose link leads to the stand-in's authorize
page, which installs the app in the whole org. Until then every request is answered "not installed";
after it, the one org-wide install serves both workspaces (switch at the top left).

It prints the page's URL, and the bot's health and metrics addresses. Ctrl-C stops everything: the
bot runs in a process group of its own, so the terminal's SIGINT reaches only the demo, which then
stops the bot with one SIGTERM. Serval's part that Slack's page shows is demo
glue here: when a ticket with a ``slackDm`` sync target is created, "Serval" DMs the requester (found
by e-mail among the stand-in's people), as Serval's Slack integration would.

    python -m sandbox.demo [--data-dir data/demo] [--port 0] [--fresh] [--org]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from . import serval as serval_sandbox
from . import slack as slack_sandbox
from .slack_ui import SlackUI

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ["U111", "U222", "UADMIN"]  # who the page lets you be
REAL_NAMES = {"U111": "Alice Anderson", "U222": "Bob Baker", "UADMIN": "Ada Admin"}
# --org: the second workspace of the org, its request channel and its people
ENTERPRISE, ORG_TEAM, ORG_CHANNEL = "E0DEMO", "T0WEST", "C0WESTHELP"
ORG_PEOPLE = {"U0CAROL": ("carol", "Carol Chen", False), "U0DAN": ("dan", "Dan Diaz", True)}
SERVAL_USER = "USERVAL"
SERVAL_DM_PREFIX = "DSV"
DATA_DIR = Path("data/demo")
# What the demo keeps, and what --fresh deletes (the bot's SQLite database runs in WAL mode).
FILES = ("serval.db", "bot.db", "bot.db-wal", "bot.db-shm", "slack.json", "bot.log", "routing.yml")
HELP_CHANNEL = "C0HELP"  # #help, the request channel: every new message there becomes a ticket
# Before the demo had its own folder, it kept these in data/, beside the bot's database.
OLD_FILES = {"demo-serval.db": "serval.db", "demo-bot.db": "bot.db", "demo-bot.db-wal": "bot.db-wal",
             "demo-bot.db-shm": "bot.db-shm", "demo-slack.json": "slack.json", "demo-bot.log": "bot.log"}
log = logging.getLogger("demo")


class DemoError(Exception):
    pass


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_manifest(path: Path = ROOT / "manifest.yml") -> dict:
    """What Slack knows about the app from its manifest: name, commands, shortcuts, App Home, events,
    custom functions (workflow steps) and unfurl domains."""
    manifest = yaml.safe_load(path.read_text("utf-8")) or {}
    features, settings = manifest.get("features") or {}, manifest.get("settings") or {}
    home = features.get("app_home") or {}
    return {"app_name": (features.get("bot_user") or {}).get("display_name") or "App",
            "commands": features.get("slash_commands") or [],
            "shortcuts": features.get("shortcuts") or [],
            "home_tab": bool(home.get("home_tab_enabled")),
            "dm_read_only": bool(home.get("messages_tab_read_only_enabled")),
            "events": (settings.get("event_subscriptions") or {}).get("bot_events") or [],
            "functions": manifest.get("functions") or {},          # workflow steps (Workflow Builder)
            "unfurl_domains": features.get("unfurl_domains") or []}


def _target(target: dict) -> str:
    """{"slackDm": {"targetUserType": "..._TICKET_REQUESTOR"}} -> "slackDm → requestor"."""
    kind, inner = next(iter(target.items()), ("?", {}))
    who = (inner or {}).get("targetUserType", "")
    return f"{kind} → {who.rsplit('_', 1)[-1].lower()}" if who else kind


class Demo:
    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0, fresh: bool = False,
                 ack_timeout: float = 3.0, org: bool = False):
        self.data, self.host, self.port, self.fresh, self.ack_timeout = Path(data_dir), host, port, fresh, ack_timeout
        self.org = org  # two workspaces of an Enterprise Grid org, the bot installed by OAuth
        self.runners: list[web.AppRunner] = []
        self.bot: asyncio.subprocess.Process | None = None
        self.url = ""
        self.serval_url = ""  # the Serval sandbox: its API under /v2/, the agent panel at /agent
        self.bot_url = ""  # the bot's own HTTP server: /healthz, /readyz, /metrics

    # -- the Slack stand-in's workspace -------------------------------------------------------------
    def _seed_slack(self, state: slack_sandbox.SlackState, app_name: str) -> None:
        # Timestamps from the clock, as Slack's: new messages never reuse a ts the bot's database
        # (kept between runs) has linked to a ticket.
        state._seq = itertools.count(int((time.time() * 1e6 - 1_700_000_000_000_000) // 100))
        for uid, real_name in REAL_NAMES.items():
            state.users[uid]["real_name"] = state.users[uid]["profile"]["real_name"] = real_name
        state.users[state.bot_user_id]["real_name"] = state.users[state.bot_user_id]["profile"]["real_name"] = app_name
        state.add_user(SERVAL_USER, name="serval", real_name="Serval", is_bot=True)
        saved = self.data / "slack.json"
        if saved.exists():
            data = json.loads(saved.read_text("utf-8"))
            state.channels.update(data["channels"])
            state.messages.update(data["messages"])
            state.unfurls.update(data.get("unfurls") or {})  # what the app unfurled stays under its message
            if HELP_CHANNEL not in state.channels:  # saved by a demo from before #help
                self._seed_help(state)
            return
        for uid in PEOPLE:
            state.dm_with(uid)
        state.post_user_message("C123", "UADMIN", "Welcome to the sandbox workspace :wave:")
        state.post_user_message("C111", "UADMIN", "Try it: type `/ticket Printer jammed` below, hover over a "
                                "message and click ⋮ → *Create ticket*, react to it with :ticket:, or mention "
                                "@Tickets in a thread. Switch people at the top left.")
        root = state.post_user_message("C111", "U222", "The printer on floor 3 is jammed again :(")
        state.post_user_message("C111", "U111", "Same here, tray 2 shows a red light.", thread_ts=root["ts"])
        self._seed_help(state)

    def _seed_org(self, state: slack_sandbox.SlackState) -> None:
        """--org: the first workspace joins an org, which gets a second workspace; Slack's authorize
        page installs the app in the whole org (``is_enterprise_install``)."""
        state.enterprise_id = state.org_install_enterprise = ENTERPRISE
        state.workspaces[state.team_id]["enterprise_id"] = ENTERPRISE
        state.add_workspace(ORG_TEAM, "Sandbox West", enterprise_id=ENTERPRISE, domain="sandbox-west")
        for uid, (name, real_name, admin) in ORG_PEOPLE.items():
            state.add_user(uid, email=f"{name}@example.com", name=name, real_name=real_name, is_admin=admin,
                           team_id=ORG_TEAM, enterprise_id=ENTERPRISE)
            state.users[uid]["profile"]["real_name"] = real_name
        if ORG_CHANNEL not in state.channels:
            state.add_channel(ORG_CHANNEL, "it-help", team_id=ORG_TEAM)
        if not state.messages.get(ORG_CHANNEL):
            state.post_user_message(ORG_CHANNEL, "U0DAN", "Sandbox West's channel for IT questions. The same "
                                    "org-wide install serves this workspace: try `/ticket Monitor flickers` here.")
        state.channel_teams[ORG_CHANNEL] = ORG_TEAM
        for uid in ORG_PEOPLE:
            state.channel_teams[state.dm_with(uid)["id"]] = ORG_TEAM

    def _seed_help(self, state: slack_sandbox.SlackState) -> None:
        state.add_channel(HELP_CHANNEL, "help")
        state.post_user_message(HELP_CHANNEL, "UADMIN", "This is a request channel: every new message here becomes a "
                                "ticket, and its thread is synced with it. Ask away!")

    def _save_slack(self) -> None:
        s = self.slack
        data = {"channels": s.channels, "messages": s.messages, "unfurls": s.unfurls}
        (self.data / "slack.json").write_text(json.dumps(data, indent=1), "utf-8")

    # -- Serval's side of Slack -----------------------------------------------------------------------
    def _on_serval(self, event: str, data: dict) -> None:
        if event == "ticket_created":
            try:
                self._serval_dm(data)
            except Exception:  # demo glue must never break the sandbox's answer
                log.exception("could not show Serval's DM")
        self.ui.changed()

    def _serval_dm(self, ticket: dict) -> None:
        """Serval's slackDm sync target: Serval tells the requester in a DM."""
        if not any("slackDm" in t for t in self.serval.sync_targets.get(ticket["id"], [])):
            return
        email = (self.serval.users.get(ticket.get("requesterUserId") or "") or {}).get("email", "").lower()
        people = sorted(self.slack.users.values(), key=lambda u: u["id"][0] != "U")  # U... before W...
        person = next((u for u in people if email and not u["deleted"] and not u["is_bot"]
                       and u["profile"].get("email", "").lower() == email), None)
        if person is None:
            return
        channel = SERVAL_DM_PREFIX + person["id"]
        if channel not in self.slack.channels:
            self.slack.add_channel(channel, channel.lower(), is_im=True, user=person["id"], bot_is_member=False)
            self.ui.dm_peers[channel] = SERVAL_USER
        title = ticket["name"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.slack.post_user_message(channel, SERVAL_USER, f":ticket: Your ticket *{ticket['friendlyIdentifier']}* "
                                     f"“{title}” was created. I will let you know here when it changes.")

    def _seed_serval(self) -> None:
        """Custom fields for both teams (the form shows them; a team change swaps them), and open
        tickets of Alice and Bob, so `/ticket Printer jammed` offers "Add to this ticket instead"."""
        st = self.serval
        st.seed_custom_fields()
        if not st.tickets:
            for requester, name, status in (("usr-alice", "Printer on floor 3 jams", None),
                                            ("usr-alice", "VPN drops every hour", "st-it-in-progress"),
                                            ("usr-bob", "Printer on floor 3 keeps jamming", None)):
                ticket = st.create_ticket({"teamId": "team-it", "name": name, "createdByUserId": requester,
                                           "description": "Seeded by the demo."})
                if status:
                    st.update_ticket(ticket["id"], {"statusId": status})
        st.save()

    def _panel(self) -> dict:
        st = self.serval
        statuses = {o["id"]: o["name"] for options in st.statuses.values() for o in options}
        priorities = {o["id"]: o["priority"].title() for options in st.priorities.values() for o in options}
        items = []
        for t in reversed(list(st.tickets.values())):
            requester = st.users.get(t.get("requesterUserId") or "") or {}
            due = t.get("dueDate")
            fields = [["Team", st.teams[t["teamId"]]["name"]], ["Status", statuses.get(t.get("statusId"), "?")],
                      ["Type", t.get("type", "").removeprefix("TICKET_TYPE_").title()],
                      ["Requester", requester.get("email") or "—"]]
            if t.get("assignedToUserId"):
                fields.append(["Assignee", (st.users.get(t["assignedToUserId"]) or {}).get("email", "?")])
            if t.get("priorityId"):
                fields.append(["Priority", priorities.get(t["priorityId"], "?")])
            if due:
                fields.append(["Due", f"{due['year']:04d}-{due['month']:02d}-{due['day']:02d}"])
            for value in st.field_values.get(t["id"], {}).values():
                field = next((f for f in st.custom_fields.get(t["teamId"], []) if f["id"] == value["fieldId"]), {})
                shown = next((o["displayName"] for o in field.get("enumOptions") or [] if o["value"] == value["value"]),
                             value["value"])
                fields.append([value["fieldName"], "Yes" if shown is True else "No" if shown is False else str(shown)])
            if st.ticket_messages.get(t["id"]):
                fields.append(["Messages", str(len(st.ticket_messages[t["id"]]))])
            links = []
            for c in st.connections.get(t["id"], []):
                kind = next(iter((st.connect_requests.get(c["externalTicketId"]) or {}).get("channelTarget") or {}), "")
                channel, _, ts = c["externalTicketId"].partition(":")
                links.append({"label": c["externalTicketId"], "kind": kind, "channel": channel, "ts": ts})
            items.append({"id": t.get("friendlyIdentifier") or t["id"], "title": t["name"], "fields": fields,
                          "tags": [_target(x) for x in st.sync_targets.get(t["id"], [])], "links": links})
        teams = ", ".join(t["name"] for t in st.teams.values())
        return {"title": "Serval sandbox", "subtitle": f"teams {teams} · {len(items)} ticket(s)", "items": items,
                "link": {"href": self.serval_url + "/agent", "text": "Agent panel: change a ticket as Serval's agents do ↗"}}

    # -- start and stop ---------------------------------------------------------------------------------
    async def _serve(self, app: web.Application, port: int) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, self.host, port).start()
        self.runners.append(runner)
        return f"http://{self.host}:{runner.addresses[0][1]}"

    async def start(self) -> str:
        self.data.mkdir(parents=True, exist_ok=True)
        if self.fresh:
            for name in FILES:
                (self.data / name).unlink(missing_ok=True)
        manifest = read_manifest()
        signing_secret, bot_token = secrets.token_hex(16), "xoxb-demo-" + secrets.token_hex(12)
        serval_token = "demo-" + secrets.token_hex(16)

        self.serval = serval_sandbox.ServalState(bearer_tokens={serval_token}, db_path=str(self.data / "serval.db"))
        if "team-fac" not in self.serval.teams:  # a second team: the form gets a Team field
            self.serval.add_team("Facilities", "FAC", team_id="team-fac", description="Buildings and rooms")
            self.serval.teams["team-fac"]["userIds"] = ["usr-bob"]
            self.serval.save()
        self._seed_serval()
        serval_url = self.serval_url = await self._serve(serval_sandbox.create_app(self.serval), 0)

        self.slack = slack_sandbox.SlackState(bot_token, strict_triggers=True)
        self._seed_slack(self.slack, manifest["app_name"])
        bot_port = free_port(self.host)
        install_url = ""
        if self.org:
            self._seed_org(self.slack)
            self.slack.redirect_uri = f"http://{self.host}:{bot_port}/slack/oauth_redirect"
            install_url = f"http://{self.host}:{bot_port}/slack/install"
            for uid, (name, real_name, _) in ORG_PEOPLE.items():  # known to Serval, as the org's people are
                if self.serval.user_by_email(f"{name}@example.com") is None:
                    self.serval.add_user(f"{name}@example.com", *real_name.split())
            self.serval.save()
        else:  # a channel of an earlier --org run stays in its workspace, not shown here
            self.slack.channels.pop(ORG_CHANNEL, None)
        self.ui = SlackUI(self.slack, request_url=f"http://{self.host}:{bot_port}/slack/events",
                          signing_secret=signing_secret, app_name=manifest["app_name"],
                          commands=manifest["commands"], shortcuts=manifest["shortcuts"],
                          home_tab=manifest["home_tab"], dm_read_only=manifest["dm_read_only"],
                          events=manifest["events"], people=PEOPLE + (list(ORG_PEOPLE) if self.org else []),
                          panel=self._panel,
                          ack_timeout=self.ack_timeout, functions=manifest["functions"],
                          unfurl_domains=manifest["unfurl_domains"], install_url=install_url)
        self.ui.dm_peers.update({c: SERVAL_USER for c in self.slack.channels if c.startswith(SERVAL_DM_PREFIX)})
        self.serval.listeners.append(self._on_serval)
        app = slack_sandbox.create_app(self.slack)
        self.ui.install(app)
        self.url = await self._serve(app, self.port) + "/"
        self.slack.enterprise_url = self.url  # after an org-wide install, Bolt's page leads back here

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLACK_", "SERVAL_", "REZOLVE_", "SOCIALBOARDS_", "TICKET_"))}
        env.update(SLACK_BOT_TOKEN=bot_token, SLACK_SIGNING_SECRET=signing_secret, SLACK_APP_TOKEN="",
                   SLACK_API_URL=self.url + "api/", SERVAL_BASE_URL=serval_url, SERVAL_BEARER_TOKEN=serval_token,
                   SERVAL_TEAM_ID="team-it", SERVAL_SLACK_INTEGRATION_ID="integ-slack-demo", TICKET_BACKEND="serval",
                   SUGGEST_SIMILAR="true",
                   DATABASE_URL=f"sqlite:///{(self.data / 'bot.db').resolve()}", HOST=self.host,
                   PORT=str(bot_port), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        if self.org:  # installs by OAuth: no token until someone installs the app
            env.update(SLACK_BOT_TOKEN="", SLACK_CLIENT_ID=self.slack.client_id,
                       SLACK_CLIENT_SECRET=self.slack.client_secret,
                       SLACK_AUTHORIZE_URL=self.url + "oauth/v2/authorize")
        env.setdefault("STATUS_POLL_SECONDS", "5")  # the ticket card follows the agent panel within seconds
        if manifest["unfurl_domains"]:  # ticket links the stand-in unfurls: in the app's first unfurl domain
            env.update(SERVAL_TICKET_URL=f"https://{manifest['unfurl_domains'][0]}/tickets/{{id}}")
        routing = self.data / "routing.yml"
        routing.write_text(f"channels:\n  {HELP_CHANNEL}:  # #help\n    intake: auto\n"
                           + (f"  {ORG_CHANNEL}:  # #it-help of Sandbox West\n    intake: auto\n" if self.org else ""),
                           "utf-8")
        env.update(ROUTING_FILE=str(routing.resolve()))
        with open(self.data / "bot.log", "ab") as out:  # the child keeps its own handle
            # cwd: the data directory, so a developer's .env is not read into the demo.
            # process_group=0: a group of its own, so Ctrl-C's SIGINT (sent to the terminal's whole
            # foreground group) does not reach it; `stop` sends it one SIGTERM.
            self.bot = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "app.py"), "--mode", "http", cwd=self.data, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT, process_group=0)
        self.bot_url = f"http://{self.host}:{bot_port}"
        await self._wait_for_bot(self.bot_url + "/healthz")
        return self.url

    async def _wait_for_bot(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.bot.returncode is not None:
                    break
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        tail = (self.data / "bot.log").read_text("utf-8", "replace").splitlines()[-15:]
        raise DemoError("the bot did not start; the end of its log:\n" + "\n".join(tail))

    async def stop(self) -> None:
        if self.bot is not None and self.bot.returncode is None:
            self.bot.terminate()
            try:
                await asyncio.wait_for(self.bot.wait(), 10)
            except asyncio.TimeoutError:
                self.bot.kill()
                await self.bot.wait()
        if hasattr(self, "slack"):
            self._save_slack()
        for runner in reversed(self.runners):
            await runner.cleanup()


def move_old_files(data: Path) -> None:
    """Move the files an earlier demo left in data/ into the demo's folder (never over newer ones)."""
    for old_name, name in OLD_FILES.items():
        old, new = data.parent / old_name, data / name
        if old.is_file() and not new.exists():
            data.mkdir(parents=True, exist_ok=True)
            old.rename(new)


async def _run(opts: argparse.Namespace) -> int:
    if Path(opts.data_dir) == DATA_DIR:
        move_old_files(DATA_DIR)
    demo = Demo(Path(opts.data_dir), host=opts.host, port=opts.port, fresh=opts.fresh, ack_timeout=opts.ack_timeout,
                org=opts.org)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await demo.start()
        print("The demo runs on this machine: the Serval sandbox, a Slack stand-in and the bot. Open", flush=True)
        print(f"  {url}", flush=True)
        if demo.org:
            print(f"Install the app in the whole org first: {demo.ui.install_url} (Add to Slack), then file a "
                  "ticket in either workspace (switch at the top left of the page).", flush=True)
        print(f"Serval's agent panel (change a ticket's status, assignee, priority): {demo.serval_url}/agent",
              flush=True)
        print(f"The bot's health and metrics: {demo.bot_url}/healthz  {demo.bot_url}/readyz  {demo.bot_url}/metrics",
              flush=True)
        print(f"Ctrl-C stops it. Data and the bot's log: {opts.data_dir}/", flush=True)
        await stop.wait()
        return 0
    except (DemoError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        await demo.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DATA_DIR),
                        help=f"where the databases and the bot's log go (default: {DATA_DIR})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the page's port (default: a free one)")
    parser.add_argument("--fresh", action="store_true", help="forget the tickets and messages of earlier runs")
    parser.add_argument("--org", action="store_true",
                        help="two workspaces of an Enterprise Grid org; the bot installs by OAuth (Add to Slack)")
    parser.add_argument("--ack-timeout", type=float, default=3.0, help=argparse.SUPPRESS)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
