//! Cancels and refunds: how an order ends on its buyer's word, and what recovery finds unsettled.
//!
//! An unpaid order is cancelled at once and frees its seats, but not while a charge is in flight
//! (its outcome decides). A paid order is cancelled only once its refund has gone through: a
//! PENDING refund is recorded first (one per charge, however often the buyer asks), the ticket
//! stays valid until the refund is recorded as done, and only then are the seats free. Whatever is
//! still PENDING after its caller gave up, charge or refund, is listed for recovery to settle.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::{CancelStart, ChargeResult, OrderError};
use booking_core::{
    Order, OrderStatus, Payment, PaymentId, PaymentKind, PaymentStatus, SeatStatus,
    new_ticket_code, sold_until,
};
use chrono::Duration;

/// Cancelling an unpaid order ends it at once (CANCELLED, its seats free for another user's
/// grant, no refund), but not another user's (NotFound), not twice (NotPending(Cancelled)), and
/// not while a charge is in flight (PaymentInProgress, nothing written): that charge's outcome
/// decides, and once it is known not to have been made the cancel goes through.
pub async fn cancel_unpaid_order<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1"], t).await;
    let t1 = t + Duration::seconds(1);
    assert_eq!(
        store
            .cancel_order(
                order.order_id,
                &fresh_user("stranger"),
                PaymentId::new_random(),
                booking_core::CANCELLED_BY_BUYER,
                t1
            )
            .await,
        Err(OrderError::NotFound)
    );
    assert_eq!(taken(store, &show, t1).await, held(&["A1"]));
    let start = store
        .cancel_order(
            order.order_id,
            &buyer,
            PaymentId::new_random(),
            booking_core::CANCELLED_BY_BUYER,
            t1,
        )
        .await
        .expect("cancel_order");
    let CancelStart::Cancelled(cancelled) = start else {
        panic!("an unpaid order needs no refund: {start:?}");
    };
    assert_eq!(cancelled.order_id, order.order_id);
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(cancelled.clone())
    );
    assert_eq!(store.payments_of(order.order_id).await.unwrap(), vec![]);
    assert!(taken(store, &show, t1).await.is_empty());
    let rival = request(store, &show, &fresh_user("rival"), &["A1"], t1).await;
    grant(store, &show, &rival, t1).await;
    let t2 = t1 + Duration::seconds(1);
    assert_eq!(
        store
            .cancel_order(
                order.order_id,
                &buyer,
                PaymentId::new_random(),
                booking_core::CANCELLED_BY_BUYER,
                t2
            )
            .await,
        Err(OrderError::NotPending(OrderStatus::Cancelled))
    );
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(cancelled)
    );

    // A charge in flight: its outcome decides, not the cancel.
    let payer = fresh_user("payer");
    let paying = place_order(store, &show, &payer, &["A3"], t).await;
    let charge = begin_new_charge(store, &paying, t1, t1 + Duration::minutes(1)).await;
    let before = store.get_order(paying.order_id).await.unwrap();
    assert_eq!(
        store
            .cancel_order(
                paying.order_id,
                &payer,
                PaymentId::new_random(),
                booking_core::CANCELLED_BY_BUYER,
                t2
            )
            .await,
        Err(OrderError::PaymentInProgress)
    );
    assert_eq!(store.get_order(paying.order_id).await.unwrap(), before);
    assert_eq!(
        store.payments_of(paying.order_id).await.unwrap(),
        vec![charge.clone()]
    );
    assert_eq!(taken(store, &show, t2).await, held(&["A1", "A3"]));

    store
        .finish_charge(
            charge.payment_id,
            &ChargeResult::NotCharged {
                last_sent: charge.updated_at,
                reason: "timed out before sending".to_owned(),
            },
            &new_ticket_code(),
            PaymentId::new_random(),
            t2,
        )
        .await
        .expect("finish_charge");
    let t3 = t2 + Duration::seconds(1);
    let start = store
        .cancel_order(
            paying.order_id,
            &payer,
            PaymentId::new_random(),
            booking_core::CANCELLED_BY_BUYER,
            t3,
        )
        .await
        .expect("cancel_order");
    assert!(
        matches!(&start, CancelStart::Cancelled(o) if o.status == OrderStatus::Cancelled),
        "{start:?}"
    );
    assert_eq!(taken(store, &show, t3).await, held(&["A1"]));
}

