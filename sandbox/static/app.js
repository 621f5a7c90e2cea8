// A small Slack in the browser. The page long-polls /ui/state (the workspace as the chosen person
// sees it) and draws it; what the person does goes to /ui/* and the stand-in tells the app.
"use strict";

const $ = (selector) => document.querySelector(selector);
const ui = { me: "", channel: "", thread: null, tab: "messages", state: null, version: -1, poll: 0,
             modalKey: null, localErrors: {}, seen: {} };

// ---------------------------------------------------------------- helpers
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "html") node.innerHTML = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify({ user: ui.me, ...body }) });
  if (!response.ok) toast(await response.text());
  return response.ok ? response.json() : null;
}

function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

const user = (id) => (ui.state.users[id] || { name: id, handle: id });
const clock = (ts) => new Date(parseFloat(ts) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const byTs = (a, b) => parseFloat(a.ts) - parseFloat(b.ts);
const channelById = (id) => ui.state.channels.find((c) => c.id === id);

// ---------------------------------------------------------------- Slack markup
const EMOJI = {  // the shortcodes the bot and people commonly use; others stay as typed, as in Slack
  ticket: "🎫", white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", no_entry: "⛔",
  hourglass_flowing_sand: "⏳", hourglass: "⌛", inbox_tray: "📥", outbox_tray: "📤", bulb: "💡", memo: "📝",
  pencil: "📝", pencil2: "✏️", link: "🔗", pushpin: "📌", paperclip: "📎", mag: "🔍", bell: "🔔", lock: "🔒",
  key: "🔑", gear: "⚙️", wrench: "🔧", hammer_and_wrench: "🛠️", calendar: "📆", date: "📅", clock1: "🕐",
  email: "📧", envelope: "✉️", phone: "☎️", computer: "💻", printer: "🖨️", speech_balloon: "💬",
  information_source: "ℹ️", question: "❓", exclamation: "❗", heavy_plus_sign: "➕", arrow_right: "➡️",
  point_right: "👉", rotating_light: "🚨", sos: "🆘", fire: "🔥", rocket: "🚀", sparkles: "✨", star: "⭐",
  tada: "🎉", wave: "👋", eyes: "👀", "+1": "👍", thumbsup: "👍", "-1": "👎", thumbsdown: "👎", clap: "👏",
  pray: "🙏", raised_hands: "🙌", muscle: "💪", ok_hand: "👌", smile: "😄", slightly_smiling_face: "🙂",
  grinning: "😀", joy: "😂", wink: "😉", thinking_face: "🤔", confused: "😕", cry: "😢", sweat_smile: "😅",
  heart_eyes: "😍", heart: "❤️", white_circle: "⚪", large_green_circle: "🟢", red_circle: "🔴",
};
const REACTIONS = ["ticket", "eyes", "+1", "white_check_mark", "sos"];  // the "Add reaction" menu
const escapeHtml = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const unescapeSlack = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const emoji = (s) => s.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);

