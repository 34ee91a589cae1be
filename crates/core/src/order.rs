//! Orders and payments: what happens to a hold once its owner decides to buy it.
//!
//! Order: PAYMENT_PENDING → CONFIRMED | FAILED | EXPIRED; PAYMENT_PENDING/CONFIRMED → CANCELLED.
//! Payment (one call to the provider, a charge or a refund): PENDING → SUCCEEDED | DECLINED |
//! FAILED.
//!
//! The rules that keep money and seats together, which every store implements and the contract
//! suite checks:
//!
//! - An order takes over its hold's seat claims in the transaction that makes it, and keeps them
//!   until [`Order::seats_until`]: its payment deadline, pushed out while a charge is in flight
//!   (so a charge that started in time can finish), and [`SOLD_UNTIL`] once confirmed. The claim,
//!   not any cache, is what keeps a second buyer off the seat.
//! - A charge is recorded (PENDING) *before* the provider is called, with its [`PaymentId`] as the
//!   provider's idempotency key; the outcome is recorded after. A crash in between leaves a PENDING
//!   payment, which recovery settles: a charge that went through confirms the order if its seats
//!   are still its own, and is refunded otherwise. So no money is ever kept without a ticket.
//! - An order has at most one PENDING charge; a second confirm re-sends that same charge (same
//!   key, same token) instead of starting another, so retries never charge twice.
//! - Cancelling a confirmed order records a PENDING refund first, and the order becomes CANCELLED
//!   (seats free) only once the provider has refunded: a ticket stays valid until its money is
//!   back with the buyer, never the other way round.

use crate::ids::{HoldId, OrderId, PaymentId, PaymentToken, SeatId, ShowId, UserId};
use crate::layout::SeatLayout;
use chrono::{DateTime, Utc};

status_enum!(
    /// Where an order is in its life.
    OrderStatus {
        PaymentPending => "PAYMENT_PENDING",
        Confirmed => "CONFIRMED",
        Failed => "FAILED",
        Expired => "EXPIRED",
        Cancelled => "CANCELLED",
    }
);
status_enum!(
    /// Which way a payment moves money.
    PaymentKind { Charge => "CHARGE", Refund => "REFUND" }
);
status_enum!(
    /// Where one call to the payment provider stands.
    PaymentStatus {
        /// Recorded, sent or about to be; its outcome is not known yet.
        Pending => "PENDING",
        /// Money moved.
        Succeeded => "SUCCEEDED",
        /// The provider refused the charge (a card declined): nothing moved.
        Declined => "DECLINED",
        /// The provider failed or never saw it: nothing moved.
        Failed => "FAILED",
    }
);

impl OrderStatus {
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Expired | Self::Cancelled)
    }

    pub const fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (PaymentPending, Confirmed | Failed | Expired | Cancelled) | (Confirmed, Cancelled)
        )
    }

    /// Whether an order in this state owns its seats (they are nobody else's to take).
    pub const fn owns_seats(self) -> bool {
        matches!(self, Self::PaymentPending | Self::Confirmed)
    }
}

