//! `apply` on a fixture `/proc` tree: the reader parses it, a dry run
//! leaves it alone, a write changes exactly the planned sysctls, and a
//! sysctl that does not exist fails with a typed error, without stopping the
//! others.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use tuning::{apply, plan, read_host_at, ApplyError, HostPaths, Mode, Report, Requirements};

fn put(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A proc and sys tree shaped like this host's.
fn fixture() -> (tempfile::TempDir, HostPaths) {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    let sys = dir.path().join("sys");
    put(&proc, "sys/fs/nr_open", "1048576\n");
    put(&proc, "sys/fs/file-max", "2466174\n");
    put(&proc, "sys/net/core/somaxconn", "4096\n");
    put(&proc, "sys/net/ipv4/tcp_mem", "287898\t383866\t575796\n");
    put(&proc, "sys/net/ipv4/tcp_rmem", "4096\t131072\t33554432\n");
    put(&proc, "sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304\n");
    put(&proc, "sys/net/ipv4/ip_local_port_range", "32768\t60999\n");
    put(&proc, "sys/kernel/io_uring_disabled", "0\n");
    put(
        &proc,
        "meminfo",
        "MemTotal:       24683656 kB\nMemFree:        21315268 kB\nMemAvailable:   24220308 kB\n",
    );
    put(
        &proc,
        "self/status",
        "Uid:\t0\t0\t0\t0\nCapEff:\t000001fffeffffff\n",
    );
    put(&sys, "devices/system/cpu/online", "0-1\n");
    (dir, HostPaths { proc, sys })
}

#[test]
fn reads_the_fixture() {
    let (_dir, paths) = fixture();
    let r = read_host_at(&paths);
    assert_eq!(r.nr_open, Some(1_048_576));
    assert_eq!(r.file_max, Some(2_466_174));
    assert_eq!(r.somaxconn, Some(4096));
    assert_eq!(r.tcp_mem.unwrap().max, 575_796);
    assert_eq!(r.ip_local_port_range, Some((32_768, 60_999)));
    assert_eq!(r.mem_available_bytes, Some(24_220_308 * 1024));
    assert_eq!(r.online_cpus, vec![0, 1]);
    assert_eq!(r.io_uring_disabled, Some(0));
    assert_eq!(r.privileges.euid, Some(0));
    assert_eq!(r.privileges.cap_sys_resource, Some(false));
}

#[test]
fn dry_run_then_write() {
    let (_dir, paths) = fixture();
    let readings = read_host_at(&paths);
    let report = Report::new(&readings, &Requirements::new(1_000_000, 2));
    let plan = plan(&readings, &report);
    let keys: Vec<&str> = plan.sysctls.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]
    );

    let dry = apply(&plan, &paths, Mode::DryRun);
    assert!(dry.iter().all(|a| matches!(a.result, Ok(false))));
    assert!(dry[0].line().starts_with(
        "would write net.ipv4.tcp_mem: 287898 383866 575796 → 287898 1000000 1500000"
    ));
    assert_eq!(
        fs::read_to_string(paths.sysctl("net.ipv4.tcp_mem")).unwrap(),
        "287898\t383866\t575796\n"
    );

    let done = apply(&plan, &paths, Mode::Write);
    assert!(
        done.iter().all(|a| matches!(a.result, Ok(true))),
        "{done:#?}"
    );
    assert_eq!(
        fs::read_to_string(paths.sysctl("net.ipv4.tcp_mem")).unwrap(),
        "287898 1000000 1500000\n"
    );
    // Checked again, the sysctls are no longer warnings.
    let after = Report::new(&read_host_at(&paths), &Requirements::new(1_000_000, 2));
    for name in ["net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"] {
        assert_eq!(
            after.item(name).unwrap().status,
            tuning::Status::Ok,
            "{name}"
        );
    }
    // Untouched: the fd limit is not apply's to change.
    assert_eq!(
        after.item("RLIMIT_NOFILE").unwrap().status,
        report.item("RLIMIT_NOFILE").unwrap().status
    );
}

#[test]
fn a_missing_sysctl_fails_alone() {
    let (_dir, paths) = fixture();
    let readings = read_host_at(&paths);
    let report = Report::new(&readings, &Requirements::new(1_000_000, 2));
    let mut plan = plan(&readings, &report);
    let mut missing = plan.sysctls[0].clone();
    missing.key = "net.nonexistent.knob".into();
    plan.sysctls.insert(0, missing);

    let done = apply(&plan, &paths, Mode::Write);
    let err = done[0].result.as_ref().unwrap_err();
    assert!(matches!(err, ApplyError::Write { key, .. } if key == "net.nonexistent.knob"));
    assert!(
        err.to_string()
            .ends_with("(this kernel has no such sysctl)"),
        "{err}"
    );
    assert!(done[1..].iter().all(|a| matches!(a.result, Ok(true))));
}
