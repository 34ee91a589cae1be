//! Show cancellation, as the stores keep it: the mark (once, for good), the catalog writes it
//! forbids, the show's undecided requests ended in one step, and the open orders a wind-up must
//! cancel or refund, with the reason each order keeps.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::{CancelStart, CatalogError, Upserted};
use booking_core::{
    CANCELLED_BY_BUYER, OrderStatus, PaymentId, RequestOutcome, RequestStatus, Show,
    refunded_reason,
};
use chrono::Duration;
use std::sync::Arc;

/// A show is cancelled once: the first time and reason stand, a second cancel returns them
/// unchanged, an unknown show is `None`, and `cancelled_shows` lists it from its cancellation
/// on (and not a show cancelled before `since`). Rewriting the cancelled show as it is changes
/// nothing (a re-import) and keeps it cancelled; changing anything of it is refused.
pub async fn a_show_is_cancelled_once_and_for_good<S: ContractStore>(store: &S) {
    let created = create_show(store, 1, 4).await;
    // As the store keeps it (to its precision).
    let show = store.get_show(created.show_id).await.unwrap().unwrap();
    assert_eq!(show.cancelled, None);
    let earlier = create_show(store, 1, 4).await;
    let t = now();
    assert_eq!(
        store
            .cancel_show(booking_core::ShowId::new_random(), "x", t)
            .await
            .unwrap(),
        None
    );
    let cancelled = store
        .cancel_show(show.show_id, "the projector broke", t)
        .await
        .unwrap()
        .expect("the show exists");
    let mark = cancelled.cancelled.clone().expect("cancelled");
    assert_eq!(mark.reason, "the projector broke");
    assert_eq!(mark.at, store.as_stored(t));
    assert_eq!(
        Show {
            cancelled: None,
            ..cancelled.clone()
        },
        show,
        "nothing else of the show changed"
    );
    assert_eq!(
        store.get_show(show.show_id).await.unwrap(),
        Some(cancelled.clone())
    );
    let again = store
        .cancel_show(show.show_id, "another reason", t + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(
        again,
        Some(cancelled.clone()),
        "the first cancellation stands"
    );
    let listed = store
        .list_shows(show.movie_id, None)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.show_id == show.show_id);
    assert_eq!(listed, Some(cancelled.clone()));

    store
        .cancel_show(earlier.show_id, "", t - Duration::days(10))
        .await
        .unwrap()
        .expect("the show exists");
    let recent = store.cancelled_shows(t - Duration::days(1)).await.unwrap();
    assert!(recent.contains(&show.show_id));
    assert!(!recent.contains(&earlier.show_id));
    assert!(
        store
            .cancelled_shows(t - Duration::days(11))
            .await
            .unwrap()
            .contains(&earlier.show_id)
    );

    let written = store.put_show(&show).await.expect("the same show again");
    assert_eq!(written.shows_unchanged, 1, "{written:?}");
    assert_eq!(
        store.get_show(show.show_id).await.unwrap(),
        Some(cancelled.clone()),
        "a rewrite does not undo a cancellation"
    );
    let rescheduled = Show {
        starts_at: show.starts_at + Duration::hours(1),
        ..show.clone()
    };
    assert_eq!(
        store.put_show(&rescheduled).await,
        Err(CatalogError::Cancelled(show.show_id))
    );
    let relaid = Show {
        layout: Arc::new(booking_core::SeatLayout::rectangular(2, 4, 500)),
        ..show.clone()
    };
    assert_eq!(
        store.put_catalog(&[], &[relaid]).await,
        Err(CatalogError::Cancelled(show.show_id))
    );
    assert_eq!(
        store.get_show(show.show_id).await.unwrap(),
        Some(cancelled),
        "a refused write wrote nothing"
    );
    assert_eq!(
        booking_core::catalog::EntryWrite::of_show(None, &show)
            .unwrap()
            .upserted(),
        Upserted::Created
    );
}

