//! Orders: a hold turned into a purchase, and the seats that go with it.
//!
//! An order takes over its hold's seat claims in the transaction that makes it and keeps them
//! until its own `seats_until`, whatever becomes of the hold's expiry: the system this replaces
//! let a seat go with its hold's expiry while the buyer was still paying for it, and sold it
//! twice. These cases pin down the conversion and its refusals, that the order's claim (not the
//! hold's) is what keeps a second buyer off the seat, that the claim ends by time at
//! `seats_until` with no sweep (and what a charge arriving after that must do), the listing of a
//! user's orders, and the `expire_orders` sweep. Payments are in `charges` and `refunds`.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::{ChargeFinish, ChargeResult, CommitError, OrderError, OrderPage};
use booking_core::{
    Decision, DecisionEngine, HoldId, HoldStatus, Order, OrderId, OrderStatus, PaymentId,
    PaymentKind, PaymentStatus, RequestStatus, SeatStatus, ShowSnapshot, new_ticket_code,
    sold_until,
};
use chrono::Duration;

/// `create_order` converts a live hold of its owner: the hold reads CONVERTED, the order
/// PAYMENT_PENDING with the amount, currency and deadline it was given, and the hold's seats pass
/// to the order: still taken (HELD on the seat map), `booked` for the engine rather than a live
/// hold, locked under the hold's id and owner until the order's deadline; and `order_of_hold`
/// finds the order.
pub async fn create_order_converts_a_live_hold<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let r = request(store, &show, &buyer, &["A1", "A2"], t).await;
    let hold = grant(store, &show, &r, t).await;

    let t1 = t + Duration::seconds(1);
    let new = new_order(&show, hold, &buyer, &["A1", "A2"], t1, t1 + ORDER_TTL);
    assert_eq!((new.amount_cents, new.currency.as_str()), (2_400, "EUR"));
    let order = store.create_order(&new).await.expect("create_order");
    let until = store.as_stored(new.expires_at);
    assert_eq!(order.order_id, new.order_id);
    assert_eq!(order.hold_id, hold);
    assert_eq!(order.user_id, buyer);
    assert_eq!(order.show_id, show.show_id);
    assert_eq!(order.seat_ids, seats(&["A1", "A2"]));
    assert_eq!(order.status, OrderStatus::PaymentPending);
    assert_eq!(
        (order.amount_cents, order.currency.as_str()),
        (2_400, "EUR")
    );
    assert_eq!(order.created_at, store.as_stored(t1));
    assert_eq!(order.expires_at, until);
    assert_eq!(order.seats_until, until);
    assert_eq!(order.ticket_code, None);
    assert_eq!(order.reason, None);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(order.clone())
    );
    assert_eq!(
        store.order_of_hold(hold).await.unwrap(),
        Some(order.clone())
    );
    assert_eq!(
        store.get_hold(hold).await.unwrap().unwrap().status,
        HoldStatus::Converted
    );

    let t2 = t1 + Duration::seconds(1);
    assert_eq!(taken(store, &show, t2).await, held(&["A1", "A2"]));
    assert_eq!(
        show_state(store, &show, t2).await,
        (vec![], seats(&["A1", "A2"])),
        "the order's seats are booked for the engine, and the hold is no longer live"
    );
    assert_eq!(
        locks(store, &show, t2).await,
        locks_on(&["A1", "A2"], hold, &buyer, until, SeatStatus::Held)
    );
}