function styled(s) {  // HTML-escaped text -> bold, italics, strike, code, emoji
  return emoji(s)
    .replace(/`([^`\n]+)`/g, "<code>$1</code>")
    .replace(/(^|[^\w*])\*([^*\n]+)\*(?![\w*])/g, "$1<b>$2</b>")
    .replace(/(^|[^\w_])_([^_\n]+)_(?![\w_])/g, "$1<i>$2</i>")
    .replace(/(^|[^\w~])~([^~\n]+)~(?![\w~])/g, "$1<s>$2</s>");
}

function token(inner) {  // <@U1>, <#C1|name>, <!here>, <https://x|label>
  const [target, label] = inner.split("|");
  const mention = (text) => `<span class="mention">${escapeHtml(text)}</span>`;
  if (target[0] === "@") return mention("@" + user(target.slice(1)).name);
  if (target[0] === "#") return mention("#" + (label || ui.state.channel_names[target.slice(1)] || target.slice(1)));
  if (target[0] === "!") return mention("@" + (label || target.slice(1).split("^")[0]));
  const text = escapeHtml(unescapeSlack(label || target));
  return /^https?:\/\//.test(target) ? `<a href="${escapeHtml(unescapeSlack(target))}" target="_blank" rel="noopener">${text}</a>` : text;
}

function mrkdwn(text) {
  return (text || "").split(/(```[\s\S]*?```)/).map((part, i) => {
    if (i % 2) return `<pre>${escapeHtml(unescapeSlack(part.slice(3, -3)))}</pre>`;
    return part.split(/(<[^<>\n]+>)/).map((piece, j) => (j % 2 ? token(piece.slice(1, -1))
      : styled(escapeHtml(unescapeSlack(piece))))).join("").replace(/\n/g, "<br>");
  }).join("");
}

const textEl = (t) => (!t ? null : t.type === "mrkdwn" ? el("span", { class: "mrkdwn", html: mrkdwn(t.text) })
  : el("span", {}, emoji(t.text)));
const plain = (t) => (t ? emoji(t.text) : "");

// ---------------------------------------------------------------- Block Kit
// ctx says where an action comes from: {view_id} for modals and App Home, {channel, ts} for messages.
function blockEl(block, ctx, kept = {}) {
  switch (block.type) {
    case "section":
      return el("div", { class: "block section" }, textEl(block.text),
        block.fields && el("div", { class: "fields" }, block.fields.map(textEl)),
        block.accessory && elementEl(block, block.accessory, ctx));
    case "context":
      return el("div", { class: "block context" },
        (block.elements || []).map((e) => (e.type === "image" ? el("span", { class: "image" }, `[${e.alt_text}]`) : textEl(e))));
    case "header": return el("h3", { class: "block header" }, plain(block.text));
    case "divider": return el("hr", { class: "block" });
    case "image": return el("div", { class: "block image" }, `[image: ${block.alt_text}]`);
    case "actions": return el("div", { class: "block actions" }, (block.elements || []).map((e) => elementEl(block, e, ctx)));
    case "input":
      return el("div", { class: "block input", "data-block": block.block_id, "data-required": !block.optional },
        el("label", { class: "label" }, plain(block.label), block.optional && el("span", { class: "optional" }, " (optional)")),
        elementEl(block, block.element, ctx, kept[block.block_id]),
        block.hint && el("div", { class: "hint" }, plain(block.hint)),
        el("div", { class: "error", role: "alert" }));
    default: return el("div", { class: "block unsupported" }, `[${block.type} block]`);
  }
}

function elementEl(block, e, ctx, kept) {
  const dispatch = block.dispatch_action ? () => act(ctx, block, e) : null;
  const name = block.block_id;
  switch (e.type) {
    case "plain_text_input": case "email_text_input": case "url_text_input": case "number_input": {
      const field = el(e.multiline ? "textarea" : "input", { name, maxlength: e.max_length, minlength: e.min_length,
        placeholder: plain(e.placeholder), type: e.multiline ? null : { email_text_input: "email", url_text_input: "url",
          number_input: "number" }[e.type] || "text", rows: e.multiline ? 4 : null, onchange: dispatch });
      field.value = kept ?? e.initial_value ?? "";
      return field;
    }
    case "datepicker": case "timepicker": {
      const field = el("input", { name, type: e.type === "datepicker" ? "date" : "time", onchange: dispatch });
      field.value = kept ?? e.initial_date ?? e.initial_time ?? "";
      return field;
    }
    case "static_select": case "multi_static_select": case "users_select": case "multi_users_select": {
      const many = e.type.startsWith("multi_");
      const options = e.type.endsWith("users_select")
        ? ui.state.people.map((p) => ({ value: p.id, label: p.name }))
        : [...(e.options || []), ...(e.option_groups || []).flatMap((g) => g.options)].map((o) => ({ value: o.value, label: plain(o.text) }));
      const initial = kept ?? (e.initial_option ? e.initial_option.value : e.initial_user
        ?? (e.initial_options || []).map((o) => o.value).concat(e.initial_users || []));
      const chosen = new Set([].concat(initial ?? []));
      return el("select", { name, multiple: many, onchange: dispatch },
        !many && el("option", { value: "" }, plain(e.placeholder) || "Select an item"),
        options.map((o) => el("option", { value: o.value, selected: chosen.has(o.value) }, o.label)));
    }
    case "checkboxes": case "radio_buttons": {
      const chosen = new Set(kept ?? (e.initial_options || []).concat(e.initial_option || []).map((o) => o.value));
      return el("div", { class: "choices" }, (e.options || []).map((o) => el("label", {},
        el("input", { type: e.type === "checkboxes" ? "checkbox" : "radio", name, value: o.value,
                      checked: chosen.has(o.value), onchange: dispatch }), textEl(o.text))));
    }
    case "button":
      if (ctx.unfurl) {  // an unfurl's button: a link opens; other actions are not played by the stand-in
        return el("button", { type: "button", class: `button ${e.style || ""}`,
          onclick: () => (e.url ? window.open(e.url, "_blank", "noopener") : toast("Buttons in unfurls only open their links here.")) },
          plain(e.text));
      }
      return el("button", { type: "button", class: `button ${e.style || ""}`, onclick: () => act(ctx, block, e) }, plain(e.text));
    default:
      return el("span", { class: "unsupported" }, `[${e.type}]`);
  }
}

function readValues(root = $("#modal-body")) {  // {block_id: string | [values]}
  const values = {};
  for (const block of root.querySelectorAll("[data-block]")) {
    const boxes = [...block.querySelectorAll("input[type=checkbox], input[type=radio]")];
    const field = block.querySelector("select, input, textarea");
    if (boxes.length) {
      const on = boxes.filter((b) => b.checked).map((b) => b.value);
      values[block.dataset.block] = boxes[0].type === "radio" ? on[0] || "" : on;
    } else if (field && field.multiple) values[block.dataset.block] = [...field.selectedOptions].map((o) => o.value);
    else if (field) values[block.dataset.block] = field.value;
  }
  return values;
}

function act(ctx, block, element) {
  const values = ctx.view_id && ui.state.modal && ctx.view_id === ui.state.modal.id ? readValues() : {};
  post("/ui/action", { ...ctx, block_id: block.block_id, action_id: element.action_id || block.block_id, values });
}

// ---------------------------------------------------------------- modal
function renderModal(modal) {
  const overlay = $("#modal-overlay");
  if (!modal) {
    overlay.hidden = true;
    ui.modalKey = null;
    return;
  }
  const key = `${modal.id}:${modal.hash}`;
  if (key !== ui.modalKey) {  // new or updated view: rebuild, keeping what was typed into the same blocks
    const kept = ui.modalKey && ui.modalKey.startsWith(modal.id + ":") ? readValues() : {};
    ui.modalKey = key;
    ui.localErrors = {};
    const view = modal.view;
    $("#modal-title").textContent = plain(view.title);
    $("#modal-body").replaceChildren(...view.blocks.map((b) => blockEl(b, { view_id: view.id }, kept)));
    $("#modal-submit").hidden = !view.submit;
    $("#modal-submit").textContent = plain(view.submit);
    $("#modal-close").textContent = plain(view.close) || "Close";
    overlay.hidden = false;
    const first = $("#modal-body input[type=text], #modal-body textarea") || $("#modal-body input, #modal-body select");
    if (first) first.focus();
  }
  $("#modal-submit").disabled = false;
  showErrors(modal);
}

function showErrors(modal) {
  for (const block of document.querySelectorAll("#modal-body [data-block]")) {
    const error = ui.localErrors[block.dataset.block] || (modal.errors || {})[block.dataset.block] || "";
    block.querySelector(".error").textContent = error;
    block.classList.toggle("invalid", !!error);
  }
  $("#modal-notice").hidden = !modal.notice;
  $("#modal-notice").textContent = modal.notice || "";
}

async function submitModal() {
  const modal = ui.state.modal;
  const values = readValues();
  ui.localErrors = {};
  for (const block of document.querySelectorAll("#modal-body [data-block][data-required]")) {  // Slack checks these itself
    const value = values[block.dataset.block];
    if (!value || (Array.isArray(value) && !value.length)) ui.localErrors[block.dataset.block] = "Please complete this required field.";
  }
  showErrors(modal);
  if (Object.keys(ui.localErrors).length) return;
  $("#modal-submit").disabled = true;
  await post("/ui/submit", { view_id: modal.id, values });
}

// ---------------------------------------------------------------- messages
function avatar(id) {
  const u = user(id);
  const hue = [...id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
  return el("div", { class: "avatar", style: `background:hsl(${hue} 45% 45%)` }, (u.name || "?")[0].toUpperCase());
}

function messageEl(m, channel, inThread) {
  const u = user(m.user);
  const content = m.blocks && m.blocks.length ? el("div", { class: "blocks" }, m.blocks.map((b) => blockEl(b, { channel, ts: m.ts })))
    : el("div", { class: "text", html: mrkdwn(m.text) });
  const replies = !inThread && m.reply_count
    ? el("a", { class: "replies", href: "#", onclick: (e) => { e.preventDefault(); openThread(channel, m.ts); } },
         `${m.reply_count} ${m.reply_count === 1 ? "reply" : "replies"}`) : null;
  const tools = m.ephemeral ? null : el("div", { class: "tools" },
    el("button", { type: "button", title: "Add reaction", onclick: (e) => openReactions(e, channel, m) }, "☺"),
    !inThread && el("button", { type: "button", title: "Reply in thread", onclick: () => openThread(channel, m.ts) }, "💬"),
    el("button", { type: "button", class: "more", title: "More actions", onclick: (e) => openMenu(e, channel, m) }, "⋮"));
  const reactions = (m.reactions || []).length ? el("div", { class: "reactions" }, m.reactions.map((r) => el("button", {
    type: "button", class: `reaction${r.users.includes(ui.me) ? " mine" : ""}`, "data-reaction": r.name,
    title: r.users.map((id) => user(id).name).join(", "), onclick: () => react(channel, m.ts, r.name) },
    emoji(`:${r.name}:`), " ", el("span", { class: "count" }, String(r.count))))) : null;
  const shared = !m.ephemeral && (ui.state.unfurls || {})[`${channel}:${m.ts}`];
  const unfurls = shared ? Object.entries(shared.unfurls).map(([url, u]) => el("div", { class: "unfurl", "data-url": url },
    (u.blocks || []).map((b) => blockEl(b, { unfurl: true })),
    !(u.blocks || []).length && el("div", { class: "text", html: mrkdwn(u.text || u.title || "") }),
    el("div", { class: "unfurl-url" }, url,
      shared.entity && el("button", { type: "button", class: "button entity-details",
        onclick: () => post("/ui/entity_details", { channel, ts: m.ts, url }) }, "Details")))) : null;
  return el("div", { class: `message${m.ephemeral ? " ephemeral" : ""}`, "data-ts": m.ts }, avatar(m.user),
    el("div", { class: "body" },
      el("div", { class: "meta" }, el("b", {}, u.name), u.is_bot && el("span", { class: "badge" }, "APP"),
         el("time", {}, clock(m.ts)), m.ephemeral && el("span", { class: "only-you" }, "Only visible to you")),
      content, unfurls, reactions, replies),
    tools);
}

function react(channel, ts, name) {
  post("/ui/react", { channel, ts, name });
}

function openReactions(event, channel, message) {  // a small emoji picker
  const menu = $("#menu");
  menu.replaceChildren(el("div", { class: "menu-title" }, "Add reaction"), el("div", { class: "emoji-picker" },
    REACTIONS.map((name) => el("button", { type: "button", title: `:${name}:`, "data-emoji": name,
      onclick: () => { menu.hidden = true; react(channel, message.ts, name); } }, emoji(`:${name}:`)))));
  const box = event.currentTarget.getBoundingClientRect();
  Object.assign(menu.style, { top: `${box.bottom + 4}px`, left: `${Math.max(8, box.right - 220)}px` });
  menu.hidden = false;
  event.stopPropagation();
}

function openMenu(event, channel, message) {
  const menu = $("#menu");
  const shortcuts = ui.state.app.shortcuts;
  menu.replaceChildren(el("div", { class: "menu-title" }, ui.state.app.name),
    ...(shortcuts.length ? shortcuts : [{ name: "No shortcuts" }]).map((s) => el("button", { type: "button", disabled: !s.callback_id,
      onclick: () => { menu.hidden = true; post("/ui/shortcut", { channel, ts: message.ts, callback_id: s.callback_id }); } }, s.name)));
  const box = event.currentTarget.getBoundingClientRect();
  Object.assign(menu.style, { top: `${box.bottom + 4}px`, left: `${Math.max(8, box.right - 220)}px` });
  menu.hidden = false;
  event.stopPropagation();
}
document.addEventListener("click", (e) => { if (!$("#menu").contains(e.target)) $("#menu").hidden = true; });

function fillList(list, items) {  // keep the reader at the bottom when they were there
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60 || list.dataset.key !== items.key;
  list.replaceChildren(...items);
  list.dataset.key = items.key;
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderMessages(st) {
  const channel = channelById(ui.channel);
  $("#channel-title").textContent = channel.is_im ? channel.label : `# ${channel.name}`;
  const home = channel.app_dm && st.app.home_tab;
  $("#tabs").replaceChildren(...(home ? ["messages", "home"] : []).map((tab) => el("button", {
    type: "button", class: ui.tab === tab ? "active" : "", onclick: () => openTab(tab) }, tab === "home" ? "Home" : "Messages")));
  const showHome = home && ui.tab === "home";
  $("#home").hidden = !showHome;
  const readOnly = channel.app_dm && st.app.dm_read_only;
  $("#messages").hidden = showHome;
  $("#composer").hidden = showHome || readOnly;
  $("#composer-off").hidden = showHome || !readOnly;
  if (showHome) {
    $("#home").replaceChildren(...(st.home ? st.home.blocks.map((b) => blockEl(b, { view_id: st.home.id }))
      : [el("p", { class: "empty" }, "Nothing here yet.")]));
    return;
  }
  const roots = (st.messages[channel.id] || []).filter((m) => !m.thread_ts || m.thread_ts === m.ts);
  const mine = st.ephemeral.filter((e) => e.channel === channel.id && !e.thread_ts);
  const items = [...roots, ...mine].sort(byTs).map((m) => messageEl(m, channel.id, false));
  items.key = channel.id;
  fillList($("#messages"), items.length ? items : [el("p", { class: "empty" }, "No messages yet.")]);
  $("#composer-text").placeholder = `Message ${channel.is_im ? channel.label : "#" + channel.name}`;
}

