//! Parsers for the `/proc` files the bench samples (and the gateway's
//! `/metrics` text). No I/O: each function takes the text of one file, so
//! the tests run on captured samples.

use anyhow::{anyhow, bail, Context as _};

/// CPU time a process has used, in clock ticks (`utime + stime`), from the
/// text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may hold spaces or
/// parentheses itself, so fields are counted after the *last* `)`.
pub fn stat_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let close = stat
        .rfind(')')
        .ok_or_else(|| anyhow!("/proc/<pid>/stat: no ')' after the command name"))?;
    // After ')' the fields start at field 3 (state); utime is field 14 and
    // stime field 15, i.e. indexes 11 and 12 here.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!(
            "/proc/<pid>/stat: only {} fields after the command name",
            fields.len()
        );
    }
    let utime: u64 = fields[11].parse().context("/proc/<pid>/stat: utime")?;
    let stime: u64 = fields[12].parse().context("/proc/<pid>/stat: stime")?;
    Ok(utime + stime)
}

/// Resident set size in KiB (`VmRSS:`), from the text of `/proc/<pid>/status`.
pub fn status_vm_rss_kib(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("/proc/<pid>/status: no VmRSS line"))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let value = it.next().ok_or_else(|| anyhow!("VmRSS: no value"))?;
    match it.next() {
        Some("kB") | None => {}
        Some(unit) => bail!("VmRSS: unexpected unit {unit:?}"),
    }
    value.parse().context("VmRSS value")
}

/// `Cpus_allowed_list:` (e.g. `0`, `0-1`) from the text of
/// `/proc/<pid>/task/<tid>/status`.
#[must_use]
pub fn status_cpus_allowed_list(status: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// The value of an unlabelled sample `name` in Prometheus text exposition
/// format.
#[must_use]
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(char::is_whitespace)?;
        (n == name).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// `Tcp: OutSegs` (segments sent, host-wide) from the text of `/proc/net/snmp`.
///
/// The file holds, per protocol, a line of names and a line of values, both
/// starting with the protocol's name.
pub fn snmp_tcp_out_segs(snmp: &str) -> anyhow::Result<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp
        .next()
        .ok_or_else(|| anyhow!("/proc/net/snmp: no Tcp lines"))?;
    let values = tcp
        .next()
        .ok_or_else(|| anyhow!("/proc/net/snmp: no Tcp value line"))?;
    let idx = names
        .split_whitespace()
        .position(|n| n == "OutSegs")
        .ok_or_else(|| anyhow!("/proc/net/snmp: no Tcp OutSegs column"))?;
    values
        .split_whitespace()
        .nth(idx)
        .ok_or_else(|| anyhow!("/proc/net/snmp: Tcp value line too short"))?
        .parse()
        .context("Tcp OutSegs value")
}

/// The first `model name` in `/proc/cpuinfo`, if any.
#[must_use]
pub fn cpuinfo_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Captured on the bench host (a glommio gateway, comm with a space and
    // parentheses to exercise the last-')' rule).
    const STAT: &str = "4242 (gate (way) x) S 1 4242 4242 0 -1 4194560 2311 0 0 0 \
        157 43 0 0 20 0 5 0 123456 123456789 3000 18446744073709551615 1 1 0 0 0 0 \
        0 4096 17664 0 0 0 17 1 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tgateway\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 1049104 kB\nVmSize:\t 1049104 kB\nVmHWM:\t   40960 kB\n\
        VmRSS:\t   38412 kB\nRssAnon:\t   20000 kB\nThreads:\t5\n";

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InHdrErrors\n\
        Ip: 1 64 1000 0\n\
        Icmp: InMsgs InErrors\nIcmp: 3 0\n\
        Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails \
        EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
        Tcp: 1 200 120000 -1 5021 5010 3 7 12 987654 876543 2 0 15 0\n\
        Udp: InDatagrams NoPorts\nUdp: 10 0\n";

    #[test]
    fn stat_sums_utime_and_stime_after_the_last_paren() {
        assert_eq!(stat_cpu_ticks(STAT).unwrap(), 157 + 43);
    }

    #[test]
    fn stat_rejects_truncated_text() {
        assert!(stat_cpu_ticks("1 (x) S 1 2").is_err());
        assert!(stat_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn status_reads_vm_rss() {
        assert_eq!(status_vm_rss_kib(STATUS).unwrap(), 38412);
        assert!(status_vm_rss_kib("Name:\tx\n").is_err());
    }

    #[test]
    fn snmp_reads_tcp_out_segs_by_column_name() {
        assert_eq!(snmp_tcp_out_segs(SNMP).unwrap(), 876_543);
        assert!(snmp_tcp_out_segs("Ip: a\nIp: 1\n").is_err());
    }

    #[test]
    fn cpus_allowed_list_and_metrics_values() {
        let st = "Name:\tgateway\nCpus_allowed:\t1\nCpus_allowed_list:\t0\nMems_allowed:\t1\n";
        assert_eq!(status_cpus_allowed_list(st).as_deref(), Some("0"));
        assert_eq!(status_cpus_allowed_list("Name:\tx\n"), None);
        let m = "# HELP gateway_slow_consumer_events_total x\n\
                 # TYPE gateway_slow_consumer_events_total counter\n\
                 gateway_slow_consumer_events_total 42\n\
                 gateway_deliveries_total 1.5e6\n";
        assert_eq!(
            prometheus_value(m, "gateway_slow_consumer_events_total"),
            Some(42.0)
        );
        assert_eq!(prometheus_value(m, "gateway_deliveries_total"), Some(1.5e6));
        assert_eq!(prometheus_value(m, "gateway_deliveries"), None);
    }

    #[test]
    fn cpuinfo_model_name() {
        let c = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpuinfo_model(c).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpuinfo_model("processor: 0\n"), None);
    }
}
