//! Row encodings for file sinks: CSV (RFC 4180) and JSON lines.

use std::marker::PhantomData;

/// Turns records into bytes of a line-oriented format.
pub trait Encoder<T>: Clone + Send + 'static {
    /// Written once at the start of a file (with its line ending), if any.
    fn header(&self) -> Option<&str>;
    /// Appends one record, with its line ending.
    fn encode(&mut self, record: &T, out: &mut Vec<u8>);
    /// The file name extension of part files in this format (with its dot), or empty.
    fn extension(&self) -> &'static str {
        ""
    }
}

/// A record that knows how to write itself as one CSV row (without the line ending).
pub trait CsvRecord {
    /// Appends the fields, comma-separated.
    fn write_csv(&self, out: &mut Vec<u8>);
}

/// Appends `field` to `out` quoted as RFC 4180 requires: only if it holds a comma, a quote or a
/// line break; quotes inside are doubled.
pub fn write_csv_field(out: &mut Vec<u8>, field: &str) {
    if field
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for b in field.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

macro_rules! csv_display {
    ($($t:ty),*) => {$(
        impl CsvRecord for $t {
            fn write_csv(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{}", self);
            }
        }
    )*};
}
csv_display!(
    i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, usize, isize, f32, f64, bool
);

impl CsvRecord for str {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_csv_field(out, self);
    }
}

impl CsvRecord for String {
    fn write_csv(&self, out: &mut Vec<u8>) {
        write_csv_field(out, self);
    }
}

impl<T: CsvRecord + ?Sized> CsvRecord for &T {
    fn write_csv(&self, out: &mut Vec<u8>) {
        (**self).write_csv(out)
    }
}

impl<T: CsvRecord> CsvRecord for Option<T> {
    fn write_csv(&self, out: &mut Vec<u8>) {
        // NULL is an empty field.
        if let Some(v) = self {
            v.write_csv(out);
        }
    }
}

macro_rules! csv_tuple {
    ($($name:ident : $idx:tt),+) => {
        impl<$($name: CsvRecord),+> CsvRecord for ($($name,)+) {
            fn write_csv(&self, out: &mut Vec<u8>) {
                let mut first = true;
                $(
                    if !first { out.push(b','); }
                    first = false;
                    self.$idx.write_csv(out);
                )+
                let _ = first;
            }
        }
    };
}
csv_tuple!(A: 0);
csv_tuple!(A: 0, B: 1);
csv_tuple!(A: 0, B: 1, C: 2);
csv_tuple!(A: 0, B: 1, C: 2, D: 3);
csv_tuple!(A: 0, B: 1, C: 2, D: 3, E: 4);
csv_tuple!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5);
csv_tuple!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6);
csv_tuple!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7);

/// CSV rows with an optional header line.
pub struct Csv<T> {
    header: Option<String>,
    _t: PhantomData<fn(&T)>,
}

impl<T> Clone for Csv<T> {
    fn clone(&self) -> Self {
        Csv {
            header: self.header.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> Csv<T> {
    /// CSV with `header` (column names, comma-separated) as the first line.
    pub fn with_header(header: &str) -> Self {
        Csv {
            header: Some(format!("{header}\n")),
            _t: PhantomData,
        }
    }

    /// CSV without a header line.
    pub fn without_header() -> Self {
        Csv {
            header: None,
            _t: PhantomData,
        }
    }
}

impl<T: CsvRecord + 'static> Encoder<T> for Csv<T> {
    fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    fn extension(&self) -> &'static str {
        ".csv"
    }

    #[inline]
    fn encode(&mut self, record: &T, out: &mut Vec<u8>) {
        record.write_csv(out);
        out.push(b'\n');
    }
}

/// A record that writes itself as one JSON value (an object, typically).
pub trait JsonRecord {
    /// Appends the JSON text.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// Appends `s` as a JSON string literal with the escapes RFC 8259 requires.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                use std::io::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

macro_rules! json_display {
    ($($t:ty),*) => {$(
        impl JsonRecord for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                let _ = write!(out, "{}", self);
            }
        }
    )*};
}
json_display!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, bool);

impl JsonRecord for f64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        if self.is_finite() {
            use std::io::Write;
            let _ = write!(out, "{}", self);
        } else {
            // JSON has no NaN or infinity.
            out.extend_from_slice(b"null");
        }
    }
}

impl JsonRecord for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string(out, self);
    }
}

impl JsonRecord for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string(out, self);
    }
}

impl<T: JsonRecord + ?Sized> JsonRecord for &T {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out)
    }
}

impl<T: JsonRecord> JsonRecord for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

macro_rules! json_tuple {
    ($($name:ident : $idx:tt),+) => {
        impl<$($name: JsonRecord),+> JsonRecord for ($($name,)+) {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.push(b'[');
                let mut first = true;
                $(
                    if !first { out.push(b','); }
                    first = false;
                    self.$idx.write_json(out);
                )+
                let _ = first;
                out.push(b']');
            }
        }
    };
}
json_tuple!(A: 0);
json_tuple!(A: 0, B: 1);
json_tuple!(A: 0, B: 1, C: 2);
json_tuple!(A: 0, B: 1, C: 2, D: 3);
json_tuple!(A: 0, B: 1, C: 2, D: 3, E: 4);
json_tuple!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5);

/// One JSON value per line.
pub struct JsonLines<T> {
    _t: PhantomData<fn(&T)>,
}

impl<T> Clone for JsonLines<T> {
    fn clone(&self) -> Self {
        JsonLines { _t: PhantomData }
    }
}

impl<T> Default for JsonLines<T> {
    fn default() -> Self {
        JsonLines { _t: PhantomData }
    }
}

impl<T> JsonLines<T> {
    /// JSON lines encoding.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: JsonRecord + 'static> Encoder<T> for JsonLines<T> {
    fn header(&self) -> Option<&str> {
        None
    }

    fn extension(&self) -> &'static str {
        ".jsonl"
    }

    #[inline]
    fn encode(&mut self, record: &T, out: &mut Vec<u8>) {
        record.write_json(out);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut out = Vec::new();
        (1i64, "plain", "a,b", "say \"hi\"", Some(2u8), None::<i64>).write_csv(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "1,plain,\"a,b\",\"say \"\"hi\"\"\",2,"
        );
    }

    #[test]
    fn json_escapes() {
        let mut out = Vec::new();
        (1i64, "a\"b\\c\n\u{1}", f64::NAN).write_json(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "[1,\"a\\\"b\\\\c\\n\\u0001\",null]"
        );
    }
}
