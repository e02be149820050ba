// Real partysocket clients, driven by the Python tests over stdin/stdout.
//
// Each stdin line is a JSON command; each stdout line is a JSON event. The
// sockets are genuine PartySocket instances (the npm package apps use) on
// the `ws` WebSocket implementation, so what passes here is what a browser
// app built on partysocket sees.
import readline from "node:readline";
import { decode, encode } from "@msgpack/msgpack";
import { PartySocket } from "partysocket";
import WS from "ws";

const sockets = new Map();
const formats = new Map(); // id -> "msgpack" for binary clients

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function socketClass(headers, tls) {
  // partysocket takes a WebSocket constructor; this one adds request headers
  // (a reverse proxy's country header, an Origin), as a browser or proxy would,
  // and trusts the tests' self-signed certificate.
  return class extends WS {
    constructor(url, protocols) {
      super(url, protocols, { headers: headers || {}, rejectUnauthorized: !tls });
    }
  };
}

const commands = {
  connect({ id, pk, host, party, room, query, headers, retries, resume, format, tls }) {
    // The test's name for the client is its partysocket id (`_pk`) unless `pk` is given.
    const options = {
      id: pk ?? id,
      host,
      party,
      room,
      WebSocket: socketClass(headers, tls),
      maxRetries: retries ?? 0,
      minReconnectionDelay: 50,
      maxReconnectionDelay: 200,
      connectionTimeout: 2000
    };
    if (tls) options.protocol = "wss";
    let lastId = null;
    if (resume) {
      // The documented recipe: partysocket calls a `query` function on every
      // (re)connect, so the URL always carries the last cursor seen.
      options.query = () => ({ ...(query ?? {}), ids: "1", ...(lastId ? { since: lastId } : {}) });
    } else if (query != null) {
      options.query = query;
    }
    if (format === "msgpack") formats.set(id, "msgpack");
    const socket = new PartySocket(options);
    socket.binaryType = "arraybuffer";
    sockets.set(id, socket);
    socket.addEventListener("open", () => {
      // The daemon's keep-alive pings (ws answers them by itself).
      socket._ws.on("ping", () => emit({ event: "ping", id }));
      emit({ event: "open", id, pk: socket.id });
    });
    socket.addEventListener("message", (e) => {
      let data = e.data;
      if (typeof data !== "string") {
        data = JSON.stringify(decode(new Uint8Array(data)), (key, value) =>
          value instanceof Uint8Array ? { __bytes: Buffer.from(value).toString("base64") } : value
        );
      }
      if (resume) {
        const parsed = JSON.parse(data);
        if (parsed.id) lastId = parsed.id;
      }
      emit({ event: "message", id, data });
    });
    socket.addEventListener("close", (e) =>
      emit({ event: "close", id, code: e.code, reason: e.reason })
    );
    socket.addEventListener("error", (e) =>
      emit({ event: "error", id, message: String(e.message || e.error || "error") })
    );
  },
  send({ id, data, binary, bytes }) {
    if (formats.get(id) === "msgpack" && !binary) {
      // MessagePack clients send maps; `bytes` names a field to send as binary.
      const value = JSON.parse(data);
      if (bytes) value.data = Buffer.from(value.data, "base64");
      sockets.get(id).send(encode(value));
      return;
    }
    sockets.get(id).send(binary ? new TextEncoder().encode(data) : data);
  },
  sendMany({ id, topic, from, count }) {
    for (let i = from; i < from + count; i++) {
      sockets.get(id).send(JSON.stringify({ topic, data: i }));
    }
  },
  close({ id, code, reason }) {
    sockets.get(id).close(code, reason);
  },
  async fetch({ req, host, party, room, init, query }) {
    try {
      const options = { host, party, room };
      if (query != null) options.query = query;
      const res = await PartySocket.fetch(options, init);
      emit({
        event: "fetch",
        req,
        status: res.status,
        body: await res.text(),
        headers: Object.fromEntries(res.headers.entries())
      });
    } catch (err) {
      emit({ event: "fetch", req, error: String(err) });
    }
  },
  ping({ req }) {
    emit({ event: "pong", req });
  },
  barrier({ id, req }) {
    // A WebSocket ping through the daemon: its pong comes back behind every
    // frame the daemon queued for this socket before reading the ping, and
    // the ping is read after every frame this socket sent before it.
    const ws = sockets.get(id)?._ws;
    if (!ws || ws.readyState !== WS.OPEN) {
      emit({ event: "barrier", id, req, open: false });
      return;
    }
    ws.once("pong", () => emit({ event: "barrier", id, req, open: true }));
    ws.ping();
  }
};

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const command = JSON.parse(line);
  try {
    await commands[command.cmd](command);
  } catch (err) {
    emit({ event: "failed", cmd: command.cmd, message: String(err) });
  }
});
lines.on("close", () => {
  for (const socket of sockets.values()) socket.close();
  setTimeout(() => process.exit(0), 100);
});
