// The partysub dashboard: reads the control plane's JSON API once a second,
// keeps a minute of samples to draw rates, and tails a room over a WebSocket.
// No framework and no build step: the daemon serves this file as it is.

const POLL_MS = 1000;
const SAMPLES = 60;
const TAIL_LINES = 500;

const $ = (selector) => document.querySelector(selector);

// --- samples and rates ------------------------------------------------------

const series = new Map(); // key -> [{t, v}], oldest first

function sample(key, value, t) {
  let points = series.get(key);
  if (!points) series.set(key, (points = []));
  points.push({ t, v: value });
  if (points.length > SAMPLES + 1) points.shift();
  return points;
}

// Per-second rate of a counter between consecutive samples.
function rates(points) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const dt = (points[i].t - points[i - 1].t) / 1000;
    out.push(dt > 0 ? Math.max(0, (points[i].v - points[i - 1].v) / dt) : 0);
  }
  return out;
}

const last = (values) => (values.length ? values[values.length - 1] : 0);

// --- drawing ----------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function sparkline(values, width = 120, height = 28) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.classList.add("spark");
  const max = Math.max(1, ...values);
  const step = width / Math.max(1, SAMPLES - 1);
  const start = width - step * (values.length - 1);
  const coords = values.map(
    (v, i) => `${(start + i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`,
  );
  if (coords.length === 1) coords.unshift(`${(start - step).toFixed(1)},${coords[0].split(",")[1]}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  const title = document.createElementNS(SVG, "title");
  title.textContent = `last ${values.length} s, peak ${formatNumber(max)}`;
  svg.append(title);
  return svg;
}

function formatNumber(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function formatAge(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function cell(content, className) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  if (className) td.className = className;
  return td;
}

function fillTable(table, rows) {
  const body = table.querySelector("tbody");
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells);
      return tr;
    }),
  );
}

function card(id, label, value, values) {
  const div = document.createElement("div");
  div.className = "card";
  div.id = id;
  const name = document.createElement("div");
  name.className = "label";
  name.textContent = label;
  const number = document.createElement("div");
  number.className = "value";
  number.textContent = formatNumber(value);
  div.append(name, number, sparkline(values));
  return div;
}

function roomLink(party, room) {
  const a = document.createElement("a");
  a.href = `#/room/${encodeURIComponent(party)}/${encodeURIComponent(room)}`;
  a.textContent = room;
  return a;
}

// --- the API ----------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  return { status: response.status, body: await response.json() };
}

function setStatus(text, bad = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("bad", bad);
}

// --- views ------------------------------------------------------------------

function trafficCards(prefix, now, traffic, connections) {
  const conn = sample(`${prefix}:conn`, connections, now).map((p) => p.v);
  const inRates = rates(sample(`${prefix}:in`, traffic.messages_in, now));
  const outRates = rates(sample(`${prefix}:out`, traffic.messages_out, now));
  const bytesOut = rates(sample(`${prefix}:bytes`, traffic.bytes_out, now));
  $("#cards").replaceChildren(
    card("card-connections", "connections", connections, conn),
    card("card-in", "published / s", last(inRates), inRates),
    card("card-out", "delivered / s", last(outRates), outRates),
    card("card-bytes", "bytes out / s", last(bytesOut), bytesOut),
  );
}

async function showDaemon() {
  const { body: daemon } = await api("/daemon");
  $("#daemon-line").textContent =
    `v${daemon.version} · up ${formatAge(daemon.uptime)} · ` +
    Object.entries(daemon.listeners)
      .map(([name, address]) => `${name} ${address}`)
      .join(" · ") +
    (daemon.draining ? " · draining" : "");
}

