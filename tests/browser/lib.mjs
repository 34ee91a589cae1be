// What every browser scenario shares: Debian's Chromium driven by playwright-core, one fresh
// context per simulated person (two tabs of one person share nothing either: the page keeps its
// user per tab), a failure on any page error or console error, and screenshots of every open
// page when a scenario fails. Run by tests/page.rs, which sets BASE_URL and ARTIFACTS_DIR.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export const BASE_URL = process.env.BASE_URL;
const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR || "target/browser-artifacts/manual";
const TIMEOUT_MS = 15_000;
const DESKTOP = { width: 1280, height: 900 };
/** A phone-sized screen (the CSS size of a common phone), opened as a mobile, touch device. */
export const PHONE = { width: 390, height: 844 };

/**
 * Runs `body({ open, expectRefusal })` in a fresh browser and exits non-zero if anything failed.
 * `open(label, { viewport })` opens the page in a context of its own (a desktop window unless
 * `viewport` is given, such as `PHONE`); `expectRefusal(page, urlPattern)` lets
 * that page be refused (4xx) by URLs matching the pattern without failing the scenario.
 */
export async function scenario(name, body) {
  if (!BASE_URL) throw new Error("BASE_URL is not set");
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    // Without the background-networking flags Chromium keeps trying hosts this closed network
    // refuses; --no-sandbox because the tests run as root.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const pages = [];
  const problems = [];
  const expected = new Map(); // page -> URL patterns of refusals the scenario provokes
  const open = async (label, { viewport = DESKTOP } = {}) => {
    const context = await browser.newContext({ viewport, isMobile: viewport === PHONE, hasTouch: viewport === PHONE });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    page.on("pageerror", (error) => problems.push(`${label}: page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      const url = message.location().url;
      // The browser logs every 4xx it fetched; a scenario names the ones it provokes on purpose.
      if (/^Failed to load resource/.test(message.text()) && expected.get(page)?.some((re) => re.test(url))) return;
      problems.push(`${label}: console error: ${message.text()} (${url})`);
    });
    pages.push({ label, page });
    await relayPushes(page);
    await page.goto(BASE_URL + "/");
    await page.waitForSelector("body[data-ready=true]");
    await page.waitForSelector('#connection[data-state="live"]');
    return page;
  };
  let failed = false;
  try {
    const expectRefusal = (page, urlPattern) => expected.set(page, [...(expected.get(page) || []), urlPattern]);
    await body({ open, expectRefusal });
    if (problems.length > 0) throw new Error("the page reported errors:\n" + problems.join("\n"));
    console.log(`scenario ${name}: passed`);
  } catch (error) {
    failed = true;
    console.error(`scenario ${name}: FAILED\n${error.stack || error}`);
    if (problems.length > 0) console.error(problems.join("\n"));
    for (const { label, page } of pages) {
      const file = join(ARTIFACTS_DIR, `${label}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`screenshot: ${file}`);
    }
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}

// Every page's WebSocket goes to the real server through a relay the scenario can pause, so that
// a scenario can hold the server's pushes back for a moment (see `pausePushes`).
const relays = new WeakMap(); // page -> { paused, held: [[route, message]] }

async function relayPushes(page) {
  const relay = { paused: false, held: [] };
  relays.set(page, relay);
  await page.routeWebSocket(/\/ws(\?|$)/, (route) => {
    const server = route.connectToServer();
    server.onMessage((message) => {
      if (relay.paused) relay.held.push([route, message]);
      else route.send(message);
    });
  });
}

/**
 * Holds back the server's pushes to `page` until `resumePushes`: the page's clicks still reach the
 * server, but it does not hear what other people did meanwhile, as a person who clicks a moment
 * before the news arrives.
 */
export function pausePushes(page) {
  relays.get(page).paused = true;
}

/** Delivers the pushes held back since `pausePushes`, in order, and relays the rest at once. */
export function resumePushes(page) {
  const relay = relays.get(page);
  relay.paused = false;
  for (const [route, message] of relay.held.splice(0)) {
    try {
      route.send(message);
    } catch {
      // that socket has closed since; the page reads the map again when it reconnects
    }
  }
}

/** Signs the page in as `userId` with the user switcher, and waits until it is live again. */
export async function signInAs(page, userId) {
  await page.getByTestId("user-input").fill(userId);
  await page.getByTestId("switch-user").click();
  await page.waitForSelector(`[data-testid=current-user][data-user="${userId}"]`);
  await page.waitForSelector('#connection[data-state="live"]');
  await waitForSubscription(page);
}

/** Waits until the page's socket is subscribed to the show on screen. */
export async function waitForSubscription(page) {
  await page.waitForFunction(
    () => document.getElementById("map").dataset.subscribed === document.getElementById("show").value,
  );
}

/** The seat button of `seatId`. */
export function seat(page, seatId) {
  return page.locator(`button.seat[data-seat="${seatId}"]`);
}

/** Waits until `seatId` shows `status` on `page`. */
export async function seatShows(page, seatId, status) {
  await page.waitForSelector(`button.seat[data-seat="${seatId}"][data-status="${status}"]`);
}

/** Waits for the outcome of the page's request and returns it (SUCCESS, FAILED, EXPIRED). */
export async function outcome(page) {
  const result = page.getByTestId("result");
  await page.waitForSelector("[data-testid=result][data-outcome]");
  return result.getAttribute("data-outcome");
}

/** Leaves a mark in the page's window that a reload would wipe out. */
export async function markWindow(page) {
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
}

/** Fails if the page was reloaded since `markWindow`. */
export async function assertNotReloaded(page, label) {
  const marked = await page.evaluate(() => window.__notReloaded === true);
  if (!marked) throw new Error(`${label}: the page was reloaded`);
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** The demo catalog's 500-seat flash-sale show and its movie (crates/app/src/demo.rs). */
export const GRAND_HALL = {
  movieId: "6d0c1a6e-8f1e-4c3a-9b2d-000000000001",
  showId: "5e0c1a6e-8f1e-4c3a-9b2d-000000000001",
};

/** Picks `show` ({ movieId, showId }) with the page's movie, day and show pickers, and waits until
 * the page is subscribed to it. */
export async function chooseShow(page, show) {
  await page.getByTestId("movie").selectOption(show.movieId);
  const day = await page.evaluate(async ({ movieId, showId }) => {
    const response = await fetch(`/api/v1/movies/${movieId}/shows`);
    const { shows } = await response.json();
    return shows.find((candidate) => candidate.showId === showId).startsAt.slice(0, 10);
  }, show);
  await page.waitForSelector(`#day option[value="${day}"]`, { state: "attached" });
  await page.getByTestId("day").selectOption(day);
  await page.waitForSelector(`#show option[value="${show.showId}"]`, { state: "attached" });
  await page.getByTestId("show").selectOption(show.showId);
  await page.waitForFunction(
    (showId) => document.getElementById("map").dataset.subscribed === showId,
    show.showId,
  );
}

/** Opens the page as `userId` on the demo's Grand Hall show (`options` as for `open`). */
export async function openAs(open, userId, options) {
  const page = await open(userId, options);
  await signInAs(page, userId);
  await chooseShow(page, GRAND_HALL);
  return page;
}
