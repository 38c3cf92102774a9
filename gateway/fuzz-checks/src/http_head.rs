//! The HTTP request-head parser.

use chat_proto::http::{upgrade_response, HttpError};
use chat_proto::parse_request_head;

/// Head limits a run uses: tiny, the gateway's default order, and
/// unlimited.
const MAX_HEAD: [usize; 3] = [32, 8192, usize::MAX];

/// Parses `data` as the start of a connection with each of [`MAX_HEAD`].
pub fn parse(data: &[u8]) {
    for max in MAX_HEAD {
        check(data, max);
    }
}

fn check(data: &[u8], max: usize) {
    match parse_request_head(data, max) {
        Ok(None) => assert!(data.len() < max, "`not yet` at the limit"),
        Ok(Some((head, consumed))) => {
            assert!(consumed <= data.len().min(max), "consumed {consumed}");
            // The same head from exactly its bytes.
            let exact = parse_request_head(&data[..consumed], max);
            assert_eq!(exact, Ok(Some((head.clone(), consumed))));
            // Strict prefixes are incomplete.
            for cut in [consumed - 1, consumed / 2] {
                let prefix = parse_request_head(&data[..cut], max);
                assert_eq!(prefix, Ok(None), "a prefix of {cut} bytes");
            }
            let _ = head.query_param("user");
            let _ = head.bearer_token();
            if let Ok(key) = head.websocket_key() {
                assert_eq!(key.len(), 24);
                let response = upgrade_response(key);
                assert!(response.starts_with(b"HTTP/1.1 101 "));
            }
            assert!(!head.method.is_empty());
        }
        Err(HttpError::TooLarge) => {}
        Err(e @ HttpError::Malformed(_)) => assert_eq!(e.status(), 400),
    }
}
