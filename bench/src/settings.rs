//! `bench run --set KEY=VALUE`: gateway config overrides, written as a TOML
//! file the gateway reads with `--config FILE`. No I/O.
//!
//! Keys are the field names of `gateway/core/src/config.rs` (`commit_max_messages`,
//! `outbox_budget_bytes`, …); the gateway rejects unknown ones at start. A
//! value that parses as an integer, a float or a bool is written verbatim,
//! anything else as a quoted TOML string. The settings bench passes as flags
//! (`listen`, `data_dir`, `shards`, `durability`) cannot be set this way:
//! the gateway's flags would override the file without a word.

use std::collections::BTreeMap;

use anyhow::bail;

/// Gateway settings by key, as given on the command line (sorted, so the
/// file and the result are deterministic).
pub type Settings = BTreeMap<String, String>;

/// Keys bench sets itself, and the flag to use instead.
const RESERVED: &[(&str, &str)] = &[
    ("listen", "bench picks a free port"),
    ("data_dir", "bench uses a fresh temporary directory"),
    ("shards", "use --shards"),
    ("durability", "use --durability"),
];

/// Parses one `KEY=VALUE`.
pub fn parse_set(s: &str) -> anyhow::Result<(String, String)> {
    let Some((key, value)) = s.split_once('=') else {
        bail!("--set {s:?}: expected KEY=VALUE");
    };
    let key = key.trim();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("--set {s:?}: the key must be a gateway config field name ([a-z0-9_]+)");
    }
    if let Some((_, instead)) = RESERVED.iter().find(|(k, _)| *k == key) {
        bail!("--set {key}: not settable here ({instead})");
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// Parses every `--set`; a key given twice is an error.
pub fn parse_all(sets: &[String]) -> anyhow::Result<Settings> {
    let mut out = Settings::new();
    for s in sets {
        let (k, v) = parse_set(s)?;
        if out.insert(k.clone(), v).is_some() {
            bail!("--set {k} given twice");
        }
    }
    Ok(out)
}

/// A value as TOML: verbatim when it is an integer, a finite float or a
/// bool, else a quoted string. One rule for `bench run --set` and the TOML
/// lines `tuning sweep` recommends.
pub use tuning::sweep::table::toml_value;

/// The TOML file: one `key = value` line per setting.
#[must_use]
pub fn to_toml(settings: &Settings) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k} = {}\n", toml_value(v)))
        .collect()
}

/// `k=v k2=v2` for the Markdown row (`-` when none).
#[must_use]
pub fn describe(settings: &Settings) -> String {
    if settings.is_empty() {
        return "-".into();
    }
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs_parse_and_reserved_keys_are_refused() {
        assert_eq!(
            parse_set("commit_max_messages=64").expect("valid"),
            ("commit_max_messages".into(), "64".into())
        );
        assert_eq!(
            parse_set(" log = warn ").expect("valid").1,
            "warn",
            "spaces around are trimmed"
        );
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("=1").is_err());
        assert!(parse_set("Bad-Key=1").is_err());
        let e = parse_set("durability=buffered").expect_err("reserved");
        assert!(format!("{e}").contains("--durability"), "{e}");
        assert!(parse_set("shards=1").is_err());
        assert!(parse_all(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn numbers_and_bools_are_verbatim_and_the_rest_quoted() {
        assert_eq!(toml_value("65536"), "65536");
        assert_eq!(toml_value("-3"), "-3");
        assert_eq!(toml_value("0.5"), "0.5");
        assert_eq!(toml_value("1e3"), "1e3");
        assert_eq!(toml_value("true"), "true");
        assert_eq!(toml_value("inf"), "\"inf\"", "not a TOML number here");
        assert_eq!(toml_value("NaN"), "\"NaN\"");
        assert_eq!(toml_value("warn"), "\"warn\"");
        assert_eq!(toml_value(""), "\"\"");
        assert_eq!(toml_value(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn the_file_has_one_line_per_setting_in_key_order() {
        let s = parse_all(&[
            "outbox_budget_bytes=65536".into(),
            "log=warn".into(),
            "commit_max_messages=128".into(),
        ])
        .expect("valid");
        assert_eq!(
            to_toml(&s),
            "commit_max_messages = 128\nlog = \"warn\"\noutbox_budget_bytes = 65536\n"
        );
        assert_eq!(
            describe(&s),
            "commit_max_messages=128 log=warn outbox_budget_bytes=65536"
        );
        assert_eq!(describe(&Settings::new()), "-");
    }
}