/// `create_order` refuses, writing nothing: another user's hold or an unknown one is NotFound;
/// a hold that is not live is HoldNotActive with its status: already converted, released by its
/// owner, or expired by time (at the very instant it ends, with no sweep having written it down).
pub async fn create_order_refuses_a_hold_that_is_not_live<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now();

    // Someone else's hold, or none at all.
    let owner = fresh_user("owner");
    let r = request(store, &show, &owner, &["A1"], t).await;
    let live = grant(store, &show, &r, t).await;
    let stranger = fresh_user("stranger");
    let theirs = new_order(&show, live, &stranger, &["A1"], t, t + ORDER_TTL);
    assert_eq!(store.create_order(&theirs).await, Err(OrderError::NotFound));
    let unknown = new_order(
        &show,
        HoldId::new_random(),
        &owner,
        &["A1"],
        t,
        t + ORDER_TTL,
    );
    assert_eq!(
        store.create_order(&unknown).await,
        Err(OrderError::NotFound)
    );
    for refused in [&theirs, &unknown] {
        assert_eq!(store.get_order(refused.order_id).await.unwrap(), None);
    }
    assert_eq!(store.order_of_hold(live).await.unwrap(), None);
    assert_eq!(
        store.get_hold(live).await.unwrap().unwrap().status,
        HoldStatus::Held
    );
    assert_eq!(show_state(store, &show, t).await, (vec![live], vec![]));

    // Already converted: a second order of the same hold.
    let first = store
        .create_order(&new_order(&show, live, &owner, &["A1"], t, t + ORDER_TTL))
        .await
        .expect("create_order");
    let t1 = t + Duration::seconds(1);
    let again = new_order(&show, live, &owner, &["A1"], t1, t1 + ORDER_TTL);
    assert_eq!(
        store.create_order(&again).await,
        Err(OrderError::HoldNotActive(HoldStatus::Converted))
    );
    assert_eq!(store.get_order(again.order_id).await.unwrap(), None);
    assert_eq!(
        store.order_of_hold(live).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.get_order(first.order_id).await.unwrap(),
        Some(first),
        "the first order is untouched (its deadline not moved)"
    );

    // Released by its owner.
    let leaver = fresh_user("leaver");
    let r = request(store, &show, &leaver, &["A3"], t).await;
    let released = grant(store, &show, &r, t).await;
    store
        .release_hold(released, &leaver, t1)
        .await
        .expect("release");
    let t2 = t1 + Duration::seconds(1);
    let late = new_order(&show, released, &leaver, &["A3"], t2, t2 + ORDER_TTL);
    assert_eq!(
        store.create_order(&late).await,
        Err(OrderError::HoldNotActive(HoldStatus::Released))
    );
    assert_eq!(store.get_order(late.order_id).await.unwrap(), None);
    assert_eq!(store.order_of_hold(released).await.unwrap(), None);
    assert_eq!(
        store.get_hold(released).await.unwrap().unwrap().status,
        HoldStatus::Released
    );
    assert_eq!(taken(store, &show, t2).await, held(&["A1"]));

    // Expired by time, never swept: refused at the instant it ends, and the seat stays free.
    let early = t - Duration::minutes(10);
    let sleeper = fresh_user("sleeper");
    let r = request(store, &show, &sleeper, &["A5"], early).await;
    let expired = grant(store, &show, &r, early).await;
    let end = store.get_hold(expired).await.unwrap().unwrap().expires_at;
    for at in [end, t] {
        let overdue = new_order(&show, expired, &sleeper, &["A5"], at, at + ORDER_TTL);
        assert_eq!(
            store.create_order(&overdue).await,
            Err(OrderError::HoldNotActive(HoldStatus::Expired)),
            "a hold that ended at {end} converted at {at}"
        );
        assert_eq!(store.get_order(overdue.order_id).await.unwrap(), None);
    }
    assert_eq!(store.order_of_hold(expired).await.unwrap(), None);
    assert!(
        !taken(store, &show, end)
            .await
            .iter()
            .any(|(s, _)| *s == seats(&["A5"])[0])
    );
    let next = request(store, &show, &fresh_user("next"), &["A5"], end).await;
    grant(store, &show, &next, end).await;
}

