// A sale behind the show's waiting room. An admin switches the Grand Hall's room on a few seconds
// ahead of its opening, one admission a second. Ana and Ben ask for seats before it opens: the
// door turns them away and each page joins the line instead, with no position yet (the order is
// drawn at the opening); Cy joins too, and leaves. At the opening the room lets them in one a
// second, each page sends the request its user had asked for again, now with the admission, and
// both holds go through; each one's map shows the other's seat held.
// Run with ADMIN_TOKEN set (tests/page.rs mints one).

import { scenario, openAs, seat, seatShows, outcome, assert, BASE_URL, GRAND_HALL } from "./lib.mjs";

const ADMIN_TOKEN = process.env.ADMIN_TOKEN;
// Time enough for three pages to be turned away, join and, for one, leave before the opening,
// on a slow machine too.
const OPENS_IN_MS = 5_000;
const SEATS = { ana: "H7", ben: "H8", cy: "H9" };
const RANK = { WAITING: 0, ADMITTED: 1, SHOPPING: 2, DONE: 3, ABANDONED: 3, EXPIRED: 3 };

scenario("waiting-room", async ({ open, expectRefusal }) => {
  assert(ADMIN_TOKEN, "ADMIN_TOKEN is not set");
  const pages = {};
  for (const user of Object.keys(SEATS)) {
    const page = await openAs(open, user);
    expectRefusal(page, /\/api\/v1\/holds$/); // 403 ADMISSION_REQUIRED: not let in yet
    await recordPanel(page);
    await seat(page, SEATS[user]).click();
    await page.waitForSelector(`button.seat[data-seat="${SEATS[user]}"][aria-pressed="true"]`);
    pages[user] = page;
  }
  const { ana, ben, cy } = pages;

  const opensAt = Date.now() + OPENS_IN_MS;
  const room = await admin("PUT", { opensAt: new Date(opensAt).toISOString(), admitPerSecond: 1 });
  assert(room.opened === false, `the room should not have opened yet: ${JSON.stringify(room)}`);

  // Before the opening: turned away at the door, each page joins the line, with no position.
  await Promise.all([ana, ben, cy].map((page) => page.getByTestId("hold").click()));
  for (const page of [ana, ben, cy]) {
    await page.waitForSelector('[data-testid=waiting-room][data-state="WAITING"][data-position=""]');
  }
  const said = await ana.getByTestId("waiting-room").textContent();
  assert(/drawn fairly/.test(said), `the pre-queue should be told the order is drawn at the opening: ${said}`);
  const opening = new Date(opensAt).toLocaleTimeString("en-GB", { timeZone: "UTC" });
  assert(!/opens at/.test(said) || said.includes(opening), `the opening is at ${opening} UTC: ${said}`);
  assert((await ana.getByTestId("result").getAttribute("data-outcome")) === null, "no outcome while in line");

  // Cy changes their mind: the panel goes, and so does the request that waited.
  await cy.getByTestId("leave-room").click();
  await cy.getByTestId("waiting-room").waitFor({ state: "hidden" });
  if (Date.now() < opensAt) {
    // (Gone before the opening, so never let in: on a slower machine the room may have let Cy
    // in first, and sent the request, before the click.)
    assert(!(await cy.getByTestId("hold").isDisabled()), "once out of the line, Cy may ask again");
  }

  // The opening: one is let in at once, the other a second later; each page sends its request
  // again with the admission, and the seats are held.
  const outcomes = await Promise.all([outcome(ana), outcome(ben)]);
  assert(outcomes.every((result) => result === "SUCCESS"), `both holds should go through: ${outcomes}`);
  await seatShows(ana, SEATS.ben, "HELD");
  await seatShows(ben, SEATS.ana, "HELD");
  for (const user of ["ana", "ben"]) {
    await pages[user].waitForSelector(`button.seat[data-seat="${SEATS[user]}"][data-mine="true"]`);
    // The first request with the admission started the shopping session.
    await pages[user].waitForSelector('[data-testid=waiting-room][data-state="SHOPPING"]');
  }

  // What each panel showed, in order: the pre-queue, maybe positions, the admission, shopping.
  const seen = { ana: await panelHistory(ana), ben: await panelHistory(ben) };
  for (const [user, shown] of Object.entries(seen)) {
    const story = JSON.stringify(shown);
    assert(shown[0].state === "WAITING" && shown[0].position === "", `${user} should first wait unranked: ${story}`);
    const forward = shown.every((s, i) => i === 0 || RANK[s.state] >= RANK[shown[i - 1].state]);
    assert(forward, `${user}'s place went back: ${story}`);
    const positions = shown.filter((s) => s.position !== "").map((s) => Number(s.position));
    const nearer = positions.every((p, i) => p >= 1 && (i === 0 || p <= positions[i - 1]));
    assert(nearer, `${user}'s position went up: ${story}`);
    const told = shown.some((s) => s.state === "ADMITTED" && s.admittedUntil);
    assert(told, `${user} should have been told of the admission: ${story}`);
  }
  // Whom the room let in first: the admissions' deadlines are the same time after each one.
  const admittedAt = (user) => Date.parse(seen[user].find((s) => s.state === "ADMITTED").admittedUntil);
  const [first, second] = ["ana", "ben"].sort((a, b) => admittedAt(a) - admittedAt(b));
  const apart = admittedAt(second) - admittedAt(first);
  assert(apart >= 950, `at one a second, ${second} should be let in a second after ${first}, not ${apart} ms`);
  const firstPositions = seen[first].filter((s) => s.position !== "").map((s) => s.position);
  assert(
    firstPositions.every((p) => p === "1"),
    `${first}, let in first, can only have been number 1 in line: ${JSON.stringify(seen[first])}`,
  );
});

/** The Grand Hall's waiting room, as its admin: `PUT` switches it on. */
async function admin(method, body) {
  const response = await fetch(`${BASE_URL}/api/v1/admin/shows/${GRAND_HALL.showId}/waiting-room`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert(response.ok, `${method} the waiting room: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Records every state, position and admission deadline the page's waiting-room panel shows. */
async function recordPanel(page) {
  await page.evaluate(() => {
    const panel = document.querySelector("[data-testid=waiting-room]");
    const shown = (window.__panelShown = []);
    new MutationObserver(() => {
      const { state, position = "", admittedUntil = "" } = panel.dataset;
      const last = shown[shown.length - 1];
      const same = last && last.state === state && last.position === position && last.admittedUntil === admittedUntil;
      if (state && !same) shown.push({ state, position, admittedUntil });
    }).observe(panel, { attributes: true, attributeFilter: ["data-state", "data-position", "data-admitted-until"] });
  });
}

async function panelHistory(page) {
  return page.evaluate(() => window.__panelShown);
}