/// Cancelling a paid order records a PENDING refund of its charge first and keeps the ticket
/// valid (CONFIRMED, seats BOOKED) until the refund is recorded as done; a second cancel before
/// then hands back the same refund. Once refunded the order is CANCELLED, its seats free, and
/// its payments list the charge and the refund SUCCEEDED; cancelling again is
/// NotPending(Cancelled), and recording the refund again changes nothing.
pub async fn cancel_paid_order_refunds_before_freeing_seats<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
    let buyer = fresh_user("buyer");
    let order = place_order(store, &show, &buyer, &["A1", "A2"], t).await;
    let (confirmed, charge) = pay(store, &order, t + Duration::seconds(1)).await;

    let t1 = t + Duration::seconds(5);
    let refund_id = PaymentId::new_random();
    let start = store
        .cancel_order(
            order.order_id,
            &buyer,
            refund_id,
            booking_core::CANCELLED_BY_BUYER,
            t1,
        )
        .await
        .expect("cancel_order");
    let CancelStart::Refund {
        order: still,
        refund,
    } = start
    else {
        panic!("a paid order is refunded first: {start:?}");
    };
    let cancelling = Order {
        reason: Some(booking_core::CANCELLED_BY_BUYER.to_owned()),
        ..confirmed.clone()
    };
    assert_eq!(
        still, cancelling,
        "the order stays CONFIRMED until refunded, and says why it is being cancelled"
    );
    assert_eq!(refund.payment_id, refund_id);
    assert_eq!(refund.order_id, order.order_id);
    assert_eq!(refund.kind, PaymentKind::Refund);
    assert_eq!(refund.status, PaymentStatus::Pending);
    assert_eq!(refund.refund_of, Some(charge.payment_id));
    assert_eq!(
        (refund.amount_cents, refund.currency.as_str()),
        (order.amount_cents, order.currency.as_str())
    );
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(cancelling.clone())
    );
    assert_eq!(taken(store, &show, t1).await, booked(&["A1", "A2"]));
    assert_eq!(
        locks(store, &show, t1).await,
        locks_on(
            &["A1", "A2"],
            order.hold_id,
            &buyer,
            store.as_stored(sold_until()),
            SeatStatus::Booked
        )
    );

    let t2 = t1 + Duration::seconds(1);
    let second = store
        .cancel_order(
            order.order_id,
            &buyer,
            PaymentId::new_random(),
            booking_core::CANCELLED_BY_BUYER,
            t2,
        )
        .await
        .expect("cancel_order again");
    assert_eq!(
        second,
        CancelStart::Refund {
            order: cancelling.clone(),
            refund: refund.clone()
        },
        "the refund already pending, not a second one"
    );
    assert_eq!(
        store
            .cancel_order(
                order.order_id,
                &fresh_user("stranger"),
                PaymentId::new_random(),
                booking_core::CANCELLED_BY_BUYER,
                t2
            )
            .await,
        Err(OrderError::NotFound)
    );
    let payments = store.payments_of(order.order_id).await.unwrap();
    assert_eq!(
        payments.iter().map(|p| p.payment_id).collect::<Vec<_>>(),
        vec![charge.payment_id, refund_id]
    );
    assert_eq!(payments[1], refund);

    let t3 = t2 + Duration::seconds(1);
    let cancelled = store
        .finish_refund(refund_id, "re_1", t3)
        .await
        .expect("finish_refund");
    assert_eq!(cancelled.order_id, order.order_id);
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap(),
        Some(cancelled.clone())
    );
    assert!(taken(store, &show, t3).await.is_empty());
    assert!(locks(store, &show, t3).await.is_empty());
    let rival = request(store, &show, &fresh_user("rival"), &["A1", "A2"], t3).await;
    grant(store, &show, &rival, t3).await;
    let payments = store.payments_of(order.order_id).await.unwrap();
    let summary: Vec<_> = payments
        .iter()
        .map(|p| (p.payment_id, p.kind, p.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                charge.payment_id,
                PaymentKind::Charge,
                PaymentStatus::Succeeded
            ),
            (refund_id, PaymentKind::Refund, PaymentStatus::Succeeded),
        ]
    );
    assert_eq!(payments[1].provider_ref.as_deref(), Some("re_1"));
    assert_eq!(payments[1].refund_of, Some(charge.payment_id));

    let t4 = t3 + Duration::seconds(1);
    assert_eq!(
        store
            .cancel_order(
                order.order_id,
                &buyer,
                PaymentId::new_random(),
                booking_core::CANCELLED_BY_BUYER,
                t4
            )
            .await,
        Err(OrderError::NotPending(OrderStatus::Cancelled))
    );
    assert_eq!(
        store.finish_refund(refund_id, "re_1", t4).await,
        Ok(cancelled)
    );
    assert_eq!(store.payments_of(order.order_id).await.unwrap(), payments);
}

