//! Charges: the calls that take an order's money, recorded before and after each call to the
//! provider, and what they do to the order and its seats.
//!
//! The rules that keep money and seats together (`booking_core::order`): a charge is recorded
//! PENDING before it is sent and an order has at most one such charge, so a retry re-sends it
//! instead of charging twice; a started charge keeps the seats claimed while it finishes; a charge
//! that goes through confirms the order and books its seats for ever, a declined one fails the
//! order and frees them, one the provider never made changes nothing; and no charge starts after
//! the payment deadline. Cancels, refunds and recovery's listing are in `refunds`.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::{ChargeFinish, ChargeResult, ChargeStart, OrderError};
use booking_core::{
    Decision, OrderId, OrderStatus, PaymentId, PaymentKind, PaymentStatus, SeatStatus,
    new_ticket_code, sold_until,
};
use chrono::Duration;

/// A charge that goes through confirms its order: CONFIRMED with the ticket code, the charge
/// SUCCEEDED with the provider's reference, the seats BOOKED for ever (taken and seat locks,
/// `seats_until` = `sold_until()`) and refused to others; recording the outcome again changes
/// nothing, and a confirmed order takes no further charge (NotPending(Confirmed)).
pub async fn charge_confirms_the_order_once<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1", "A2"], t).await;

    let t1 = t + Duration::seconds(1);
    let payment = PaymentId::new_random();
    let tok = token("tok_visa_4242");
    let start = store
        .begin_charge(
            order.order_id,
            &buyer,
            payment,
            &tok,
            t1,
            t1 + Duration::minutes(1),
        )
        .await
        .expect("begin_charge");
    let ChargeStart::New(charge) = start else {
        panic!("the first charge of an order is new: {start:?}");
    };
    assert_eq!(charge.payment_id, payment);
    assert_eq!(charge.order_id, order.order_id);
    assert_eq!(charge.kind, PaymentKind::Charge);
    assert_eq!(charge.status, PaymentStatus::Pending);
    assert_eq!(
        (charge.amount_cents, charge.currency.as_str()),
        (order.amount_cents, order.currency.as_str())
    );
    assert_eq!(charge.token, Some(tok));
    assert_eq!(charge.provider_ref, None);
    assert_eq!(charge.refund_of, None);
    assert_eq!(charge.message, None);
    assert_eq!(charge.created_at, store.as_stored(t1));
    assert_eq!(
        store.payments_of(order.order_id).await.unwrap(),
        vec![charge.clone()],
        "recorded before it is sent"
    );

    let t2 = t1 + Duration::seconds(2);
    let code = new_ticket_code();
    let charged = ChargeResult::Charged {
        provider_ref: "ch_1".to_owned(),
    };
    let finish = store
        .finish_charge(payment, &charged, &code, PaymentId::new_random(), t2)
        .await
        .expect("finish_charge");
    let ChargeFinish::Settled(confirmed) = finish else {
        panic!("a charge of a pending order confirms it: {finish:?}");
    };
    assert_eq!(confirmed.order_id, order.order_id);
    assert_eq!(confirmed.status, OrderStatus::Confirmed);
    assert_eq!(confirmed.ticket_code.as_deref(), Some(code.as_str()));
    assert_eq!(confirmed.seats_until, store.as_stored(sold_until()));
    assert_eq!(confirmed.seat_ids, order.seat_ids);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(confirmed.clone())
    );
    let payments = store.payments_of(order.order_id).await.unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].payment_id, payment);
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
    assert_eq!(payments[0].provider_ref.as_deref(), Some("ch_1"));

    assert_eq!(taken(store, &show, t2).await, booked(&["A1", "A2"]));
    let years_later = t2 + Duration::days(3650);
    assert_eq!(
        taken(store, &show, years_later).await,
        booked(&["A1", "A2"])
    );
    assert_eq!(
        show_state(store, &show, t2).await,
        (vec![], seats(&["A1", "A2"]))
    );
    assert_eq!(
        locks(store, &show, t2).await,
        locks_on(
            &["A1", "A2"],
            order.hold_id,
            &buyer,
            store.as_stored(sold_until()),
            SeatStatus::Booked
        )
    );
    let rival = request(store, &show, &fresh_user("rival"), &["A2"], years_later).await;
    let decided = decide(store, &show, &[&rival], years_later).await;
    assert!(
        matches!(decided.decisions[..], [Decision::Rejected { .. }]),
        "a sold seat is nobody else's: {:?}",
        decided.decisions
    );

    // The same outcome recorded again (a retry of the recording) changes nothing.
    let t3 = t2 + Duration::seconds(1);
    let again = store
        .finish_charge(
            payment,
            &charged,
            &new_ticket_code(),
            PaymentId::new_random(),
            t3,
        )
        .await
        .expect("finish_charge again");
    assert_eq!(again, ChargeFinish::Settled(confirmed.clone()));
    assert_eq!(store.payments_of(order.order_id).await.unwrap(), payments);
    assert_eq!(
        store
            .begin_charge(
                order.order_id,
                &buyer,
                PaymentId::new_random(),
                &token("tok_again"),
                t3,
                t3 + Duration::minutes(1)
            )
            .await,
        Err(OrderError::NotPending(OrderStatus::Confirmed))
    );
    assert_eq!(store.payments_of(order.order_id).await.unwrap(), payments);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(confirmed)
    );
}

