//! Authentication: HS256 tokens (JWT) and the explicit dev mode.
//!
//! A token is a JWT signed with HMAC-SHA256 over the configured secret:
//! header `{"alg":"HS256","typ":"JWT"}`, claims `sub` (user id), optional
//! `device`, and `exp` (seconds since the Unix epoch, required). Sans-IO:
//! every function takes `now` from the caller.

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::names;

type HmacSha256 = Hmac<Sha256>;

/// Who a connection or request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub user: String,
    /// Device id (`default` when the token or query has none).
    pub device: String,
    /// When the identity stops being valid (ms since the epoch); `None` in
    /// dev auth.
    pub expires_ms: Option<u64>,
}

/// Why a token was refused. Every variant is answered with HTTP 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No token where one is required.
    #[error("missing token (Authorization: Bearer <token> or ?token=<token>)")]
    Missing,
    /// Not three base64url parts, or not JSON.
    #[error("malformed token")]
    Malformed,
    /// Not HS256.
    #[error("unsupported token algorithm (only HS256)")]
    Algorithm,
    /// The signature does not match the secret.
    #[error("bad token signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `sub` or `device` is not a valid id.
    #[error("token subject or device is not a valid id")]
    Claims,
    /// Dev auth was attempted while a secret is configured.
    #[error("dev auth is disabled: this gateway requires a token")]
    DevAuthDisabled,
    /// Dev auth without a valid `user` (or with an invalid `device`).
    #[error("dev auth needs ?user=<id>[&device=<id>] with ids of 1-64 [A-Za-z0-9_.-]")]
    DevIds,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    exp: u64,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Signs a token for `user` (and `device`) valid until `exp_s` (seconds).
#[must_use]
pub fn sign(secret: &[u8], user: &str, device: Option<&str>, exp_s: u64) -> String {
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        sub: user.to_string(),
        device: device.map(str::to_string),
        exp: exp_s,
    };
    let payload = BASE64URL_NOPAD.encode(
        serde_json::to_string(&claims)
            .unwrap_or_default()
            .as_bytes(),
    );
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = BASE64URL_NOPAD.encode(&m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Verifies a token at `now_ms`.
pub fn verify(secret: &[u8], token: &str, now_ms: u64) -> Result<Identity, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let header: Header = BASE64URL_NOPAD
        .decode(h.as_bytes())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Malformed)?;
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm);
    }
    let sig = BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| AuthError::Malformed)?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    // Constant-time comparison.
    m.verify_slice(&sig).map_err(|_| AuthError::Signature)?;
    let claims: Claims = BASE64URL_NOPAD
        .decode(p.as_bytes())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AuthError::Malformed)?;
    let expires_ms = claims.exp.saturating_mul(1000);
    if expires_ms <= now_ms {
        return Err(AuthError::Expired);
    }
    let device = claims.device.unwrap_or_else(|| "default".to_string());
    if !names::is_valid_id(&claims.sub) || !names::is_valid_id(&device) {
        return Err(AuthError::Claims);
    }
    Ok(Identity {
        user: claims.sub,
        device,
        expires_ms: Some(expires_ms),
    })
}

/// Parses a TTL like `90s`, `15m`, `1h`, `7d` (or plain seconds).
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn signed_tokens_verify_and_carry_user_and_device() {
        let t = sign(b"s3cret", "alice", Some("phone"), NOW / 1000 + 60);
        let id = verify(b"s3cret", &t, NOW).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.device, "phone");
        assert_eq!(id.expires_ms, Some(NOW + 60_000));
        let t = sign(b"s3cret", "bob", None, NOW / 1000 + 60);
        assert_eq!(verify(b"s3cret", &t, NOW).unwrap().device, "default");
    }

    #[test]
    fn wrong_secret_expired_tampered_and_malformed_tokens_are_refused() {
        let t = sign(b"s3cret", "alice", None, NOW / 1000 + 60);
        assert_eq!(verify(b"other", &t, NOW), Err(AuthError::Signature));
        assert_eq!(verify(b"s3cret", &t, NOW + 61_000), Err(AuthError::Expired));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = BASE64URL_NOPAD.encode(br#"{"sub":"mallory","exp":9999999999}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(b"s3cret", &parts.join("."), NOW),
            Err(AuthError::Signature)
        );
        assert_eq!(verify(b"s3cret", "a.b", NOW), Err(AuthError::Malformed));
        assert_eq!(verify(b"s3cret", "", NOW), Err(AuthError::Malformed));
        let none_alg = format!(
            "{}.{}.",
            BASE64URL_NOPAD.encode(br#"{"alg":"none"}"#),
            BASE64URL_NOPAD.encode(br#"{"sub":"a","exp":9999999999}"#)
        );
        assert_eq!(verify(b"s3cret", &none_alg, NOW), Err(AuthError::Algorithm));
    }

    #[test]
    fn a_known_hs256_vector_verifies() {
        // Built independently (Python hmac/hashlib) for secret "secret":
        // {"alg":"HS256","typ":"JWT"} . {"sub":"alice","exp":4102444800}
        const VECTOR: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
            eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.\
            wuGrn2w2WEpEP2epqsNj8u9GIv6Gpu7JMRCXDgUyZyQ";
        assert_eq!(sign(b"secret", "alice", None, 4_102_444_800), VECTOR);
        let id = verify(b"secret", VECTOR, NOW).unwrap();
        assert_eq!(id.user, "alice");
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("2d"), Some(172_800));
        assert_eq!(parse_ttl("0s"), None);
        assert_eq!(parse_ttl("1y"), None);
    }
}
