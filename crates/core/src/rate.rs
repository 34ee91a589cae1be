//! Rate rules and the one arithmetic that enforces them, kept pure so that every limiter (process
//! memory, Redis) answers alike and the rule can be tested without either.
//!
//! A rule is a token bucket: `burst` requests at once, refilled at `per_period` per `period`. It
//! is enforced as the generic cell rate algorithm (GCRA), which is the same bucket kept as one
//! number per key — the *theoretical arrival time* (TAT) of the next request if the caller kept
//! exactly to the rate — instead of a count and a refill timestamp. One number means one Redis
//! key read and written by one script, and nothing to refill on a timer.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A token bucket: `burst` requests at once, then `per_period` every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRule {
    pub per_period: u32,
    pub period: Duration,
    pub burst: u32,
}

impl RateRule {
    /// `per_period` requests every `period`, with a burst of `burst` (both at least 1).
    pub const fn new(per_period: u32, period: Duration, burst: u32) -> Self {
        Self {
            per_period,
            period,
            burst,
        }
    }

    /// The time one request "costs": the spacing of requests at exactly the rate, in µs.
    pub fn interval_micros(&self) -> u64 {
        (self.period.as_micros() as u64 / u64::from(self.per_period.max(1))).max(1)
    }

    /// How far ahead of the rate a caller may run: `burst - 1` requests' worth, in µs.
    pub fn tolerance_micros(&self) -> u64 {
        self.interval_micros() * u64::from(self.burst.max(1) - 1)
    }
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Allowed,
    /// Over the rule: the next request would be allowed after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

/// One step of the GCRA for a key whose stored TAT is `tat` (µs; `None` for a key never seen or
/// forgotten), asked at `now` (µs): the verdict, and the TAT to store if the request was allowed.
/// A limited request changes nothing, so a client hammering while limited does not dig itself
/// deeper in.
pub fn gcra(tat: Option<u64>, now: u64, rule: &RateRule) -> (RateVerdict, Option<u64>) {
    let tat = tat.unwrap_or(now).max(now);
    let ahead = tat - now;
    let tolerance = rule.tolerance_micros();
    if ahead > tolerance {
        let wait = ahead - tolerance;
        return (
            RateVerdict::Limited {
                retry_after: Duration::from_micros(wait),
            },
            None,
        );
    }
    (RateVerdict::Allowed, Some(tat + rule.interval_micros()))
}

/// A rule, or none (`off`).
pub type RateSetting = Option<RateRule>;

/// Why a rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `<count>/<s|min|h>[,burst=<n>]` or `off`: {0}")]
pub struct RateRuleError(String);

/// Reads `60/min,burst=10`, `5/s`, `1000/h,burst=50`. Without `burst`, the burst is the count
/// (a whole period's worth at once).
impl FromStr for RateRule {
    type Err = RateRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RateRuleError(why.to_owned());
        let mut parts = s.split(',').map(str::trim);
        let rate = parts.next().unwrap_or_default();
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| bad("no `/` between count and period"))?;
        let per_period: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a whole number"))?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad("the period is not s, min or h")),
        };
        let mut burst = per_period;
        for part in parts {
            let value = part
                .strip_prefix("burst=")
                .ok_or_else(|| bad("only `burst=<n>` may follow the rate"))?;
            burst = value
                .parse()
                .map_err(|_| bad("the burst is not a whole number"))?;
        }
        if per_period == 0 || burst == 0 {
            return Err(bad(
                "count and burst must be at least 1 (use `off` for no limit)",
            ));
        }
        Ok(Self::new(per_period, period, burst))
    }
}

impl fmt::Display for RateRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => {
                return write!(
                    f,
                    "{}/{:?},burst={}",
                    self.per_period, self.period, self.burst
                );
            }
        };
        write!(f, "{}/{unit},burst={}", self.per_period, self.burst)
    }
}

/// Reads a rule or `off`.
pub fn parse_setting(s: &str) -> Result<RateSetting, RateRuleError> {
    match s.trim() {
        "off" | "none" => Ok(None),
        rule => rule.parse().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn rule(per_second: u32, burst: u32) -> RateRule {
        RateRule::new(per_second, Duration::from_secs(1), burst)
    }

    /// Runs `n` requests at `now` against one key, returning how many were allowed.
    fn burst_at(tat: &mut Option<u64>, now: u64, n: usize, rule: &RateRule) -> usize {
        (0..n)
            .filter(|_| match gcra(*tat, now, rule) {
                (RateVerdict::Allowed, next) => {
                    *tat = next;
                    true
                }
                _ => false,
            })
            .count()
    }

    #[test]
    fn a_burst_is_allowed_at_once_and_no_more() {
        let r = rule(2, 5);
        let mut tat = None;
        assert_eq!(burst_at(&mut tat, 100 * SECOND, 20, &r), 5);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let r = rule(2, 5);
        let mut tat = None;
        let start = 100 * SECOND;
        burst_at(&mut tat, start, 5, &r);
        // Half a second later, one more token; a second later, two.
        assert_eq!(burst_at(&mut tat, start + SECOND / 2, 5, &r), 1);
        assert_eq!(burst_at(&mut tat, start + 3 * SECOND / 2, 5, &r), 2);
        // Long idle: back to a full burst, never more.
        assert_eq!(burst_at(&mut tat, start + 60 * SECOND, 20, &r), 5);
    }

    #[test]
    fn retry_after_says_when_the_next_request_passes() {
        let r = rule(2, 1);
        let now = 100 * SECOND;
        let (first, tat) = gcra(None, now, &r);
        assert_eq!(first, RateVerdict::Allowed);
        let (second, unchanged) = gcra(tat, now + SECOND / 10, &r);
        assert_eq!(
            second,
            RateVerdict::Limited {
                retry_after: Duration::from_millis(400)
            }
        );
        assert_eq!(unchanged, None, "a refused request costs nothing");
        assert_eq!(gcra(tat, now + SECOND / 2, &r).0, RateVerdict::Allowed);
    }

    #[test]
    fn a_steady_caller_at_the_rate_is_never_limited() {
        let r = rule(10, 1);
        let mut tat = None;
        for k in 0..1000 {
            assert_eq!(burst_at(&mut tat, 100 * SECOND + k * SECOND / 10, 1, &r), 1);
        }
    }

    #[test]
    fn rules_read_and_print() {
        assert_eq!(
            "60/min,burst=10".parse::<RateRule>().unwrap(),
            RateRule::new(60, Duration::from_secs(60), 10)
        );
        assert_eq!(
            "5/s".parse::<RateRule>().unwrap(),
            RateRule::new(5, Duration::from_secs(1), 5)
        );
        assert_eq!(parse_setting(" off ").unwrap(), None);
        for bad in ["", "5", "0/s", "5/day", "5/s,burst=0", "5/s,b=2", "x/s"] {
            assert!(parse_setting(bad).is_err(), "{bad:?} was accepted");
        }
        let r: RateRule = "1000/h,burst=50".parse().unwrap();
        assert_eq!(r.to_string().parse::<RateRule>().unwrap(), r);
    }
}
