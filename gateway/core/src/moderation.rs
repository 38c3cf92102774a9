//! Moderation: a configured blocklist checked on the sender's shard before
//! a message is forwarded to its owner, so a blocked message is never stored.

use regex::{Regex, RegexBuilder};

/// A blocklist pattern that is not a valid regular expression.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {source}")]
pub struct BlocklistError {
    /// The pattern as configured (empty for the combined expression).
    pub pattern: String,
    /// The regex crate's error (it names the position).
    #[source]
    pub source: regex::Error,
}

/// Words (whole-word, case-insensitive) and patterns refused in messages.
pub(crate) struct Blocklist {
    /// One alternation of all words and patterns; `None` when empty.
    re: Option<Regex>,
}

impl Blocklist {
    /// Builds the blocklist; an invalid pattern is an error naming it.
    pub(crate) fn new(words: &[String], patterns: &[String]) -> Result<Blocklist, BlocklistError> {
        let mut parts: Vec<String> = words
            .iter()
            .filter(|w| !w.trim().is_empty())
            .map(|w| format!(r"\b{}\b", regex::escape(w.trim())))
            .collect();
        for p in patterns {
            Regex::new(p).map_err(|source| BlocklistError {
                pattern: p.clone(),
                source,
            })?;
            parts.push(format!("(?:{p})"));
        }
        if parts.is_empty() {
            return Ok(Blocklist { re: None });
        }
        let re = RegexBuilder::new(&parts.join("|"))
            .case_insensitive(true)
            .build()
            .map_err(|source| BlocklistError {
                pattern: String::new(),
                source,
            })?;
        Ok(Blocklist { re: Some(re) })
    }

    /// A blocklist that blocks nothing.
    pub(crate) fn empty() -> Blocklist {
        Blocklist { re: None }
    }

    /// Whether `text` contains a blocked word or pattern.
    pub(crate) fn blocks(&self, text: &str) -> bool {
        self.re.as_ref().is_some_and(|re| re.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn words_match_whole_words_case_insensitively_and_patterns_match_anywhere() {
        let b = Blocklist::new(&["spam".into()], &[r"buy\s+now".into()]).unwrap();
        assert!(b.blocks("this is SPAM!"));
        assert!(!b.blocks("spammer is not the word"));
        assert!(b.blocks("please buy   now"));
        assert!(!b.blocks("hello"));
        assert!(!Blocklist::new(&[], &[]).unwrap().blocks("anything"));
    }

    #[test]
    fn an_invalid_pattern_is_refused_with_its_text() {
        let e = Blocklist::new(&[], &["(".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"(\""), "{e}");
    }
}