/// `unsettled_payments` lists the PENDING payments (charges and refunds) recorded before the
/// given instant, oldest first: not those recorded at or after it, and no settled ones.
pub async fn unsettled_payments_lists_old_pending_calls<S: ContractStore>(store: &S) {
    // Far in the past and apart from every sweep's range (400 and 500 days back for holds and
    // requests, 320 for orders), so nothing else settles or expires these while the case runs.
    let e = now() - Duration::days(300);
    let minute = Duration::minutes(1);
    let show = create_show(store, 1, 6).await;

    let waiting = place_order(store, &show, &fresh_user("waiting"), &["A1"], e).await;
    let waiting_charge = begin_new_charge(store, &waiting, e + minute, e + minute * 2).await;
    let paid = place_order(store, &show, &fresh_user("paid"), &["A2"], e).await;
    pay(store, &paid, e + minute).await;
    let refunder = fresh_user("refunder");
    let refunded = place_order(store, &show, &refunder, &["A3"], e).await;
    pay(store, &refunded, e + minute).await;
    let start = store
        .cancel_order(
            refunded.order_id,
            &refunder,
            PaymentId::new_random(),
            booking_core::CANCELLED_BY_BUYER,
            e + minute * 3,
        )
        .await
        .expect("cancel_order");
    let CancelStart::Refund { refund, .. } = start else {
        panic!("a paid order is refunded first: {start:?}");
    };
    let failed = place_order(store, &show, &fresh_user("failed"), &["A4"], e).await;
    let failed_charge = begin_new_charge(store, &failed, e + minute * 2, e + minute * 3).await;
    store
        .finish_charge(
            failed_charge.payment_id,
            &ChargeResult::NotCharged {
                last_sent: failed_charge.updated_at,
                reason: "never sent".to_owned(),
            },
            &new_ticket_code(),
            PaymentId::new_random(),
            e + minute * 2,
        )
        .await
        .expect("finish_charge");
    let recent = place_order(store, &show, &fresh_user("recent"), &["A5"], e + minute * 5).await;
    let recent_charge = begin_new_charge(store, &recent, e + minute * 10, e + minute * 11).await;

    let orders = [&waiting, &paid, &refunded, &failed, &recent].map(|o| o.order_id);
    let unsettled = |before| {
        let store = store.clone();
        async move {
            store
                .unsettled_payments(before)
                .await
                .expect("unsettled_payments")
                .into_iter()
                .filter(|p| orders.contains(&p.order_id))
                .collect::<Vec<Payment>>()
        }
    };
    assert_eq!(
        unsettled(e + minute * 5).await,
        vec![waiting_charge.clone(), refund.clone()]
    );
    assert_eq!(
        unsettled(waiting_charge.created_at).await,
        vec![],
        "recorded at that instant is not before it"
    );
    assert_eq!(
        unsettled(e + minute * 11).await,
        vec![waiting_charge, refund, recent_charge]
    );
}