/// While a charge is in flight a second `begin_charge` hands back that same charge (InDoubt,
/// same id and token) to be sent again, never a second PENDING charge; and a started charge
/// keeps the order's seats claimed until at least `hold_seats_until`, past the payment deadline,
/// never shortening the claim.
pub async fn begin_charge_while_in_flight_returns_the_same_charge<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1"], t).await;
    let until = order.expires_at + Duration::minutes(3);
    let t1 = t + Duration::seconds(1);
    let first = store
        .begin_charge(
            order.order_id,
            &buyer,
            PaymentId::new_random(),
            &token("tok_first"),
            t1,
            until,
        )
        .await
        .expect("begin_charge");
    let ChargeStart::New(first) = first else {
        panic!("expected a new charge: {first:?}");
    };
    let extended = store.get_order(order.order_id).await.unwrap().unwrap();
    assert_eq!(extended.seats_until, store.as_stored(until));
    assert_eq!(extended.expires_at, order.expires_at, "the deadline stays");

    let t2 = t1 + Duration::seconds(1);
    let second = store
        .begin_charge(
            order.order_id,
            &buyer,
            PaymentId::new_random(),
            &token("tok_second"),
            t2,
            t2 + Duration::minutes(1),
        )
        .await
        .expect("begin_charge again");
    // The same charge, marked as sent again (so recovery leaves it alone while it is).
    let resent = booking_core::Payment {
        updated_at: store.as_stored(t2),
        ..first.clone()
    };
    assert_eq!(second, ChargeStart::InDoubt(resent.clone()));
    assert_eq!(
        store.payments_of(order.order_id).await.unwrap(),
        vec![resent],
        "no second charge"
    );
    assert_eq!(
        store
            .get_order(order.order_id)
            .await
            .unwrap()
            .unwrap()
            .seats_until,
        store.as_stored(until),
        "a shorter hold_seats_until does not shorten the claim"
    );

    // Past the deadline the seats are still the order's, until `until`.
    let deadline = order.expires_at;
    assert_eq!(extended.status_at(deadline), OrderStatus::PaymentPending);
    assert_eq!(taken(store, &show, deadline).await, held(&["A1"]));
    assert_eq!(
        locks(store, &show, deadline).await,
        locks_on(
            &["A1"],
            order.hold_id,
            &buyer,
            store.as_stored(until),
            SeatStatus::Held
        )
    );
    let rival = request(store, &show, &fresh_user("rival"), &["A1"], deadline).await;
    let decided = decide(store, &show, &[&rival], deadline).await;
    assert!(
        matches!(decided.decisions[..], [Decision::Rejected { .. }]),
        "{:?}",
        decided.decisions
    );
    let end = store.as_stored(until);
    assert_eq!(
        taken(store, &show, end - Duration::nanoseconds(1)).await,
        held(&["A1"])
    );
    assert!(taken(store, &show, end).await.is_empty());
}

