//! Every committed fuzz input still passes its target's checks.
//!
//! Replays `gateway/fuzz/corpus/<target>/` (the minimised corpora) and
//! `gateway/fuzz/regressions/<target>/` (inputs of bugs the fuzzers found)
//! through the same functions the fuzz targets call — on stable, without a
//! fuzzer, in seconds. A target without any committed input fails, so a
//! corpus cannot silently go missing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use chat_fuzz_checks::{check, Target};

fn inputs(target: Target) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target.name())) else {
            continue;
        };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

fn replay(target: Target) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed corpus for fuzz target {}",
        target.name()
    );
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(target, &data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {} fail: {failed:?}",
        failed.len(),
        files.len(),
        target.name()
    );
}

#[test]
fn ws_frames_corpus_holds_its_properties() {
    replay(Target::WsFrames);
}

#[test]
fn ws_deflate_corpus_holds_its_properties() {
    replay(Target::WsDeflate);
}

#[test]
fn ws_decoder_agrees_with_tungstenite_on_its_corpus() {
    replay(Target::WsTungstenite);
}

#[test]
fn request_corpus_agrees_with_serde_json_and_round_trips() {
    replay(Target::Request);
}

#[test]
fn http_head_corpus_holds_its_properties() {
    replay(Target::HttpHead);
}

#[test]
fn http_api_corpus_holds_its_properties() {
    replay(Target::HttpApi);
}

#[test]
fn server_event_corpus_agrees_with_serde_json_and_round_trips() {
    replay(Target::ServerEvent);
}

#[test]
fn token_corpus_holds_its_properties() {
    replay(Target::Token);
}

#[test]
fn sse_positions_corpus_round_trips() {
    replay(Target::SsePositions);
}

#[test]
fn config_corpus_parses_without_panics() {
    replay(Target::Config);
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for t in Target::ALL {
        let file = dir.join(format!("{}.rs", t.name()));
        assert!(file.is_file(), "{} missing", file.display());
    }
}