/// An order's seats are the order's until its own deadline, not its hold's (the source system's
/// bug): a hold with a short TTL is converted with a deadline well after it; after the hold's
/// expiry but before the order's, the engine deciding from fresh state does not offer the seat
/// to another user, and a stale batch that grants it anyway is refused as a SeatConflict,
/// writing nothing; then the order's charge confirms it.
pub async fn order_keeps_its_seats_after_its_hold_expires<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let r = request(store, &show, &buyer, &["A1", "A2"], t).await;
    let short = Duration::seconds(30);
    let snapshot = store.load_show_state(show.show_id, t).await.unwrap();
    let batch = DecisionEngine::new(show.layout.clone(), snapshot, short)
        .decide_batch(vec![pending(&r)], t);
    let [Decision::Granted { hold_id: hold, .. }] = batch.decisions[..] else {
        panic!("expected a grant: {:?}", batch.decisions);
    };
    store
        .commit_batch(show.show_id, &batch, t)
        .await
        .expect("commit_batch");
    let hold_end = store.get_hold(hold).await.unwrap().unwrap().expires_at;
    assert_eq!(hold_end, store.as_stored(t + short));

    let t1 = t + Duration::seconds(10);
    let new = new_order(
        &show,
        hold,
        &buyer,
        &["A1", "A2"],
        t1,
        t1 + Duration::minutes(15),
    );
    let order = store.create_order(&new).await.expect("create_order");
    assert!(order.seats_until >= hold_end + Duration::minutes(14));

    // A minute after the hold's expiry: the seats are still the order's.
    let t2 = hold_end + Duration::minutes(1);
    assert_eq!(
        store.get_hold(hold).await.unwrap().unwrap().status_at(t2),
        HoldStatus::Converted
    );
    assert_eq!(taken(store, &show, t2).await, held(&["A1", "A2"]));
    assert_eq!(show_state(store, &show, t2).await.1, seats(&["A1", "A2"]));
    let rival = request(store, &show, &fresh_user("rival"), &["A2", "A3"], t2).await;
    let fresh = decide(store, &show, &[&rival], t2).await;
    let unavailable = match &fresh.decisions[..] {
        [Decision::Rejected { unavailable, .. }] => unavailable.clone(),
        other => panic!("from fresh state the seat is not available: {other:?}"),
    };
    assert_eq!(unavailable, seats(&["A2"]));
    let mut blind = DecisionEngine::new(show.layout.clone(), ShowSnapshot::default(), HOLD_TTL);
    let stale = blind.decide_batch(vec![pending(&rival)], t2);
    assert!(matches!(stale.decisions[..], [Decision::Granted { .. }]));
    assert_eq!(
        store.commit_batch(show.show_id, &stale, t2).await,
        Err(CommitError::SeatConflict)
    );
    let rival_now = store.get_request(rival.request_id).await.unwrap().unwrap();
    assert_eq!(
        rival_now.status,
        RequestStatus::Queued,
        "nothing was written"
    );
    assert_eq!(
        store
            .get_hold(HoldId::for_request(rival.request_id))
            .await
            .unwrap(),
        None
    );
    assert_eq!(taken(store, &show, t2).await, held(&["A1", "A2"]));

    // And the buyer's payment, long after the hold ran out, buys the seats.
    let (confirmed, _) = pay(store, &order, t2).await;
    assert!(confirmed.ticket_code.is_some());
    let t3 = t2 + Duration::seconds(5);
    assert_eq!(taken(store, &show, t3).await, booked(&["A1", "A2"]));
}

/// An order's seats are claimed until its `seats_until` (here pushed past the deadline by a
/// charge in flight) and not from that instant on, with no sweep: then they read free, another
/// user's grant of one commits, and the order reads EXPIRED. A charge that goes through only
/// afterwards must be refunded (MustRefund with a PENDING refund of it), and the order is not
/// confirmed, not even with the seat nobody took.
pub async fn order_seats_free_by_time_at_seats_until<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1", "A2"], t).await;
    let charge = begin_new_charge(
        store,
        &order,
        t + Duration::minutes(1),
        order.expires_at + Duration::minutes(2),
    )
    .await;
    let order = store.get_order(order.order_id).await.unwrap().unwrap();
    let end = order.seats_until;
    assert_eq!(
        end,
        store.as_stored(order.expires_at + Duration::minutes(2))
    );

    let just_before = end - Duration::nanoseconds(1);
    assert_eq!(taken(store, &show, just_before).await, held(&["A1", "A2"]));
    assert_eq!(order.status_at(just_before), OrderStatus::PaymentPending);

    assert!(taken(store, &show, end).await.is_empty());
    assert_eq!(show_state(store, &show, end).await, (vec![], vec![]));
    assert!(locks(store, &show, end).await.is_empty());
    assert_eq!(order.status_at(end), OrderStatus::Expired);
    let rival_user = fresh_user("rival");
    let rival = request(store, &show, &rival_user, &["A2"], end).await;
    let rival_hold = grant(store, &show, &rival, end).await;

    let late = end + Duration::seconds(1);
    let refund_id = PaymentId::new_random();
    let charged = ChargeResult::Charged {
        provider_ref: "ch_late".to_owned(),
    };
    let finish = store
        .finish_charge(
            charge.payment_id,
            &charged,
            &new_ticket_code(),
            refund_id,
            late,
        )
        .await
        .expect("finish_charge");
    let ChargeFinish::MustRefund {
        order: after,
        refund,
    } = finish
    else {
        panic!("a charge after the seats went must be refunded: {finish:?}");
    };
    assert_eq!(after.order_id, order.order_id);
    assert_ne!(after.status, OrderStatus::Confirmed);
    assert_eq!(after.status_at(late), OrderStatus::Expired);
    assert_eq!(after.ticket_code, None);
    assert_eq!(store.get_order(order.order_id).await.unwrap(), Some(after));
    assert_eq!(refund.payment_id, refund_id);
    assert_eq!(refund.order_id, order.order_id);
    assert_eq!(refund.kind, PaymentKind::Refund);
    assert_eq!(refund.status, PaymentStatus::Pending);
    assert_eq!(refund.refund_of, Some(charge.payment_id));
    assert_eq!(
        (refund.amount_cents, refund.currency.as_str()),
        (order.amount_cents, order.currency.as_str())
    );
    let payments = store.payments_of(order.order_id).await.unwrap();
    let summary: Vec<_> = payments
        .iter()
        .map(|p| (p.payment_id, p.kind, p.status, p.provider_ref.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                charge.payment_id,
                PaymentKind::Charge,
                PaymentStatus::Succeeded,
                Some("ch_late")
            ),
            (refund_id, PaymentKind::Refund, PaymentStatus::Pending, None),
        ]
    );
    assert_eq!(
        locks(store, &show, late).await,
        locks_on(
            &["A2"],
            rival_hold,
            &rival_user,
            store.as_stored(end + HOLD_TTL),
            SeatStatus::Held
        ),
        "only the rival's hold: the order got neither seat"
    );
}

