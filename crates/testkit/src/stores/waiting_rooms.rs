//! Waiting rooms: a stored room follows the pure rules of `booking_core::waiting_room` step for
//! step (the same history, the same seed, the same results, the same measured pace), keeps one
//! live place per user whatever the callers race, is switched on, changed and off by its policy,
//! and an armed room switches itself on as the pure rules say when demand goes over its rate.

use super::ContractStore;
use crate::support::*;
use booking_core::UserId;
use booking_core::rng::SplitMix64;
use booking_core::waiting_room::{AdmissionError, PlaceState, Room, RoomPolicy};
use chrono::{DateTime, Duration, Utc};

fn policy(opens_at: DateTime<Utc>, rate: u32, max_active: Option<u32>) -> RoomPolicy {
    RoomPolicy {
        opens_at,
        admit_per_second: rate,
        max_active,
        admission_ttl: Duration::seconds(20),
        shopping_ttl: Duration::seconds(45),
        grace: Duration::seconds(15),
        switch_on_above: None,
    }
}

fn seed_of(n: u64) -> [u8; 32] {
    let mut rng = SplitMix64::new(n);
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    seed
}

/// Checks every user's place, position and the room's counts against the model.
async fn assert_same<S: ContractStore>(
    store: &S,
    show: booking_core::ShowId,
    model: &Room,
    users: &[UserId],
    step: &str,
) {
    for user in users {
        let stored = store.place(show, user, None).await.unwrap();
        let expected = model.place_of(user);
        match (stored, expected) {
            (None, None) => {}
            (Some(stored), Some(expected)) => {
                assert_eq!(stored.place, *expected, "{step}: place of {user}");
                assert_eq!(
                    stored.position,
                    model.position(user),
                    "{step}: position of {user}"
                );
            }
            (stored, expected) => panic!("{step}: {user}: stored {stored:?}, model {expected:?}"),
        }
    }
    // The queue as the pushes read it: everyone waiting, in position order.
    let mut queue: Vec<(UserId, u64, u64)> = users
        .iter()
        .filter_map(|u| {
            let place = model.place_of(u)?;
            Some((u.clone(), place.ticket, model.position(u)?))
        })
        .collect();
    queue.sort_by_key(|entry| entry.2);
    let expected: Vec<(UserId, u64)> = queue.into_iter().map(|(u, t, _)| (u, t)).collect();
    assert_eq!(
        store.waiting_places(show).await.unwrap(),
        expected,
        "{step}: the queue"
    );
    let summary = store.room(show).await.unwrap().expect("the room");
    assert_eq!(summary.counts, model.counts(), "{step}: counts");
    assert_eq!(summary.opened, model.is_open(), "{step}: opened");
    assert_eq!(summary.armed, model.is_armed(), "{step}: armed");
    assert_eq!(summary.pace, *model.pace(), "{step}: pace");
    assert_eq!(summary.policy, *model.policy(), "{step}: policy");
}

