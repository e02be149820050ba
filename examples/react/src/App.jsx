import { useState } from "react";
import { usePartySocket } from "partysocket/react";

// Which room and topics to join, from the page's address:
//   /?room=default&topics=topic-abc,prefix:*&host=127.0.0.1:1999
// `host` defaults to the page's own host (the dev server proxies /parties).
const params = new URLSearchParams(window.location.search);
const room = params.get("room") ?? "default";
const topics = (params.get("topics") ?? "topic-abc,prefix:*").split(",").filter(Boolean);
const host = params.get("host") ?? undefined;

export default function App() {
  const [messages, setMessages] = useState([]);
  const [topic, setTopic] = useState(topics.find((t) => !t.endsWith("*")) ?? "topic-abc");
  const [text, setText] = useState("");
  const [status, setStatus] = useState("connecting");

  // The seed README's usage: party, room, query.topics, onMessage.
  const ws = usePartySocket({
    host,
    party: "pubsub",
    room,
    query: {
      // by default, it subscribes to all topics
      // but you can set it to specific topics
      topics,
    },
    onOpen: () => setStatus("open"),
    onClose: () => setStatus("closed"),
    onMessage: (event) => {
      // The daemon sends {"topic", "data"} JSON (the seed's snippet reads
      // event.topic directly; the message is in event.data).
      const message = JSON.parse(event.data);
      if (message.__topics || message.__error) return;
      setMessages((previous) => [...previous, message].slice(-200));
    },
  });

  function send(e) {
    e.preventDefault();
    ws.send(JSON.stringify({ topic, data: text }));
    setText("");
  }

  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: 720, margin: "24px auto" }}>
      <h1 style={{ fontSize: 20 }}>
        partysub · room <code>{room}</code>
      </h1>
      <p>
        topics <code id="topics">{topics.join(", ")}</code> · <span id="status">{status}</span>
      </p>
      <form onSubmit={send} style={{ display: "flex", gap: 8 }}>
        <input id="topic" value={topic} onChange={(e) => setTopic(e.target.value)} aria-label="topic" />
        <input
          id="message"
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder="message"
          aria-label="message"
          style={{ flex: 1 }}
        />
        <button id="send" type="submit" disabled={status !== "open"}>
          Send
        </button>
      </form>
      <ol id="messages">
        {messages.map((m, i) => (
          <li key={i} data-topic={m.topic}>
            <strong>{m.topic}</strong> {typeof m.data === "string" ? m.data : JSON.stringify(m.data)}
          </li>
        ))}
      </ol>
    </main>
  );
}
