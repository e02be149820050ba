// Headless Chromium pages, driven by the Python tests over stdin/stdout.
//
// Debian's chromium through playwright-core (which never downloads a browser
// of its own). Each stdin line is a JSON command with a `req` number; each
// stdout line is a JSON event answering it ({event: "done", req, value} or
// {event: "failed", req, error}). Errors inside a page (exceptions, console
// errors, refused connections, CSP violations) are reported as
// {event: "page-error"} lines, so a test can insist there were none.
import readline from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Without the background-networking flags Chromium keeps trying to reach
// Google's hosts, which a closed test network refuses.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
const pages = new Map();

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function page(name) {
  const found = pages.get(name);
  if (!found) throw new Error(`no page ${name}`);
  return found;
}

const commands = {
  async open({ page: name, url, width, height }) {
    const context = await browser.newContext({ viewport: { width: width ?? 1280, height: height ?? 900 } });
    const p = await context.newPage();
    p.on("pageerror", (error) => emit({ event: "page-error", page: name, text: String(error) }));
    p.on("console", (message) => {
      if (message.type() === "error") emit({ event: "page-error", page: name, text: message.text() });
    });
    pages.set(name, p);
    await p.goto(url);
  },
  // Wait until the first element matching `selector` has `text` in it.
  async waitText({ page: name, selector, text, timeout }) {
    await page(name)
      .locator(selector)
      .filter({ hasText: text })
      .first()
      .waitFor({ timeout: timeout ?? 10000 });
  },
  async texts({ page: name, selector }) {
    return await page(name).locator(selector).allInnerTexts();
  },
  async fill({ page: name, selector, value }) {
    await page(name).locator(selector).fill(value);
  },
  async click({ page: name, selector }) {
    await page(name).locator(selector).click();
  },
  async goto({ page: name, url }) {
    await page(name).goto(url);
  },
  async evaluate({ page: name, expression }) {
    return await page(name).evaluate(expression);
  },
  async screenshot({ page: name, path }) {
    await page(name).screenshot({ path, fullPage: true });
  },
  async close({ page: name }) {
    await page(name).context().close();
    pages.delete(name);
  },
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const { cmd, req, ...args } = JSON.parse(line);
  try {
    const value = await commands[cmd](args);
    emit({ event: "done", req, value: value ?? null });
  } catch (error) {
    emit({ event: "failed", req, error: String(error) });
  }
}
await browser.close();
