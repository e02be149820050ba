// Real partysocket clients, driven by the Python tests over stdin/stdout.
//
// Each stdin line is a JSON command; each stdout line is a JSON event. The
// sockets are genuine PartySocket instances (the npm package apps use) on
// the `ws` WebSocket implementation, so what passes here is what a browser
// app built on partysocket sees.
import readline from "node:readline";
import { PartySocket } from "partysocket";
import WS from "ws";

const sockets = new Map();

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function socketClass(headers) {
  // partysocket takes a WebSocket constructor; this one adds request headers
  // (a reverse proxy's country header, an Origin), as a browser or proxy would.
  return class extends WS {
    constructor(url, protocols) {
      super(url, protocols, { headers: headers || {} });
    }
  };
}

const commands = {
  connect({ id, host, party, room, query, headers, retries }) {
    // The test's name for the client is also its partysocket id (`_pk`).
    const options = {
      id,
      host,
      party,
      room,
      WebSocket: socketClass(headers),
      maxRetries: retries ?? 0
    };
    if (query != null) options.query = query;
    const socket = new PartySocket(options);
    sockets.set(id, socket);
    socket.addEventListener("open", () => emit({ event: "open", id, pk: socket.id }));
    socket.addEventListener("message", (e) => emit({ event: "message", id, data: e.data }));
    socket.addEventListener("close", (e) =>
      emit({ event: "close", id, code: e.code, reason: e.reason })
    );
    socket.addEventListener("error", (e) =>
      emit({ event: "error", id, message: String(e.message || e.error || "error") })
    );
  },
  send({ id, data, binary }) {
    sockets.get(id).send(binary ? new TextEncoder().encode(data) : data);
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
