use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Now, written the way every depot date is written: UTC, milliseconds, `Z`
/// (`2020-07-27T16:02:31.394Z`).
pub fn now_iso() -> String {
    format_iso(OffsetDateTime::now_utc())
}

pub fn format_iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).expect("formatting a UTC date cannot fail")
}

/// Reads a date in either accepted form: RFC 3339 (with `Z` or an offset) or bkrepo's
/// local date-time without zone (`2020-07-27T16:02:31.394`), taken as UTC.
pub fn parse_iso(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let local =
        format_description!(version = 2, "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(s, &local).ok().map(|p| p.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_local_form() {
        let now = now_iso();
        assert!(now.ends_with('Z') && now.len() == 24, "{now}");
        assert!(parse_iso(&now).is_some());
        let a = parse_iso("2020-07-27T16:02:31.394").unwrap();
        let b = parse_iso("2020-07-27T16:02:31.394Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_iso(a), "2020-07-27T16:02:31.394Z");
        assert!(parse_iso("2020-07-27").is_none());
    }
}
