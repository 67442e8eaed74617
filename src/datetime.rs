//! STAC datetime intervals, parsed the way pystac-client does: RFC 3339 instants,
//! open ends (`..` or empty), naive times taken as UTC, and date-only ends
//! (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) expanded to the whole period (the end to
//! its last second).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::error::{Error, Result};

/// A closed time interval; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Interval {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl Interval {
    pub(crate) fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }

    /// Whether an item's `[start, end]` range (open where `None`) meets this
    /// interval: how STAC APIs match items that have a range.
    pub(crate) fn meets(&self, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> bool {
        let after_start = match (end, self.start) {
            (Some(e), Some(s)) => e >= s,
            _ => true,
        };
        let before_end = match (start, self.end) {
            (Some(s), Some(e)) => s <= e,
            _ => true,
        };
        after_start && before_end
    }

    /// The STAC API `datetime` parameter (`None` when both ends are open).
    pub(crate) fn to_stac(self) -> Option<String> {
        if self.start.is_none() && self.end.is_none() {
            return None;
        }
        let f = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_else(|| "..".into())
        };
        Some(format!("{}/{}", f(self.start), f(self.end)))
    }
}

/// Parses `START/END` or a single datetime / date.
pub(crate) fn parse_interval(s: &str) -> Result<Interval> {
    let bad = |m: &str| Error::BadDatetime(s.to_string(), m.to_string());
    let s_trim = s.trim();
    if s_trim.is_empty() {
        return Ok(Interval::default());
    }
    let iv = if let Some((a, b)) = s_trim.split_once('/') {
        if b.contains('/') {
            return Err(bad("expected START/END"));
        }
        let start = parse_end(a, false).map_err(|m| bad(&m))?;
        let end = parse_end(b, true).map_err(|m| bad(&m))?;
        Interval { start, end }
    } else {
        let start = parse_end(s_trim, false).map_err(|m| bad(&m))?;
        let end = parse_end(s_trim, true).map_err(|m| bad(&m))?;
        if start.is_none() {
            return Err(bad("a single datetime cannot be open"));
        }
        Interval { start, end }
    };
    if let (Some(a), Some(b)) = (iv.start, iv.end) {
        if a > b {
            return Err(bad("start is after end"));
        }
    }
    Ok(iv)
}

fn parse_end(s: &str, is_end: bool) -> std::result::Result<Option<DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() || s == ".." {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Some(Utc.from_utc_datetime(&t)));
        }
    }
    // date-only: the whole day / month / year
    let (start, next) = if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        (d, d + Duration::days(1))
    } else if let Some(d) = parse_year_month(s) {
        let next = if d.month() == 12 {
            NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
        };
        (d, next.ok_or("date out of range")?)
    } else if s.len() == 4 && s.chars().all(|c| c.is_ascii_digit()) {
        let y: i32 = s.parse().map_err(|_| "bad year")?;
        let d = NaiveDate::from_ymd_opt(y, 1, 1).ok_or("bad year")?;
        (d, NaiveDate::from_ymd_opt(y + 1, 1, 1).ok_or("bad year")?)
    } else {
        return Err(format!(
            "'{s}' is not an RFC 3339 datetime, a date, or '..'"
        ));
    };
    let day = if is_end { next } else { start };
    let t = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).ok_or("bad date")?);
    Ok(Some(if is_end { t - Duration::seconds(1) } else { t }))
}

fn parse_year_month(s: &str) -> Option<NaiveDate> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(t: Option<DateTime<Utc>>) -> String {
        t.map(|t| t.to_rfc3339()).unwrap_or_default()
    }

    #[test]
    fn pystac_client_expansion() {
        let iv = parse_interval("2022-09-01/2022-10-01").unwrap();
        assert_eq!(iso(iv.start), "2022-09-01T00:00:00+00:00");
        assert_eq!(iso(iv.end), "2022-10-01T23:59:59+00:00");
        let iv = parse_interval("2022-09").unwrap();
        assert_eq!(iso(iv.end), "2022-09-30T23:59:59+00:00");
        let iv = parse_interval("2022-09-01T00:00:00Z/2022-10-01T00:00:00Z").unwrap();
        assert_eq!(
            iv.to_stac().unwrap(),
            "2022-09-01T00:00:00Z/2022-10-01T00:00:00Z"
        );
        let iv = parse_interval("../2022-10-01T00:00:00").unwrap();
        assert!(iv.start.is_none());
        assert_eq!(iv.to_stac().unwrap(), "../2022-10-01T00:00:00Z");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_interval("yesterday").is_err());
        assert!(parse_interval("2022-13-01").is_err());
        assert!(parse_interval("2022-10-01/2022-09-01").is_err());
        assert!(parse_interval("a/b/c").is_err());
    }
}
