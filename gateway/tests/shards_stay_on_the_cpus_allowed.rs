//! A gateway started under a CPU mask (`taskset`, a container's cpuset)
//! keeps every thread inside it: its shards are pinned to allowed CPUs
//! only, and more shards than allowed CPUs share them.

#![allow(clippy::unwrap_used, unsafe_code)]

mod common;

use common::{Child, Client};

/// The CPUs a thread of `pid` may run on, per thread name.
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            out.push((name, l.split(':').nth(1).unwrap().trim().to_owned()));
        }
    }
    out
}

/// Starts the gateway from a thread allowed only on `cpu` (the child
/// inherits the mask, as under `taskset -c <cpu>`).
fn start_on(cpu: usize, shards: &str, data: &std::path::Path) -> Child {
    let data = data.to_str().unwrap().to_owned();
    let shards = shards.to_owned();
    std::thread::spawn(move || {
        // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
        // sched_setaffinity touch only the set we own and this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
        Child::spawn(
            "",
            &[
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
                "--shards",
                &shards,
            ],
        )
        .unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn shards_are_pinned_only_to_the_cpus_the_process_may_use() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    // The last CPU: without a mask one shard goes to the first CPU
    // (`sys::spread_cpus`; glommio, the executor before 2026-12-05, chose
    // CPU 0 too), so a mask elsewhere shows whether the gateway honours it.
    let cpu = cpus - 1;
    for shards in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let gw = start_on(cpu, shards, dir.path());
        let mut c = Client::connect(gw.addr, "u", "d");
        assert_eq!(c.join("room:pinned", None), 0);
        let threads = thread_cpus(gw.pid());
        let shard_threads = threads
            .iter()
            .filter(|(n, _)| n.starts_with("shard"))
            .count();
        assert!(
            shard_threads >= shards.parse::<usize>().unwrap(),
            "{threads:?}"
        );
        for (name, allowed) in &threads {
            assert_eq!(
                allowed,
                &cpu.to_string(),
                "{shards} shard(s) under a mask of CPU {cpu}: thread {name} may run on {allowed}"
            );
        }
        c.send_msg("room:pinned", "m1", "hello");
        assert_eq!(c.msgs("room:pinned", 1)[0]["seq"], 1);
    }
}
