//! The tiniest scenario end to end against the DEBUG gateway and loadgen
//! (built here if missing), in a few seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn debug_bins() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Beside the bench binary this test drives: the same target directory
    // (`CARGO_TARGET_DIR` or the workspace's `target`) and profile.
    let dir = Path::new(env!("CARGO_BIN_EXE_bench"))
        .parent()
        .expect("the bench binary has a directory")
        .to_path_buf();
    let (gw, lg) = (dir.join("gateway"), dir.join("loadgen"));
    if !gw.exists() || !lg.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "gateway", "-p", "loadgen"])
            .current_dir(&root)
            .status()
            .expect("running cargo build -p gateway -p loadgen");
        assert!(st.success(), "cargo build -p gateway -p loadgen: {st}");
    }
    (gw, lg)
}

#[test]
fn dm_latency_smoke_writes_a_result() {
    let (gw, lg) = debug_bins();
    let out = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "run",
            "dm-latency",
            "--quick",
            "--connections",
            "10",
            "--rate",
            "50",
        ])
        .args(["--duration", "1s", "--shards", "1", "--out"])
        .arg(out.path())
        .arg("--gateway-bin")
        .arg(&gw)
        .arg("--loadgen-bin")
        .arg(&lg)
        .output()
        .expect("running bench");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "bench failed: {}\n{stdout}\n{stderr}",
        o.status
    );
    assert!(
        stdout.contains("| dm-latency | gateway | dm | 1 | fsync | 10 |"),
        "{stdout}"
    );

    let files: Vec<_> = std::fs::read_dir(out.path())
        .expect("read out dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with("dm-latency-") && name.ends_with(".json"),
        "{name}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).expect("read")).expect("json");
    let run = &v["runs"][0];
    assert_eq!(run["loadgen"]["scenario"], "dm");
    assert!(run["loadgen"]["delivered"].as_u64().expect("delivered") > 0);
    assert!(run["figures"]["server_cpu_s"].as_f64().expect("cpu") > 0.0);
    assert!(run["figures"]["frames_per_segment"].as_f64().expect("fps") > 0.0);
    assert!(run["server"]["peak_rss_kib"].as_u64().expect("rss") > 0);
    assert!(v["machine"]["nproc"].as_u64().expect("nproc") >= 1);
    assert_eq!(v["server"], "gateway");
    assert_eq!(run["spec"]["server"], "gateway");

    // compare of a run with itself: every ratio is 1.
    let c = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("compare")
        .args([&files[0], &files[0]])
        .output()
        .expect("running bench compare");
    assert!(c.status.success());
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(
        text.contains("| deliveries/s |") && text.contains("| 1.00 | same |"),
        "{text}"
    );
}
