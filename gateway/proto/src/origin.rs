//! Browser origins: which pages may use the gateway, and the CORS headers
//! that tell a browser so. Sans-IO: the caller passes the request's
//! `Origin` and `Host` headers and gets a verdict.
//!
//! A browser attaches `Origin` to every WebSocket upgrade, to every
//! cross-origin `fetch` and `EventSource`, and to same-origin requests
//! other than `GET`/`HEAD`. Non-browser clients usually send none, and a
//! request without `Origin` is never refused here (it proves nothing: any
//! program can send any header; tokens are the access control). What the
//! check stops is a page on another site using a visitor's browser against
//! the gateway — with the visitor's token in a query string, or, in dev
//! auth, as any user.
//!
//! The rule ([`OriginPolicy::check`]), in order:
//!
//! 1. no `Origin` header → [`OriginVerdict::NoOrigin`];
//! 2. the origin is in `allowed_origins` (or the list holds `"*"`) →
//!    allowed;
//! 3. the origin is the gateway's own — its host and port equal the
//!    request's `Host` (the scheme is not compared: behind a TLS proxy the
//!    page is `https` and the gateway speaks plain HTTP) → allowed;
//! 4. in dev auth, an origin on a loopback host (`localhost`,
//!    `*.localhost`, `127.0.0.0/8`, `[::1]`) → allowed;
//! 5. anything else → [`OriginVerdict::Refused`] (HTTP 403).
//!
//! An allowed origin is echoed in `Access-Control-Allow-Origin` with
//! `Vary: Origin` ([`cors_headers`]); a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered with [`preflight_headers`].
//! No `Access-Control-Allow-Credentials`: the gateway uses no cookies.

use std::fmt;

/// Methods the HTTP API answers to a preflight.
pub const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// Request headers a cross-origin page may send.
pub const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID";

/// How long a browser may cache a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// Why an `allowed_origins` entry is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// No `scheme://`.
    #[error("origin {0:?} has no scheme: it must look like https://host or https://host:port")]
    NoScheme(String),
    /// A path, query, fragment or user info after the host.
    #[error(
        "origin {0:?} must have no path, query or user info (an origin is scheme://host[:port])"
    )]
    HasPath(String),
    /// The host is empty or holds characters a host cannot.
    #[error("origin {0:?} has no valid host")]
    BadHost(String),
    /// The port is not a number in 1..=65535.
    #[error("origin {0:?} has an invalid port")]
    BadPort(String),
}

/// An origin in its normal form: scheme and host lowercase, the scheme's
/// default port left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `None` when malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        return match &rest[end + 1..] {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p))),
        None => Some((authority, None)),
    }
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

impl Origin {
    /// Parses `scheme://host[:port]` (one trailing `/` is tolerated).
    ///
    /// # Errors
    ///
    /// Anything that is not an origin: no scheme, a path, a bad host or
    /// port.
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| OriginError::NoScheme(text.to_owned()))?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(OriginError::NoScheme(text.to_owned()));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(OriginError::HasPath(text.to_owned()));
        }
        let (host, port) =
            split_authority(authority).ok_or_else(|| OriginError::BadHost(text.to_owned()))?;
        if !valid_host(host) {
            return Err(OriginError::BadHost(text.to_owned()));
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = match port {
            None => None,
            Some(p) => {
                let n: u16 = p
                    .parse()
                    .ok()
                    .filter(|&n| n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| OriginError::BadPort(text.to_owned()))?;
                (Some(n) != default_port(&scheme)).then_some(n)
            }
        };
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The port a browser reaches this origin on (explicit or the scheme's
    /// default).
    fn effective_port(&self) -> Option<u16> {
        self.port.or_else(|| default_port(&self.scheme))
    }

    /// Whether the host is loopback: `localhost`, a `.localhost` name,
    /// `127.0.0.0/8` or `[::1]`.
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        let h = self.host.as_str();
        h == "localhost"
            || h.ends_with(".localhost")
            || h == "[::1]"
            || h.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether a request with `Host: host` was sent to this origin's host
    /// and port (the scheme is not compared).
    #[must_use]
    pub fn is_same_host(&self, host_header: &str) -> bool {
        let Some((host, port)) = split_authority(host_header.trim()) else {
            return false;
        };
        if !host.eq_ignore_ascii_case(&self.host) {
            return false;
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) => Some(n),
                Err(_) => return false,
            },
            None => default_port(&self.scheme),
        };
        port == self.effective_port()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// What the policy says about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginVerdict {
    /// No `Origin` header: not a browser's cross-origin request; go on.
    NoOrigin,
    /// A browser page this gateway serves: go on, and echo this value in
    /// `Access-Control-Allow-Origin`.
    Allowed(String),
    /// A page this gateway does not serve: answer 403.
    Refused(String),
}

