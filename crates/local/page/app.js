// The seat-selector page: a client of the public API like any other. It reads the catalog and the
// seat map over HTTP, sends hold requests, learns their results over the WebSocket (and by polling
// the request, which is always right, when a push is late or the socket is down), and walks a
// granted hold through order and payment. When a show's waiting room is on, a refused request
// puts the tab in the line instead, and goes out again once the room lets it in. Everything it
// shows comes from the server; the only state it keeps is who the user is and the admissions it
// was given (per tab, in sessionStorage) and what it is waiting for.

const API = "/api/v1";
const MAX_SEATS = 10;
const STORAGE = { user: "seatbook.user", token: "seatbook.token", room: "seatbook.room" };

const $ = (id) => document.getElementById(id);
const el = {
  userForm: $("user-form"),
  userLabel: document.querySelector('label[for="user-input"]'),
  userInput: $("user-input"),
  currentUser: $("current-user"),
  connection: $("connection"),
  movie: $("movie"),
  day: $("day"),
  show: $("show"),
  showInfo: $("show-info"),
  legend: $("legend"),
  map: $("map"),
  selection: $("selection"),
  hold: $("hold"),
  status: $("status"),
  result: $("result"),
  alternatives: $("alternatives"),
  holdPanel: $("hold-panel"),
  holdSeats: $("hold-seats"),
  countdown: $("countdown"),
  release: $("release"),
  order: $("order"),
  payForm: $("pay-form"),
  paymentToken: $("payment-token"),
  pay: $("pay"),
  orderStatus: $("order-status"),
  ticket: $("ticket"),
  room: $("waiting-room"),
  roomMessage: $("room-message"),
  roomPosition: $("room-position"),
  roomEta: $("room-eta"),
  roomRequest: $("room-request"),
  leaveRoom: $("leave-room"),
};

const state = {
  devTokens: true, // whether the server mints tokens for the user switcher
  userId: null,
  token: null,
  shows: [], // the current movie's shows
  seatmap: null, // the current show's seat map, as last read and updated by pushes
  seats: new Map(), // seatId -> seat (with its live status)
  selected: new Set(),
  // { requestId, showId, seatIds, key, pollTimer } while a request waits; requestId null while it
  // waits for the show's waiting room to let this tab in
  pending: null,
  hold: null, // { holdId, showId, seatIds, expiresAt, amountCents, currency }
  order: null, // the order made from the hold, as the server last described it
  socket: null,
  socketLive: false,
  reconnectDelay: 500,
  countdownTimer: null,
  paying: false, // a confirm-payment call of this tab is in flight
  room: null, // { showId, place, pollTimer } while this tab has a place in the room of the show on screen
  admissions: new Map(), // showId -> the admission token a room let this tab in with (mirrored in sessionStorage)
};

// How far a waiting-room place has come: it only moves forward (a late answer or push that says
// less is older news), and the last three are its ends.
const PLACE_RANK = { WAITING: 0, ADMITTED: 1, SHOPPING: 2, DONE: 3, ABANDONED: 3, EXPIRED: 3 };
const PLACE_ENDED = {
  DONE: "Your turn is over (you bought or left). To book more seats, ask again: you rejoin the line.",
  ABANDONED:
    "Your place in line was given up: this page stopped checking in. Ask for seats again to rejoin at the back.",
  EXPIRED: "Your turn has run out. Ask for seats again to rejoin the line.",
};

// What an order that ended without a reason of its own is told as.
const ENDED = { FAILED: "The payment failed", EXPIRED: "The order expired", CANCELLED: "The order was cancelled" };

// ---- HTTP ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const error = body && body.error ? body.error : {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "HTTP_" + status;
    this.details = error.details || {};
    this.retryAfter = retryAfter;
  }
}

async function api(
  method,
  path,
  body,
  { idempotent = false, auth = true, retried = false, headers: extra = {} } = {},
) {
  const headers = { ...extra };
  if (auth && state.token) headers["Authorization"] = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // A key per user action, so that a retried POST can never hold or charge twice.
  if (idempotent) headers["Idempotency-Key"] = idempotent === true ? crypto.randomUUID() : idempotent;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.status === 401 && auth && state.devTokens && !retried) {
    // The switcher's tokens live an hour: mint a fresh one and try once more, same key.
    await signIn(state.userId);
    return api(method, path, body, {
      idempotent: headers["Idempotency-Key"] || false,
      auth,
      retried: true,
      headers: extra,
    });
  }
  if (!response.ok) throw new ApiError(response.status, json, response.headers.get("Retry-After"));
  return { status: response.status, body: json };
}

// ---- who the user is -----------------------------------------------------------------------

