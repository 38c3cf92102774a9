//! `tuning sweep` end to end against a stand-in for `bench` (a shell script
//! that writes result files the way `bench run` does), so the driver —
//! directories, failed points, the plot fallback, files, exit status — is
//! tested without running a gateway. The real bench is exercised by hand
//! (see the README's "Scaling a host").
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A stand-in bench: `run` writes `<scenario>-<n>.json` into `--out` with
/// the `--set` values as `settings`; deliveries/CPU-s grow with
/// `commit_max_messages`; `commit_max_messages=13` crashes (exit 2, no
/// file); with `VIOLATE=1` every run has a violation; `plot` fails.
const STAND_IN: &str = r#"#!/bin/sh
if [ "$1" = plot ]; then echo "error: unrecognized subcommand 'plot'" >&2; exit 2; fi
scenario="$2"; shift 2
out=""; settings=""; cmm=4096
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift;;
    --set) k="${2%%=*}"; v="${2#*=}"; settings="$settings${settings:+,}\"$k\":\"$v\""
           [ "$k" = commit_max_messages ] && cmm="$v"; shift;;
  esac
  shift
done
if [ "$cmm" = 13 ]; then echo "gateway exited: config field commit_max_messages" >&2; exit 2; fi
violations=0; exit_code=0; ok=true
if [ "${VIOLATE:-0}" = 1 ]; then violations=1; exit_code=1; ok=false; fi
mkdir -p "$out"
cat > "$out/$scenario-1.json" <<EOF
{"scenario":"$scenario","timestamp":1,"quick":true,"settings":{$settings},
 "runs":[{"spec":{"label":"dm","gateway_shards":null,"durability":"fsync","settings":{$settings}},
  "loadgen_exit":$exit_code,
  "figures":{"connections":100,"deliveries_per_s":400.0,"deliveries_per_cpu_s":$((1000 + cmm)).0,
   "latency_us":[900,4000,6000,8000],"mem_per_conn_bytes":4096.0,"violations":$violations,"ok":$ok}}]}
EOF
echo "| bench table |"
exit $exit_code
"#;

fn stand_in(dir: &Path) -> PathBuf {
    let path = dir.join("bench");
    std::fs::write(&path, STAND_IN).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn sweep(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> (Output, String) {
    let bench = stand_in(dir);
    let out = dir.join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tuning"));
    cmd.args(["sweep", "dm-latency", "--quick", "--bench-bin"])
        .arg(&bench)
        .arg("--out")
        .arg(&out)
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    (output, stdout)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect()
}

#[test]
fn a_sweep_recommends_the_best_point_and_survives_a_crashed_one_and_no_plot() {
    let dir = tempfile::tempdir().unwrap();
    let (output, stdout) = sweep(dir.path(), &[], &["--grid", "commit_max_messages=13,16384"]);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("| 1 | defaults | dm | 400 | 5096 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| 2 | commit_max_messages=13 | - |")
            && stdout.contains("failed: bench failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| 3 | commit_max_messages=16384 | dm | 400 | 17384 |")
            && stdout.contains("| recommended |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\ncommit_max_messages = 16384\n"),
        "{stdout}"
    );
    assert!(stdout.contains("plot: not drawn"), "{stdout}");

    let out = dir.path().join("out");
    let json = files(&out, ".json");
    let sweep_file = json
        .iter()
        .find(|p| !p.to_string_lossy().ends_with(".plot.json"))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sweep_file).unwrap()).unwrap();
    assert_eq!(v["recommendation"]["kind"], "change");
    assert_eq!(v["rows"][2]["point"]["commit_max_messages"], "16384");
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
    let md = std::fs::read_to_string(&files(&out, ".md")[0]).unwrap();
    assert!(
        md.contains("```toml\ncommit_max_messages = 16384\n```"),
        "{md}"
    );
    assert!(
        !md.contains("![sweep plot]"),
        "no image without a plot: {md}"
    );
    assert!(files(&out, ".svg").is_empty());
}

#[test]
fn a_sweep_where_every_point_has_violations_recommends_nothing_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (output, stdout) = sweep(
        dir.path(),
        &[("VIOLATE", "1")],
        &["--grid", "outbox_budget_bytes=64KiB"],
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("no point qualifies"), "{stdout}");
    assert!(stdout.contains("| 1 violation |"), "{stdout}");
    assert!(
        !stdout.contains("gateway config (--config FILE)"),
        "{stdout}"
    );
}

#[test]
fn a_dry_run_prints_the_commands_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (output, stdout) = sweep(dir.path(), &[], &["--dry-run", "--repeat", "2"]);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("tuning sweep (dry run: nothing runs): "),
        "{stdout}"
    );
    let runs = stdout
        .lines()
        .filter(|l| l.contains(" run dm-latency "))
        .count();
    assert_eq!(runs % 2, 0, "two lines per point: {stdout}");
    assert!(stdout.contains("/r2 --quick"), "{stdout}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_missing_bench_binary_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tuning"))
        .args(["sweep", "dm-latency", "--quick", "--bench-bin"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("cargo build --release -p bench"),
        "{stderr}"
    );
}
