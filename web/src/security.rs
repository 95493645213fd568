//! Middleware that applies to every request: security headers, path sanity, body size, origin.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::WebState;
use crate::pages;

/// The Content-Security-Policy of every response: scripts and styles only from this origin
/// (`/static/`), no inline code, no framing, forms only to this origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers; `no-store` on everything but the static files.
pub async fn headers(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    if state.config().hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if is_static {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=3600"),
        );
    } else {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// Whether a raw request path tries to leave its folder: a `.` or `..` segment (also
/// percent-encoded, also doubly encoded), a backslash, or a NUL, in any spelling.
pub fn is_bad_path(raw: &str) -> bool {
    // Decode up to three times so that %252e%252e is seen as well.
    let mut path = raw.to_string();
    for _ in 0..3 {
        let lower = path.to_ascii_lowercase();
        if lower.contains('\\') || lower.contains('\0') || lower.contains("%00") {
            return true;
        }
        if path.split('/').skip(1).any(|seg| seg == ".." || seg == ".") {
            return true;
        }
        let decoded: String = percent_decode(&path);
        if decoded == path {
            break;
        }
        path = decoded;
    }
    false
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// 400 for paths that try to climb out of their folder (nothing here reads files, so this is
/// defence in depth and a clear answer to scanners).
pub async fn reject_bad_paths(req: Request, next: Next) -> Response {
    if is_bad_path(req.uri().path()) {
        return pages::message_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The path is not allowed.",
        );
    }
    next.run(req).await
}

/// 413 for a declared body over the limit, before anything reads it (bodies without a length
/// are cut at the limit by `DefaultBodyLimit` and the CSRF check).
pub async fn body_limit(State(state): State<WebState>, req: Request, next: Next) -> Response {
    let limit = state.config().body_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than {limit} bytes."),
        )
            .into_response();
    }
    next.run(req).await
}

/// Refuses unsafe requests that a browser marks as coming from another site, the login
/// included. `Sec-Fetch-Site` decides when the browser sends it (`same-origin` and `none` pass);
/// otherwise `Origin`, if present, must name this host (`Origin: null` does not).
pub async fn origin_check(State(_state): State<WebState>, req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && is_cross_site(&req) {
        return pages::message_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This request came from another site (Origin or Sec-Fetch-Site header), so it was not carried out.",
        );
    }
    next.run(req).await
}

fn is_cross_site(req: &Request) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str().unwrap_or(""), "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .or_else(|| {
            req.uri()
                .authority()
                .map(|a| a.as_str().to_ascii_lowercase())
        });
    let origin_host = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .map(str::to_ascii_lowercase)
    });
    origin_host.is_none() || origin_host != host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_spellings() {
        for p in [
            "/static/../../etc/passwd",
            "/static/%2e%2e/%2e%2e/etc/passwd",
            "/static/%2E%2E%2Fetc%2Fpasswd",
            "/static/..%2f..%2fetc%2fpasswd",
            "/static/%252e%252e/%252e%252e/etc/passwd",
            "/static/..\\..\\etc\\passwd",
            "/static/.%2e/x",
            "/static/style.css%00.js",
            "/./users",
        ] {
            assert!(is_bad_path(p), "{p}");
        }
        for p in [
            "/",
            "/static/style.css",
            "/users/al.ice",
            "/certs/issued/0A1B/legacy.p12",
        ] {
            assert!(!is_bad_path(p), "{p}");
        }
    }
}