async function signIn(userIdOrToken) {
  if (state.devTokens) {
    try {
      const { body } = await api("POST", "/dev/tokens", { userId: userIdOrToken }, { auth: false });
      state.userId = body.userId;
      state.token = body.token;
    } catch (error) {
      if (error.status !== 404) throw error;
      // A server with a real secret mints nothing: the user brings a token.
      state.devTokens = false;
      el.userLabel.textContent = "Token";
      el.userInput.type = "password";
      el.userInput.value = "";
      el.userInput.placeholder = "paste a token";
      throw new Error("This server mints no tokens: paste one");
    }
  } else {
    state.token = userIdOrToken;
    state.userId = subjectOf(userIdOrToken);
  }
  signedIn(state.userId, state.token);
}

// Remembers who this tab is (for a reload) and says so.
function signedIn(userId, token) {
  state.userId = userId;
  state.token = token;
  sessionStorage.setItem(STORAGE.user, userId);
  sessionStorage.setItem(STORAGE.token, token);
  el.currentUser.textContent = "signed in as " + userId;
  el.currentUser.dataset.user = userId;
}

function subjectOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || "?";
  } catch {
    return "?";
  }
}

async function switchUser(event) {
  event.preventDefault();
  const value = el.userInput.value.trim();
  if (!value) return;
  try {
    await signIn(value);
  } catch (error) {
    say(error.message, "error");
    return;
  }
  // What the previous user was doing is theirs, not this one's.
  forgetBooking();
  say("");
  connect();
  await loadSeatmap();
}

// ---- catalog and seat map ------------------------------------------------------------------

async function loadMovies() {
  const { body } = await api("GET", `${API}/movies`, undefined, { auth: false });
  el.movie.replaceChildren(
    ...body.movies.map((movie) => option(movie.movieId, movie.title)),
  );
  await loadShows();
}

async function loadShows() {
  const movieId = el.movie.value;
  if (!movieId) return;
  const { body } = await api("GET", `${API}/movies/${movieId}/shows`, undefined, { auth: false });
  if (el.movie.value !== movieId) return; // another movie was picked meanwhile
  state.shows = body.shows;
  const days = [...new Set(body.shows.map((show) => dayOf(show.startsAt)))];
  el.day.replaceChildren(...days.map((day) => option(day, dayLabel(day))));
  // Open on the first show still on sale, and on its day.
  const firstOnSale = body.shows.find((show) => show.status !== "CANCELLED") || body.shows[0];
  if (firstOnSale) el.day.value = dayOf(firstOnSale.startsAt);
  await showsOfDay(firstOnSale && firstOnSale.showId);
}

// Lists the chosen day's shows and opens `showId`, or the day's first show on sale.
async function showsOfDay(showId) {
  const shows = state.shows.filter((show) => dayOf(show.startsAt) === el.day.value);
  el.show.replaceChildren(
    ...shows.map((show) =>
      option(
        show.showId,
        `${time(show.startsAt)} · ${show.auditorium}${show.status === "CANCELLED" ? " (cancelled)" : ""}`,
      ),
    ),
  );
  const chosen = shows.find((show) => show.showId === showId) || shows.find((show) => show.status !== "CANCELLED");
  if (chosen) el.show.value = chosen.showId;
  await loadSeatmap();
}

async function loadSeatmap() {
  const showId = el.show.value;
  if (!showId) {
    el.map.replaceChildren();
    return;
  }
  const previous = state.seatmap && state.seatmap.showId;
  const { body } = await api("GET", `${API}/shows/${showId}/seatmap`, undefined, { auth: false });
  if (el.show.value !== showId) return; // another show was picked meanwhile
  if (previous !== showId) {
    if (previous) send({ action: "unsubscribe", showId: previous });
    state.selected.clear();
    // The line of the show left behind is no longer kept from here (its place lapses unless
    // this tab comes back within the room's grace period).
    if (state.room && state.room.showId !== showId) stopWaiting();
  }
  state.seatmap = body;
  state.seats = new Map();
  for (const row of body.rows) for (const seat of row.seats) state.seats.set(seat.seatId, { ...seat });
  send({ action: "subscribe", showId });
  renderShow();
  if (!state.room) restorePlace(showId);
  document.body.dataset.ready = "true";
}

function renderShow() {
  const show = state.seatmap;
  const cancelled = show.status === "CANCELLED";
  el.showInfo.textContent = cancelled
    ? `Cancelled${show.cancellationReason ? ": " + show.cancellationReason : ""}. Nothing can be booked.`
    : `${when(show.startsAt)}, ${show.auditorium}, ${show.totalSeats} seats`;
  el.legend.replaceChildren(
    ...show.categories.map((category) => {
      const item = document.createElement("li");
      item.className = "category category-" + category.code.toLowerCase();
      item.textContent = `${category.name} ${money(category.priceCents, category.currency)}`;
      return item;
    }),
    ...["AVAILABLE", "HELD", "BOOKED", "BLOCKED", "YOURS"].map((status) => {
      const item = document.createElement("li");
      item.className = "status status-" + status.toLowerCase();
      item.textContent = status.toLowerCase();
      return item;
    }),
  );
  el.map.replaceChildren(
    ...show.rows.map((row) => {
      const line = document.createElement("div");
      line.className = "row";
      const label = document.createElement("span");
      label.className = "row-label";
      label.textContent = row.row;
      line.append(label, ...row.seats.map((seat) => seatButton(seat.seatId)));
      return line;
    }),
  );
  renderSelection();
}

