// A card that is declined: the buyer is told, the order ends, and the seats go back on sale at
// once, on the buyer's map and on everyone else's.

import { scenario, openAs, seat, seatShows, outcome, assertNotReloaded, markWindow, assert } from "./lib.mjs";

const SEAT = "F9";

scenario("decline", async ({ open, expectRefusal }) => {
  const ana = await openAs(open, "ana");
  const ben = await openAs(open, "ben");
  await markWindow(ben);

  await seat(ana, SEAT).click();
  await ana.getByTestId("hold").click();
  assert((await outcome(ana)) === "SUCCESS", "the hold should be granted");
  await seatShows(ben, SEAT, "HELD");

  await ana.getByTestId("order").click();
  await ana.waitForSelector('[data-testid=order-status][data-status="PAYMENT_PENDING"]');
  await ana.getByTestId("payment-token").selectOption("tok_decline");
  expectRefusal(ana, /\/confirm-payment$/); // 402 PAYMENT_DECLINED
  await ana.getByTestId("pay").click();

  await ana.waitForSelector('[data-testid=order-status][data-status="FAILED"]');
  const said = await ana.getByTestId("order-status").textContent();
  assert(/declined/i.test(said) && /free again/.test(said), `the buyer should be told: ${said}`);
  assert(await ana.getByTestId("ticket").isHidden(), "a declined payment gives no ticket");
  await seatShows(ana, SEAT, "AVAILABLE");
  await seatShows(ben, SEAT, "AVAILABLE");
  await assertNotReloaded(ben, "ben");
});
