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
//! | `tok_lose_answer` | charged, but the answer is lost on the way back: 503; a retry (or the sweep) learns it was charged |
//! | anything else (`tok_visa`, …) | charged |
//!
//! Like a real provider it performs each call once per idempotency key and answers repeats with
//! the first outcome, and it can say afterwards what became of a key. Its ledger lives in memory,
//! and, when opened on a file ([`MockPaymentProvider::open`], as the local server does in
//! `DATA_DIR`), also on disk, appended and synced before each answer: like a real provider's, it
//! outlives a crash of the process that called it, so recovery after a restart finds the charges
//! made before it. (Each Lambda instance has its own memory: deployed, the mock is for trying the
//! API, not for recovery across instances.)

use async_trait::async_trait;
use booking_core::ports::{ChargeOutcome, PaymentError, PaymentProvider};
use booking_core::{PaymentId, PaymentToken};
use std::collections::HashMap;
use std::sync::Mutex;

/// The token the mock declines.
pub const DECLINE_TOKEN: &str = "tok_decline";
/// The token with which the mock provider fails as if it were down.
pub const UNAVAILABLE_TOKEN: &str = "tok_unavailable";
/// The token the mock charges and then answers with a failure, as if the answer were lost.
pub const LOSE_ANSWER_TOKEN: &str = "tok_lose_answer";

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
    /// Where every record is appended, if the ledger is kept on disk.
    file: Option<std::fs::File>,
}

/// One line of the ledger file.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Record {
    #[serde(rename_all = "camelCase")]
    Charged {
        key: PaymentId,
        amount_cents: i64,
        currency: String,
        provider_ref: String,
    },
    #[serde(rename_all = "camelCase")]
    Declined { key: PaymentId, reason: String },
    #[serde(rename_all = "camelCase")]
    Refunded {
        key: PaymentId,
        amount_cents: i64,
        currency: String,
        provider_ref: String,
    },
}

impl Ledger {
    /// Applies one record to the in-memory state.
    fn apply(&mut self, record: &Record) {
        match record {
            Record::Charged {
                key,
                amount_cents,
                currency,
                provider_ref,
            } => {
                self.charges.insert(
                    *key,
                    ChargeOutcome::Charged {
                        provider_ref: provider_ref.clone(),
                    },
                );
                self.movements.push(LedgerEntry {
                    key: *key,
                    amount_cents: *amount_cents,
                    currency: currency.clone(),
                    provider_ref: provider_ref.clone(),
                });
            }
            Record::Declined { key, reason } => {
                self.charges.insert(
                    *key,
                    ChargeOutcome::Declined {
                        reason: reason.clone(),
                    },
                );
            }
            Record::Refunded {
                key,
                amount_cents,
                currency,
                provider_ref,
            } => {
                self.refunds.insert(*key, provider_ref.clone());
                self.movements.push(LedgerEntry {
                    key: *key,
                    amount_cents: -amount_cents,
                    currency: currency.clone(),
                    provider_ref: provider_ref.clone(),
                });
            }
        }
    }

    /// Writes a record down (on disk first, if kept there), then applies it.
    fn record(&mut self, record: Record) -> Result<(), PaymentError> {
        if let Some(file) = &mut self.file {
            use std::io::Write;
            let mut line = serde_json::to_vec(&record).expect("ledger records serialise");
            line.push(b'\n');
            file.write_all(&line)
                .and_then(|()| file.sync_data())
                .map_err(|e| {
                    PaymentError::unavailable("mock provider: ledger file").caused_by(e)
                })?;
        }
        self.apply(&record);
        Ok(())
    }
}

/// The mock provider. Cheap to share (`Arc`).
#[derive(Default)]
pub struct MockPaymentProvider {
    ledger: Mutex<Ledger>,
}

impl MockPaymentProvider {
    /// A mock whose ledger lives in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mock whose ledger is also kept in `path` (JSON lines, created if missing), read back on
    /// open: what it charged before a crash, it still knows after.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::BufRead;
        let mut ledger = Ledger::default();
        if let Ok(existing) = std::fs::File::open(path) {
            for (n, line) in std::io::BufReader::new(existing).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: Record = serde_json::from_str(&line).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}:{}: {e}", path.display(), n + 1),
                    )
                })?;
                ledger.apply(&record);
            }
        }
        ledger.file = Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        );
        Ok(Self {
            ledger: Mutex::new(ledger),
        })
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
        match token.as_str() {
            UNAVAILABLE_TOKEN => {
                return Err(PaymentError::unavailable(
                    "mock provider: unavailable (test token)",
                ));
            }
            DECLINE_TOKEN => ledger.record(Record::Declined {
                key,
                reason: "Your card was declined".to_owned(),
            })?,
            _ => ledger.record(Record::Charged {
                key,
                amount_cents,
                currency: currency.to_owned(),
                provider_ref: format!("ch_{}", key.as_uuid().simple()),
            })?,
        }
        if token.as_str() == LOSE_ANSWER_TOKEN {
            return Err(PaymentError::unavailable(
                "mock provider: the answer was lost (test token)",
            ));
        }
        Ok(ledger.charges[&key].clone())
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
        ledger.record(Record::Refunded {
            key,
            amount_cents,
            currency: currency.to_owned(),
            provider_ref: provider_ref.clone(),
        })?;
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
    async fn a_ledger_on_disk_outlives_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mock-payments.jsonl");
        let key = PaymentId::new_random();
        let refund = PaymentId::new_random();
        {
            let mock = MockPaymentProvider::open(&path).unwrap();
            // Charged, but the caller never hears it.
            assert!(
                mock.charge(key, &token(LOSE_ANSWER_TOKEN), 900, "EUR")
                    .await
                    .is_err()
            );
            let declined = PaymentId::new_random();
            mock.charge(declined, &token(DECLINE_TOKEN), 900, "EUR")
                .await
                .unwrap();
        }
        let reopened = MockPaymentProvider::open(&path).unwrap();
        let Some(ChargeOutcome::Charged { provider_ref }) =
            reopened.charge_outcome(key).await.unwrap()
        else {
            panic!("the charge is remembered");
        };
        // A repeat answers the first outcome, and charges nothing more.
        let again = reopened
            .charge(key, &token(LOSE_ANSWER_TOKEN), 900, "EUR")
            .await
            .unwrap();
        assert!(matches!(again, ChargeOutcome::Charged { .. }));
        reopened
            .refund(refund, &provider_ref, 900, "EUR")
            .await
            .unwrap();
        let third = MockPaymentProvider::open(&path).unwrap();
        assert_eq!(third.balance_cents(), 0);
        assert_eq!(third.movements().len(), 2);
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