impl PaymentStatus {
    pub const fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// Why an order its buyer cancelled ended CANCELLED.
pub const CANCELLED_BY_BUYER: &str = "cancelled by the buyer";

/// The reason a cancelled order records once its money is back: why it was cancelled, refunded.
pub fn refunded_reason(cancel_reason: Option<&str>) -> String {
    format!("{}; refunded", cancel_reason.unwrap_or(CANCELLED_BY_BUYER))
}

/// How long a sold seat's claim lasts: for ever, in any store's range of instants.
pub fn sold_until() -> DateTime<Utc> {
    // 9999-12-31T23:59:59Z: within every store's range (SQLite milliseconds, PostgreSQL
    // TIMESTAMPTZ) and every mirror's (Redis expiry times are milliseconds).
    DateTime::from_timestamp(253_402_300_799, 0).expect("a valid instant")
}

/// The instant [`sold_until`] returns, for `const` contexts and comparisons in SQL.
pub const SOLD_UNTIL: i64 = 253_402_300_799;

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: OrderId,
    /// The hold it was made from (CONVERTED); its seat claims now belong to the order.
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub show_id: ShowId,
    pub seat_ids: Vec<SeatId>,
    pub status: OrderStatus,
    /// The price of the seats when the order was made, in the currency's minor unit.
    pub amount_cents: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    /// The payment deadline: no charge starts at or after it.
    pub expires_at: DateTime<Utc>,
    /// Until when the order's seats are claimed: `expires_at`, later while a charge that started
    /// in time is in flight, [`sold_until`] once confirmed. A PAYMENT_PENDING order whose
    /// claims have run out is EXPIRED whether or not a sweep has written that down.
    pub seats_until: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when CONFIRMED: the code on the ticket, unique across all orders.
    pub ticket_code: Option<String>,
    /// Why the order ended FAILED, EXPIRED or CANCELLED.
    pub reason: Option<String>,
}

impl Order {
    /// The status as of `now` (expiry is decided by time, not by cleanup).
    pub fn status_at(&self, now: DateTime<Utc>) -> OrderStatus {
        if self.status == OrderStatus::PaymentPending && self.seats_until <= now {
            OrderStatus::Expired
        } else {
            self.status
        }
    }
}

/// What the service asks a store to make of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub hold_id: HoldId,
    /// Must be the hold's owner.
    pub user_id: UserId,
    pub amount_cents: i64,
    pub currency: String,
    /// Now: the hold must still be live at this instant.
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One call to the payment provider, as recorded before and after it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Also the provider's idempotency key.
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub kind: PaymentKind,
    pub status: PaymentStatus,
    pub amount_cents: i64,
    pub currency: String,
    /// A charge's token, kept so that a charge in doubt is re-sent exactly as it was first sent.
    pub token: Option<PaymentToken>,
    /// The provider's reference for the money movement (to refund a charge, to reconcile).
    pub provider_ref: Option<String>,
    /// A refund: the charge it gives back.
    pub refund_of: Option<PaymentId>,
    /// Why it was declined or failed, as the provider said.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a set of seats has no single price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("seat {0} has no price category in this show")]
    Unpriced(SeatId),
    #[error("the seats are priced in different currencies ({0} and {1})")]
    MixedCurrencies(String, String),
    #[error("the price does not fit in 64 bits")]
    Overflow,
}

/// The total price of `seats` in `layout`, and its currency.
pub fn price_of(layout: &SeatLayout, seats: &[SeatId]) -> Result<(i64, String), PriceError> {
    let mut total: i64 = 0;
    let mut currency: Option<&str> = None;
    for &seat in seats {
        let category = layout.category_of(seat).ok_or(PriceError::Unpriced(seat))?;
        match currency {
            None => currency = Some(&category.currency),
            Some(c) if c != category.currency => {
                return Err(PriceError::MixedCurrencies(
                    c.to_owned(),
                    category.currency.clone(),
                ));
            }
            Some(_) => {}
        }
        total = total
            .checked_add(category.price_cents)
            .ok_or(PriceError::Overflow)?;
    }
    Ok((total, currency.unwrap_or_default().to_owned()))
}

