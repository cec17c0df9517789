//! When a token was issued and how long it may live: `iat` not in the future (beyond the
//! leeway), and `exp` − `iat` within `auth.max_token_lifetime_secs`.
//!
//! While a maximum is set (the default: 24 h) a token without `iat` is refused: its
//! lifetime could not be bounded, and failing closed is the rule. With
//! `max_token_lifetime_secs: 0` there is no maximum and `iat` is optional.

use std::time::{SystemTime, UNIX_EPOCH};

use super::AuthError;
use crate::config::AuthConfig;

/// The issue-time rules of one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lifetime {
    leeway: u64,
    /// `None`: no maximum.
    max: Option<u64>,
}

impl Lifetime {
    pub fn of(cfg: &AuthConfig) -> Lifetime {
        Lifetime {
            leeway: cfg.leeway_secs.min(300),
            max: (cfg.max_token_lifetime_secs > 0).then_some(cfg.max_token_lifetime_secs),
        }
    }

    /// Checks `iat` and `exp` (NumericDates, as the token has them) as of now.
    pub fn check(&self, iat: Option<f64>, exp: Option<f64>) -> Result<(), AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(iat, exp, now)
    }

    fn check_at(&self, iat: Option<f64>, exp: Option<f64>, now: u64) -> Result<(), AuthError> {
        let iat = match iat {
            None if self.max.is_some() => return Err(AuthError::MissingClaim("iat")),
            None => return Ok(()),
            Some(t) if !t.is_finite() || t < 0.0 => return Err(AuthError::InvalidClaim("iat")),
            Some(t) => t,
        };
        // Precision below a second does not matter at these magnitudes.
        #[allow(clippy::cast_precision_loss)]
        let latest = now.saturating_add(self.leeway) as f64;
        if iat > latest {
            return Err(AuthError::IssuedInFuture);
        }
        if let Some(max) = self.max {
            // `exp` is required and checked by the signature validation before this runs.
            let exp = exp.ok_or(AuthError::MissingClaim("exp"))?;
            #[allow(clippy::cast_precision_loss)]
            if !exp.is_finite() || exp - iat > max as f64 {
                return Err(AuthError::LifetimeTooLong(max));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules(max: Option<u64>) -> Lifetime {
        Lifetime { leeway: 30, max }
    }

    fn at(l: Lifetime, iat: Option<u64>, exp: u64) -> Result<(), AuthError> {
        #[allow(clippy::cast_precision_loss)]
        l.check_at(iat.map(|t| t as f64), Some(exp as f64), NOW)
    }

    #[test]
    fn iat_in_the_future_is_refused_beyond_the_leeway() {
        let l = rules(Some(86_400));
        assert_eq!(at(l, Some(NOW), NOW + 600), Ok(()));
        assert_eq!(at(l, Some(NOW + 30), NOW + 600), Ok(()));
        assert_eq!(
            at(l, Some(NOW + 31), NOW + 600),
            Err(AuthError::IssuedInFuture)
        );
        assert_eq!(
            at(rules(None), Some(NOW + 3600), NOW + 7200),
            Err(AuthError::IssuedInFuture)
        );
    }

    #[test]
    fn the_lifetime_is_bounded_and_iat_required_while_it_is() {
        let l = rules(Some(86_400));
        assert_eq!(at(l, Some(NOW - 10), NOW - 10 + 86_400), Ok(()));
        assert_eq!(
            at(l, Some(NOW - 10), NOW - 9 + 86_400),
            Err(AuthError::LifetimeTooLong(86_400))
        );
        assert_eq!(
            at(l, Some(0), NOW + 600),
            Err(AuthError::LifetimeTooLong(86_400))
        );
        assert_eq!(at(l, None, NOW + 600), Err(AuthError::MissingClaim("iat")));
        assert_eq!(
            l.check_at(Some(-1.0), Some(1.0), NOW),
            Err(AuthError::InvalidClaim("iat"))
        );
        // Without a maximum, `iat` is optional and any lifetime goes.
        assert_eq!(at(rules(None), None, NOW + 600), Ok(()));
        assert_eq!(at(rules(None), Some(0), NOW + 10 * 86_400), Ok(()));
    }
}