/// A charge that started in time but whose success is recorded only after the order's claims ran
/// out still confirms the order when nobody took its seats meanwhile: the money buys the ticket
/// (seats BOOKED for ever) instead of being refunded.
pub async fn late_charge_confirms_when_nobody_took_the_seats<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let order = place_order(store, &show, &fresh_user("buyer"), &["A3"], t).await;
    let t1 = t + Duration::minutes(1);
    let charge = begin_new_charge(store, &order, t1, t1).await;
    let late = order.seats_until + Duration::minutes(5);
    assert!(taken(store, &show, late).await.is_empty());
    let code = new_ticket_code();
    let finish = store
        .finish_charge(
            charge.payment_id,
            &ChargeResult::Charged {
                provider_ref: "ch_slow".to_owned(),
            },
            &code,
            PaymentId::new_random(),
            late,
        )
        .await
        .expect("finish_charge");
    let ChargeFinish::Settled(confirmed) = finish else {
        panic!("nobody took the seats: the order must be confirmed, got {finish:?}");
    };
    assert_eq!(confirmed.status, OrderStatus::Confirmed);
    assert_eq!(confirmed.ticket_code.as_deref(), Some(code.as_str()));
    assert_eq!(confirmed.seats_until, store.as_stored(sold_until()));
    assert_eq!(taken(store, &show, late).await, booked(&["A3"]));
    let payments = store.payments_of(order.order_id).await.unwrap();
    assert_eq!(payments.len(), 1, "no refund: {payments:?}");
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
}

/// `orders_of` lists only the user's orders, newest first, and its pages (each `after` the last
/// order of the one before) cover them all without gaps or repeats, even orders made at one
/// instant that a page boundary splits.
pub async fn orders_of_pages_newest_first<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 6).await;
    let t = now();
    let me = fresh_user("me");
    let second = Duration::seconds(1);
    let instants = [
        t,
        t + second,
        t + second,
        t + second,
        t + second * 2,
        t + second * 3,
    ];
    let labels = ["A1", "A2", "A3", "A4", "A5", "A6"];
    let mut mine = Vec::new();
    for (at, label) in instants.into_iter().zip(labels) {
        mine.push(place_order(store, &show, &me, &[label], at).await);
    }
    let other = place_order(store, &show, &fresh_user("other"), &["B1"], t + second).await;

    let all = store
        .orders_of(
            &me,
            OrderPage {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    let mut listed = all.clone();
    listed.sort_by_key(|o| o.order_id);
    let mut expected = mine.clone();
    expected.sort_by_key(|o| o.order_id);
    assert_eq!(listed, expected, "exactly the user's orders, as stored");
    assert!(!all.iter().any(|o| o.order_id == other.order_id));
    assert!(
        all.windows(2).all(|w| w[0].created_at >= w[1].created_at),
        "newest first: {:?}",
        all.iter().map(|o| o.created_at).collect::<Vec<_>>()
    );
    assert_eq!(all[0].order_id, mine[5].order_id);
    assert_eq!(all[5].order_id, mine[0].order_id);

    for limit in 1..=4 {
        let mut paged: Vec<Order> = Vec::new();
        let mut after: Option<(chrono::DateTime<chrono::Utc>, OrderId)> = None;
        for _ in 0..=all.len() {
            let page = store
                .orders_of(&me, OrderPage { after, limit })
                .await
                .unwrap();
            assert!(page.len() <= limit, "a page of {limit}: {}", page.len());
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.order_id));
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {limit}");
    }
}