function renderThread(st) {
  const pane = $("#thread");
  const messages = ui.thread ? st.messages[ui.thread.channel] || [] : [];
  const root = ui.thread && messages.find((m) => m.ts === ui.thread.ts);
  pane.hidden = !root;
  if (!root) return;
  const replies = messages.filter((m) => m.thread_ts === root.ts && m.ts !== root.ts);
  const mine = st.ephemeral.filter((e) => e.channel === ui.thread.channel && e.thread_ts === root.ts);
  $("#thread-title").textContent = `Thread in #${st.channel_names[ui.thread.channel]}`;
  const items = [messageEl(root, ui.thread.channel, true),
    el("div", { class: "reply-count" }, `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`),
    ...[...replies, ...mine].sort(byTs).map((m) => messageEl(m, ui.thread.channel, true))];
  items.key = `${ui.thread.channel}:${root.ts}`;
  fillList($("#thread-messages"), items);
}

// ---------------------------------------------------------------- sidebar and side panel
function renderSidebar(st) {
  $("#team-name").textContent = st.team;
  const spaces = st.workspaces || [];  // an Enterprise Grid org: who to be in each of its workspaces
  $("#workspace-switch").hidden = !spaces.length;
  const ws = $("#workspace");
  if (ws.dataset.spaces !== JSON.stringify(spaces)) {
    ws.replaceChildren(...spaces.map((w) => el("option", { value: w.id }, w.name)));
    ws.dataset.spaces = JSON.stringify(spaces);
  }
  ws.value = st.team_id;
  $("#install-link").hidden = !st.install_url;
  if (st.install_url) $("#install-link").href = st.install_url;
  const me = $("#me");
  if (me.dataset.people !== JSON.stringify(st.people)) {
    me.replaceChildren(...st.people.map((p) => el("option", { value: p.id }, p.name)));
    me.dataset.people = JSON.stringify(st.people);
  }
  me.value = ui.me;
  const item = (c) => {
    const roots = (st.messages[c.id] || []).filter((m) => !m.thread_ts || m.thread_ts === m.ts);
    const last = roots.length ? roots[roots.length - 1].ts : "0";
    const seenKey = `${ui.me}:${c.id}`;
    if (ui.seen[seenKey] === undefined) ui.seen[seenKey] = ui.loaded ? "0" : last;  // new channels: all unread
    if (c.id === ui.channel) ui.seen[seenKey] = last;
    const unread = roots.filter((m) => m.user !== ui.me && parseFloat(m.ts) > parseFloat(ui.seen[seenKey])).length;
    return el("li", { class: `${c.id === ui.channel ? "active" : ""} ${unread ? "unread" : ""}`, "data-channel": c.id },
      el("a", { href: "#", onclick: (e) => { e.preventDefault(); openChannel(c.id); } },
        c.is_im ? el("span", { class: "presence" }, "●") : "# ", c.is_im ? c.label : c.name,
        unread ? el("span", { class: "count" }, unread) : null));
  };
  $("#channels").replaceChildren(...st.channels.filter((c) => !c.is_im).map(item));
  $("#dms").replaceChildren(...st.channels.filter((c) => c.is_im).map(item));
  const runs = (st.workflows || { runs: [] }).runs;
  $("#runs-section").hidden = !runs.length;
  $("#runs").replaceChildren(...runs.map((r) => el("li", { class: r.state, "data-run": r.function_execution_id },
    r.state === "running" ? `${r.callback_id}: running…`
      : r.state === "completed" ? `${r.callback_id}: ` + Object.entries(r.outputs || {}).map(([k, v]) => `${k} ${v}`).join(" · ")
      : `${r.callback_id} failed: ${r.error}`)));
  $("#workflow-button").hidden = !(st.workflows && st.workflows.functions.length);
}

