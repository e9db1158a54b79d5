//! serde_json's parse errors in orjson's words (`JSONDecodeError.msg`), and orjson's nesting limit.

/// serde_json's error as orjson words it (`exc.msg`), for the common failures.
pub fn json_error(raw: &[u8], e: &serde_json::Error) -> String {
    if raw.is_empty() {
        return "Input is a zero-length, empty document".into();
    }
    if std::str::from_utf8(raw).is_err() {
        return "str is not valid UTF-8: surrogates not allowed".into();
    }
    if raw.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return "input data is empty".into();
    }
    let full = e.to_string();
    let msg = full.rsplit_once(" at line ").map(|(m, _)| m).unwrap_or(&full);
    if e.is_eof() {
        return "unexpected end of data".into();
    }
    let col = e.column();
    let line = e.line();
    // The byte serde_json stopped at (1-based line and column).
    let mut pos = 0usize;
    let mut l = 1;
    while l < line && pos < raw.len() {
        if raw[pos] == b'\n' {
            l += 1;
        }
        pos += 1;
    }
    let at = raw.get(pos + col.saturating_sub(1)).copied();
    match msg {
        "expected value" => match at {
            Some(b't') => "invalid literal, expected 'true'".into(),
            Some(b'f') => "invalid literal, expected 'false'".into(),
            Some(b'n') => "invalid literal, expected 'null'".into(),
            Some(b'+' | b'.') => "no digit after sign".into(),
            _ => "unexpected character, expected a JSON value".into(),
        },
        "expected ident" => match raw.get(pos + col.saturating_sub(1)).copied() {
            _ => {
                // The literal serde_json was reading: look back to its first letter.
                let mut i = (pos + col).saturating_sub(1).min(raw.len());
                while i > 0 && raw[i - 1].is_ascii_alphabetic() {
                    i -= 1;
                }
                match raw.get(i) {
                    Some(b't') => "invalid literal, expected 'true'".into(),
                    Some(b'f') => "invalid literal, expected 'false'".into(),
                    _ => "invalid literal, expected 'null'".into(),
                }
            }
        },
        "trailing characters" => "unexpected content after document".into(),
        "trailing comma" => "trailing comma is not allowed".into(),
        "expected `:`" => "unexpected character, expected ':' after key".into(),
        "expected `,` or `]`" => "unexpected character, expected ',' or ']'".into(),
        "expected `,` or `}`" => "unexpected character, expected ',' or '}'".into(),
        "key must be a string" => "unexpected character, expected a string key".into(),
        "number out of range" => "number is infinity when parsed as double".into(),
        "lone leading surrogate in hex escape" | "unexpected end of hex escape" | "invalid unicode code point" => {
            escape_error(raw, pos + col).into()
        }
        "control character (\\u0000-\\u001F) found while parsing a string" => {
            "unexpected control character in string".into()
        }
        "invalid escape" => "invalid escaped sequence in string".into(),
        "invalid number" => number_error(raw, (pos + col).saturating_sub(1)).into(),
        other => other.to_string(),
    }
}

/// orjson's nesting limit: deeper documents are refused before parsing (so the parser's own
/// recursion stays bounded).
pub const JSON_DEPTH: usize = 1024;

/// The deepest nesting of arrays and objects in JSON text (brackets inside strings ignored).
pub fn max_depth(raw: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in raw {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// orjson's words for the bad `\\u` escape before byte `end`.
fn escape_error(raw: &[u8], end: usize) -> &'static str {
    let end = end.min(raw.len());
    let hex4 = |i: usize| -> Option<u32> {
        let t = raw.get(i..i + 4)?;
        u32::from_str_radix(std::str::from_utf8(t).ok()?, 16).ok()
    };
    // The first `\u` escape of the run of escapes that ends near `end`.
    let mut k = end.saturating_sub(1);
    let start = loop {
        if raw.get(k..k + 2) == Some(b"\\u") && (k < 6 || raw.get(k - 6..k - 4) != Some(b"\\u")) {
            break Some(k);
        }
        if k == 0 || end - k > 14 {
            break None;
        }
        k -= 1;
    };
    let Some(k) = start else { return "invalid escaped sequence in string" };
    match hex4(k + 2) {
        None => "invalid escaped sequence in string",
        Some(0xDC00..=0xDFFF) => "invalid high surrogate in string",
        Some(0xD800..=0xDBFF) => {
            if raw.get(k + 6..k + 8) == Some(b"\\u") {
                match hex4(k + 8) {
                    None => "invalid escaped sequence in string",
                    Some(_) => "invalid low surrogate in string",
                }
            } else {
                "no low surrogate in string"
            }
        }
        Some(_) => "invalid escaped sequence in string",
    }
}

/// orjson's words for the malformed number around byte `at`.
fn number_error(raw: &[u8], at: usize) -> &'static str {
    let num = |c: u8| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
    let at = at.min(raw.len());
    let mut i = at;
    while i > 0 && num(raw[i - 1]) {
        i -= 1;
    }
    let mut j = at;
    while j < raw.len() && num(raw[j]) {
        j += 1;
    }
    let tok = &raw[i..j];
    let digit_at = |k: usize| tok.get(k).is_some_and(u8::is_ascii_digit);
    let mut k = 0;
    if tok.first() == Some(&b'-') {
        if !digit_at(1) {
            return "no digit after sign";
        }
        k = 1;
    }
    if tok.get(k) == Some(&b'0') && digit_at(k + 1) {
        return "number with leading zero is not allowed";
    }
    while digit_at(k) {
        k += 1;
    }
    if tok.get(k) == Some(&b'.') {
        k += 1;
        if !digit_at(k) {
            return "no digit after decimal point";
        }
        while digit_at(k) {
            k += 1;
        }
    }
    if matches!(tok.get(k), Some(b'e' | b'E')) {
        return "no digit after exponent sign";
    }
    "invalid number"
}