async function showOverview(now) {
  const { body: rooms } = await api("/rooms");
  const t = rooms.totals;
  trafficCards("all", now, t, t.connections);
  const parties = rooms.parties.map((party) => {
    const section = document.createElement("section");
    const h2 = document.createElement("h2");
    h2.textContent = `${party.party} `;
    const sub = document.createElement("span");
    sub.className = "muted";
    sub.textContent = `binding ${party.binding} · ${party.rooms.length} live rooms`;
    h2.append(sub);
    const table = document.createElement("table");
    table.className = "rooms";
    table.dataset.party = party.party;
    table.innerHTML =
      "<thead><tr><th>room</th><th class=num>nodes</th><th class=num>connections</th>" +
      "<th class=num>published/s</th><th class=num>delivered/s</th><th>delivered, last minute</th></tr></thead><tbody></tbody>";
    fillTable(
      table,
      party.rooms.map((room) => {
        const key = `${party.party}/${room.room}`;
        const inRate = rates(sample(`${key}:in`, room.messages_in, now));
        const outRate = rates(sample(`${key}:out`, room.messages_out, now));
        return [
          cell(roomLink(party.party, room.room)),
          cell(String(room.nodes), "num"),
          cell(String(room.connections), "num connections"),
          cell(formatNumber(last(inRate)), "num"),
          cell(formatNumber(last(outRate)), "num"),
          cell(sparkline(outRate)),
        ];
      }),
    );
    if (!party.rooms.length) {
      const empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = "No live rooms: nobody is connected.";
      section.append(h2, empty);
    } else {
      section.append(h2, table);
    }
    return section;
  });
  $("#parties").replaceChildren(...parties);
  await showCluster(rooms.cluster);
}

// With [cluster]: every daemon of the cluster, from their heartbeats.
async function showCluster(summary) {
  if (!summary) {
    $("#cluster").replaceChildren();
    return;
  }
  const { body: view } = await api("/cluster");
  const h2 = document.createElement("h2");
  h2.textContent = "cluster ";
  const sub = document.createElement("span");
  sub.className = "muted";
  const link = view.link.connected ? "Redis link up" : `Redis link down: ${view.link.reason}`;
  sub.textContent =
    `${summary.daemons} daemons · ${summary.connections} connections in ${summary.rooms} rooms · ${link}`;
  h2.append(sub);
  const table = document.createElement("table");
  table.id = "daemons";
  table.innerHTML =
    "<thead><tr><th>daemon</th><th>location</th><th>address</th><th class=num>connections</th>" +
    "<th class=num>rooms</th><th class=num>waiting for Redis</th><th class=num>last seen</th></tr></thead><tbody></tbody>";
  fillTable(
    table,
    view.daemons.map((d) => [
      cell(d.self ? `${d.name} (this one)` : d.name),
      cell(d.location),
      cell(d.address, "mono"),
      cell(String(d.connections), "num"),
      cell(String(d.rooms), "num"),
      cell(String(d.pending), "num"),
      cell(`${formatAge(d.last_seen)} ago`, "num"),
    ]),
  );
  $("#cluster").replaceChildren(h2, table);
}

async function showRoom(party, room, now) {
  // Ask for the details only of a live room: the API answers 404 for the others.
  const { body: listing } = await api("/rooms");
  const live = listing.parties.some(
    (p) => p.names.includes(party) && p.rooms.some((r) => r.room === room),
  );
  const base = `/rooms/${encodeURIComponent(party)}/${encodeURIComponent(room)}`;
  const [detail, conns] = live
    ? await Promise.all([api(base), api(`${base}/connections`)])
    : [{ status: 404 }, { status: 404 }];
  $("#room-missing").hidden = detail.status === 200;
  const view =
    detail.status === 200
      ? detail.body
      : { connections: 0, messages_in: 0, messages_out: 0, bytes_out: 0, nodes: [], patterns: [], recent_topics: [] };
  trafficCards(`${party}/${room}`, now, view, view.connections);
  fillTable(
    $("#nodes"),
    view.nodes.map((n) => [cell(n.id), cell(n.location), cell(String(n.connections), "num")]),
  );
  fillTable(
    $("#patterns"),
    view.patterns.map((p) => [cell(p.pattern, "mono"), cell(String(p.connections), "num")]),
  );
  const wallNow = Date.now() / 1000;
  fillTable(
    $("#topics"),
    view.recent_topics.map((t) => [
      cell(t.topic, "mono"),
      cell(String(t.count), "num"),
      cell(`${formatAge(Math.max(0, wallNow - t.last_seen))} ago`),
    ]),
  );
  const rows = conns.status === 200 ? conns.body.connections : [];
  fillTable(
    $("#connections"),
    rows.map((c) => [
      cell(c.id, "mono"),
      cell(c.peer),
      cell(c.node),
      cell(c.country ?? ""),
      cell(c.topics.join(", "), "mono"),
      cell(String(c.buffered_bytes), "num"),
      cell(formatAge(c.age), "num"),
    ]),
  );
}

