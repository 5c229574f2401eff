//! Series keys: the exact, unambiguous identity of a list of label values, built without formatting.

/// Exact, unambiguous key of a label-value list: `("ab","c")` and `("a","bc")` differ.
pub fn series_key<S: AsRef<str>>(values: &[S]) -> String {
    let mut key = String::new();
    push_series_key(&mut key, values);
    key
}

/// Appends `n` in decimal, digits by hand: the formatting machinery costs more than the rest of a
/// series key, and than the rest of a count in an exposition.
pub fn write_uint(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// Appends the key of `values` (each as its byte length in decimal, `:`, the value) to `key`, for
/// callers that reuse one buffer: the request path and the master's report handling, per series.
pub fn push_series_key<S: AsRef<str>>(key: &mut String, values: &[S]) {
    key.reserve(values.iter().map(|v| v.as_ref().len() + 4).sum());
    for v in values {
        let v = v.as_ref();
        write_uint(key, v.len() as u64);
        key.push(':');
        key.push_str(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_exact() {
        assert_ne!(series_key(&["ab", "c"]), series_key(&["a", "bc"]));
        assert_ne!(series_key(&["1:a"]), series_key(&["1", "a"]));
        assert_eq!(
            series_key(&["", "x".repeat(1234).as_str()]),
            format!("0:1234:{}", "x".repeat(1234))
        );
    }
}
