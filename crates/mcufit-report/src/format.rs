//! Text helpers: HTML escaping and number formatting with units.

/// Escapes text for HTML element content and attribute values (`& < > " '`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// An integer with thousands separators: `1234567` → `"1,234,567"`.
pub fn group(v: i128) -> String {
    // digits from the right, a comma after every third (no `%`: `is_multiple_of` needs Rust 1.87, the
    // workspace supports 1.85)
    let mut rev: Vec<char> = Vec::new();
    for (i, c) in v.unsigned_abs().to_string().chars().rev().enumerate() {
        if i > 0 && i / 3 * 3 == i {
            rev.push(',');
        }
        rev.push(c);
    }
    if v < 0 {
        rev.push('-');
    }
    rev.into_iter().rev().collect()
}

/// A number with about three significant digits, trailing zeros trimmed: `2.3125` → `"2.31"`.
fn sig3(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    trim_zeros(s)
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A byte count as an MCU engineer reads it: exact below 100,000 B (`"2,368 B"`, `"71,460 B"`) unless it is
/// a whole number of KiB (`"64 KiB"`), then KiB / MiB / GiB with about three significant digits.
pub fn bytes(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    const K: f64 = 1024.0;
    const M: f64 = K * K;
    let whole = v.fract() == 0.0;
    if a < K || (a < 100_000.0 && !(whole && (v % K) == 0.0)) {
        if whole {
            format!("{} B", group(v as i128))
        } else {
            format!("{} B", sig3(v))
        }
    } else if a < M {
        format!("{} KiB", sig3(v / K))
    } else if a < K * M {
        format!("{} MiB", sig3(v / M))
    } else {
        format!("{} GiB", sig3(v / (K * M)))
    }
}

/// A count with a K / M / G suffix and about three significant digits: `1234567` → `"1.23 M"`.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    if a < 1e3 {
        if v.fract() == 0.0 {
            group(v as i128)
        } else {
            sig3(v)
        }
    } else if a < 1e6 {
        format!("{} K", sig3(v / 1e3))
    } else if a < 1e9 {
        format!("{} M", sig3(v / 1e6))
    } else {
        format!("{} G", sig3(v / 1e9))
    }
}

/// A plain number for axis ticks: at most 6 decimals, trailing zeros trimmed, K / M above 10 000.
pub fn tick(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 1e4 {
        count(v)
    } else if a < 1e-4 {
        format!("{v:.1e}")
    } else {
        trim_zeros(format!("{v:.6}"))
    }
}

/// Is `unit` a unit of bytes?
pub fn is_byte_unit(unit: &str) -> bool {
    matches!(unit.trim().to_ascii_lowercase().as_str(), "b" | "byte" | "bytes")
}

/// A value with its unit, formatted for a person: bytes as B/KiB/MiB, counts (MACs, params, instructions)
/// with K/M/G, times and everything else with about three significant digits.
pub fn value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let unit = unit.trim();
    if is_byte_unit(unit) {
        return bytes(v);
    }
    match unit {
        "%" => format!("{} %", sig3(v)),
        "" => count(v),
        u if u.eq_ignore_ascii_case("ms") || u == "s" || u == "us" || u == "µs" => format!("{} {u}", sig3(v)),
        u => format!("{} {u}", count(v)),
    }
}

/// A duration in seconds: `"0.8 s"`, `"42 s"`, `"3 min 05 s"`, `"1 h 02 min"`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "—".to_string();
    }
    if s < 60.0 {
        format!("{} s", sig3(s))
    } else if s < 3600.0 {
        let m = (s / 60.0).floor();
        format!("{} min {:02} s", m as u64, (s - m * 60.0).round() as u64)
    } else {
        let h = (s / 3600.0).floor();
        format!("{} h {:02} min", h as u64, ((s - h * 3600.0) / 60.0).round() as u64)
    }
}

/// A percentage with one decimal (or none from 100 up): `0.0987` → `"9.9 %"`.
pub fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "n/a".to_string();
    }
    let p = fraction * 100.0;
    if p.abs() >= 100.0 {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

/// A CSS length in percent, clamped to `[0, 100]`, never NaN.
pub fn css_pct(fraction: f64) -> String {
    let f = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    format!("{:.2}%", f * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("plain → text"), "plain → text");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(-1000), "-1,000");
        assert_eq!(bytes(2368.0), "2,368 B");
        assert_eq!(bytes(65536.0), "64 KiB");
        assert_eq!(bytes(263_000.0), "257 KiB");
        assert_eq!(bytes(5120.0), "5 KiB");
        assert_eq!(bytes(71_460.0), "71,460 B");
        assert_eq!(bytes(1000.0), "1,000 B");
        assert_eq!(bytes(2.0 * 1024.0 * 1024.0), "2 MiB");
        assert_eq!(bytes(1536.0 * 1024.0), "1.5 MiB");
        assert_eq!(bytes(1.5 * 1024.0 * 1024.0), "1.5 MiB");
        assert_eq!(bytes(f64::NAN), "n/a");
        assert_eq!(count(1_234_567.0), "1.23 M");
        assert_eq!(count(950.0), "950");
        assert_eq!(count(12_500.0), "12.5 K");
        assert_eq!(value(3.25, "ms"), "3.25 ms");
        assert_eq!(value(5e6, "MACs"), "5 M MACs");
        assert_eq!(value(4096.0, "bytes"), "4 KiB");
        assert_eq!(value(4000.0, "bytes"), "4,000 B");
        assert_eq!(tick(0.30000000000000004), "0.3");
        assert_eq!(tick(20000.0), "20 K");
        assert_eq!(seconds(185.0), "3 min 05 s");
        assert_eq!(percent(0.0987), "9.9 %");
        assert_eq!(css_pct(f64::NAN), "0.00%");
        assert_eq!(css_pct(2.0), "100.00%");
    }
}
