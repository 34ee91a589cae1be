// The whole way from a seat map to a ticket: pick two seats, hold them, order, pay with the test
// card that succeeds, and get a ticket code; someone else's map shows the seats sold, live.

import { scenario, openAs, seat, seatShows, outcome, assertNotReloaded, markWindow, assert } from "./lib.mjs";

const SEATS = ["E5", "E6"];
const TICKET_CODE = /^TKT-([0-9A-Z]{4}-){3}[0-9A-Z]{4}$/;

scenario("purchase", async ({ open }) => {
  const ana = await openAs(open, "ana");
  const ben = await openAs(open, "ben");
  await markWindow(ben);

  for (const seatId of SEATS) await seat(ana, seatId).click();
  await ana.getByTestId("selection").filter({ hasText: SEATS.join(", ") }).waitFor();
  await ana.getByTestId("hold").click();
  assert((await outcome(ana)) === "SUCCESS", "the hold should be granted");
  for (const seatId of SEATS) await seatShows(ben, seatId, "HELD");

  await ana.getByTestId("order").click();
  await ana.waitForSelector('[data-testid=order-status][data-status="PAYMENT_PENDING"]');
  await ana.getByTestId("payment-token").selectOption("tok_visa");
  await ana.getByTestId("pay").click();

  await ana.waitForSelector('[data-testid=order-status][data-status="CONFIRMED"]');
  const ticket = ana.getByTestId("ticket");
  await ticket.waitFor({ state: "visible" });
  const code = await ticket.getAttribute("data-code");
  assert(TICKET_CODE.test(code), `the ticket code ${code} should look like TKT-XXXX-XXXX-XXXX-XXXX`);
  assert((await ticket.textContent()).includes(code), "the ticket code should be on screen");
  for (const seatId of SEATS) {
    await seatShows(ana, seatId, "BOOKED");
    await seatShows(ben, seatId, "BOOKED");
  }
  await assertNotReloaded(ben, "ben");
});
