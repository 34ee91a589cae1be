// A hold that is not ordered in time ends on its own: the holder watches the countdown run out and
// is told, and another person's map shows the seat free again, with no reload on either side.
// Run with HOLD_TTL_SECONDS=4 so that the wait is short.

import { scenario, openAs, seat, seatShows, outcome, markWindow, assertNotReloaded, assert } from "./lib.mjs";

const SEAT = "D4";

scenario("expiry", async ({ open }) => {
  const ana = await openAs(open, "ana");
  const ben = await openAs(open, "ben");
  await markWindow(ana);
  await markWindow(ben);

  await seat(ana, SEAT).click();
  await ana.getByTestId("hold").click();
  assert((await outcome(ana)) === "SUCCESS", "the hold should be granted");
  await ana.waitForSelector(`button.seat[data-seat="${SEAT}"][data-mine="true"]`);
  const countdown = await ana.getByTestId("countdown").textContent();
  assert(/^0:0[0-4]$/.test(countdown), `a 4 s hold should count down from 0:04, not ${countdown}`);
  await seatShows(ben, SEAT, "HELD");

  await ana.waitForSelector('[data-testid=result][data-outcome="HOLD_EXPIRED"]');
  await ana.getByTestId("status").filter({ hasText: "expired" }).waitFor();
  assert(await ana.locator("#hold-panel").isHidden(), "an expired hold's panel should be gone");
  await seatShows(ana, SEAT, "AVAILABLE");
  await seatShows(ben, SEAT, "AVAILABLE");
  await assertNotReloaded(ana, "ana");
  await assertNotReloaded(ben, "ben");
});