/// A fresh ticket code: `TKT-` and 16 characters of Crockford base32 (80 random bits), grouped
/// in fours for reading aloud at the door. Unguessable, and the stores' unique constraint makes
/// a collision an error instead of two tickets with one code.
pub fn new_ticket_code() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    // Bits 0..62 of a v4 UUID are all random (the version and variant fields sit above them):
    // 40 from each of two UUIDs.
    let random = |shift: u32| (uuid::Uuid::new_v4().as_u128() & ((1 << 40) - 1)) << shift;
    let bits = random(0) | random(40);
    let mut code = String::with_capacity(23);
    code.push_str("TKT");
    for i in 0..16 {
        if i % 4 == 0 {
            code.push('-');
        }
        let digit = (bits >> (5 * i)) & 0x1f;
        code.push(ALPHABET[digit as usize] as char);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Category, LayoutSpec, RowSpec};

    #[test]
    fn order_state_machine() {
        use OrderStatus::*;
        for next in [Confirmed, Failed, Expired, Cancelled] {
            assert!(PaymentPending.can_become(next));
        }
        assert!(Confirmed.can_become(Cancelled));
        assert!(!Confirmed.can_become(Failed) && !Confirmed.can_become(Expired));
        for t in [Failed, Expired, Cancelled] {
            assert!(t.is_terminal() && !t.owns_seats());
            assert!(OrderStatus::ALL.iter().all(|n| !t.can_become(*n)));
        }
        assert!(PaymentPending.owns_seats() && Confirmed.owns_seats());
    }

    #[test]
    fn a_pending_order_expires_when_its_claims_run_out() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let order = Order {
            order_id: OrderId::new_random(),
            hold_id: HoldId::new_random(),
            user_id: "u".parse().unwrap(),
            show_id: ShowId::new_random(),
            seat_ids: vec!["A1".parse().unwrap()],
            status: OrderStatus::PaymentPending,
            amount_cents: 1200,
            currency: "EUR".into(),
            created_at: at,
            expires_at: at + chrono::Duration::minutes(10),
            seats_until: at + chrono::Duration::minutes(11),
            updated_at: at,
            ticket_code: None,
            reason: None,
        };
        // Past the deadline but a charge is in flight: still pending.
        let deadline = order.expires_at;
        assert_eq!(order.status_at(deadline), OrderStatus::PaymentPending);
        assert_eq!(order.status_at(order.seats_until), OrderStatus::Expired);
        let confirmed = Order {
            status: OrderStatus::Confirmed,
            seats_until: sold_until(),
            ..order
        };
        assert_eq!(
            confirmed.status_at(deadline + chrono::Duration::days(3650)),
            OrderStatus::Confirmed
        );
        assert_eq!(sold_until().timestamp(), SOLD_UNTIL);
    }

    #[test]
    fn prices_add_up_in_one_currency() {
        let layout = |currencies: [&str; 2]| {
            SeatLayout::new(LayoutSpec {
                categories: vec![
                    Category {
                        code: "STD".into(),
                        name: "Standard".into(),
                        price_cents: 1200,
                        currency: currencies[0].into(),
                    },
                    Category {
                        code: "VIP".into(),
                        name: "VIP".into(),
                        price_cents: 2000,
                        currency: currencies[1].into(),
                    },
                ],
                rows: vec![
                    RowSpec {
                        row: "A".into(),
                        seats: 4,
                        category: "STD".into(),
                    },
                    RowSpec {
                        row: "B".into(),
                        seats: 4,
                        category: "VIP".into(),
                    },
                ],
                blocked: vec![],
            })
            .unwrap()
        };
        let seats: Vec<SeatId> = ["A1", "A2", "B1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            price_of(&layout(["EUR", "EUR"]), &seats),
            Ok((4400, "EUR".to_owned()))
        );
        assert!(matches!(
            price_of(&layout(["EUR", "USD"]), &seats),
            Err(PriceError::MixedCurrencies(..))
        ));
    }

    #[test]
    fn ticket_codes_are_readable_and_distinct() {
        let a = new_ticket_code();
        assert_eq!(a.len(), 23, "{a}");
        assert!(a.starts_with("TKT-"));
        assert_eq!(a.matches('-').count(), 4);
        let codes: std::collections::HashSet<_> = (0..1000).map(|_| new_ticket_code()).collect();
        assert_eq!(codes.len(), 1000);
        // Every position varies (no fixed bits leak in from the UUIDs' version fields).
        for position in (4..23).filter(|p| p % 5 != 3) {
            let seen: std::collections::HashSet<_> =
                codes.iter().map(|c| c.as_bytes()[position]).collect();
            assert!(seen.len() > 16, "position {position}: {seen:?}");
        }
    }
}