/// The configured origins and whether dev auth adds loopback pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<Origin>,
    any: bool,
    allow_null: bool,
    loopback: bool,
}

impl OriginPolicy {
    /// A policy of the `allowed_origins` entries (`"*"` = every origin,
    /// `"null"` = the opaque origin of sandboxed frames and `file:` pages),
    /// plus loopback origins when `dev_auth`.
    ///
    /// # Errors
    ///
    /// The first entry that is not an origin.
    pub fn new(entries: &[String], dev_auth: bool) -> Result<OriginPolicy, OriginError> {
        let mut policy = OriginPolicy {
            loopback: dev_auth,
            ..OriginPolicy::default()
        };
        for entry in entries {
            match entry.trim() {
                "*" => policy.any = true,
                "null" => policy.allow_null = true,
                e => policy.allowed.push(Origin::parse(e)?),
            }
        }
        Ok(policy)
    }

    /// The verdict for a request with these `Origin` and `Host` headers.
    #[must_use]
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> OriginVerdict {
        let Some(raw) = origin.map(str::trim) else {
            return OriginVerdict::NoOrigin;
        };
        let allowed = || OriginVerdict::Allowed(raw.to_owned());
        if self.any {
            return allowed();
        }
        if raw == "null" {
            return if self.allow_null {
                allowed()
            } else {
                OriginVerdict::Refused(raw.to_owned())
            };
        }
        let Ok(parsed) = Origin::parse(raw) else {
            return OriginVerdict::Refused(raw.to_owned());
        };
        if self.allowed.contains(&parsed)
            || host.is_some_and(|h| parsed.is_same_host(h))
            || (self.loopback && parsed.is_loopback())
        {
            allowed()
        } else {
            OriginVerdict::Refused(raw.to_owned())
        }
    }
}

