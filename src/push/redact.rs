//! Push targets as they may be shown: a URL's userinfo (`http://user:password@host/`) is a secret,
//! and never reaches a log line, a metric or an error message.

/// Where `url`'s userinfo lies, if it has any: between the scheme's `//` (or the start) and the last `@`
/// before the path. Text that does not parse as a URL is read the same way, since an error names it too.
fn userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("//").map_or(0, |i| i + 2);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| start..start + at)
}

/// `url` with any userinfo replaced by `***` (`http://***@host/path`).
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some(range) => format!("{}***{}", &url[..range.start], &url[range.end..]),
        None => url.to_string(),
    }
}

/// `text` (a message that may quote `url`, such as an HTTP client's error) without `url`'s userinfo,
/// whole or its password alone.
pub fn redact_in(text: &str, url: &str) -> String {
    let Some(range) = userinfo(url).filter(|r| !r.is_empty()) else {
        return text.to_string();
    };
    let secret = &url[range];
    let text = text.replace(secret, "***");
    match secret.split_once(':') {
        Some((_, password)) if !password.is_empty() => text.replace(password, "***"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_replaced() {
        assert_eq!(
            redact_url("http://alice:S3cr3t@host:9090/api/v1/write"),
            "http://***@host:9090/api/v1/write"
        );
        assert_eq!(redact_url("https://token@host"), "https://***@host");
        // An `@` in the password, and one in the path, which is not userinfo.
        assert_eq!(redact_url("http://a:p@ss@host/x@y"), "http://***@host/x@y");
        assert_eq!(redact_url("http://host/x@y"), "http://host/x@y");
        assert_eq!(redact_url("http://host?q=a@b"), "http://host?q=a@b");
        // What does not parse as a URL is redacted all the same.
        assert_eq!(redact_url("alice:S3cr3t@"), "***@");
        assert_eq!(redact_url("http://alice:S3cr3t@"), "http://***@");
        assert_eq!(redact_url("http:// bad:pw@ host/"), "http://***@ host/");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn userinfo_is_replaced_in_messages() {
        let url = "http://alice:S3cr3t@host/w";
        assert_eq!(
            redact_in("connection to alice:S3cr3t@host failed (S3cr3t)", url),
            "connection to ***@host failed (***)"
        );
        assert_eq!(redact_in("HTTP 500", "http://host/w"), "HTTP 500");
    }
}
