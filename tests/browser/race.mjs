// Two people in two browsers want the same seat at the same moment. Exactly one gets it; the other
// is told so, is offered seats nearby, and sees the seat held without reloading; when the winner
// lets it go, the loser's map shows it free again, live. One of them is on a phone.

import { scenario, openAs, PHONE, pausePushes, resumePushes, seat, seatShows, outcome, markWindow, assertNotReloaded, assert } from "./lib.mjs";

const SEAT = "C7";

scenario("race", async ({ open }) => {
  const ana = await openAs(open, "ana");
  const ben = await openAs(open, "ben", { viewport: PHONE });
  const overflow = await ben.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `on a phone the page should not scroll sideways (${overflow}px too wide)`);

  for (const page of [ana, ben]) {
    await seat(page, SEAT).click();
    await page.waitForSelector(`button.seat[data-seat="${SEAT}"][aria-pressed="true"]`);
  }
  await markWindow(ana);
  await markWindow(ben);
  // Both press "Hold" before either hears of the other's request: without the pause, the first
  // decision's SEATS_CHANGED can reach the other page before its click, which then (rightly) has
  // nothing left to request.
  pausePushes(ana);
  pausePushes(ben);
  const sent = [ana, ben].map((page) =>
    page.waitForResponse((response) => response.url().endsWith("/api/v1/holds") && response.request().method() === "POST"),
  );
  await Promise.all([ana.getByTestId("hold").click(), ben.getByTestId("hold").click()]);
  const answers = await Promise.all(sent);
  assert(answers.every((answer) => answer.status() === 202), "both requests should be accepted (202)");
  resumePushes(ana);
  resumePushes(ben);

  const outcomes = { ana: await outcome(ana), ben: await outcome(ben) };
  const winners = Object.entries(outcomes).filter(([, result]) => result === "SUCCESS");
  const losers = Object.entries(outcomes).filter(([, result]) => result === "FAILED");
  assert(
    winners.length === 1 && losers.length === 1,
    `exactly one of the two should hold ${SEAT}: ${JSON.stringify(outcomes)}`,
  );
  const [winner, loser] = winners[0][0] === "ana" ? [ana, ben] : [ben, ana];

  // The winner sees the seat as theirs, with a countdown.
  await winner.waitForSelector(`button.seat[data-seat="${SEAT}"][data-mine="true"]`);
  await winner.getByTestId("countdown").filter({ hasText: /^\d+:\d\d$/ }).waitFor();

  // The loser is told why, is offered seats, and sees the seat held by someone else.
  const alternatives = await loser.locator("button.alternative").count();
  assert(alternatives >= 1, "the loser should be offered alternatives");
  const offered = await loser.locator("button.alternative").first().getAttribute("data-alt");
  assert(offered !== SEAT, `the taken seat ${SEAT} must not be offered`);
  await seatShows(loser, SEAT, "HELD");
  assert(
    (await seat(loser, SEAT).getAttribute("data-mine")) === null,
    "the loser's map must not show the winner's seat as theirs",
  );
  assert(await seat(loser, SEAT).isDisabled(), "a held seat cannot be selected");

  // An offered seat can be taken with one click.
  await loser.locator(`button.alternative[data-alt="${offered}"]`).click();
  await loser.waitForSelector(`button.seat[data-seat="${offered}"][aria-pressed="true"]`);

  // The winner lets go; the loser sees the seat free again without reloading.
  await winner.getByTestId("release").click();
  await seatShows(winner, SEAT, "AVAILABLE");
  await seatShows(loser, SEAT, "AVAILABLE");
  assert(!(await seat(loser, SEAT).isDisabled()), "a released seat can be selected again");
  await assertNotReloaded(ana, "ana");
  await assertNotReloaded(ben, "ben");
});
