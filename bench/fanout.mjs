// Fan-out load generator: S subscribers, one publisher, 64-byte messages.
//
//   node fanout.mjs burst  URL S SECONDS WINDOW   -> delivered/s, latency, losses
//   node fanout.mjs paced  URL S SECONDS RATE     -> latency at RATE deliveries/s
//   node fanout.mjs idle   URL N                  -> hold N connections, one publish to all
//
// URL is the room's WebSocket URL (ws://host:port/parties/pubsub/bench).
// Prints one JSON line with the figures. Every message carries its sequence
// number and send time, so losses, duplicates and reordering are counted,
// not assumed.
import WebSocket from "ws";

const [mode, url, countArg, secondsArg, knob] = process.argv.slice(2);
const S = Number(countArg);
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

function open(query) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?${query}`, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      rejectUnauthorized: false // the TLS scenario's self-signed certificate
    });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function openMany(n, query) {
  const sockets = [];
  const batch = 200;
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, () => open(query))
    );
    sockets.push(...part);
  }
  return sockets;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function payload(seq) {
  // {"topic":"bench","data":"<seq>|<time>|<pad>"}: 64 bytes on the wire to subscribers
  const head = `${seq}|${now().toFixed(3)}|`;
  return JSON.stringify({ topic: "bench", data: head.padEnd(34, "x") });
}

async function fanout(paced) {
  // SUBSCRIBER_QUERY adds options such as ids=1 (cursors in every frame).
  const subscribers = await openMany(S, "topics=bench" + (process.env.SUBSCRIBER_QUERY ?? ""));
  const publisher = await open("topics=");
  const seconds = Number(secondsArg);
  const latencies = [];
  const lastSeq = new Array(S).fill(-1);
  let received = 0;
  let duplicates = 0;
  let reordered = 0;
  let sent = 0;
  let measuring = false;
  let sentMeasured = 0;
  let firstSeqMeasured = -1;

  // The hot loop of the generator: no JSON.parse, no strings. The frame is
  // {"topic":"bench","data":"SEQ|TIME|pad"}; digits are read straight from
  // the buffer, and the send time only for every 8th message (a sample).
  const DATA_AT = '{"topic":"bench","data":"'.length;
  subscribers.forEach((ws, i) => {
    ws.on("message", (raw) => {
      let at = DATA_AT;
      let seq = 0;
      for (let c = raw[at]; c !== 124; c = raw[++at]) seq = seq * 10 + (c - 48);
      const last = lastSeq[i];
      if (seq <= last) {
        if (seq === last) duplicates++;
        else reordered++;
      } else {
        if (seq !== last + 1 && last >= 0) reordered++; // a gap: something before it is missing
        lastSeq[i] = seq;
      }
      received++;
      if (pumping && sent * S - received + S <= window) pump();
      if (measuring && (seq & 7) === 0 && seq >= firstSeqMeasured) {
        const end = raw.indexOf(124, at + 1);
        latencies.push(now() - Number(raw.toString("latin1", at + 1, end)));
      }
    });
  });

  // Burst mode keeps at most `window` deliveries in flight: a publish goes
  // out whenever receipts make room (called from the receive handler, so the
  // generator never spins).
  const window = paced ? Infinity : Number(knob);
  let pumping = false;
  function pump() {
    while (pumping && sent * S - received + S <= window) {
      publisher.send(payload(sent++));
    }
  }

  // A warm-up second, then the measured interval.
  const warmup = 1000;
  let start;
  let receivedAtStart;
  if (paced) {
    const perSecond = Number(knob) / S;
    const tickMs = 5;
    let due = 0;
    const t0 = now();
    const timer = setInterval(() => {
      due = ((now() - t0) / 1000) * perSecond;
      while (sent < due) publisher.send(payload(sent++));
    }, tickMs);
    setTimeout(() => {
      measuring = true;
      firstSeqMeasured = sent;
      start = now();
      receivedAtStart = received;
      sentMeasured = sent;
    }, warmup);
    await new Promise((r) => setTimeout(r, warmup + seconds * 1000));
    clearInterval(timer);
  } else {
    pumping = true;
    pump();
    await new Promise((r) => setTimeout(r, warmup));
    measuring = true;
    firstSeqMeasured = sent;
    start = now();
    receivedAtStart = received;
    sentMeasured = sent;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    pumping = false;
  }
  const elapsed = (now() - start) / 1000;
  const deliveredMeasured = received - receivedAtStart;
  const published = sent - sentMeasured;
  // Let everything in flight arrive, then count what never did.
  const drainDeadline = now() + 5000;
  while (received < sent * S && now() < drainDeadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  latencies.sort((a, b) => a - b);
  const result = {
    mode,
    subscribers: S,
    seconds: elapsed,
    published_per_s: Math.round(published / elapsed),
    delivered_per_s: Math.round(deliveredMeasured / elapsed),
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    lost: sent * S - received,
    delivered_total: received,
    duplicates,
    reordered
  };
  console.log(JSON.stringify(result));
  for (const ws of [...subscribers, publisher]) ws.terminate();
}

async function idle() {
  const sockets = await openMany(S, "topics=bench");
  console.log(JSON.stringify({ mode: "idle", connected: sockets.length }));
  // Wait for the driver to measure memory, then publish once to all.
  await new Promise((resolve) => process.stdin.once("data", resolve));
  let received = 0;
  const t0 = now();
  const all = new Promise((resolve) => {
    for (const ws of sockets) {
      ws.once("message", () => {
        if (++received === sockets.length) resolve();
      });
    }
  });
  const publisher = await open("topics=");
  publisher.send(JSON.stringify({ topic: "bench", data: "to everyone" }));
  await Promise.race([all, new Promise((r) => setTimeout(r, 30000))]);
  console.log(
    JSON.stringify({ mode: "idle", connected: sockets.length, received, ms: now() - t0 })
  );
  for (const ws of [...sockets, publisher]) ws.terminate();
  process.exit(0);
}

if (mode === "idle") await idle();
else await fanout(mode === "paced");
process.exit(0);