/// A declined charge fails its order and frees its seats at once: the order FAILED, the
/// payment DECLINED with the provider's message, the seats free for another user's grant; the
/// decline recorded again changes nothing, and a failed order takes no charge and no cancel
/// (NotPending(Failed)).
pub async fn declined_charge_fails_the_order_and_frees_its_seats<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1", "A2"], t).await;
    let t1 = t + Duration::seconds(1);
    let charge = begin_new_charge(store, &order, t1, t1 + Duration::minutes(1)).await;
    let t2 = t1 + Duration::seconds(1);
    let declined = ChargeResult::Declined {
        reason: "card declined".to_owned(),
    };
    let finish = store
        .finish_charge(
            charge.payment_id,
            &declined,
            &new_ticket_code(),
            PaymentId::new_random(),
            t2,
        )
        .await
        .expect("finish_charge");
    let ChargeFinish::Settled(failed) = finish else {
        panic!("a decline needs no refund: {finish:?}");
    };
    assert_eq!(failed.status, OrderStatus::Failed);
    assert_eq!(failed.ticket_code, None);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(failed.clone())
    );
    let payments = store.payments_of(order.order_id).await.unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].payment_id, charge.payment_id);
    assert_eq!(payments[0].status, PaymentStatus::Declined);
    assert_eq!(payments[0].message.as_deref(), Some("card declined"));

    assert!(taken(store, &show, t2).await.is_empty());
    assert_eq!(show_state(store, &show, t2).await, (vec![], vec![]));
    assert!(locks(store, &show, t2).await.is_empty());
    let rival = request(store, &show, &fresh_user("rival"), &["A2"], t2).await;
    grant(store, &show, &rival, t2).await;
    assert_eq!(taken(store, &show, t2).await, held(&["A2"]));

    let t3 = t2 + Duration::seconds(1);
    let again = store
        .finish_charge(
            charge.payment_id,
            &declined,
            &new_ticket_code(),
            PaymentId::new_random(),
            t3,
        )
        .await
        .expect("finish_charge again");
    assert_eq!(again, ChargeFinish::Settled(failed.clone()));
    assert_eq!(
        store
            .begin_charge(
                order.order_id,
                &buyer,
                PaymentId::new_random(),
                &token("tok_other_card"),
                t3,
                t3 + Duration::minutes(1)
            )
            .await,
        Err(OrderError::NotPending(OrderStatus::Failed))
    );
    assert_eq!(
        store
            .cancel_order(
                order.order_id,
                &buyer,
                PaymentId::new_random(),
                booking_core::CANCELLED_BY_BUYER,
                t3
            )
            .await,
        Err(OrderError::NotPending(OrderStatus::Failed))
    );
    assert_eq!(store.payments_of(order.order_id).await.unwrap(), payments);
    assert_eq!(store.get_order(order.order_id).await.unwrap(), Some(failed));
}

/// A charge the provider never made is recorded FAILED (with its message) and leaves the order
/// as it was: PAYMENT_PENDING, seats still its own; the next `begin_charge` records a new
/// charge.
pub async fn charge_not_made_leaves_the_order_pending<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1"], t).await;
    let t1 = t + Duration::seconds(1);
    let first = begin_new_charge(store, &order, t1, t1).await;
    let pending_order = store.get_order(order.order_id).await.unwrap().unwrap();
    let t2 = t1 + Duration::seconds(1);
    let finish = store
        .finish_charge(
            first.payment_id,
            &ChargeResult::NotCharged {
                last_sent: first.updated_at,
                reason: "provider never saw it".to_owned(),
            },
            &new_ticket_code(),
            PaymentId::new_random(),
            t2,
        )
        .await
        .expect("finish_charge");
    assert_eq!(finish, ChargeFinish::Settled(pending_order.clone()));
    assert_eq!(pending_order.status, OrderStatus::PaymentPending);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(pending_order)
    );
    assert_eq!(taken(store, &show, t2).await, held(&["A1"]));

    let t3 = t2 + Duration::seconds(1);
    let retry = PaymentId::new_random();
    let start = store
        .begin_charge(
            order.order_id,
            &buyer,
            retry,
            &token("tok_retry"),
            t3,
            t3 + Duration::minutes(1),
        )
        .await
        .expect("begin_charge");
    let ChargeStart::New(second) = start else {
        panic!("the failed charge is settled: the next one is new, got {start:?}");
    };
    assert_eq!(second.payment_id, retry);
    assert_eq!(second.token, Some(token("tok_retry")));
    let payments = store.payments_of(order.order_id).await.unwrap();
    let summary: Vec<_> = payments
        .iter()
        .map(|p| (p.payment_id, p.status, p.message.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                first.payment_id,
                PaymentStatus::Failed,
                Some("provider never saw it")
            ),
            (retry, PaymentStatus::Pending, None),
        ]
    );
    assert_eq!(payments[1], second);
}

