//! The embedded stylesheet, script and icon (nothing is read from the file system).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const STYLE_CSS: &str = include_str!("../static/style.css");
/// The script (progressive enhancement only).
pub const APP_JS: &str = include_str!("../static/app.js");

/// The page icon (linked from every page, so browsers do not ask for `/favicon.ico`).
pub const ICON_SVG: &str = include_str!("../static/icon.svg");

/// `GET /static/{file}`: the embedded files, 404 for any other name.
pub async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "style.css" => (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            STYLE_CSS,
        )
            .into_response(),
        "app.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            APP_JS,
        )
            .into_response(),
        "icon.svg" => ([(header::CONTENT_TYPE, "image/svg+xml")], ICON_SVG).into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