function seatButton(seatId) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "seat";
  button.dataset.seat = seatId;
  button.addEventListener("click", () => toggle(seatId));
  paintSeat(button);
  return button;
}

function paintSeat(button) {
  const seat = state.seats.get(button.dataset.seat);
  const category = state.seatmap.categories.find((c) => c.code === seat.category);
  const mine = Boolean(state.hold && state.hold.seatIds.includes(seat.seatId) && seat.status !== "AVAILABLE");
  const selected = state.selected.has(seat.seatId);
  button.dataset.status = seat.status;
  button.dataset.category = seat.category.toLowerCase();
  if (mine) button.dataset.mine = "true";
  else delete button.dataset.mine;
  button.textContent = String(seat.number);
  button.setAttribute("aria-pressed", String(selected));
  button.disabled = seat.status !== "AVAILABLE" || state.seatmap.status === "CANCELLED";
  const price = category ? `, ${category.name}, ${money(category.priceCents, category.currency)}` : "";
  const row = seat.seatId.replace(/\d+$/, "");
  button.setAttribute(
    "aria-label",
    `Row ${row} seat ${seat.number}${price}, ${mine ? "held by you" : seat.status.toLowerCase()}`,
  );
}

function repaint(seatIds) {
  for (const seatId of seatIds) {
    const button = el.map.querySelector(`button[data-seat="${CSS.escape(seatId)}"]`);
    if (button) paintSeat(button);
  }
}

function toggle(seatId) {
  const seat = state.seats.get(seatId);
  if (!seat || seat.status !== "AVAILABLE") return;
  if (state.selected.has(seatId)) state.selected.delete(seatId);
  else if (state.selected.size < MAX_SEATS) state.selected.add(seatId);
  else say(`At most ${MAX_SEATS} seats per request.`, "error");
  repaint([seatId]);
  renderSelection();
}

function renderSelection() {
  const seats = [...state.selected];
  if (seats.length === 0) {
    el.selection.textContent = "No seats selected.";
  } else {
    const total = seats.reduce((sum, seatId) => sum + priceOf(seatId), 0);
    el.selection.textContent = `Selected: ${seats.join(", ")} (${money(total, currency())})`;
  }
  el.hold.disabled =
    seats.length === 0 || state.pending !== null || !state.token || state.seatmap.status === "CANCELLED";
}

// ---- holding -------------------------------------------------------------------------------

async function requestHold() {
  const seatIds = [...state.selected];
  const showId = state.seatmap.showId;
  clearOutcome();
  if (state.room && PLACE_RANK[state.room.place?.state] === 3) stopWaiting(); // an ended turn's note
  // One key for this choice of seats however often it is sent: when the waiting room turns it
  // away, the same request goes out again once the room lets us in (a 403 is not kept for
  // replay under its key, and a retry can never hold twice).
  state.pending = { requestId: null, showId, seatIds, key: crypto.randomUUID(), pollTimer: null };
  renderSelection();
  if (state.room && state.room.showId === showId && state.room.place?.state === "WAITING") {
    // Already in line: the door would say no; the request goes out when the room lets us in.
    renderRoom();
    return;
  }
  await sendHold(state.pending);
}

// Sends the pending request, with the show's admission when this tab has one: every request for
// a show whose room is on needs it, not only the first.
async function sendHold(pending) {
  const admission = state.admissions.get(pending.showId) || null;
  pending.sending = true;
  say("Sending…");
  let body;
  try {
    ({ body } = await api(
      "POST",
      `${API}/holds`,
      { showId: pending.showId, seatIds: pending.seatIds },
      { idempotent: pending.key, headers: admission ? { "Admission-Token": admission } : {} },
    ));
  } catch (error) {
    pending.sending = false;
    if (state.pending !== pending) return; // given up meanwhile (the user left the line)
    if (error.code === "ADMISSION_REQUIRED") {
      say("");
      if (!state.seatmap || state.seatmap.showId !== pending.showId) {
        state.pending = null; // another show is on screen now: its line is not this one
        renderSelection();
        return;
      }
      // The room is on and this tab was not let in, or no longer is: into the line. The same
      // token would be turned away again, so only a new one sends the request again.
      pending.refusedWith = admission;
      await enterRoom(pending.showId);
      return;
    }
    state.pending = null;
    renderSelection();
    say(refusal(error), "error");
    return;
  }
  pending.sending = false;
  if (state.pending !== pending) return;
  pending.requestId = body.requestId;
  pending.statusUrl = body.statusUrl;
  sayQueued(body);
  schedulePoll(state.socketLive ? 1500 : 300);
  // The first request with the admission starts the shopping session: the place says until when.
  if (admission && state.room && state.room.showId === pending.showId) scheduleRoomPoll(300);
  renderRoom();
}

