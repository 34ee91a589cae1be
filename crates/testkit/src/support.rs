//! Building blocks of the contract cases, public so that an adapter's own tests can use them too.

use booking_core::ports::{
    CatalogStore, ChargeFinish, ChargeResult, ChargeStart, HoldStore, Inserted, OrderStore,
    RequestStore, SeatLock, StoreError,
};
use booking_core::{
    BatchOutcome, BookingRequest, Decision, DecisionEngine, HoldId, Movie, MovieId,
    NewBookingRequest, NewOrder, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentToken,
    PendingRequest, SeatId, SeatLayout, SeatStatus, Show, ShowId, StoreFailure, UserId,
    new_ticket_code, price_of,
};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

/// The hold lifetime the cases decide with.
pub const HOLD_TTL: Duration = Duration::minutes(5);

/// How long a request of the cases may wait to be decided.
pub const REQUEST_TTL: Duration = Duration::minutes(2);

/// How long the cases give an order to be paid (its `expires_at` after its creation).
pub const ORDER_TTL: Duration = Duration::minutes(10);

/// The current time, to the nanosecond, as the app's clock gives it. Stores keep less (SQLite
/// milliseconds, PostgreSQL microseconds); the store contract compares with what each store says
/// it keeps (`stores::StoredInstants`).
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// A string no other case (or earlier run against the same database) has used.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ShowId::new_random())
}

/// A user nobody else has used: idempotency keys are per user, and cases may share a database.
pub fn fresh_user(name: &str) -> UserId {
    unique(name).parse().expect("a valid user id")
}

/// Seat ids from their labels.
pub fn seats(labels: &[&str]) -> Vec<SeatId> {
    labels
        .iter()
        .map(|s| s.parse().expect("a valid seat id"))
        .collect()
}

/// A movie with a fresh id.
pub fn movie(title: &str) -> Movie {
    Movie {
        movie_id: MovieId::new_random(),
        title: title.to_owned(),
        description: "A film made for contract tests.".to_owned(),
        duration_minutes: 117,
        rating: "PG-13".to_owned(),
        genres: vec!["Drama".to_owned(), "Thriller".to_owned()],
        language: "en".to_owned(),
    }
}

/// Stores a fresh movie and one show of it (a `rows` × `per_row` hall) and returns the show.
pub async fn create_show<S: CatalogStore>(store: &S, rows: u16, per_row: u16) -> Show {
    let movie = movie(&unique("contract movie"));
    store.put_movie(&movie).await.expect("put_movie");
    let show = Show {
        show_id: ShowId::new_random(),
        movie_id: movie.movie_id,
        starts_at: now() + Duration::days(1),
        auditorium: "Hall 1".to_owned(),
        layout: Arc::new(SeatLayout::rectangular(rows, per_row, 1_200)),
        cancelled: None,
    };
    store.put_show(&show).await.expect("put_show");
    show
}

/// A request for `labels` of `show`, made at `at`, undecided deadline `at + REQUEST_TTL`.
pub fn new_request(
    show: &Show,
    user: &UserId,
    labels: &[&str],
    at: DateTime<Utc>,
) -> NewBookingRequest {
    NewBookingRequest {
        request_id: booking_core::RequestId::new_random(),
        user_id: user.clone(),
        show_id: show.show_id,
        seat_ids: seats(labels),
        idempotency_key: None,
        created_at: at,
        expires_at: at + REQUEST_TTL,
        max_open: None,
    }
}

/// Inserts a request that must be new.
pub async fn insert<S: RequestStore>(store: &S, new: NewBookingRequest) -> BookingRequest {
    match store.insert_request(new).await.expect("insert_request") {
        Inserted::New(request) => request,
        Inserted::Existing(request) => panic!("expected a new request, got existing {request:?}"),
        Inserted::TooManyOpen { max } => panic!("expected a new request, refused at the cap {max}"),
    }
}

/// Shortcut: a new request for `labels` by `user`, made at `at`, inserted.
pub async fn request<S: RequestStore>(
    store: &S,
    show: &Show,
    user: &UserId,
    labels: &[&str],
    at: DateTime<Utc>,
) -> BookingRequest {
    insert(store, new_request(show, user, labels, at)).await
}

/// What the engine needs to know of a stored request.
pub fn pending(request: &BookingRequest) -> PendingRequest {
    PendingRequest {
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        seat_ids: request.seat_ids.clone(),
        expires_at: request.expires_at,
    }
}

/// Decides `requests` in order as of `now` against the show's stored state, the way a worker
/// does (without committing).
pub async fn decide<S: HoldStore>(
    store: &S,
    show: &Show,
    requests: &[&BookingRequest],
    now: DateTime<Utc>,
) -> BatchOutcome {
    let snapshot = store
        .load_show_state(show.show_id, now)
        .await
        .expect("load_show_state");
    let mut engine = DecisionEngine::new(show.layout.clone(), snapshot, HOLD_TTL);
    engine.decide_batch(requests.iter().map(|r| pending(r)).collect(), now)
}

