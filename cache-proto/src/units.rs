//! Human units in config files: byte sizes (`"4MiB"`, `"2GiB"`, `1048576`) and durations
//! (`"500ms"`, `"5s"`, `"2m"`). Parsing is strict: an unknown suffix is an error that quotes the text.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A number of bytes, written in config as an integer or a string with a binary or decimal suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a byte size (e.g. \"4MiB\")"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "TiB" | "T" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => return Err(format!("{s:?}: unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        for (name, size) in UNITS {
            if self.0 >= size {
                return write!(f, "{:.1}{name}", self.0 as f64 / size as f64);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

/// Written back as config text (`"4MiB"`, or `"1536KiB"`: whole units, never rounded).
impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 >= 1 << 10 && !self.0.is_multiple_of(1 << 10) {
            return s.serialize_u64(self.0);
        }
        s.collect_str(self)
    }
}

/// A duration written in config as `"250ms"`, `"5s"`, `"2m"`, `"6h"` or `"7d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. \"5s\")"))?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            other => return Err(format!("{s:?}: unknown duration unit {other:?} (use ms, s, m, h, d)")),
        };
        Ok(Span(d))
    }
}

/// Whole seconds as `"5s"`, anything else as milliseconds (`"250ms"`; sub-millisecond parts are
/// cut, as config text cannot state them).
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 && !self.0.is_zero() {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("4MiB".parse::<ByteSize>(), Ok(ByteSize(4 << 20)));
        assert_eq!("2GiB".parse::<ByteSize>(), Ok(ByteSize(2 << 30)));
        assert_eq!("64 KiB".parse::<ByteSize>(), Ok(ByteSize(64 << 10)));
        assert_eq!("1000".parse::<ByteSize>(), Ok(ByteSize(1000)));
        assert_eq!("1MB".parse::<ByteSize>(), Ok(ByteSize(1_000_000)));
        assert!("4 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_display_round_trip() {
        for s in ["4MiB", "2GiB", "64KiB", "17B"] {
            assert_eq!(s.parse::<ByteSize>().map(|b| b.to_string()), Ok(s.to_string()));
        }
        assert_eq!(ByteSize((3 << 20) / 2).to_string(), "1536KiB");
        assert_eq!(ByteSize((3 << 20) / 2 + 1).to_string(), "1.5MiB");
    }

    #[test]
    fn spans_parse() {
        assert_eq!("250ms".parse::<Span>(), Ok(Span(Duration::from_millis(250))));
        assert_eq!("5s".parse::<Span>(), Ok(Span(Duration::from_secs(5))));
        assert_eq!("2m".parse::<Span>(), Ok(Span(Duration::from_secs(120))));
        assert!("5 hours".parse::<Span>().is_err());
        for text in ["250ms", "5s", "120s", "0ms", "1500ms"] {
            assert_eq!(text.parse::<Span>().map(|s| s.to_string()), Ok(text.to_owned()));
        }
        assert!("s".parse::<Span>().is_err());
    }
}