/// `fail_undecided` ends every undecided request of the show FAILED with the message (queued,
/// taken by a decider, set aside as a dead letter), leaves its decided requests and every other
/// show's requests alone, and finds nothing the second time. A decider that took one of them
/// and commits a grant afterwards is refused (the batch was decided against stale state).
pub async fn fail_undecided_ends_a_shows_queue<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let other = create_show(store, 1, 6).await;
    let t = now();
    let granted = request(store, &show, &fresh_user("granted"), &["A1"], t).await;
    grant(store, &show, &granted, t).await;
    let queued = request(store, &show, &fresh_user("queued"), &["A2"], t).await;
    let in_flight = request(store, &show, &fresh_user("in-flight"), &["A3"], t).await;
    let set_aside = request(store, &show, &fresh_user("set-aside"), &["A4"], t).await;
    let elsewhere = request(store, &other, &fresh_user("elsewhere"), &["A2"], t).await;
    assert_eq!(
        store
            .begin_processing(&[in_flight.request_id])
            .await
            .unwrap(),
        vec![in_flight.request_id]
    );
    assert!(
        store
            .dead_letter_request(set_aside.request_id, "poison", 5, t)
            .await
            .unwrap()
    );
    // What a decider that took `in_flight` before the cancellation decided.
    let stale = decide(store, &show, &[&in_flight], t).await;

    let t1 = t + Duration::seconds(1);
    let message = booking_core::cancellation_message("flood");
    let failed = store
        .fail_undecided(show.show_id, &message, t1)
        .await
        .unwrap();
    let ids: Vec<_> = failed.iter().map(|r| r.request_id).collect();
    assert_eq!(
        ids,
        vec![
            queued.request_id,
            in_flight.request_id,
            set_aside.request_id
        ],
        "in arrival order"
    );
    for r in &failed {
        assert_eq!(r.status, RequestStatus::Failed);
        assert_eq!(r.processed_at, Some(store.as_stored(t1)));
        assert_eq!(
            r.outcome,
            Some(RequestOutcome::Rejected {
                unavailable: vec![],
                alternatives: vec![],
                message: message.clone(),
            })
        );
        assert_eq!(
            store.get_request(r.request_id).await.unwrap().as_ref(),
            Some(r)
        );
    }
    assert_eq!(
        store
            .get_request(granted.request_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Success
    );
    assert_eq!(
        store
            .get_request(elsewhere.request_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Queued
    );
    assert!(
        store
            .dead_letters(Some(show.show_id))
            .await
            .unwrap()
            .is_empty(),
        "a failed dead letter is no longer waiting for an operator"
    );
    assert!(pending_of(store, &[show.show_id]).await.is_empty());
    assert_eq!(
        store
            .fail_undecided(show.show_id, &message, t1)
            .await
            .unwrap(),
        vec![]
    );
    assert!(
        store.commit_batch(show.show_id, &stale, t1).await.is_err(),
        "a grant for a request failed meanwhile is refused"
    );
    assert_eq!(taken(store, &show, t1).await, held(&["A1"]));
}

/// `open_orders_of_show` lists the show's orders that are not over, oldest first (unpaid and
/// paid, not cancelled ones, not other shows'), and `cancel_order` keeps the reason it is given:
/// on an unpaid order at once, on a paid one while it waits for its refund and, refunded, as
/// "…; refunded".
pub async fn open_orders_are_listed_and_cancelled_with_their_reason<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let other = create_show(store, 1, 6).await;
    let t = now();
    let unpaid = place_order(store, &show, &fresh_user("unpaid"), &["A1"], t).await;
    let t1 = t + Duration::seconds(1);
    let paid = place_order(store, &show, &fresh_user("paid"), &["A2"], t1).await;
    let (paid, _) = pay(store, &paid, t1).await;
    let t2 = t + Duration::seconds(3);
    let gone = place_order(store, &show, &fresh_user("gone"), &["A3"], t2).await;
    store
        .cancel_order(
            gone.order_id,
            &gone.user_id,
            PaymentId::new_random(),
            CANCELLED_BY_BUYER,
            t2,
        )
        .await
        .expect("cancel");
    place_order(store, &other, &fresh_user("elsewhere"), &["A1"], t2).await;

    let open: Vec<_> = store
        .open_orders_of_show(show.show_id)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.order_id, o.status))
        .collect();
    assert_eq!(
        open,
        vec![
            (unpaid.order_id, OrderStatus::PaymentPending),
            (paid.order_id, OrderStatus::Confirmed)
        ]
    );

    let reason = booking_core::cancellation_message("flood");
    let t3 = t + Duration::seconds(5);
    let CancelStart::Cancelled(cancelled) = store
        .cancel_order(
            unpaid.order_id,
            &unpaid.user_id,
            PaymentId::new_random(),
            &reason,
            t3,
        )
        .await
        .unwrap()
    else {
        panic!("an unpaid order needs no refund");
    };
    assert_eq!(cancelled.reason.as_deref(), Some(reason.as_str()));
    let CancelStart::Refund { order, refund } = store
        .cancel_order(
            paid.order_id,
            &paid.user_id,
            PaymentId::new_random(),
            &reason,
            t3,
        )
        .await
        .unwrap()
    else {
        panic!("a paid order is refunded first");
    };
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.reason.as_deref(), Some(reason.as_str()));
    // Its buyer cancelling too (the refund still pending) changes neither refund nor reason.
    let CancelStart::Refund {
        order: again,
        refund: same,
    } = store
        .cancel_order(
            paid.order_id,
            &paid.user_id,
            PaymentId::new_random(),
            CANCELLED_BY_BUYER,
            t3,
        )
        .await
        .unwrap()
    else {
        panic!("still waiting for its refund");
    };
    assert_eq!(
        (again.reason.as_deref(), &same),
        (Some(reason.as_str()), &refund)
    );
    assert_eq!(
        store
            .get_order(paid.order_id)
            .await
            .unwrap()
            .unwrap()
            .reason,
        Some(reason.clone())
    );
    let refunded = store
        .finish_refund(refund.payment_id, &unique("re"), t3)
        .await
        .unwrap();
    assert_eq!(refunded.status, OrderStatus::Cancelled);
    assert_eq!(refunded.reason, Some(refunded_reason(Some(&reason))));
    assert_eq!(
        store.open_orders_of_show(show.show_id).await.unwrap(),
        vec![]
    );
}
