//! Tokens: the verifier on untrusted text, sign → verify, and TTLs.

use chat_proto::auth::{parse_ttl, sign, verify as verify_token, AuthError};
use chat_proto::is_valid_id;

/// "Now" for every check: 2023-11-14, in ms.
const NOW_MS: u64 = 1_700_000_000_000;

/// The first byte is the secret's length (mod 48); the secret follows;
/// the rest is the token (as UTF-8, lossily: a header or query value).
pub fn verify(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 48).min(rest.len());
    let (secret, token) = rest.split_at(n);
    let token = String::from_utf8_lossy(token);
    match verify_token(secret, &token, NOW_MS) {
        Ok(identity) => {
            assert!(is_valid_id(&identity.user) && is_valid_id(&identity.device));
            let expires_ms = identity.expires_ms.unwrap_or(0);
            assert!(expires_ms > NOW_MS);
            // The same identity signed again verifies to itself.
            let again = sign(
                secret,
                &identity.user,
                Some(&identity.device),
                expires_ms / 1000,
            );
            let reverified = verify_token(secret, &again, NOW_MS).map(|i| (i.user, i.device));
            assert_eq!(reverified, Ok((identity.user, identity.device)));
        }
        Err(AuthError::DevAuthDisabled | AuthError::DevIds | AuthError::Missing) => {
            panic!("verify gave a dev-auth error");
        }
        Err(_) => {}
    }
    // The token's text as claims: sign → verify.
    let mut parts = token.splitn(3, ' ');
    let (user, device) = (parts.next().unwrap_or(""), parts.next());
    let exp_s = NOW_MS / 1000 + token.len() as u64 + 1;
    let signed = sign(secret, user, device, exp_s);
    let verified = verify_token(secret, &signed, NOW_MS);
    if is_valid_id(user) && device.is_none_or(is_valid_id) {
        let identity = verified.unwrap_or_else(|e| panic!("{user:?}/{device:?}: {e}"));
        assert_eq!(identity.user, user);
        assert_eq!(identity.device, device.unwrap_or("default"));
        assert_eq!(identity.expires_ms, Some(exp_s * 1000));
        // Any other signature is refused.
        let (body, sig) = signed.rsplit_once('.').unwrap_or_default();
        let flipped: String = sig
            .chars()
            .enumerate()
            .map(|(i, c)| match (i, c) {
                (0, 'A') => 'B',
                (0, _) => 'A',
                _ => c,
            })
            .collect();
        assert!(verify_token(secret, &format!("{body}.{flipped}"), NOW_MS).is_err());
        assert_eq!(
            verify_token(secret, &signed, exp_s * 1000),
            Err(AuthError::Expired)
        );
    } else {
        assert_eq!(verified, Err(AuthError::Claims));
    }
    if let Some(ttl) = parse_ttl(&token) {
        assert!(ttl > 0);
    }
}