// --- the live tail ----------------------------------------------------------

const tail = { socket: null, key: null, paused: false, held: [], dropped: 0, received: 0 };

function tailState() {
  const parts = [tail.socket && tail.socket.readyState === WebSocket.OPEN ? "live" : "connecting"];
  parts.push(`${tail.received} received`);
  if (tail.dropped) parts.push(`${tail.dropped} not shown (too fast)`);
  if (tail.paused) parts.push(`paused, ${tail.held.length} held`);
  $("#tail-state").textContent = parts.join(" · ");
}

function appendTail(messages) {
  const list = $("#tail");
  const items = messages.map((m) => {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date(m.time * 1000).toLocaleTimeString();
    const topic = document.createElement("span");
    topic.className = "topic";
    topic.textContent = m.topic;
    const data = document.createElement("code");
    data.textContent = JSON.stringify(m.data);
    li.append(time, topic, data);
    if (m.id) li.title = `cursor ${m.id}`;
    return li;
  });
  list.prepend(...items.reverse());
  while (list.children.length > TAIL_LINES) list.lastElementChild.remove();
}

function openTail(party, room) {
  const key = `${party}/${room}`;
  if (tail.key === key && tail.socket) return;
  closeTail();
  tail.key = key;
  $("#tail").replaceChildren();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const topics = $("#tail-filter").value.trim();
  const query = topics ? `?topics=${encodeURIComponent(topics)}` : "";
  const socket = new WebSocket(
    `${scheme}://${location.host}/tail/${encodeURIComponent(party)}/${encodeURIComponent(room)}${query}`,
  );
  tail.socket = socket;
  socket.onmessage = (event) => {
    const batch = JSON.parse(event.data);
    if (!batch.messages) return; // the hello
    tail.received += batch.messages.length;
    tail.dropped += batch.dropped;
    if (tail.paused) tail.held.push(...batch.messages);
    else appendTail(batch.messages);
    tailState();
  };
  socket.onopen = tailState;
  socket.onclose = () => {
    if (tail.socket !== socket) return;
    tail.socket = null;
    tailState();
    // Reconnect while the room is still on screen.
    setTimeout(() => {
      if (tail.key === key && !tail.socket) {
        tail.key = null;
        openTail(party, room);
      }
    }, 1000);
  };
  tailState();
}

function closeTail() {
  const socket = tail.socket;
  Object.assign(tail, { socket: null, key: null, held: [], dropped: 0, received: 0 });
  if (socket) socket.close();
}

$("#tail-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const socket = tail.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ topics: $("#tail-filter").value.trim() || "*" }));
  }
});
$("#tail-pause").addEventListener("click", () => {
  tail.paused = !tail.paused;
  $("#tail-pause").textContent = tail.paused ? "Resume" : "Pause";
  if (!tail.paused) {
    appendTail(tail.held);
    tail.held = [];
  }
  tailState();
});
$("#tail-clear").addEventListener("click", () => $("#tail").replaceChildren());

// --- routing and the poll loop ----------------------------------------------

function route() {
  const match = location.hash.match(/^#\/room\/([^/]+)\/(.+)$/);
  return match ? { party: decodeURIComponent(match[1]), room: decodeURIComponent(match[2]) } : null;
}

async function refresh() {
  const now = Date.now();
  const where = route();
  $("#overview").hidden = !!where;
  $("#room").hidden = !where;
  try {
    await showDaemon();
    if (where) {
      $("#room-title").textContent = `${where.party} / ${where.room}`;
      await showRoom(where.party, where.room, now);
      openTail(where.party, where.room);
    } else {
      closeTail();
      await showOverview(now);
    }
    setStatus("");
    $("#login").hidden = true;
  } catch (error) {
    if (error instanceof Unauthorized) {
      $("#login").hidden = false;
      setStatus("token required", true);
    } else {
      setStatus(`control plane unreachable: ${error.message}`, true);
    }
  }
}

window.addEventListener("hashchange", () => {
  series.clear();
  refresh();
});

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}
loop();
