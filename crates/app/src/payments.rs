//! The mock payment provider: the [`PaymentProvider`] the local server and the demo deployment
//! use, with documented test tokens, so the whole purchase can be tried (and tested) without a
//! payment account. A real provider (Stripe, Adyen, …) is another adapter of the same port.
//!
//! Test tokens (docs/API.md):
//!
//! | token | what happens |
//! |---|---|
//! | `tok_decline` | declined ("Your card was declined") |
//! | `tok_unavailable` | the provider fails (nothing is charged): 503, retry later |
//! | anything else (`tok_visa`, …) | charged |
//!
//! Like a real provider it performs each call once per idempotency key and answers repeats with
//! the first outcome, and it can say afterwards what became of a key. Its ledger lives in this
//! process's memory: a restarted local server has forgotten earlier mock charges (recovery then
//! treats a charge it cannot find as never made, which for a mock is the truth).

use async_trait::async_trait;
use booking_core::ports::{ChargeOutcome, PaymentError, PaymentProvider};
use booking_core::{PaymentId, PaymentToken};
use std::collections::HashMap;
use std::sync::Mutex;

/// The token the mock declines.
pub const DECLINE_TOKEN: &str = "tok_decline";
/// The token with which the mock provider fails as if it were down.
pub const UNAVAILABLE_TOKEN: &str = "tok_unavailable";

/// One money movement in the mock's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub key: PaymentId,
    /// Positive for a charge, negative for a refund.
    pub amount_cents: i64,
    pub currency: String,
    pub provider_ref: String,
}

#[derive(Default)]
struct Ledger {
    charges: HashMap<PaymentId, ChargeOutcome>,
    refunds: HashMap<PaymentId, String>,
    /// Every movement of money, in order: what a test counts to prove nothing moved twice.
    movements: Vec<LedgerEntry>,
}

/// The mock provider. Cheap to share (`Arc`).
#[derive(Default)]
pub struct MockPaymentProvider {
    ledger: Mutex<Ledger>,
}

impl MockPaymentProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every charge and refund made so far, in order.
    pub fn movements(&self) -> Vec<LedgerEntry> {
        self.ledger
            .lock()
            .expect("ledger poisoned")
            .movements
            .clone()
    }

    /// The money kept so far: charges minus refunds, in minor units.
    pub fn balance_cents(&self) -> i64 {
        self.movements().iter().map(|m| m.amount_cents).sum()
    }
}

#[async_trait]
impl PaymentProvider for MockPaymentProvider {
    async fn charge(
        &self,
        key: PaymentId,
        token: &PaymentToken,
        amount_cents: i64,
        currency: &str,
    ) -> Result<ChargeOutcome, PaymentError> {
        let mut ledger = self.ledger.lock().expect("ledger poisoned");
        if let Some(first) = ledger.charges.get(&key) {
            return Ok(first.clone());
        }
        let outcome = match token.as_str() {
            UNAVAILABLE_TOKEN => {
                return Err(PaymentError::unavailable(
                    "mock provider: unavailable (test token)",
                ));
            }
            DECLINE_TOKEN => ChargeOutcome::Declined {
                reason: "Your card was declined".to_owned(),
            },
            _ => {
                let provider_ref = format!("ch_{}", key.as_uuid().simple());
                ledger.movements.push(LedgerEntry {
                    key,
                    amount_cents,
                    currency: currency.to_owned(),
                    provider_ref: provider_ref.clone(),
                });
                ChargeOutcome::Charged { provider_ref }
            }
        };
        ledger.charges.insert(key, outcome.clone());
        Ok(outcome)
    }

    async fn charge_outcome(&self, key: PaymentId) -> Result<Option<ChargeOutcome>, PaymentError> {
        Ok(self
            .ledger
            .lock()
            .expect("ledger poisoned")
            .charges
            .get(&key)
            .cloned())
    }

    async fn refund(
        &self,
        key: PaymentId,
        charge_ref: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<String, PaymentError> {
        let mut ledger = self.ledger.lock().expect("ledger poisoned");
        if let Some(first) = ledger.refunds.get(&key) {
            return Ok(first.clone());
        }
        let charged = ledger
            .movements
            .iter()
            .any(|m| m.provider_ref == charge_ref && m.amount_cents >= amount_cents);
        if !charged {
            // A real provider refuses to refund what it never charged; so does the mock, loudly.
            return Err(PaymentError::unavailable(format!(
                "mock provider: no charge {charge_ref} of at least {amount_cents} to refund"
            )));
        }
        let provider_ref = format!("re_{}", key.as_uuid().simple());
        ledger.movements.push(LedgerEntry {
            key,
            amount_cents: -amount_cents,
            currency: currency.to_owned(),
            provider_ref: provider_ref.clone(),
        });
        ledger.refunds.insert(key, provider_ref.clone());
        Ok(provider_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> PaymentToken {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn each_key_moves_money_once() {
        let mock = MockPaymentProvider::new();
        let key = PaymentId::new_random();
        let first = mock
            .charge(key, &token("tok_visa"), 1200, "EUR")
            .await
            .unwrap();
        let again = mock
            .charge(key, &token("tok_visa"), 1200, "EUR")
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(mock.balance_cents(), 1200);
        assert_eq!(mock.charge_outcome(key).await.unwrap(), Some(first.clone()));
        let ChargeOutcome::Charged { provider_ref } = first else {
            panic!("tok_visa is charged");
        };
        let refund = PaymentId::new_random();
        let r1 = mock
            .refund(refund, &provider_ref, 1200, "EUR")
            .await
            .unwrap();
        let r2 = mock
            .refund(refund, &provider_ref, 1200, "EUR")
            .await
            .unwrap();
        assert_eq!(r1, r2);
        assert_eq!(mock.balance_cents(), 0);
        assert_eq!(mock.movements().len(), 2);
    }

    #[tokio::test]
    async fn test_tokens_decline_and_fail() {
        let mock = MockPaymentProvider::new();
        let declined = mock
            .charge(PaymentId::new_random(), &token(DECLINE_TOKEN), 1200, "EUR")
            .await
            .unwrap();
        assert!(matches!(declined, ChargeOutcome::Declined { .. }));
        let key = PaymentId::new_random();
        assert!(
            mock.charge(key, &token(UNAVAILABLE_TOKEN), 1200, "EUR")
                .await
                .is_err()
        );
        assert_eq!(mock.charge_outcome(key).await.unwrap(), None);
        assert_eq!(mock.balance_cents(), 0);
        assert!(
            mock.refund(PaymentId::new_random(), "ch_nothing", 100, "EUR")
                .await
                .is_err()
        );
    }
}
