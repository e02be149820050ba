import { PartySocket } from "partysocket";

// Which room and topics to join, from the page's address:
//   index.html?room=default&topics=topic-abc,prefix:*&host=127.0.0.1:1999
const params = new URLSearchParams(location.search);
const room = params.get("room") ?? "default";
const topics = (params.get("topics") ?? "topic-abc,prefix:*").split(",").filter(Boolean);
const host = params.get("host") ?? "127.0.0.1:1999";

const $ = (id) => document.getElementById(id);
$("room").textContent = room;
$("topics").textContent = topics.join(", ");
$("topic").value = topics.find((t) => !t.endsWith("*")) ?? "topic-abc";

const ws = new PartySocket({ host, party: "pubsub", room, query: { topics } });

ws.addEventListener("open", () => ($("status").textContent = "open"));
ws.addEventListener("close", () => ($("status").textContent = "closed"));
ws.addEventListener("message", (event) => {
  const message = JSON.parse(event.data);
  if (message.__topics || message.__error) return;
  const li = document.createElement("li");
  li.dataset.topic = message.topic;
  const topic = document.createElement("strong");
  topic.textContent = message.topic;
  const data = typeof message.data === "string" ? message.data : JSON.stringify(message.data);
  li.append(topic, ` ${data}`);
  $("messages").append(li);
});

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  ws.send(JSON.stringify({ topic: $("topic").value, data: $("message").value }));
  $("message").value = "";
});