/// A random history of joins, signs of life, ticks, first holds and departures, before and
/// after the opening, with a rate and a cap on active shoppers: after every step the store and
/// the pure room agree on every place, position, count and tick result.
pub async fn a_stored_room_follows_the_pure_rules<S: ContractStore>(store: &S) {
    for run in 0..3u64 {
        let show = create_show(store, 1, 2).await.show_id;
        // Whole microseconds and milliseconds throughout, so both stores keep them exactly.
        let t0 = DateTime::from_timestamp_millis(now().timestamp_millis()).expect("in range");
        let room_policy = policy(t0 + Duration::seconds(5), 3, Some(4));
        store.put_room(show, &room_policy).await.unwrap();
        let mut model = Room::new(room_policy);
        let users: Vec<UserId> = (0..14).map(|i| fresh_user(&format!("wr{i}"))).collect();
        let mut rng = SplitMix64::new(run + 11);
        let mut t = t0;
        for step in 0..160 {
            t += Duration::milliseconds(rng.below(900) as i64 + 1);
            let user = &users[rng.below(users.len() as u64) as usize];
            let what = rng.below(10);
            let label = format!("run {run} step {step} ({what}) at {t}");
            match what {
                0..=2 => {
                    let stored = store.join_room(show, user, t).await.unwrap();
                    assert_eq!(stored, Some(model.join(user, t)), "{label}: join");
                }
                3 => {
                    store.place(show, user, Some(t)).await.unwrap();
                    model.seen(user, t);
                }
                4..=6 => {
                    let seed = seed_of(run * 1_000 + step);
                    let stored = store.tick_room(show, t, seed).await.unwrap();
                    assert_eq!(stored, model.tick(t, || seed), "{label}: tick");
                }
                7 | 8 => {
                    let ticket = model.place_of(user).map_or(1, |p| p.ticket);
                    let stored = store.start_shopping(show, user, ticket, t).await.unwrap();
                    assert_eq!(stored, model.start_shopping(user, t), "{label}: shopping");
                }
                _ => {
                    let live = model.place_of(user).is_some_and(|p| p.state.is_live());
                    model.finish(user);
                    assert_eq!(
                        store.finish_place(show, user).await.unwrap(),
                        live,
                        "{label}: finish"
                    );
                }
            }
            assert_same(store, show, &model, &users, &label).await;
        }
        assert!(model.is_open(), "the history reached the opening");
        assert!(
            model.pace().measured_milli.is_some(),
            "the history measured a pace: {:?}",
            model.pace()
        );
        assert!(
            model.counts().done + model.counts().expired + model.counts().abandoned > 0,
            "the history ended some places: {:?}",
            model.counts()
        );
    }
}

/// One live place per user: many joins of one user at once give one ticket, created once; many
/// users at once get distinct tickets 1..=n.
pub async fn one_live_place_per_user_whatever_the_race<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 2).await.show_id;
    let t = store.as_stored(now());
    store
        .put_room(show, &policy(t + Duration::hours(1), 10, None))
        .await
        .unwrap();
    let alice = fresh_user("wr-alice");
    let joins: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            let alice = alice.clone();
            tokio::spawn(async move { store.join_room(show, &alice, t).await.unwrap().unwrap() })
        })
        .collect();
    let mut tickets = Vec::new();
    let mut created = 0;
    for join in joins {
        let joined = join.await.unwrap();
        tickets.push(joined.ticket);
        created += usize::from(joined.created);
    }
    assert_eq!(created, 1, "one place created");
    assert!(tickets.iter().all(|&t| t == tickets[0]), "{tickets:?}");

    let others: Vec<_> = (0..12)
        .map(|i| {
            let store = store.clone();
            let user = fresh_user(&format!("wr-race{i}"));
            tokio::spawn(async move { store.join_room(show, &user, t).await.unwrap().unwrap() })
        })
        .collect();
    let mut tickets = vec![tickets[0]];
    for join in others {
        tickets.push(join.await.unwrap().ticket);
    }
    tickets.sort_unstable();
    assert_eq!(tickets, (1..=13).collect::<Vec<u64>>());
    let counts = store.room(show).await.unwrap().unwrap().counts;
    assert_eq!(counts.waiting, 13);
}

/// A room is switched on, changed (keeping its places) and off (forgetting them); a show
/// without one has no places; a token of an earlier place admits nobody.
pub async fn a_room_is_switched_on_changed_and_off<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 2).await.show_id;
    let t = store.as_stored(now());
    let user = fresh_user("wr-onoff");
    assert_eq!(store.join_room(show, &user, t).await.unwrap(), None);
    assert!(store.room(show).await.unwrap().is_none());
    assert!(!store.remove_room(show).await.unwrap());

    let first = policy(t - Duration::seconds(1), 5, None);
    store.put_room(show, &first).await.unwrap();
    assert!(listed(store, show).await.is_some());
    let joined = store.join_room(show, &user, t).await.unwrap().unwrap();
    assert!(joined.created);
    let summary = store.room(show).await.unwrap().unwrap();
    assert_eq!(summary.policy, first);
    assert!(!summary.opened, "not before its first tick");

    let changed = policy(t - Duration::seconds(1), 50, Some(2));
    store.put_room(show, &changed).await.unwrap();
    let summary = store.room(show).await.unwrap().unwrap();
    assert_eq!(summary.policy, changed);
    assert_eq!(summary.counts.waiting, 1, "places are kept");

    let tick = store.tick_room(show, t, seed_of(1)).await.unwrap();
    assert_eq!(tick.admitted.len(), 1);
    assert_eq!(
        store
            .start_shopping(show, &user, joined.ticket + 1, t)
            .await
            .unwrap(),
        Err(AdmissionError::Expired),
        "a ticket that is not the user's latest"
    );
    assert_eq!(
        store
            .start_shopping(show, &fresh_user("wr-nobody"), 1, t)
            .await
            .unwrap(),
        Err(AdmissionError::NoPlace)
    );
    store
        .start_shopping(show, &user, joined.ticket, t)
        .await
        .unwrap()
        .unwrap();
    let place = store.place(show, &user, None).await.unwrap().unwrap();
    assert_eq!(place.place.state, PlaceState::Shopping { since: t });

    assert!(store.remove_room(show).await.unwrap());
    assert!(store.room(show).await.unwrap().is_none());
    assert!(store.place(show, &user, None).await.unwrap().is_none());
    assert!(listed(store, show).await.is_none());
}