/// The headers of a response to an allowed cross-origin request.
#[must_use]
pub fn cors_headers(origin: &str) -> [(&'static str, String); 2] {
    [
        ("Access-Control-Allow-Origin", origin.to_owned()),
        ("Vary", "Origin".to_owned()),
    ]
}

/// The headers of a `204` answer to an allowed preflight.
#[must_use]
pub fn preflight_headers(origin: &str) -> [(&'static str, String); 5] {
    [
        ("Access-Control-Allow-Origin", origin.to_owned()),
        ("Access-Control-Allow-Methods", ALLOWED_METHODS.to_owned()),
        ("Access-Control-Allow-Headers", ALLOWED_HEADERS.to_owned()),
        ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE_SECS.to_string()),
        ("Vary", "Origin".to_owned()),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(list: &[&str], dev: bool) -> OriginPolicy {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&list, dev).unwrap()
    }

    fn allowed(p: &OriginPolicy, origin: &str, host: &str) -> bool {
        matches!(p.check(Some(origin), Some(host)), OriginVerdict::Allowed(_))
    }

    #[test]
    fn origins_parse_to_a_normal_form() {
        let o = Origin::parse("HTTPS://App.Example.com:443/").unwrap();
        assert_eq!(o.to_string(), "https://app.example.com");
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
        assert_eq!(
            Origin::parse("capacitor://localhost").unwrap().to_string(),
            "capacitor://localhost"
        );
        for (bad, want) in [
            ("app.example.com", "scheme"),
            ("https://app.example.com/chat", "path"),
            ("https://user@app.example.com", "path"),
            ("https://", "host"),
            ("https://a b", "host"),
            ("https://app.example.com:0", "port"),
            ("https://app.example.com:99999", "port"),
            ("https://app.example.com:+1", "port"),
        ] {
            let e = Origin::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn requests_without_origin_are_not_browsers_and_pass() {
        let p = policy(&[], false);
        assert_eq!(p.check(None, Some("x")), OriginVerdict::NoOrigin);
        assert_eq!(p.check(None, None), OriginVerdict::NoOrigin);
    }

    #[test]
    fn listed_origins_pass_with_their_own_spelling_echoed() {
        let p = policy(&["https://app.example.com", "http://localhost:3000"], false);
        assert_eq!(
            p.check(Some("https://APP.example.com:443"), Some("gw.example.com")),
            OriginVerdict::Allowed("https://APP.example.com:443".into())
        );
        assert!(allowed(&p, "http://localhost:3000", "gw"));
        assert!(!allowed(&p, "http://localhost:3001", "gw"));
        assert!(!allowed(&p, "https://evil.example.com", "gw.example.com"));
        assert!(
            !allowed(&p, "http://app.example.com", "gw"),
            "scheme counts"
        );
    }

    #[test]
    fn same_origin_pages_pass_with_an_empty_list() {
        let p = policy(&[], false);
        assert!(allowed(&p, "https://chat.example.com", "chat.example.com"));
        assert!(allowed(
            &p,
            "https://chat.example.com",
            "chat.example.com:443"
        ));
        assert!(allowed(&p, "http://10.0.0.5:8080", "10.0.0.5:8080"));
        assert!(allowed(&p, "http://[::1]:8080", "[::1]:8080"));
        assert!(!allowed(&p, "http://10.0.0.5:8081", "10.0.0.5:8080"));
        assert!(!allowed(
            &p,
            "https://chat.example.com",
            "chat.example.com:8443"
        ));
        assert!(!allowed(&p, "https://evil.example.com", "chat.example.com"));
        assert_eq!(
            p.check(Some("https://evil.example.com"), None),
            OriginVerdict::Refused("https://evil.example.com".into())
        );
    }

    #[test]
    fn loopback_pages_pass_only_in_dev_auth() {
        let dev = policy(&[], true);
        let prod = policy(&[], false);
        for o in [
            "http://localhost:5173",
            "http://127.0.0.1:3000",
            "http://127.1.2.3",
            "http://[::1]:9000",
            "http://app.localhost",
        ] {
            assert!(allowed(&dev, o, "127.0.0.1:8080"), "{o}");
            assert!(!allowed(&prod, o, "127.0.0.1:8080"), "{o}");
        }
        assert!(!allowed(
            &dev,
            "http://localhost.evil.com",
            "127.0.0.1:8080"
        ));
        assert!(!allowed(&dev, "http://128.0.0.1", "127.0.0.1:8080"));
    }

    #[test]
    fn star_allows_everything_and_null_only_when_listed() {
        assert!(allowed(&policy(&["*"], false), "https://any.where", "gw"));
        assert!(allowed(&policy(&["*"], false), "null", "gw"));
        assert!(!allowed(&policy(&[], true), "null", "gw"));
        assert!(allowed(&policy(&["null"], false), "null", "gw"));
        assert!(!allowed(&policy(&[], true), "not an origin", "gw"));
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        let e =
            OriginPolicy::new(&["https://ok.example".into(), "nope".into()], false).unwrap_err();
        assert_eq!(e, OriginError::NoScheme("nope".into()));
    }

    #[test]
    fn cors_and_preflight_headers_echo_the_origin() {
        let h = cors_headers("https://a.example");
        assert_eq!(
            h[0],
            ("Access-Control-Allow-Origin", "https://a.example".into())
        );
        let p = preflight_headers("https://a.example");
        assert!(p
            .iter()
            .any(|(k, v)| *k == "Access-Control-Allow-Headers" && v.contains("Authorization")));
        assert!(p.iter().any(|(k, _)| *k == "Access-Control-Max-Age"));
    }
}