/// Decides `requests` and commits the batch, which must succeed.
pub async fn decide_and_commit<S: HoldStore>(
    store: &S,
    show: &Show,
    requests: &[&BookingRequest],
    now: DateTime<Utc>,
) -> BatchOutcome {
    let batch = decide(store, show, requests, now).await;
    store
        .commit_batch(show.show_id, &batch, now)
        .await
        .expect("commit_batch");
    batch
}

/// Grants one request and returns its hold id (panics if the engine does not grant it).
pub async fn grant<S: HoldStore>(
    store: &S,
    show: &Show,
    request: &BookingRequest,
    now: DateTime<Utc>,
) -> HoldId {
    let batch = decide_and_commit(store, show, &[request], now).await;
    match &batch.decisions[..] {
        [Decision::Granted { hold_id, .. }] => *hold_id,
        other => panic!("expected a grant, got {other:?}"),
    }
}

/// The show's taken seats as of `now`, sorted (stores return them in any order).
pub async fn taken<S: HoldStore>(
    store: &S,
    show: &Show,
    now: DateTime<Utc>,
) -> Vec<(SeatId, SeatStatus)> {
    let mut taken = store
        .taken_seats(show.show_id, now)
        .await
        .expect("taken_seats");
    taken.sort_by_key(|(seat, _)| *seat);
    taken
}

/// `labels` as held seats, the form [`taken`] returns.
pub fn held(labels: &[&str]) -> Vec<(SeatId, SeatStatus)> {
    let mut list: Vec<_> = seats(labels)
        .into_iter()
        .map(|s| (s, SeatStatus::Held))
        .collect();
    list.sort_by_key(|(seat, _)| *seat);
    list
}

/// `labels` as booked (sold) seats, the form [`taken`] returns.
pub fn booked(labels: &[&str]) -> Vec<(SeatId, SeatStatus)> {
    let mut list: Vec<_> = seats(labels)
        .into_iter()
        .map(|s| (s, SeatStatus::Booked))
        .collect();
    list.sort_by_key(|(seat, _)| *seat);
    list
}

/// The show's live holds and booked seats as of `now`, as the engine would start from them:
/// the hold ids and the booked seats, each sorted.
pub async fn show_state<S: HoldStore>(
    store: &S,
    show: &Show,
    now: DateTime<Utc>,
) -> (Vec<HoldId>, Vec<SeatId>) {
    let state = store
        .load_show_state(show.show_id, now)
        .await
        .expect("load_show_state");
    let mut holds: Vec<HoldId> = state.holds.iter().map(|h| h.hold_id).collect();
    holds.sort();
    let mut booked = state.booked;
    booked.sort();
    (holds, booked)
}

/// The show's seat locks as of `now`, sorted by seat (stores return them in any order).
pub async fn locks<S: HoldStore>(store: &S, show: &Show, now: DateTime<Utc>) -> Vec<SeatLock> {
    let mut locks = store
        .seat_locks(show.show_id, now)
        .await
        .expect("seat_locks");
    locks.sort_by_key(|l| l.seat_id);
    locks
}

/// The locks `hold` (or the order made of it) of `user` has on `labels` until `until`, the form
/// [`locks`] returns.
pub fn locks_on(
    labels: &[&str],
    hold: HoldId,
    user: &UserId,
    until: DateTime<Utc>,
    status: SeatStatus,
) -> Vec<SeatLock> {
    let mut list: Vec<_> = seats(labels)
        .into_iter()
        .map(|seat_id| SeatLock {
            seat_id,
            hold_id: hold,
            user_id: user.clone(),
            expires_at: until,
            status,
        })
        .collect();
    list.sort_by_key(|l| l.seat_id);
    list
}

/// A payment token as a client's payment form would hand it over.
pub fn token(text: &str) -> PaymentToken {
    text.parse().expect("a valid payment token")
}

