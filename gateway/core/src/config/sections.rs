//! The config file's sections: every field has a home `[section] key`, and
//! its historical top-level name stays accepted as an alias.
//!
//! The [`Config`](super::Config) struct stays flat (the code reads
//! `cfg.max_sends_in_flight`); a file is flattened before it is
//! deserialized. `[limits] max_sends_in_flight = 64` and the top-level
//! `max_sends_in_flight = 64` mean the same; giving both is an error, as is
//! an unknown key in a known section (named with the section's keys).

use toml::{Table, Value};

/// What is wrong with a file's sections.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    /// A key its section does not have.
    #[error("unknown key `{key}` in [{section}]; its keys are {}", known.join(", "))]
    UnknownKey {
        /// The section.
        section: &'static str,
        /// The key as written.
        key: String,
        /// The section's keys.
        known: Vec<&'static str>,
    },
    /// One field set under two names.
    #[error("`{second}` and `{first}` set the same field; keep one")]
    Twice {
        /// The name met first (`section.key` or the top-level alias).
        first: String,
        /// The name met second.
        second: String,
    },
    /// A section name used for something other than a table.
    #[error("`{section}` must be a table: [{section}]")]
    NotATable {
        /// The section.
        section: &'static str,
    },
}

/// `(section, [(key in the section, field of Config)])`, in the order the
/// documentation lists them.
pub const SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "server",
        &[
            ("listen", "listen"),
            ("shards", "shards"),
            ("max_connections", "max_connections"),
            ("reserved_fds", "reserved_fds"),
            ("listen_backlog", "listen_backlog"),
            ("shutdown_grace_ms", "shutdown_grace_ms"),
            ("drain_notice_ms", "drain_notice_ms"),
            ("drain_window_ms", "drain_window_ms"),
            ("log", "log"),
            ("log_format", "log_format"),
            ("demo", "demo"),
        ],
    ),
    (
        "auth",
        &[
            ("secret", "auth_secret"),
            ("allowed_origins", "allowed_origins"),
        ],
    ),
    (
        "storage",
        &[
            ("backend", "store"),
            ("data_dir", "data_dir"),
            ("durability", "durability"),
            ("fdb_cluster_file", "fdb_cluster_file"),
            ("fdb_namespace", "fdb_namespace"),
            ("read_threads", "store_read_threads"),
            ("commit_max_messages", "commit_max_messages"),
            ("commit_linger_us", "commit_linger_us"),
            ("commit_max_bytes", "commit_max_bytes"),
            ("cache_bytes", "store_cache_bytes"),
            ("memtable_bytes", "store_memtable_bytes"),
        ],
    ),
    (
        "connection",
        &[
            ("max_frame_bytes", "max_frame_bytes"),
            ("outbox_budget_bytes", "outbox_budget_bytes"),
            ("read_chunk_bytes", "read_chunk_bytes"),
            ("socket_send_buffer_bytes", "socket_send_buffer_bytes"),
            ("flush_tick_us", "flush_tick_us"),
            ("socket_ring", "socket_ring"),
            ("permessage_deflate", "permessage_deflate"),
            ("heartbeat_ms", "heartbeat_ms"),
            ("handshake_timeout_ms", "handshake_timeout_ms"),
            ("max_request_head_bytes", "max_request_head_bytes"),
            ("http_timeout_ms", "http_timeout_ms"),
            ("http_idle_timeout_ms", "http_idle_timeout_ms"),
            ("close_flush_ms", "close_flush_ms"),
            ("close_linger_ms", "close_linger_ms"),
        ],
    ),
    (
        "mesh",
        &[
            ("queue_capacity", "mesh_queue_capacity"),
            ("backlog_messages", "mesh_backlog_messages"),
        ],
    ),
    (
        "fanout",
        &[
            ("replica_ring_bytes", "replica_ring_bytes"),
            ("replica_rings_bytes", "replica_rings_bytes"),
            ("catchup_page_messages", "catchup_page_messages"),
            ("catchup_retry_ms", "catchup_retry_ms"),
            ("digest_interval_ms", "digest_interval_ms"),
            ("counts_interval_ms", "counts_interval_ms"),
            ("history_page_bytes", "history_page_bytes"),
        ],
    ),
    (
        "limits",
        &[
            ("max_connections_per_user", "max_connections_per_user"),
            ("rate_limit_per_sec", "rate_limit_per_sec"),
            ("rate_limit_burst", "rate_limit_burst"),
            ("rate_limit_close_after", "rate_limit_close_after"),
            ("max_sends_in_flight", "max_sends_in_flight"),
            ("max_history_in_flight", "max_history_in_flight"),
            ("max_presence_in_flight", "max_presence_in_flight"),
            ("max_joins_in_flight", "max_joins_in_flight"),
            ("max_queued_request_bytes", "max_queued_request_bytes"),
            ("max_channels_per_connection", "max_channels_per_connection"),
            ("max_sse_channels", "max_sse_channels"),
            ("max_http_calls_per_user", "max_http_calls_per_user"),
            ("max_groups_created_per_hour", "max_groups_created_per_hour"),
            ("max_group_members", "max_group_members"),
            ("max_text_chars", "max_text_chars"),
        ],
    ),
    (
        "receipts",
        &[
            ("cursor_flush_ms", "cursor_flush_ms"),
            ("max_pending_cursors", "max_pending_cursors"),
        ],
    ),
    (
        "cluster",
        &[
            ("node_id", "node_id"),
            ("advertise_url", "advertise_url"),
            ("lease_ms", "node_lease_ms"),
            ("heartbeat_ms", "node_heartbeat_ms"),
        ],
    ),
    (
        "presence",
        &[
            ("debounce_ms", "presence_debounce_ms"),
            ("typing_window_ms", "typing_window_ms"),
        ],
    ),
    (
        "push",
        &[
            ("webhook", "push_webhook"),
            ("coalesce_ms", "push_coalesce_ms"),
            ("max_attempts", "push_max_attempts"),
        ],
    ),
    (
        "moderation",
        &[
            ("blocklist_words", "blocklist_words"),
            ("blocklist_patterns", "blocklist_patterns"),
        ],
    ),
];