function sayQueued(request) {
  if (request.queuePosition == null) say("Being decided…");
  else say(`In the queue: position ${request.queuePosition}, about ${request.estimatedWaitSeconds ?? 1} s.`);
}

// Polling is the fallback that is always right: a push can be lost, the store cannot.
function schedulePoll(delay) {
  const pending = state.pending;
  if (!pending || !pending.statusUrl) return; // not sent yet: nothing to poll
  clearTimeout(pending.pollTimer);
  pending.pollTimer = setTimeout(() => poll(pending), delay);
}

async function poll(pending) {
  if (state.pending !== pending) return;
  try {
    const { body } = await api("GET", pending.statusUrl);
    if (state.pending !== pending) return;
    if (body.status === "QUEUED" || body.status === "PROCESSING") {
      sayQueued(body);
      schedulePoll(state.socketLive ? 2000 : 1000);
    } else {
      decided(body);
    }
  } catch (error) {
    if (state.pending !== pending) return;
    say(refusal(error) + " Retrying…", "error");
    schedulePoll(2000);
  }
}

async function pushedResult(message) {
  const pending = state.pending;
  if (!pending || pending.requestId !== message.requestId) return; // another tab's, or a repeat
  if (message.status === "SUCCESS") {
    // The push names the hold; its expiry and price come from the hold itself.
    decided({ ...message, showId: pending.showId });
  } else {
    // The alternatives are only in the stored request.
    await poll(pending);
  }
}

async function decided(request) {
  const pending = state.pending;
  if (!pending) return;
  clearTimeout(pending.pollTimer);
  state.pending = null;
  el.result.dataset.outcome = request.status;
  el.result.textContent = request.message;
  el.result.className = "result result-" + request.status.toLowerCase();
  if (request.status === "SUCCESS") {
    say("");
    state.selected.clear();
    try {
      const { body } = await api("GET", `${API}/holds/${request.holdId}`);
      showHold(body);
    } catch (error) {
      say(refusal(error), "error");
    }
  } else if (request.status === "FAILED") {
    say("");
    for (const seatId of request.unavailableSeatIds || []) state.selected.delete(seatId);
    showAlternatives(request.availableAlternatives || []);
    repaint(pending.seatIds);
  } else {
    say("");
  }
  renderSelection();
}

function showAlternatives(seatIds) {
  if (seatIds.length === 0) {
    el.alternatives.replaceChildren();
    return;
  }
  const label = document.createElement("span");
  label.textContent = "Free nearby: ";
  el.alternatives.replaceChildren(
    label,
    ...seatIds.map((seatId) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "alternative";
      button.dataset.alt = seatId;
      button.textContent = seatId;
      button.addEventListener("click", () => {
        if (state.seats.get(seatId)?.status === "AVAILABLE" && !state.selected.has(seatId)) toggle(seatId);
      });
      return button;
    }),
  );
}

function showHold(hold) {
  state.hold = hold;
  state.order = null;
  el.holdPanel.hidden = false;
  el.payForm.hidden = true;
  el.order.disabled = false;
  el.release.disabled = false;
  el.holdSeats.textContent = `${hold.seatIds.join(", ")}: ${money(hold.amountCents, hold.currency)}`;
  el.orderStatus.textContent = "";
  el.ticket.hidden = true;
  // The seats are ours now, whatever push is still on its way.
  for (const seatId of hold.seatIds) {
    const seat = state.seats.get(seatId);
    if (seat && hold.showId === state.seatmap.showId) seat.status = "HELD";
  }
  repaint(hold.seatIds);
  startCountdown(hold.expiresAt);
}

