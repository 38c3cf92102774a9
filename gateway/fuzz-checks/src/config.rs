//! The gateway's config file.

use chat_core::config::Config;

/// Parses `data` (as UTF-8, as a file is read) and validates the result.
pub fn parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_toml(text) {
        // `shards = 0` parses; validation refuses it.
        if config.validate().is_ok() {
            assert!(config.nr_shards() >= 1);
        }
    }
}