/// `expire_orders` marks PAYMENT_PENDING orders whose claims ran out EXPIRED, once, frees their
/// claims and returns them; it leaves alone an order whose claims a charge in flight extended,
/// one still in time, and confirmed and cancelled ones.
pub async fn expire_orders_sweeps_overdue<S: ContractStore>(store: &S) {
    // Far in the past, on a range no other case touches (the hold and request sweeps work 400
    // and 500 days back, the unsettled payments 300), so this global sweep cannot expire another
    // case's orders.
    let e = now() - Duration::days(320);
    let minute = Duration::minutes(1);
    let show = create_show(store, 1, 6).await;
    let overdue = place_order(store, &show, &fresh_user("overdue"), &["A1"], e).await;
    let paying = place_order(store, &show, &fresh_user("paying"), &["A2"], e).await;
    begin_new_charge(store, &paying, e + minute, e + minute * 30).await;
    let in_time = place_order(
        store,
        &show,
        &fresh_user("in-time"),
        &["A3"],
        e + minute * 10,
    )
    .await;
    let paid = place_order(store, &show, &fresh_user("paid"), &["A4"], e).await;
    pay(store, &paid, e + minute).await;
    let quitter = fresh_user("quitter");
    let cancelled = place_order(store, &show, &quitter, &["A5"], e).await;
    store
        .cancel_order(
            cancelled.order_id,
            &quitter,
            PaymentId::new_random(),
            booking_core::CANCELLED_BY_BUYER,
            e + minute,
        )
        .await
        .expect("cancel_order");
    let ids = [&overdue, &paying, &in_time, &paid, &cancelled].map(|o| o.order_id);
    let mine = |swept: Vec<Order>| -> Vec<Order> {
        let mut mine: Vec<Order> = swept
            .into_iter()
            .filter(|o| ids.contains(&o.order_id))
            .collect();
        mine.sort_by_key(|o| o.order_id);
        mine
    };

    let sweep = e + minute * 15;
    let swept = mine(store.expire_orders(sweep).await.unwrap());
    assert_eq!(
        swept.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        vec![overdue.order_id],
        "only the overdue order: {swept:?}"
    );
    assert_eq!(swept[0].status, OrderStatus::Expired);
    assert_eq!(swept[0].seat_ids, seats(&["A1"]));
    assert_eq!(
        store.get_order(overdue.order_id).await.unwrap().as_ref(),
        Some(&swept[0])
    );
    // Its claim is gone, not merely run out: even a read as of before its end no longer sees it.
    let mut still = held(&["A2", "A3"]);
    still.extend(booked(&["A4"]));
    assert_eq!(taken(store, &show, e + minute * 5).await, still);

    assert!(
        mine(store.expire_orders(sweep).await.unwrap()).is_empty(),
        "an order expires once"
    );
    for (order, status) in [
        (&paying, OrderStatus::PaymentPending),
        (&in_time, OrderStatus::PaymentPending),
        (&paid, OrderStatus::Confirmed),
        (&cancelled, OrderStatus::Cancelled),
    ] {
        let stored = store.get_order(order.order_id).await.unwrap().unwrap();
        assert_eq!(stored.status, status, "{:?}", order.seat_ids);
    }
    assert_eq!(
        taken(store, &show, sweep).await,
        [held(&["A2", "A3"]), booked(&["A4"])].concat()
    );

    // Once the extended claim and the later deadline have run out, those two go as well.
    let later = e + minute * 31;
    let swept = mine(store.expire_orders(later).await.unwrap());
    let mut expected = vec![paying.order_id, in_time.order_id];
    expected.sort();
    assert_eq!(
        swept.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        expected
    );
    assert!(swept.iter().all(|o| o.status == OrderStatus::Expired));
    assert_eq!(taken(store, &show, later).await, booked(&["A4"]));
}