function startCountdown(expiresAt) {
  clearInterval(state.countdownTimer);
  const deadline = Date.parse(expiresAt);
  const tick = () => {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    el.countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    if (left === 0) clearInterval(state.countdownTimer);
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

async function release() {
  const hold = state.hold;
  if (!hold) return;
  el.release.disabled = true;
  try {
    await api("POST", `${API}/holds/${hold.holdId}/release`);
    endHold(`Released ${hold.seatIds.join(", ")}.`);
    markSeats(hold.showId, hold.seatIds, "AVAILABLE");
  } catch (error) {
    el.release.disabled = false;
    say(refusal(error), "error");
  }
}

function endHold(message) {
  const hold = state.hold;
  state.hold = null;
  clearInterval(state.countdownTimer);
  el.holdPanel.hidden = true;
  if (message) say(message);
  if (hold) repaint(hold.seatIds);
}

// ---- the waiting room ----------------------------------------------------------------------

// Joins the show's line (or finds this user's live place in it, which a join answers too), and
// follows the place from then on.
async function enterRoom(showId) {
  if (!state.room || state.room.showId !== showId) openRoom(showId);
  const room = state.room;
  try {
    const { body } = await api("POST", `${API}/shows/${showId}/waiting-room`);
    if (state.room !== room) return;
    placeChanged(body, true);
    followPlace(room);
  } catch (error) {
    if (state.room !== room) return;
    // No line to wait in (the room was switched off meanwhile, too many joins): the request
    // waits for nothing, so it is given up and the user told why.
    stopWaiting();
    say(refusal(error), "error");
  }
}

function openRoom(showId) {
  stopWaiting();
  state.room = { showId, place: null, pollTimer: null };
}

// Stops following the room: the panel goes, and so does a request that waited to be let in.
function stopWaiting() {
  const room = state.room;
  if (room) clearTimeout(room.pollTimer);
  state.room = null;
  const pending = state.pending;
  if (room && pending && !pending.requestId && pending.showId === room.showId) {
    state.pending = null;
    renderSelection();
  }
  renderRoom();
}

// A place this tab had in the show's room, before a reload or before it looked at another show:
// one poll says whether it is still live (a 404 or an ended place: nothing to show).
function restorePlace(showId) {
  const kept = sessionStorage.getItem(placeKey(showId));
  if (kept === null) return;
  if (kept) state.admissions.set(showId, kept);
  openRoom(showId);
  pollRoom(state.room);
}

// Polling is what keeps a waiting place (a push does not), and it is always right: it comes well
// within the room's pollWithinSeconds while waiting, and less often once let in, to see the turn
// end.
function followPlace(room) {
  const place = room.place;
  if (state.room !== room || !place || PLACE_RANK[place.state] === 3) return;
  // Turned away with the admission the place still shows: the room is about to end the turn.
  const turnedAway = state.pending?.refusedWith && state.pending.refusedWith === place.admissionToken;
  if (place.state === "WAITING") scheduleRoomPoll(Math.min(2000, (place.pollWithinSeconds * 1000) / 3));
  else scheduleRoomPoll(turnedAway ? 1000 : 5000);
}

function scheduleRoomPoll(delay) {
  const room = state.room;
  if (!room) return;
  clearTimeout(room.pollTimer);
  room.pollTimer = setTimeout(() => pollRoom(room), delay);
}

async function pollRoom(room) {
  if (state.room !== room) return;
  try {
    const { body } = await api("GET", `${API}/shows/${room.showId}/waiting-room`);
    if (state.room !== room) return;
    if (!room.place && PLACE_RANK[body.state] === 3) {
      // A restored place that has ended since: old news, nothing to say.
      forgetPlace(room.showId);
      stopWaiting();
      return;
    }
    placeChanged(body, true);
    followPlace(room);
  } catch (error) {
    if (state.room !== room) return;
    if (error.status === 404) {
      placeGone(room, error.code);
      return;
    }
    // One failed poll does not lose the place: the next comes well within its grace period.
    say(refusal(error) + " Retrying…", "error");
    scheduleRoomPoll(2000);
  }
}

// The room was switched off (anyone may ask for seats now), or switched off and on again (its
// places forgotten): a request that waited is sent again, or joins the new line.
function placeGone(room, code) {
  forgetPlace(room.showId);
  const pending = state.pending;
  const waited = pending && !pending.requestId && pending.showId === room.showId;
  if (waited && code === "NOT_IN_WAITING_ROOM") {
    room.place = null;
    enterRoom(room.showId);
    return;
  }
  clearTimeout(room.pollTimer);
  state.room = null;
  renderRoom();
  if (waited) sendHold(pending);
}

// A push of this user's place: prompt news, which the next poll confirms. One for another show
// (a place of another tab of this user's) is not this tab's business.
function pushedPlace(message) {
  const room = state.room;
  if (!room || !room.place || message.showId !== room.showId) return;
  const pushed = { ...message };
  delete pushed.type;
  // What a push leaves out does not apply (no position once let in); the rest it does not carry.
  const none = { position: null, estimatedWaitSeconds: null, admissionToken: null, admissionExpiresAt: null };
  placeChanged({ ...room.place, ...none, admittedUntil: null, ...pushed }, false);
}

// The place as the server last told it (`answer`: a join's or a poll's answer, which may name a
// new place; a push only moves the known one on, or tells of the next after it ended).
function placeChanged(place, answer) {
  const room = state.room;
  if (!room || room.showId !== place.showId) return;
  const current = room.place;
  if (current) {
    const fresh =
      place.ticket === current.ticket
        ? PLACE_RANK[place.state] >= PLACE_RANK[current.state]
        : answer || PLACE_RANK[current.state] === 3 || place.ticket > current.ticket;
    if (!fresh) return;
  }
  room.place = place;
  const pending = state.pending;
  const waits = pending && !pending.requestId && pending.showId === place.showId ? pending : null;
  // A waiting place has no admission yet: the one a request was turned away with is history.
  if (waits && place.state === "WAITING") waits.refusedWith = null;
  if (PLACE_RANK[place.state] === 3) {
    forgetPlace(place.showId);
    clearTimeout(room.pollTimer);
    if (waits && waits.refusedWith) {
      // The turn the request was turned away in has ended (its admission ran out): back into
      // the line, at its end, as the door said.
      renderRoom();
      enterRoom(place.showId);
      return;
    }
    if (waits) {
      state.pending = null; // the turn it waited for is gone
      renderSelection();
    }
  } else {
    keepPlace(place.showId, place.admissionToken);
    letIn(place);
  }
  renderRoom();
}

// Let in: the request the user had asked for goes out now, with the admission.
function letIn(place) {
  const pending = state.pending;
  if (!place.admissionToken || !pending || pending.requestId || pending.sending) return;
  if (pending.showId !== place.showId || pending.refusedWith === place.admissionToken) return;
  sendHold(pending);
}

async function leaveRoom() {
  const room = state.room;
  if (!room) return;
  el.leaveRoom.disabled = true;
  try {
    await api("DELETE", `${API}/shows/${room.showId}/waiting-room`);
  } catch (error) {
    // 404: the room is off, so there is no line left to leave.
    if (error.status !== 404) {
      el.leaveRoom.disabled = false;
      say(refusal(error), "error");
      return;
    }
  }
  if (state.room !== room) return;
  forgetPlace(room.showId);
  stopWaiting();
  say("You left the line.");
}

function renderRoom() {
  const room = state.room;
  const place = room && room.place;
  const shown = Boolean(place && state.seatmap && room.showId === state.seatmap.showId);
  el.room.hidden = !shown;
  if (!shown) {
    delete el.room.dataset.state;
    delete el.room.dataset.position;
    delete el.room.dataset.admittedUntil;
    return;
  }
  el.room.dataset.state = place.state;
  el.room.dataset.position = place.position ?? "";
  el.room.dataset.admittedUntil = place.admittedUntil ?? "";
  el.roomMessage.textContent = roomMessage(place);
  const ranked = place.position != null;
  el.roomPosition.textContent = ranked ? `You are number ${place.position.toLocaleString("en-GB")} in line` : "";
  // No estimate while the room lets nobody in (every shopper's session still running).
  el.roomEta.textContent =
    ranked && place.estimatedWaitSeconds != null ? `Your turn in ${about(place.estimatedWaitSeconds)}` : "";
  const pending = state.pending;
  const asked = pending && !pending.requestId && pending.showId === room.showId;
  const turnedAway = asked && pending.refusedWith && pending.refusedWith === place.admissionToken;
  el.roomRequest.textContent = !asked
    ? ""
    : place.state === "WAITING"
      ? `Your request for ${pending.seatIds.join(", ")} goes out as soon as it is your turn.`
      : turnedAway
        ? "The sale no longer takes this admission: checking your place in line…"
        : "";
  el.leaveRoom.hidden = PLACE_RANK[place.state] === 3;
  el.leaveRoom.disabled = false;
}

function roomMessage(place) {
  switch (place.state) {
    case "WAITING":
      if (place.position != null) return "You are in line. Keep this page open: it keeps your place.";
      // Unranked: the pre-queue, drawn at the opening (a room switched on by demand names no time).
      return place.opensAt
        ? `The sale opens at ${clock(place.opensAt)} — your place in line is drawn fairly then. Keep this page open.`
        : "The sale has not opened yet: your place in line is drawn fairly when it opens. Keep this page open.";
    case "ADMITTED":
      return `It's your turn — pick your seats before ${clock(place.admittedUntil)}.`;
    case "SHOPPING":
      return `You're in — book your seats before ${clock(place.admissionExpiresAt)}.`;
    default:
      return PLACE_ENDED[place.state] || `Your place is ${place.state}.`;
  }
}

// This tab's place in a show's room, kept per user and show so that a reload finds it again:
// "" while it waits, its admission token once it is let in.
function placeKey(showId) {
  return `${STORAGE.room}.${state.userId}.${showId}`;
}

function keepPlace(showId, admissionToken) {
  if (admissionToken) state.admissions.set(showId, admissionToken);
  else state.admissions.delete(showId);
  sessionStorage.setItem(placeKey(showId), admissionToken || "");
}

function forgetPlace(showId) {
  state.admissions.delete(showId);
  sessionStorage.removeItem(placeKey(showId));
}

// ---- order and payment ---------------------------------------------------------------------

async function makeOrder() {
  const hold = state.hold;
  if (!hold) return;
  el.order.disabled = true;
  el.release.disabled = true;
  try {
    const { body } = await api("POST", `${API}/orders`, { holdId: hold.holdId }, { idempotent: `order-${hold.holdId}` });
    state.order = body;
    el.payForm.hidden = false;
    el.orderStatus.textContent = `Order ${shortId(body.orderId)}: ${money(body.amountCents, body.currency)}, pay before the time runs out.`;
    el.orderStatus.dataset.status = body.status;
    startCountdown(body.expiresAt);
  } catch (error) {
    el.order.disabled = false;
    el.release.disabled = false;
    say(refusal(error), "error");
  }
}

async function pay(event) {
  event.preventDefault();
  const order = state.order;
  if (!order) return;
  el.pay.disabled = true;
  state.paying = true;
  const paymentToken = el.paymentToken.value;
  try {
    const { body } = await api(
      "POST",
      `${API}/orders/${order.orderId}/confirm-payment`,
      { paymentToken },
      { idempotent: true },
    );
    orderChanged(body);
  } catch (error) {
    if (error.code === "PAYMENT_DECLINED" || error.code === "PAYMENT_FAILED") {
      const { body } = await api("GET", `${API}/orders/${order.orderId}`);
      orderChanged(body, refusal(error));
    } else {
      say(refusal(error), "error");
    }
  } finally {
    state.paying = false;
    el.pay.disabled = false;
  }
}

function orderChanged(order, why) {
  if (!state.order || state.order.orderId !== order.orderId) return;
  state.order = { ...state.order, ...order };
  const hold = state.hold;
  el.orderStatus.dataset.status = order.status;
  if (order.status === "CONFIRMED") {
    el.orderStatus.textContent = `Paid. Order ${shortId(order.orderId)} is confirmed.`;
    el.ticket.hidden = false;
    el.ticket.textContent = "Your ticket: " + order.ticketCode;
    el.ticket.dataset.code = order.ticketCode;
    endHold("");
    if (hold) markSeats(hold.showId, hold.seatIds, "BOOKED");
    // A purchase ends the shopping session of a show's waiting room: the place says so soon.
    if (state.room) scheduleRoomPoll(500);
  } else if (order.status === "FAILED" || order.status === "EXPIRED" || order.status === "CANCELLED") {
    el.orderStatus.textContent = `${why || order.reason || ENDED[order.status]}: the seats are free again.`;
    endHold("");
    if (hold) markSeats(hold.showId, hold.seatIds, "AVAILABLE");
    state.order = null;
  } else {
    el.orderStatus.textContent = `Order ${shortId(order.orderId)}: ${order.status}.`;
  }
}

// ---- the WebSocket ---------------------------------------------------------------------------

function connect() {
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close(1000);
  }
  state.socketLive = false;
  // A new connection has subscribed to nothing yet.
  delete el.map.dataset.subscribed;
  if (!state.token) return;
  setConnection("connecting");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.socket = socket;
  socket.onopen = () => {
    state.socketLive = true;
    state.reconnectDelay = 500;
    setConnection("live");
    // Pushes missed while the socket was down are not replayed: read the map again.
    if (state.seatmap) loadSeatmap().catch(() => {});
    if (state.pending) schedulePoll(0);
    if (state.room) scheduleRoomPoll(0);
  };
  socket.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    onPush(message);
  };
  socket.onclose = async (event) => {
    if (state.socket !== socket) return;
    state.socketLive = false;
    setConnection("offline");
    if (state.pending) schedulePoll(300);
    if (event.code === 4001 && state.devTokens) await signIn(state.userId).catch(() => {});
    setTimeout(() => {
      if (state.socket === socket) connect();
    }, state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
  };
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function onPush(message) {
  switch (message.type) {
    case "BOOKING_RESULT":
      pushedResult(message);
      break;
    case "SEATS_CHANGED":
      if (state.seatmap && message.showId === state.seatmap.showId) {
        for (const { seatId, status } of message.seats) {
          const seat = state.seats.get(seatId);
          if (!seat) continue;
          seat.status = status;
          if (status !== "AVAILABLE") state.selected.delete(seatId);
        }
        repaint(message.seats.map((seat) => seat.seatId));
        renderSelection();
      }
      break;
    case "HOLD_EXPIRED":
      if (state.hold && state.hold.holdId === message.holdId) {
        const hold = state.hold;
        endHold(`Your hold on ${hold.seatIds.join(", ")} expired; the seats are free again.`);
        el.result.dataset.outcome = "HOLD_EXPIRED";
        el.result.textContent = "Hold expired";
        markSeats(hold.showId, hold.seatIds, "AVAILABLE", true);
      }
      break;
    case "ORDER_UPDATED":
      // While this tab pays, the answer to its own call says more (why a card was declined).
      if (!state.paying) orderChanged(message);
      break;
    case "WAITING_ROOM_POSITION":
      pushedPlace(message);
      break;
    case "SUBSCRIBED":
      // Seat changes of this show arrive from now on (a hook for the browser tests, too).
      el.map.dataset.subscribed = message.showId;
      break;
    case "SHOW_CANCELLED":
      say(`A show you had booked was cancelled${message.reason ? ": " + message.reason : ""}.`, "error");
      if (state.seatmap && state.seatmap.showId === message.showId) loadSeatmap().catch(() => {});
      break;
    default:
      break;
  }
}

// A change this tab made itself, shown at once; the show's SEATS_CHANGED confirms it. `onlyIfHeld`
// keeps a seat that a newer hold has already taken from flashing back to available.
function markSeats(showId, seatIds, status, onlyIfHeld = false) {
  if (!state.seatmap || state.seatmap.showId !== showId) return;
  for (const seatId of seatIds) {
    const seat = state.seats.get(seatId);
    if (seat && (!onlyIfHeld || seat.status === "HELD")) seat.status = status;
  }
  repaint(seatIds);
  renderSelection();
}

function setConnection(connection) {
  el.connection.dataset.state = connection;
  el.connection.textContent = { live: "live", connecting: "connecting…", offline: "offline: polling" }[connection];
}

// ---- small things ----------------------------------------------------------------------------

function forgetBooking() {
  if (state.pending) clearTimeout(state.pending.pollTimer);
  state.pending = null;
  stopWaiting();
  state.admissions.clear();
  state.order = null;
  endHold("");
  clearOutcome();
  state.selected.clear();
}

function clearOutcome() {
  delete el.result.dataset.outcome;
  el.result.textContent = "";
  el.result.className = "result";
  el.alternatives.replaceChildren();
  el.orderStatus.textContent = "";
  delete el.orderStatus.dataset.status;
  el.ticket.hidden = true;
}

function say(text, kind) {
  el.status.textContent = text;
  el.status.className = kind === "error" ? "error" : "";
}

function refusal(error) {
  if (error instanceof ApiError) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
    return `${error.message} (${error.code}).${wait}`;
  }
  return "The server cannot be reached.";
}

function priceOf(seatId) {
  const seat = state.seats.get(seatId);
  const category = seat && state.seatmap.categories.find((c) => c.code === seat.category);
  return category ? category.priceCents : 0;
}

function currency() {
  return state.seatmap.categories[0]?.currency || "EUR";
}

function money(cents, code) {
  return new Intl.NumberFormat("en-IE", { style: "currency", currency: code }).format(cents / 100);
}

function when(iso) {
  return (
    new Date(iso).toLocaleString("en-GB", {
      weekday: "short",
      day: "numeric",
      month: "short",
      hour: "2-digit",
      minute: "2-digit",
      timeZone: "UTC",
    }) + " UTC"
  );
}

// Days and times are shown in UTC, the zone the API speaks; a day is its ISO date.
function dayOf(iso) {
  return iso.slice(0, 10);
}

function dayLabel(day) {
  return new Date(day + "T00:00:00Z").toLocaleDateString("en-GB", {
    weekday: "short",
    day: "numeric",
    month: "short",
    timeZone: "UTC",
  });
}

function time(iso) {
  return (
    new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone: "UTC" }) + " UTC"
  );
}