/// What the service asks a store to make of `hold` (`seat_labels` of `show`, priced by its
/// layout): a fresh order of `user`'s, made at `at` and payable until `expires_at`.
pub fn new_order(
    show: &Show,
    hold: HoldId,
    user: &UserId,
    seat_labels: &[&str],
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> NewOrder {
    let (amount_cents, currency) =
        price_of(&show.layout, &seats(seat_labels)).expect("the seats have one price");
    NewOrder {
        order_id: OrderId::new_random(),
        hold_id: hold,
        user_id: user.clone(),
        amount_cents,
        currency,
        created_at: at,
        expires_at,
    }
}

/// Requests `labels` for `user` at `at`, grants them, and converts the hold into an order
/// payable until `at + ORDER_TTL`, which must succeed.
pub async fn place_order<S: RequestStore + HoldStore + OrderStore>(
    store: &S,
    show: &Show,
    user: &UserId,
    labels: &[&str],
    at: DateTime<Utc>,
) -> Order {
    let r = request(store, show, user, labels, at).await;
    let hold = grant(store, show, &r, at).await;
    store
        .create_order(&new_order(show, hold, user, labels, at, at + ORDER_TTL))
        .await
        .expect("create_order")
}

/// Starts a charge of `order` at `at` that must be new (no other charge in flight), keeping
/// the seats until at least `hold_seats_until`.
pub async fn begin_new_charge<S: OrderStore>(
    store: &S,
    order: &Order,
    at: DateTime<Utc>,
    hold_seats_until: DateTime<Utc>,
) -> Payment {
    let start = store
        .begin_charge(
            order.order_id,
            &order.user_id,
            PaymentId::new_random(),
            &token("tok_visa"),
            at,
            hold_seats_until,
        )
        .await
        .expect("begin_charge");
    match start {
        ChargeStart::New(payment) => payment,
        ChargeStart::InDoubt(payment) => panic!("expected a new charge, got in doubt {payment:?}"),
    }
}

/// Pays `order`: a charge started at `at` that goes through a second later, which must confirm
/// it. Returns the confirmed order and its charge (as it was recorded before being sent).
pub async fn pay<S: OrderStore>(store: &S, order: &Order, at: DateTime<Utc>) -> (Order, Payment) {
    let charge = begin_new_charge(store, order, at, at + Duration::minutes(1)).await;
    let charged = ChargeResult::Charged {
        provider_ref: unique("ch"),
    };
    let finish = store
        .finish_charge(
            charge.payment_id,
            &charged,
            &new_ticket_code(),
            PaymentId::new_random(),
            at + Duration::seconds(1),
        )
        .await
        .expect("finish_charge");
    match finish {
        ChargeFinish::Settled(confirmed) if confirmed.status == OrderStatus::Confirmed => {
            (confirmed, charge)
        }
        other => panic!("expected the order confirmed, got {other:?}"),
    }
}

/// Pending requests of the given shows only (other cases may share the database).
pub async fn pending_of<S: RequestStore>(store: &S, shows: &[ShowId]) -> Vec<BookingRequest> {
    store
        .pending_requests()
        .await
        .expect("pending_requests")
        .into_iter()
        .filter(|r| shows.contains(&r.show_id))
        .collect()
}

/// The rows an adapter's "undecodable rows" test spoils with its own SQL: two requests and a
/// hold (granted to a third request, which stays readable), on a show of their own.
pub struct SpoiledRows {
    pub show: Show,
    /// A request left alone: it must still read.
    pub good: BookingRequest,
    /// Requests whose rows the adapter's test corrupts (any column it likes).
    pub bad: [BookingRequest; 2],
    /// The good request's hold, which the test corrupts too.
    pub hold: HoldId,
    pub at: DateTime<Utc>,
}

/// Creates the rows of [`SpoiledRows`], before the adapter corrupts them.
pub async fn rows_to_spoil<S: CatalogStore + RequestStore + HoldStore>(store: &S) -> SpoiledRows {
    let show = create_show(store, 1, 4).await;
    let at = now();
    let good = request(store, &show, &fresh_user("good"), &["A1"], at).await;
    let bad = [
        request(store, &show, &fresh_user("bad"), &["A2"], at).await,
        request(store, &show, &fresh_user("worse"), &["A3"], at).await,
    ];
    let hold = grant(store, &show, &good, at).await;
    SpoiledRows {
        show,
        good,
        bad,
        hold,
        at,
    }
}

/// After the adapter corrupted the rows: every read that touches one reports it as corrupt
/// (never a panic, never "unavailable", which would be retried for ever), and only those reads.
pub async fn assert_spoiled_rows_read_as_corrupt<S: RequestStore + HoldStore>(
    store: &S,
    rows: &SpoiledRows,
) {
    let corrupt = |r: Result<(), StoreError>, what: &str| match r {
        Err(e) => assert_eq!(e.kind(), StoreFailure::Corrupt, "{what}: {e:?}"),
        Ok(()) => panic!("{what}: a spoiled row read without error"),
    };
    for bad in &rows.bad {
        corrupt(
            store.get_request(bad.request_id).await.map(|_| ()),
            "get_request",
        );
    }
    corrupt(
        store.pending_requests().await.map(|_| ()),
        "pending_requests",
    );
    corrupt(store.get_hold(rows.hold).await.map(|_| ()), "get_hold");
    assert!(
        store
            .get_request(rows.good.request_id)
            .await
            .expect("an intact row reads")
            .is_some()
    );
}
