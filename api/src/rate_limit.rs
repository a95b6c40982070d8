//! Rate limits (governor, in memory per node): login and email-code checks per address and per
//! account, signup and code resends per address, purchases per user. A refused request gets 429 `rate_limited` with `Retry-After`.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{ApiError, ErrorCode};
use crate::settings::RateLimitSettings;

/// Every limiter of the API; all pass when limits are disabled.
pub struct RateLimits {
    enabled: bool,
    login_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_account: DefaultKeyedRateLimiter<String>,
    signup_ip: DefaultKeyedRateLimiter<IpAddr>,
    verify_ip: DefaultKeyedRateLimiter<IpAddr>,
    verify_account: DefaultKeyedRateLimiter<String>,
    resend_ip: DefaultKeyedRateLimiter<IpAddr>,
    purchase_user: DefaultKeyedRateLimiter<i64>,
}

fn per_minute(count: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            enabled: settings.enabled,
            login_ip: RateLimiter::keyed(per_minute(settings.login_per_ip_per_min)),
            login_account: RateLimiter::keyed(per_minute(settings.login_per_account_per_min)),
            signup_ip: RateLimiter::keyed(per_minute(settings.signup_per_ip_per_min)),
            verify_ip: RateLimiter::keyed(per_minute(settings.verify_per_ip_per_min)),
            verify_account: RateLimiter::keyed(per_minute(settings.verify_per_account_per_min)),
            resend_ip: RateLimiter::keyed(per_minute(settings.resend_per_ip_per_min)),
            purchase_user: RateLimiter::keyed(Quota::per_second(
                NonZeroU32::new(settings.purchase_per_user_per_sec).unwrap_or(NonZeroU32::MIN),
            )),
        }
    }

    /// A login attempt from `ip` for `email`.
    pub fn login(&self, ip: IpAddr, email: &str) -> Result<(), ApiError> {
        self.check(&self.login_ip, &ip)?;
        self.check(&self.login_account, &email.to_owned())
    }

    /// A signup from `ip`.
    pub fn signup(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.check(&self.signup_ip, &ip)
    }

    /// An email code check from `ip` for `email`.
    pub fn verify(&self, ip: IpAddr, email: &str) -> Result<(), ApiError> {
        self.check(&self.verify_ip, &ip)?;
        self.check(&self.verify_account, &email.to_owned())
    }

    /// A request for a new email code from `ip`.
    pub fn resend(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.check(&self.resend_ip, &ip)
    }

    /// A purchase by `user_id`.
    pub fn purchase(&self, user_id: i64) -> Result<(), ApiError> {
        self.check(&self.purchase_user, &user_id)
    }

    /// Forgets keys whose limits have fully recovered (bounded memory).
    pub fn forget_idle(&self) {
        self.login_ip.retain_recent();
        self.login_account.retain_recent();
        self.signup_ip.retain_recent();
        self.verify_ip.retain_recent();
        self.verify_account.retain_recent();
        self.resend_ip.retain_recent();
        self.purchase_user.retain_recent();
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.max(Duration::from_secs(1)).as_secs_f64().ceil() as u64;
            ApiError::new(ErrorCode::RateLimited, "too many requests; retry later")
                .with_retry_after(seconds)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: bool) -> RateLimitSettings {
        RateLimitSettings {
            enabled,
            login_per_ip_per_min: 3,
            login_per_account_per_min: 1,
            signup_per_ip_per_min: 1,
            verify_per_ip_per_min: 1,
            verify_per_account_per_min: 1,
            resend_per_ip_per_min: 1,
            purchase_per_user_per_sec: 1,
        }
    }

    #[test]
    fn limits_are_per_key_and_say_when_to_retry() {
        let limits = RateLimits::new(&settings(true));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limits.login(ip, "a@b.co").is_ok());
        let refused = limits.login(ip, "a@b.co").unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        assert!(refused.retry_after_secs().unwrap() >= 1);
        assert!(
            limits.login(ip, "other@b.co").is_ok(),
            "another account has its own quota"
        );
        assert!(
            limits.login(ip, "third@b.co").is_err(),
            "the address quota is spent"
        );
        assert!(limits.purchase(1).is_ok());
        assert!(limits.purchase(1).is_err());
        assert!(limits.purchase(2).is_ok());
    }

    #[test]
    fn disabled_limits_pass_everything() {
        let limits = RateLimits::new(&settings(false));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.login(ip, "a@b.co").is_ok());
            assert!(limits.signup(ip).is_ok());
            assert!(limits.purchase(1).is_ok());
        }
    }
}