/// The home of a field: `section.key` (the field's name when it has none).
#[must_use]
pub fn home_of(field: &str) -> String {
    for (section, keys) in SECTIONS {
        if let Some((key, _)) = keys.iter().find(|(_, f)| *f == field) {
            return format!("{section}.{key}");
        }
    }
    field.to_owned()
}

/// Rewrites a parsed file into the flat form `Config` deserializes:
/// section keys become their fields; top-level fields pass through.
///
/// # Errors
///
/// An unknown key in a known section, or a field given twice (in its
/// section and at the top level, under either name).
pub fn flatten(file: Table) -> Result<Table, SectionError> {
    let mut flat = Table::new();
    let mut origin: Vec<(String, String)> = Vec::new();
    let mut put = |flat: &mut Table, field: &str, how: String, v: Value| {
        if let Some((_, first)) = origin.iter().find(|(f, _)| f == field) {
            return Err(SectionError::Twice {
                first: first.clone(),
                second: how,
            });
        }
        origin.push((field.to_owned(), how));
        flat.insert(field.to_owned(), v);
        Ok(())
    };
    for (name, value) in file {
        let section = SECTIONS.iter().find(|(s, _)| *s == name);
        match (section, value) {
            (Some((section, keys)), Value::Table(t)) => {
                for (key, v) in t {
                    let Some((_, field)) = keys.iter().find(|(k, _)| *k == key) else {
                        return Err(SectionError::UnknownKey {
                            section,
                            key,
                            known: keys.iter().map(|(k, _)| *k).collect(),
                        });
                    };
                    put(&mut flat, field, format!("{section}.{key}"), v)?;
                }
            }
            (Some((section, _)), _) => return Err(SectionError::NotATable { section }),
            (None, v) => {
                let how = name.clone();
                put(&mut flat, &name, how, v)?;
            }
        }
    }
    Ok(flat)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flat(text: &str) -> Result<Table, String> {
        flatten(text.parse::<Table>().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }

    #[test]
    fn section_keys_become_the_fields_they_name() {
        let t = flat("[limits]\nmax_sends_in_flight = 7\n[auth]\nsecret = \"s\"\n").unwrap();
        assert_eq!(t["max_sends_in_flight"].as_integer(), Some(7));
        assert_eq!(t["auth_secret"].as_str(), Some("s"));
    }

    #[test]
    fn a_config_file_with_sections_loads_and_errors_name_the_section() {
        let cfg = crate::config::Config::from_toml(
            "[limits]\nmax_sends_in_flight = 7\n[storage]\nbackend = \"fdb\"\n",
        )
        .unwrap();
        assert_eq!(cfg.max_sends_in_flight, 7);
        assert_eq!(cfg.store, crate::config::StoreKind::Fdb);
        let cfg = crate::config::Config {
            max_sse_channels: 0,
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("limits.max_sse_channels"), "{e}");
        let e = crate::config::Config::from_toml("[limits]\nmax_sends_in_flight = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_sends_in_flight"), "{e}");
    }

    #[test]
    fn the_flush_tick_is_validated_and_named_with_its_section() {
        let cfg = crate::config::Config::from_toml("[connection]\nflush_tick_us = 5000\n").unwrap();
        assert_eq!(cfg.flush_tick_us, 5000);
        for ok in [0, 1_000_000] {
            let cfg = crate::config::Config {
                flush_tick_us: ok,
                ..Default::default()
            };
            assert!(cfg.validate().is_ok(), "flush_tick_us = {ok}");
        }
        let cfg = crate::config::Config {
            flush_tick_us: 1_000_001,
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("connection.flush_tick_us"), "{e}");
    }

    #[test]
    fn the_listen_backlog_is_validated_and_named_with_its_section() {
        let cfg = crate::config::Config::from_toml("[server]\nlisten_backlog = 8192\n").unwrap();
        assert_eq!(cfg.listen_backlog, 8192);
        let cfg = crate::config::Config {
            listen_backlog: 0,
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("server.listen_backlog"), "{e}");
    }

    #[test]
    fn top_level_names_still_work() {
        let t = flat("commit_max_messages = 64\n").unwrap();
        assert_eq!(t["commit_max_messages"].as_integer(), Some(64));
    }

    #[test]
    fn a_field_given_twice_is_refused_with_both_names() {
        let e = flat("store = \"fdb\"\n[storage]\nbackend = \"embedded\"\n").unwrap_err();
        assert!(
            e.contains("storage.backend") && e.contains("`store`"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_in_a_section_lists_the_section_keys() {
        let e = flat("[push]\nurl = \"x\"\n").unwrap_err();
        assert!(e.contains("`url`") && e.contains("webhook"), "{e}");
    }

    #[test]
    fn every_field_has_exactly_one_home() {
        let mut seen = std::collections::HashSet::new();
        for (_, keys) in SECTIONS {
            for (_, field) in *keys {
                assert!(seen.insert(*field), "{field} twice");
            }
        }
        // serde names every field it accepts when it meets an unknown one.
        let e = toml::from_str::<crate::config::Config>("no_such_field = 1")
            .unwrap_err()
            .to_string();
        let list = &e[e.find("expected one of").expect("field list")..];
        let fields: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        for f in &fields {
            assert!(seen.contains(f), "{f} has no section");
        }
        assert_eq!(seen.len(), fields.len(), "{fields:?}");
        assert_eq!(home_of("auth_secret"), "auth.secret");
    }

    #[test]
    fn docs_configuration_lists_every_key_in_its_section() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        for (section, keys) in SECTIONS {
            let start = doc
                .find(&format!("## [{section}]"))
                .unwrap_or_else(|| panic!("docs/configuration.md has no [{section}]"));
            let part = &doc[start..];
            let part = &part[..part[3..].find("\n## ").map_or(part.len(), |i| i + 3)];
            for (key, _) in *keys {
                assert!(
                    part.contains(&format!("| `{key}` |")),
                    "docs/configuration.md: [{section}] lacks `{key}`"
                );
            }
        }
    }

    #[test]
    fn the_example_config_sets_every_default_and_lists_every_key_in_its_section() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/gateway.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        // As it is, the file configures exactly the defaults.
        let parsed = crate::Config::from_toml(&text).unwrap();
        let json = |c: &crate::Config| serde_json::to_value(c).unwrap();
        assert_eq!(
            json(&parsed),
            json(&crate::Config::default()),
            "deploy/gateway.example.toml must set every default (regenerate it from the config)"
        );
        // Every key is in it, under its section, set or commented out, after
        // a comment saying its default.
        for (section, keys) in SECTIONS {
            let start = text
                .find(&format!("\n[{section}]\n"))
                .unwrap_or_else(|| panic!("gateway.example.toml has no [{section}]"));
            let part = &text[start + 1..];
            let part = &part[..part[1..].find("\n[").map_or(part.len(), |i| i + 1)];
            let lines: Vec<&str> = part.lines().collect();
            for (key, _) in *keys {
                let at = lines
                    .iter()
                    .position(|l| {
                        l.strip_prefix("# ")
                            .unwrap_or(l)
                            .starts_with(&format!("{key} = "))
                    })
                    .unwrap_or_else(|| panic!("gateway.example.toml: [{section}] lacks {key}"));
                assert!(
                    at > 0 && lines[at - 1].starts_with("# Default"),
                    "gateway.example.toml: [{section}] {key} has no default line"
                );
            }
        }
    }
}
