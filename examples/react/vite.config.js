import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// In development the app's own origin proxies /parties to the daemon, the way
// a reverse proxy does in production, so the default host (the page's) works.
const daemon = process.env.PARTYSUB_URL ?? "http://127.0.0.1:1999";

export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/parties": { target: daemon, ws: true } } },
  preview: { proxy: { "/parties": { target: daemon, ws: true } } },
});