/// The show's room as the list of rooms gives it.
async fn listed<S: ContractStore>(
    store: &S,
    show: booking_core::ShowId,
) -> Option<booking_core::ports::ListedRoom> {
    store
        .rooms()
        .await
        .unwrap()
        .into_iter()
        .find(|room| room.show == show)
}

/// An armed room lets nothing happen until demand goes over its rate: reports under it leave
/// it armed, the one over it switches it on, opening at that instant (who joined meanwhile is
/// its pre-queue), as the pure room does; a change keeps a room that is on, on, and a change
/// without a rate switches an armed room on.
pub async fn an_armed_room_switches_itself_on_with_demand<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 2).await.show_id;
    let t0 = store.as_stored(now());
    let armed = RoomPolicy {
        switch_on_above: Some(20),
        ..policy(t0, 5, None)
    };
    store.put_room(show, &armed).await.unwrap();
    let mut model = Room::new(armed.clone());
    assert_eq!(
        listed(store, show).await.map(|room| room.armed_above),
        Some(Some(20))
    );
    let users: Vec<UserId> = (0..3)
        .map(|i| fresh_user(&format!("wr-armed{i}")))
        .collect();
    let mut t = t0;
    for user in &users {
        t += Duration::milliseconds(10);
        assert_eq!(
            store.join_room(show, user, t).await.unwrap(),
            Some(model.join(user, t))
        );
    }
    // 10 a second for three seconds, then a burst of 60 in half a second.
    for (step, requests) in [5, 5, 5, 5, 5, 5, 30, 30].into_iter().enumerate() {
        t += Duration::milliseconds(500);
        let label = format!("report {step} of {requests} at {t}");
        let tick = store.tick_room(show, t, seed_of(7)).await.unwrap();
        assert_eq!(tick, model.tick(t, || seed_of(7)), "{label}: tick");
        assert_eq!(
            store.record_demand(show, requests, t).await.unwrap(),
            model.record_demand(t, requests),
            "{label}: switched on"
        );
        assert_same(store, show, &model, &users, &label).await;
    }
    assert!(!model.is_armed(), "the burst switched it on");
    assert_eq!(model.policy().opens_at, t, "opening then");
    assert_eq!(
        listed(store, show).await.map(|room| room.armed_above),
        Some(None)
    );
    assert!(
        !store.record_demand(show, 1_000, t).await.unwrap(),
        "on already"
    );
    t += Duration::milliseconds(100);
    let tick = store.tick_room(show, t, seed_of(8)).await.unwrap();
    assert_eq!(tick, model.tick(t, || seed_of(8)));
    assert_eq!(tick.admitted.len(), 3, "the pre-queue is let in");
    assert_same(store, show, &model, &users, "after the opening").await;

    // Changed with a rate again: it stays on.
    store.put_room(show, &armed).await.unwrap();
    let summary = store.room(show).await.unwrap().unwrap();
    assert!(!summary.armed && summary.opened);
    // An armed room changed without a rate is on.
    let other = create_show(store, 1, 2).await.show_id;
    store.put_room(other, &armed).await.unwrap();
    assert!(store.room(other).await.unwrap().unwrap().armed);
    store.put_room(other, &policy(t, 5, None)).await.unwrap();
    assert!(!store.room(other).await.unwrap().unwrap().armed);
    assert!(!store.record_demand(other, 1_000, t).await.unwrap());
}