// A time to the second, in UTC like every time the page shows: a deadline in the waiting room.
function clock(iso) {
  return (
    new Date(iso).toLocaleTimeString("en-GB", {
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      timeZone: "UTC",
    }) + " UTC"
  );
}

// An estimate, said no more precisely than it is: "about 17 s", "about 3 min", "about 2 h 5 min".
function about(seconds) {
  if (seconds < 60) return `about ${Math.max(1, seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  return `about ${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ""}`;
}

function shortId(id) {
  return id.slice(0, 8);
}

function option(value, text) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = text;
  return item;
}

// ---- start -----------------------------------------------------------------------------------

el.userForm.addEventListener("submit", switchUser);
el.movie.addEventListener("change", () => loadShows().catch((error) => say(refusal(error), "error")));
el.day.addEventListener("change", () => showsOfDay().catch((error) => say(refusal(error), "error")));
el.show.addEventListener("change", () => loadSeatmap().catch((error) => say(refusal(error), "error")));
el.hold.addEventListener("click", requestHold);
el.release.addEventListener("click", release);
el.order.addEventListener("click", makeOrder);
el.payForm.addEventListener("submit", pay);
el.leaveRoom.addEventListener("click", leaveRoom);

async function start() {
  setConnection("offline");
  const user = sessionStorage.getItem(STORAGE.user);
  const token = sessionStorage.getItem(STORAGE.token);
  try {
    if (user && token && subjectOf(token) === user) {
      signedIn(user, token);
    } else {
      // A user of its own per tab, so that two tabs are two people from the first click.
      await signIn("guest-" + crypto.randomUUID().slice(0, 8));
    }
    el.userInput.value = state.devTokens ? state.userId : "";
  } catch (error) {
    say(error.message, "error");
  }
  connect();
  try {
    await loadMovies();
  } catch (error) {
    say(refusal(error), "error");
  }
}

start();
