//! Numbers for people: `1,000,512`, `3.8 GiB`, `unlimited`.

use crate::readings::UNLIMITED;

/// A count with thousands separators; [`UNLIMITED`] as `unlimited`.
pub(crate) fn count(n: u64) -> String {
    if n == UNLIMITED {
        return "unlimited".to_string();
    }
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units with at most one decimal; [`UNLIMITED`] as
/// `unlimited`.
pub(crate) fn bytes(n: u64) -> String {
    if n == UNLIMITED {
        return "unlimited".to_string();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = n as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let text = format!("{scaled:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// `a / b` rounded up (`b` > 0).
pub(crate) fn div_ceil(a: u64, b: u64) -> u64 {
    if b == 0 {
        return a;
    }
    a.div_ceil(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_000_512), "1,000,512");
        assert_eq!(count(UNLIMITED), "unlimited");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(512 * 1024), "512 KiB");
        assert_eq!(bytes(8 * 1024 * 1024), "8 MiB");
        assert_eq!(bytes(1536 * 1024 * 1024), "1.5 GiB");
    }
}