// ---------------------------------------------------------------- Workflow Builder (the app's step)
function openWorkflow() {
  const fn = ui.state.workflows.functions[0];
  $("#workflow-title").textContent = fn.title;
  const channels = ui.state.channels.filter((c) => !c.is_im);
  $("#workflow-form").replaceChildren(...fn.input_parameters.map((p) => {
    let field;
    if (p.type === "slack#/types/user_id") {
      field = el("select", { name: p.name }, !p.is_required && el("option", { value: "" }, "—"),
        ui.state.people.map((x) => el("option", { value: x.id, selected: x.id === ui.me }, x.name)));
    } else if (p.type === "slack#/types/channel_id") {
      field = el("select", { name: p.name }, !p.is_required && el("option", { value: "" }, "—"),
        channels.map((c) => el("option", { value: c.id, selected: c.id === ui.channel }, `#${c.name}`)));
    } else {
      field = el(p.name === "description" ? "textarea" : "input", { name: p.name, rows: p.name === "description" ? 3 : null });
    }
    field.required = !!p.is_required;
    return el("div", { class: "block input", "data-param": p.name },
      el("label", { class: "label" }, p.title || p.name, !p.is_required && el("span", { class: "optional" }, " (optional)")),
      field, p.description && el("div", { class: "hint" }, p.description));
  }));
  $("#workflow-form").dataset.callback = fn.callback_id;
  $("#workflow-overlay").hidden = false;
  const first = $("#workflow-form input, #workflow-form textarea");
  if (first) first.focus();
}