/// `begin_charge` refuses, writing nothing: at or after the order's payment deadline (Expired;
/// one instant before it a charge still starts), even while an earlier charge's extension still
/// keeps the seats claimed; and for another user's order or an unknown one (NotFound).
/// Recording the outcome of an unknown payment is NotFound too.
pub async fn begin_charge_refusals<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1"], t).await;
    let try_charge = |order_id: OrderId, user, at| {
        let store = store.clone();
        async move {
            store
                .begin_charge(
                    order_id,
                    &user,
                    PaymentId::new_random(),
                    &token("tok_visa"),
                    at,
                    at + Duration::minutes(5),
                )
                .await
        }
    };
    let t1 = t + Duration::seconds(1);
    assert_eq!(
        try_charge(order.order_id, fresh_user("stranger"), t1).await,
        Err(OrderError::NotFound)
    );
    assert_eq!(
        try_charge(OrderId::new_random(), buyer.clone(), t1).await,
        Err(OrderError::NotFound)
    );
    for at in [order.expires_at, order.expires_at + Duration::minutes(1)] {
        assert_eq!(
            try_charge(order.order_id, buyer.clone(), at).await,
            Err(OrderError::Expired),
            "a charge at {at}, deadline {}",
            order.expires_at
        );
    }
    assert_eq!(store.payments_of(order.order_id).await.unwrap(), vec![]);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(order.clone()),
        "no claim was extended"
    );

    let charged = ChargeResult::Charged {
        provider_ref: "ch_ghost".to_owned(),
    };
    assert_eq!(
        store
            .finish_charge(
                PaymentId::new_random(),
                &charged,
                &new_ticket_code(),
                PaymentId::new_random(),
                t1
            )
            .await,
        Err(OrderError::NotFound)
    );
    assert_eq!(
        store
            .finish_refund(PaymentId::new_random(), "re_ghost", t1)
            .await,
        Err(OrderError::NotFound)
    );

    let in_time = try_charge(
        order.order_id,
        buyer.clone(),
        order.expires_at - Duration::nanoseconds(1),
    )
    .await
    .expect("one instant before the deadline a charge starts");
    assert!(matches!(in_time, ChargeStart::New(_)), "{in_time:?}");

    // The seats are still claimed past the deadline (an earlier charge's extension; it turned
    // out never to have been made), yet no new charge may start.
    let late_buyer = fresh_user("late");
    let late = place_order(store, &show, &late_buyer, &["A3"], t).await;
    let extension = late.expires_at + Duration::minutes(5);
    let failed = begin_new_charge(store, &late, t1, extension).await;
    store
        .finish_charge(
            failed.payment_id,
            &ChargeResult::NotCharged {
                last_sent: failed.updated_at,
                reason: "never sent".to_owned(),
            },
            &new_ticket_code(),
            PaymentId::new_random(),
            t1 + Duration::seconds(1),
        )
        .await
        .expect("finish_charge");
    let before = store.get_order(late.order_id).await.unwrap().unwrap();
    assert_eq!(before.seats_until, store.as_stored(extension));
    assert_eq!(
        before.status_at(late.expires_at),
        OrderStatus::PaymentPending
    );
    assert_eq!(
        try_charge(late.order_id, late_buyer.clone(), late.expires_at).await,
        Err(OrderError::Expired)
    );
    assert_eq!(store.get_order(late.order_id).await.unwrap(), Some(before));
    assert_eq!(store.payments_of(late.order_id).await.unwrap().len(), 1);
}

/// Recovery's "never charged" is not recorded for a charge that was sent again after recovery
/// listed it (a retry may be on its way to the provider): it stays PENDING, and the retry's
/// outcome is what counts.
pub async fn a_charge_sent_again_is_not_written_off<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A2"], t).await;
    let t1 = t + Duration::seconds(1);
    let listed = begin_new_charge(store, &order, t1, t1 + Duration::minutes(1)).await;
    // A retry re-sends it.
    let t2 = t1 + Duration::seconds(5);
    let resent = store
        .begin_charge(
            order.order_id,
            &buyer,
            PaymentId::new_random(),
            &token("tok_retry"),
            t2,
            t2 + Duration::minutes(1),
        )
        .await
        .expect("begin_charge again");
    assert!(matches!(resent, ChargeStart::InDoubt(_)), "{resent:?}");
    // Recovery, working from its older listing, asks and hears "never charged".
    store
        .finish_charge(
            listed.payment_id,
            &ChargeResult::NotCharged {
                reason: "provider has no record".to_owned(),
                last_sent: listed.updated_at,
            },
            &new_ticket_code(),
            PaymentId::new_random(),
            t2 + Duration::seconds(1),
        )
        .await
        .expect("finish_charge");
    let payments = store.payments_of(order.order_id).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(
        payments[0].status,
        PaymentStatus::Pending,
        "not written off"
    );
    // The retry's charge goes through and confirms the order.
    let ticket = new_ticket_code();
    let finish = store
        .finish_charge(
            listed.payment_id,
            &ChargeResult::Charged {
                provider_ref: "ch_retry".to_owned(),
            },
            &ticket,
            PaymentId::new_random(),
            t2 + Duration::seconds(2),
        )
        .await
        .expect("finish_charge");
    let ChargeFinish::Settled(confirmed) = finish else {
        panic!("the seats are still the order's: confirmed, got {finish:?}");
    };
    assert_eq!(confirmed.status, OrderStatus::Confirmed);
    assert_eq!(confirmed.ticket_code, Some(ticket));
}
