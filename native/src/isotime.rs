//! `datetime.fromisoformat` of Python 3.11 (the C implementation's rules: calendar, ISO week and
//! basic formats, any one character between date and time, fractions of any length, offsets
//! with seconds and fractions), to microseconds since the epoch.

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for i in 0..n {
        let c = *b.get(at + i)?;
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let (y, m, d, ..) = crate::civil(days * 86_400_000_000);
    (y as i64, m as i64, d as i64)
}

/// Where the date ends in `datetime.fromisoformat` (Python 3.11's rules); None when no form fits.
fn date_end(b: &[u8]) -> Option<usize> {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let len = b.len();
    if len == 7 {
        return Some(7);
    }
    if at(4) == b'-' {
        if at(5) == b'W' {
            if len < 8 {
                return None;
            }
            if len > 8 && at(8) == b'-' {
                if len == 9 {
                    return None;
                }
                if len > 10 && at(10).is_ascii_digit() {
                    return Some(8);
                }
                return Some(10);
            }
            return Some(8);
        }
        return Some(10);
    }
    if at(4) == b'W' {
        let mut idx = 7;
        while idx < len && at(idx).is_ascii_digit() {
            idx += 1;
        }
        if idx < 9 {
            return Some(idx);
        }
        return Some(if idx % 2 == 0 { 7 } else { 8 });
    }
    Some(8)
}

/// (year, month, day) of the date part, before range checks of month and day.
fn parse_date(b: &[u8], len: usize) -> Option<(i64, i64, i64)> {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let year = digits(b, 0, 4)?;
    let mut p = 4;
    let sep = at(p) == b'-';
    if sep {
        p += 1;
    }
    if at(p) == b'W' {
        p += 1;
        let week = digits(b, p, 2)?;
        p += 2;
        let mut day = 1;
        if p < len {
            if sep {
                if at(p) != b'-' {
                    return None;
                }
                p += 1;
            }
            day = digits(b, p, 1)?;
        }
        // ISO week date -> calendar date.
        let jan1 = days_from_civil(year, 1, 1);
        let jan1_wd = (jan1 + 3).rem_euclid(7); // Monday = 0
        if week <= 0 || week >= 53 {
            let ok = week == 53 && (jan1_wd == 3 || (jan1_wd == 2 && is_leap(year)));
            if !ok {
                return None;
            }
        }
        if !(1..=7).contains(&day) {
            return None;
        }
        let mut week1 = jan1 - jan1_wd;
        if jan1_wd > 3 {
            week1 += 7;
        }
        let (y, m, d) = civil_from_days(week1 + (week - 1) * 7 + day - 1);
        return Some((y, m, d));
    }
    let month = digits(b, p, 2)?;
    p += 2;
    if sep {
        if at(p) != b'-' {
            return None;
        }
        p += 1;
    }
    let day = digits(b, p, 2)?;
    Some((year, month, day))
}

/// `HH[:MM[:SS[.fff]]]` in `b[..end]` as Python 3.11 reads it: Err for a malformed text,
/// Ok(((h, m, s, us), more)) with `more` when text follows.
fn parse_hms(b: &[u8], end: usize) -> Result<((i64, i64, i64, i64), bool), ()> {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut vals = [0i64; 3];
    let mut p = 0usize;
    let mut has_sep = true;
    for (i, slot) in vals.iter_mut().enumerate() {
        *slot = digits(b, p, 2).ok_or(())?;
        p += 2;
        let c = at(p);
        p += 1;
        if i == 0 {
            has_sep = c == b':';
        }
        if p >= end {
            return Ok(((vals[0], vals[1], vals[2], 0), c != 0 && p - 1 < b.len()));
        }
        if has_sep && c == b':' {
            continue;
        }
        if c == b'.' || c == b',' {
            break;
        }
        if !has_sep {
            p -= 1;
        } else {
            return Err(());
        }
    }
    let remains = end.saturating_sub(p);
    let n = remains.min(6);
    if n == 0 {
        return Err(());
    }
    let mut us = digits(b, p, n).ok_or(())?;
    for _ in n..6 {
        us *= 10;
    }
    p += n;
    while at(p).is_ascii_digit() {
        p += 1;
    }
    Ok(((vals[0], vals[1], vals[2], us), p < b.len()))
}

/// Microseconds since the epoch of an ISO 8601 text as Python 3.11's `datetime.fromisoformat`
/// reads it (no offset: UTC); None where Python raises ValueError.
pub fn iso_micros(text: &str) -> Option<i64> {
    if text.chars().count() < 7 {
        return None;
    }
    // Any single character may separate date and time: a non-ASCII one (at the places a
    // separator can be) is read as `T`, as Python does before parsing the ASCII text.
    let mut owned = None;
    for pos in [7usize, 8, 10] {
        if let Some((i, c)) = text.char_indices().nth(pos) {
            if !c.is_ascii() {
                owned = Some(format!("{}T{}", &text[..i], &text[i + c.len_utf8()..]));
                break;
            }
        }
    }
    let b = owned.as_deref().unwrap_or(text).as_bytes();
    let sep = date_end(b)?;
    let (y, mo, d) = parse_date(b, sep)?;
    let (mut h, mut mi, mut s, mut us, mut off_us) = (0, 0, 0, 0, 0i64);
    if sep < b.len() {
        let t = &b[sep + 1..];
        if t.is_empty() {
            return None;
        }
        let tz = t.iter().position(|c| matches!(c, b'Z' | b'+' | b'-')).unwrap_or(t.len());
        let ((hh, mm, ss, uu), more) = parse_hms(t, tz).ok()?;
        (h, mi, s, us) = (hh, mm, ss, uu);
        if tz == t.len() {
            if more {
                return None;
            }
        } else if t[tz] == b'Z' {
            if tz + 1 != t.len() {
                return None;
            }
        } else {
            let sign = if t[tz] == b'-' { -1 } else { 1 };
            let rest = &t[tz + 1..];
            let ((th, tm, ts, tu), more) = parse_hms(rest, rest.len()).ok()?;
            if more {
                return None;
            }
            let off = (th * 3600 + tm * 60 + ts) * 1_000_000 + tu;
            if off >= 86_400_000_000 {
                return None;
            }
            off_us = sign * off;
        }
    }
    if !(1..=9999).contains(&y) || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000 + us) - off_us)
}