async function runWorkflow() {
  const form = $("#workflow-form");
  if (!form.reportValidity()) return;
  const inputs = {};
  for (const field of form.querySelectorAll("[name]")) if (field.value.trim()) inputs[field.name] = field.value.trim();
  $("#workflow-overlay").hidden = true;
  if (await post("/ui/workflow", { callback_id: form.dataset.callback, inputs })) toast("Workflow started");
}
$("#workflow-button").addEventListener("click", openWorkflow);
$("#workflow-run").addEventListener("click", runWorkflow);
$("#workflow-form").addEventListener("submit", (e) => { e.preventDefault(); runWorkflow(); });
for (const id of ["#workflow-x", "#workflow-cancel"]) $(id).addEventListener("click", () => { $("#workflow-overlay").hidden = true; });

function renderPanel(panel) {
  $("#panel").hidden = !panel;
  if (!panel) return;
  $("#panel-title").textContent = panel.title;
  $("#panel-subtitle").textContent = panel.subtitle || "";
  const link = $("#panel-link");
  link.hidden = !panel.link;
  if (panel.link) { link.href = panel.link.href; link.textContent = panel.link.text; }
  $("#panel-items").replaceChildren(...(panel.items.length ? panel.items.map((t) => el("div", { class: "ticket", "data-ticket": t.id },
    el("div", { class: "ticket-id" }, t.id), el("div", { class: "ticket-title" }, t.title),
    el("dl", {}, t.fields.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    t.tags.length ? el("div", { class: "tags" }, el("span", { class: "what" }, "Sync targets"), t.tags.map((x) => el("span", { class: "tag" }, x))) : null,
    el("div", { class: "links" }, el("span", { class: "what" }, "Connected threads"),
      t.links.length ? t.links.map((l) => el("a", { href: "#", class: "thread-link", title: l.kind,
        onclick: (e) => { e.preventDefault(); openChannel(l.channel); openThread(l.channel, l.ts); } }, l.label))
        : el("span", { class: "none" }, "none"))))
    : [el("p", { class: "empty" }, "No tickets yet. Type /ticket in a channel.")]));
}

// ---------------------------------------------------------------- navigation and polling
function render() {
  const st = ui.state;
  if (!channelById(ui.channel)) ui.channel = st.channels[0].id;
  renderSidebar(st);
  renderMessages(st);
  renderThread(st);
  renderModal(st.modal);
  renderPanel(st.panel);
  document.body.dataset.me = st.me;  // whose view is on the screen (the picker changes before it)
  ui.loaded = true;
}

function openChannel(id) {
  if (id !== ui.channel) ui.tab = "messages";
  ui.channel = id;
  localStorage.setItem("channel", id);
  render();
}

function openThread(channel, ts) {
  ui.thread = { channel, ts };
  render();
  $("#thread-text").focus();
}

function openTab(tab) {
  ui.tab = tab;
  render();
  if (tab === "home") post("/ui/home", {});
}

async function poll() {
  const mine = ++ui.poll;
  while (mine === ui.poll) {
    try {
      const response = await fetch(`/ui/state?user=${encodeURIComponent(ui.me)}&since=${ui.version}`);
      const state = await response.json();
      if (mine !== ui.poll) return;
      ui.state = state;
      ui.me = state.me;
      ui.version = state.version;
      render();
    } catch (err) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function bindComposer(form, target) {
  const box = form.querySelector("textarea");
  box.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.shiftKey) return;
    e.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    box.value = "";
    box.dispatchEvent(new Event("input"));
    post("/ui/message", { ...target(), text });
  });
}

function commandHint() {
  const text = $("#composer-text").value;
  const word = text.split(" ")[0];
  const matches = text.startsWith("/") ? ui.state.app.commands.filter((c) => c.command.startsWith(word)) : [];
  $("#command-hint").hidden = !matches.length;
  $("#command-hint").replaceChildren(...matches.map((c) => el("div", {},
    el("b", {}, c.command), " ", el("span", { class: "usage" }, c.usage_hint || ""), " ", el("span", { class: "what" }, c.description || ""),
    el("span", { class: "by" }, ui.state.app.name))));
}

function becomePerson(id) {
  ui.me = id;
  localStorage.setItem("me", ui.me);
  ui.version = -1;
  ui.loaded = false;
  ui.thread = null;
  ui.modalKey = null;
  poll();
}
$("#me").addEventListener("change", (e) => becomePerson(e.target.value));
$("#workspace").addEventListener("change", (e) => {  // another workspace: its first person, its channels
  const space = ui.state.workspaces.find((w) => w.id === e.target.value);
  if (!space) return;
  ui.channel = "";
  becomePerson(space.person);
});
$("#thread-close").addEventListener("click", () => { ui.thread = null; render(); });
$("#modal-submit").addEventListener("click", submitModal);
$("#modal-body").addEventListener("submit", (e) => { e.preventDefault(); submitModal(); });
$("#modal-close").addEventListener("click", () => post("/ui/close", { view_id: ui.state.modal.id }));
$("#modal-x").addEventListener("click", () => post("/ui/close", { view_id: ui.state.modal.id, all: true }));
$("#composer-text").addEventListener("input", commandHint);
bindComposer($("#composer"), () => ({ channel: ui.channel }));
bindComposer($("#thread-composer"), () => ({ channel: ui.thread.channel, thread_ts: ui.thread.ts }));
ui.me = localStorage.getItem("me") || "";
ui.channel = localStorage.getItem("channel") || "";
poll();
