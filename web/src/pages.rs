//! The HTML pages (maud templates; every value is escaped by maud).

use std::net::Ipv4Addr;
use std::time::Instant;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::WebState;
use crate::auth::{AdminCtx, CSRF_FIELD, Flash, PendingIssue, urlencode};
use crate::backend::{
    BackendError, CertKind, IssueRequest, LogLine, RevocationReason, SessionView, SetupInfo,
    UserOptions, UserView,
};
use crate::profiles::{self, AppleAuth, Mode};
use crate::util::{format_bytes, format_date, format_duration, format_time, now_unix};

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Dashboard,
    Users,
    Certs,
    Setup,
    Accounting,
    Logs,
    Settings,
    Audit,
}

const NAV: [(Nav, &str, &str); 8] = [
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Users, "/users", "Users"),
    (Nav::Certs, "/certs", "Certificates"),
    (Nav::Setup, "/setup", "Client setup"),
    (Nav::Accounting, "/accounting", "Accounting"),
    (Nav::Logs, "/logs", "Logs"),
    (Nav::Settings, "/settings", "Settings"),
    (Nav::Audit, "/audit", "Audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Roadgate" }
            link rel="stylesheet" href="/static/style.css";
            link rel="icon" href="/static/icon.svg" type="image/svg+xml";
            script src="/static/app.js" defer {}
        }
    }
}

fn csrf_field(ctx: &AdminCtx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf); }
}

fn flash_box(flash: Option<&Flash>) -> Markup {
    html! {
        @if let Some(f) = flash {
            @if f.ok {
                div.flash.ok role="status" data-testid="flash" { (f.text) }
            } @else {
                div.flash.error role="alert" data-testid="error" { (f.text) }
            }
        }
    }
}

/// A full page with the navigation bar.
fn layout(
    state: &WebState,
    ctx: &AdminCtx,
    nav: Nav,
    title: &str,
    error: Option<&str>,
    content: Markup,
) -> Markup {
    let flash = ctx.take_flash(state);
    let error_flash = error.map(|e| Flash {
        ok: false,
        text: e.to_string(),
    });
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "Roadgate" }
                    nav.nav aria-label="Main" {
                        @for (n, href, label) in NAV {
                            @if n == nav {
                                a.active href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    div.who {
                        span data-testid="admin-name" { (ctx.name) }
                        form method="post" action="/logout" {
                            (csrf_field(ctx))
                            button type="submit" data-testid="logout-button" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (flash_box(flash.as_ref()))
                    (flash_box(error_flash.as_ref()))
                    (content)
                }
                footer { "Roadgate " (state.config().version) }
            }
        }
    }
}

fn render(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A page of its own (no session needed): errors from the middleware, 404.
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    main.login {
                        h1 { (title) }
                        div.flash.error role="alert" data-testid="error" { (text) }
                        p { a href="/" { "Back to the dashboard" } }
                    }
                }
            }
        },
    )
}

/// The login page.
pub fn login_page(status: StatusCode, next: &str, username: &str, error: Option<&str>) -> Response {
    render(
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                (head("Log in"))
                body {
                    main.login {
                        h1 { "Roadgate" }
                        div.panel {
                            @if let Some(e) = error {
                                div.flash.error role="alert" data-testid="error" { (e) }
                            }
                            form #login-form method="post" action="/login" data-testid="login-form" {
                                input type="hidden" name="next" value=(next);
                                div {
                                    label for="username" { "Administrator" }
                                    input #username type="text" name="username" value=(username)
                                        autocomplete="username" required autofocus[username.is_empty()];
                                }
                                div {
                                    label for="password" { "Password" }
                                    input #password type="password" name="password"
                                        autocomplete="current-password" required autofocus[!username.is_empty()];
                                }
                                button type="submit" data-testid="login-submit" { "Log in" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// 404 for every unknown path.
pub async fn not_found() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}

fn backend_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::Refused(_) => StatusCode::BAD_REQUEST,
        BackendError::NotFound(_) => StatusCode::NOT_FOUND,
        BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The page for a failed backend read.
fn backend_failure(
    state: &WebState,
    ctx: &AdminCtx,
    nav: Nav,
    title: &str,
    e: &BackendError,
) -> Response {
    render(
        backend_status(e),
        layout(state, ctx, nav, title, Some(&e.to_string()), html! {}),
    )
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A confirmation page, for a dangerous POST that came without `confirm=yes` (no script).
#[allow(clippy::too_many_arguments)]
fn confirm_page(
    state: &WebState,
    ctx: &AdminCtx,
    nav: Nav,
    title: &str,
    question: &str,
    action: &str,
    fields: &[(&str, &str)],
    button: &str,
    back: &str,
) -> Response {
    render(
        StatusCode::OK,
        layout(
            state,
            ctx,
            nav,
            title,
            None,
            html! {
                div.panel {
                    p { (question) }
                    form method="post" action=(action) data-testid="confirm-form" {
                        (csrf_field(ctx))
                        input type="hidden" name="confirm" value="yes";
                        @for (k, v) in fields {
                            input type="hidden" name=(k) value=(v);
                        }
                        div.buttons {
                            button.danger type="submit" data-testid="confirm-button" { (button) }
                            a.button.secondary href=(back) { "Cancel" }
                        }
                    }
                }
            },
        ),
    )
}

fn confirmed(c: &Option<String>) -> bool {
    c.as_deref() == Some("yes")
}

fn attachment(content_type: &str, filename: &str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// A file name made only of safe characters.
fn file_stem(s: &str) -> String {
    let stem: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    if stem.is_empty() {
        "certificate".into()
    } else {
        stem
    }
}

// ----------------------------------------------------------------------------------------------
// Dashboard and sessions

fn session_rows(ctx: &AdminCtx, sessions: &[SessionView]) -> Markup {
    let now = now_unix();
    html! {
        @if sessions.is_empty() {
            tr { td.empty colspan="8" { "No sessions." } }
        }
        @for s in sessions {
            @let since = u64::try_from(now).unwrap_or(0).saturating_sub(s.since_unix);
            @let who = s.user.clone().unwrap_or_else(|| "(not logged in)".into());
            tr data-testid="session-row" data-session-id=(s.id) {
                td data-label="User" {
                    strong { (who) }
                    br;
                    span.muted.small { (s.state) }
                }
                td data-label="Address" {
                    @if let Some(a) = s.address { span.mono { (a) } } @else { span.muted { "–" } }
                }
                td data-label="Client" { span.mono { (s.client) } }
                td data-label="Since" title=(format_time(s.since_unix as i64)) { (format_duration(since)) }
                td.num data-label="In" title=(format!("{} packets", s.packets_in)) { (format_bytes(s.bytes_in)) }
                td.num data-label="Out" title=(format!("{} packets", s.packets_out)) { (format_bytes(s.bytes_out)) }
                td data-label="Security" {
                    span.small { "IKE " (s.ike) } br;
                    span.small { "ESP " (s.esp) } br;
                    span.small.muted { (s.auth) }
                }
                td.actions {
                    form method="post" action=(format!("/sessions/{}/disconnect", urlencode(&s.id)))
                        data-confirm=(format!("Disconnect {who} ({})?", s.client)) {
                        (csrf_field(ctx))
                        button.danger.small type="submit" data-testid="disconnect-button"
                            data-session-id=(s.id) { "Disconnect" }
                    }
                }
            }
        }
    }
}

fn sessions_table(ctx: &AdminCtx, sessions: &[SessionView]) -> Markup {
    html! {
        div.table-wrap {
            table.cards #sessions data-testid="sessions-table" {
                thead { tr {
                    th { "User" } th { "Address" } th { "Client" } th { "Since" }
                    th.num { "In" } th.num { "Out" } th { "Security" } th { span.muted { "" } }
                } }
                tbody #sessions-body data-refresh="/sessions/table" data-refresh-seconds="5" {
                    (session_rows(ctx, sessions))
                }
            }
        }
    }
}

fn percent_class(used: u64, size: u64) -> &'static str {
    const CLASSES: [&str; 11] = [
        "w0", "w10", "w20", "w30", "w40", "w50", "w60", "w70", "w80", "w90", "w100",
    ];
    if size == 0 {
        return "w0";
    }
    let tenth = (used.min(size) * 10 + size / 2) / size;
    CLASSES[tenth.min(10) as usize]
}

/// `GET /`.
pub async fn dashboard(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
) -> Response {
    let backend = state.backend();
    let (status, sessions) = match (backend.status().await, backend.sessions().await) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(e), _) | (_, Err(e)) => {
            return backend_failure(&state, &ctx, Nav::Dashboard, "Dashboard", &e);
        }
    };
    let content = html! {
        div.stats {
            div.stat { div.label { "Sessions" } div.value data-testid="sessions-up" { (status.sessions_up) } }
            div.stat { div.label { "IKE SAs" } div.value { (status.ike_sas) } }
            div.stat {
                div.label { "Address pool" }
                div.value { (status.pool_used) span.muted.small { " / " (status.pool_size) } }
                div.meter { span class=(percent_class(status.pool_used, status.pool_size)) {} }
            }
            div.stat { div.label { "Uptime" } div.value { (format_duration(status.uptime_secs)) } }
            div.stat { div.label { "Version" } div.value { (status.version) } }
        }
        @let attention: Vec<_> = status.checks.iter().filter(|c| c.level != "ok").collect();
        @if !status.checks.is_empty() {
            details.panel.checks open[!attention.is_empty()] data-testid="checks" {
                summary {
                    "Checks "
                    @if attention.is_empty() {
                        span.muted.small { "(all ok)" }
                    } @else {
                        span.small { "(" (attention.len()) " to look at)" }
                    }
                }
                ul.checks {
                    @for c in &status.checks {
                        li class={ "check check-" (c.level) } {
                            strong { (c.level) ": " } (c.text)
                        }
                    }
                }
            }
        }
        h2 { "Sessions " span #refreshed.muted.small {} }
        (sessions_table(&ctx, &sessions))
        @if !status.counters.is_empty() {
            details.panel {
                summary { "Counters" }
                dl.kv {
                    @for (k, v) in &status.counters { dt { (k) } dd.mono { (v) } }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        layout(&state, &ctx, Nav::Dashboard, "Dashboard", None, content),
    )
}

/// `GET /sessions/table`: the rows of the session table, for the auto-refresh.
pub async fn sessions_fragment(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
) -> Response {
    match state.backend().sessions().await {
        Ok(list) => render(StatusCode::OK, session_rows(&ctx, &list)),
        Err(e) => (backend_status(&e), e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    confirm: Option<String>,
}

/// `POST /sessions/{id}/disconnect`.
pub async fn disconnect(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !confirmed(&form.confirm) {
        return confirm_page(
            &state,
            &ctx,
            Nav::Dashboard,
            "Disconnect",
            &format!("Disconnect session {id}? The client is told to go and may reconnect."),
            &format!("/sessions/{}/disconnect", urlencode(&id)),
            &[],
            "Disconnect",
            "/",
        );
    }
    let outcome = state.backend().disconnect(&id).await;
    ctx.audit_outcome(&state, "session.disconnect", &id, &outcome)
        .await;
    match outcome {
        Ok(n) => {
            let text = if n == 0 {
                format!("Session {id} had already ended.")
            } else {
                format!("Disconnected session {id}.")
            };
            ctx.flash(&state, true, text);
            see_other("/")
        }
        Err(e) => {
            ctx.flash(&state, false, e.to_string());
            see_other("/")
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Users

#[derive(Deserialize, Default)]
pub struct UserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    static_ip: String,
    #[serde(default)]
    max_sessions: String,
    enabled: Option<String>,
}

/// The options a user form asks for, or what is wrong with them.
fn parse_options(
    enabled: bool,
    static_ip: &str,
    max_sessions: &str,
) -> Result<UserOptions, String> {
    let static_ip = match static_ip.trim() {
        "" => None,
        s => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("“{s}” is not an IPv4 address."))?,
        ),
    };
    let max_sessions = match max_sessions.trim() {
        "" => None,
        s => Some(
            s.parse::<u32>()
                .map_err(|_| format!("“{s}” is not a session limit (a whole number)."))?,
        ),
    };
    Ok(UserOptions {
        enabled,
        static_ip,
        max_sessions,
    })
}

fn users_page(
    state: &WebState,
    ctx: &AdminCtx,
    users: &[UserView],
    error: Option<&str>,
    form: &UserForm,
) -> Markup {
    let content = html! {
        div.panel {
            h2 { "Add a user" }
            form.grid #user-form method="post" action="/users" data-testid="user-form" {
                (csrf_field(ctx))
                div { label for="new-name" { "Name" }
                    input #new-name type="text" name="name" value=(form.name) required autocomplete="off"; }
                div { label for="new-password" { "Password" }
                    input #new-password type="password" name="password" required autocomplete="new-password"; }
                div { label for="new-static-ip" { "Static address (optional)" }
                    input #new-static-ip type="text" name="static_ip" value=(form.static_ip)
                        placeholder="from the pool" inputmode="decimal"; }
                div { label for="new-max-sessions" { "Session limit (optional)" }
                    input #new-max-sessions type="number" min="0" name="max_sessions"
                        value=(form.max_sessions) placeholder="server default"; }
                div { label.check { input type="checkbox" name="enabled" value="on" checked; "Enabled" } }
                div { button type="submit" data-testid="user-add-button" { "Add user" } }
            }
        }
        h2 { "Users" }
        div.table-wrap {
            table.cards #users data-testid="users-table" {
                thead { tr { th { "Name" } th { "Status" } th { "Static address" } th { "Session limit" } th {} } }
                tbody {
                    @if users.is_empty() { tr { td.empty colspan="5" { "No users yet." } } }
                    @for u in users {
                        @let path = format!("/users/{}", urlencode(&u.name));
                        tr data-testid="user-row" data-user=(u.name) {
                            td data-label="Name" { a href=(path) { strong { (u.name) } } }
                            td data-label="Status" {
                                @if u.enabled { span.badge.on { "enabled" } } @else { span.badge.off { "disabled" } }
                            }
                            td data-label="Static address" {
                                @if let Some(ip) = u.static_ip { span.mono { (ip) } } @else { span.muted { "pool" } }
                            }
                            td data-label="Session limit" {
                                @if let Some(m) = u.max_sessions { (m) } @else { span.muted { "default" } }
                            }
                            td.actions {
                                a.button.secondary.small href=(path) { "Edit" }
                                " "
                                form method="post" action=(format!("{path}/enabled")) {
                                    (csrf_field(ctx))
                                    @if u.enabled {
                                        input type="hidden" name="enabled" value="false";
                                        button.secondary.small type="submit" data-testid="user-disable" { "Disable" }
                                    } @else {
                                        input type="hidden" name="enabled" value="true";
                                        button.secondary.small type="submit" data-testid="user-enable" { "Enable" }
                                    }
                                }
                                " "
                                form method="post" action=(format!("{path}/delete"))
                                    data-confirm=(format!("Delete the user {}?", u.name)) {
                                    (csrf_field(ctx))
                                    button.danger.small type="submit" data-testid="user-delete" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(state, ctx, Nav::Users, "Users", error, content)
}

/// `GET /users`.
pub async fn users(State(state): State<WebState>, Extension(ctx): Extension<AdminCtx>) -> Response {
    match state.backend().list_users().await {
        Ok(list) => render(
            StatusCode::OK,
            users_page(&state, &ctx, &list, None, &UserForm::default()),
        ),
        Err(e) => backend_failure(&state, &ctx, Nav::Users, "Users", &e),
    }
}

/// `POST /users`.
pub async fn add_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Form(mut form): Form<UserForm>,
) -> Response {
    let password = Zeroizing::new(std::mem::take(&mut form.password));
    let name = form.name.trim().to_string();
    let result = if name.is_empty() || password.is_empty() {
        Err(BackendError::Refused(
            "A user needs a name and a password.".into(),
        ))
    } else {
        match parse_options(form.enabled.is_some(), &form.static_ip, &form.max_sessions) {
            Err(msg) => Err(BackendError::Refused(msg)),
            Ok(opts) => state.backend().add_user(&name, &password, &opts).await,
        }
    };
    ctx.audit_outcome(&state, "user.add", &name, &result).await;
    match result {
        Ok(()) => {
            ctx.flash(&state, true, format!("Added the user {name}."));
            see_other("/users")
        }
        Err(e) => {
            let list = state.backend().list_users().await.unwrap_or_default();
            render(
                backend_status(&e),
                users_page(&state, &ctx, &list, Some(&e.to_string()), &form),
            )
        }
    }
}

async fn find_user(state: &WebState, name: &str) -> Result<UserView, BackendError> {
    state
        .backend()
        .list_users()
        .await?
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| BackendError::NotFound(format!("There is no user named {name}.")))
}

fn edit_user_page(
    state: &WebState,
    ctx: &AdminCtx,
    user: &UserView,
    error: Option<&str>,
) -> Markup {
    let path = format!("/users/{}", urlencode(&user.name));
    let ip = user.static_ip.map(|i| i.to_string()).unwrap_or_default();
    let max = user.max_sessions.map(|m| m.to_string()).unwrap_or_default();
    let content = html! {
        p { a href="/users" { "← All users" } }
        div.cols {
            div.panel {
                h2 { "Settings" }
                form.grid #user-edit-form method="post" action=(path) data-testid="user-edit-form" {
                    (csrf_field(ctx))
                    div { label for="static-ip" { "Static address" }
                        input #static-ip type="text" name="static_ip" value=(ip) placeholder="from the pool"; }
                    div { label for="max-sessions" { "Session limit" }
                        input #max-sessions type="number" min="0" name="max_sessions" value=(max) placeholder="server default"; }
                    div { label.check { input type="checkbox" name="enabled" value="on" checked[user.enabled]; "Enabled" } }
                    div { button type="submit" data-testid="user-save-button" { "Save" } }
                }
            }
            div.panel {
                h2 { "Reset the password" }
                form.grid #password-form method="post" action=(format!("{path}/password")) data-testid="password-form" {
                    (csrf_field(ctx))
                    div { label for="pw1" { "New password" }
                        input #pw1 type="password" name="password" required autocomplete="new-password"; }
                    div { label for="pw2" { "Again" }
                        input #pw2 type="password" name="password2" required autocomplete="new-password"; }
                    div { button type="submit" data-testid="password-button" { "Set password" } }
                }
            }
        }
        div.panel {
            h2 { "Delete" }
            p.muted { "Deleting a user does not end its sessions; disconnect them on the dashboard." }
            form method="post" action=(format!("{path}/delete")) data-confirm=(format!("Delete the user {}?", user.name)) {
                (csrf_field(ctx))
                button.danger type="submit" data-testid="user-delete" { "Delete " (user.name) }
            }
        }
    };
    layout(
        state,
        ctx,
        Nav::Users,
        &format!("User {}", user.name),
        error,
        content,
    )
}

/// `GET /users/{name}`.
pub async fn edit_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
) -> Response {
    match find_user(&state, &name).await {
        Ok(u) => render(StatusCode::OK, edit_user_page(&state, &ctx, &u, None)),
        Err(e) => backend_failure(&state, &ctx, Nav::Users, "User", &e),
    }
}

/// `POST /users/{name}`.
pub async fn update_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
    Form(form): Form<UserForm>,
) -> Response {
    let result = match parse_options(form.enabled.is_some(), &form.static_ip, &form.max_sessions) {
        Err(msg) => Err(BackendError::Refused(msg)),
        Ok(opts) => state.backend().update_user(&name, &opts).await,
    };
    ctx.audit_outcome(&state, "user.update", &name, &result)
        .await;
    match result {
        Ok(()) => {
            ctx.flash(&state, true, format!("Saved the user {name}."));
            see_other("/users")
        }
        Err(e) => match find_user(&state, &name).await {
            Ok(u) => render(
                backend_status(&e),
                edit_user_page(&state, &ctx, &u, Some(&e.to_string())),
            ),
            Err(e2) => backend_failure(&state, &ctx, Nav::Users, "User", &e2),
        },
    }
}

#[derive(Deserialize)]
pub struct EnabledForm {
    enabled: String,
}

/// `POST /users/{name}/enabled`.
pub async fn set_enabled(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
    Form(form): Form<EnabledForm>,
) -> Response {
    let enable = form.enabled == "true";
    let action = if enable {
        "user.enable"
    } else {
        "user.disable"
    };
    let result = match find_user(&state, &name).await {
        Ok(u) => {
            let opts = UserOptions {
                enabled: enable,
                static_ip: u.static_ip,
                max_sessions: u.max_sessions,
            };
            state.backend().update_user(&name, &opts).await
        }
        Err(e) => Err(e),
    };
    ctx.audit_outcome(&state, action, &name, &result).await;
    match result {
        Ok(()) => {
            let verb = if enable { "Enabled" } else { "Disabled" };
            ctx.flash(&state, true, format!("{verb} the user {name}."));
        }
        Err(e) => {
            ctx.flash(&state, false, e.to_string());
        }
    }
    see_other("/users")
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

/// `POST /users/{name}/password`.
pub async fn set_password(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let pw = Zeroizing::new(form.password);
    let pw2 = Zeroizing::new(form.password2);
    let result = if pw.is_empty() {
        Err(BackendError::Refused("The new password is empty.".into()))
    } else if *pw != *pw2 {
        Err(BackendError::Refused("The two passwords differ.".into()))
    } else {
        state.backend().set_password(&name, &pw).await
    };
    let back = format!("/users/{}", urlencode(&name));
    ctx.audit_outcome(&state, "user.password", &name, &result)
        .await;
    match result {
        Ok(()) => {
            ctx.flash(&state, true, format!("Set a new password for {name}."));
            see_other(&back)
        }
        Err(e) => match find_user(&state, &name).await {
            Ok(u) => render(
                backend_status(&e),
                edit_user_page(&state, &ctx, &u, Some(&e.to_string())),
            ),
            Err(e2) => backend_failure(&state, &ctx, Nav::Users, "User", &e2),
        },
    }
}

/// `POST /users/{name}/delete`.
pub async fn delete_user(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(name): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let back = format!("/users/{}", urlencode(&name));
    if !confirmed(&form.confirm) {
        return confirm_page(
            &state,
            &ctx,
            Nav::Users,
            "Delete a user",
            &format!("Delete the user {name}? This cannot be undone."),
            &format!("{back}/delete"),
            &[],
            "Delete",
            &back,
        );
    }
    let outcome = state.backend().delete_user(&name).await;
    ctx.audit_outcome(&state, "user.delete", &name, &outcome)
        .await;
    match outcome {
        Ok(()) => {
            ctx.flash(&state, true, format!("Deleted the user {name}."));
        }
        Err(e) => {
            ctx.flash(&state, false, e.to_string());
        }
    }
    see_other("/users")
}

// ----------------------------------------------------------------------------------------------
// Certificates

#[derive(Deserialize, Default)]
pub struct IssueForm {
    #[serde(default)]
    common_name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    validity_days: String,
}

/// The issue request a form asks for, or what is wrong with it.
pub fn parse_issue(
    common_name: &str,
    kind: &str,
    user: &str,
    validity_days: &str,
) -> Result<IssueRequest, String> {
    let common_name = common_name.trim();
    if common_name.is_empty() {
        return Err("A certificate needs a name (the common name).".into());
    }
    let kind =
        CertKind::parse(kind).ok_or_else(|| format!("“{kind}” is not a kind of certificate."))?;
    let validity_days = match validity_days.trim() {
        "" => 365,
        s => s
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| format!("“{s}” is not a validity in days (1 to 3650)."))?,
    };
    let user = match user.trim() {
        "" => None,
        u => Some(u.to_string()),
    };
    if kind == CertKind::User && user.is_none() {
        return Err("A user certificate needs the user it belongs to.".into());
    }
    Ok(IssueRequest {
        common_name: common_name.to_string(),
        kind,
        user,
        validity_days,
    })
}

fn certs_page(
    state: &WebState,
    ctx: &AdminCtx,
    certs: &[crate::backend::CertView],
    users: &[UserView],
    error: Option<&str>,
    form: &IssueForm,
) -> Markup {
    let now = now_unix();
    let kind = if form.kind.is_empty() {
        "user"
    } else {
        form.kind.as_str()
    };
    let days = if form.validity_days.is_empty() {
        "365"
    } else {
        form.validity_days.as_str()
    };
    let content = html! {
        div.panel {
            h2 { "Issue a certificate" }
            form.grid #cert-issue-form method="post" action="/certs" data-testid="cert-issue-form" {
                (csrf_field(ctx))
                div { label for="cert-kind" { "For" }
                    select #cert-kind name="kind" {
                        option value="user" selected[kind == "user"] { "a user" }
                        option value="device" selected[kind == "device"] { "a device" }
                        option value="server" selected[kind == "server"] { "a VPN server" }
                    }
                }
                div { label for="cert-cn" { "Name (common name)" }
                    input #cert-cn type="text" name="common_name" value=(form.common_name) required
                        placeholder="alice, or laptop-17"; }
                div { label for="cert-user" { "User (for a user certificate)" }
                    select #cert-user name="user" {
                        option value="" { "—" }
                        @for u in users { option value=(u.name) selected[form.user == u.name] { (u.name) } }
                    }
                }
                div { label for="cert-days" { "Valid for (days)" }
                    input #cert-days type="number" min="1" max="3650" name="validity_days" value=(days); }
                div { button type="submit" data-testid="cert-issue-button" { "Issue" } }
            }
            p.muted.small {
                "The private key and certificate are offered as two PKCS#12 files with a one-time password. "
                "The password is shown once and each file can be downloaded once, within a few minutes."
            }
        }
        div.buttons {
            a.button.secondary href="/certs/ca.crt" data-testid="download-ca" { "CA certificate" }
            a.button.secondary href="/certs/crl.der" data-testid="download-crl" { "Revocation list (CRL)" }
        }
        h2 { "Certificates" }
        div.table-wrap {
            table.cards #certs data-testid="certs-table" {
                thead { tr { th { "Subject" } th { "Kind" } th { "User" } th { "Serial" } th { "Valid" } th { "Status" } th {} } }
                tbody {
                    @if certs.is_empty() { tr { td.empty colspan="7" { "No certificates yet." } } }
                    @for c in certs {
                        tr data-testid="cert-row" data-serial=(c.serial) {
                            td data-label="Subject" { (c.subject) }
                            td data-label="Kind" { (c.kind.as_str()) }
                            td data-label="User" { (c.user.as_deref().unwrap_or("–")) }
                            td data-label="Serial" { span.mono.small { (c.serial) } }
                            td data-label="Valid" { (format_date(c.not_before)) " – " (format_date(c.not_after)) }
                            td data-label="Status" {
                                @if let Some(r) = &c.revoked {
                                    span.badge.off { "revoked" } " "
                                    span.small.muted { (format_date(r.time)) ", " (r.reason.label()) }
                                } @else if c.not_after < now {
                                    span.badge { "expired" }
                                } @else {
                                    span.badge.on { "valid" }
                                }
                            }
                            td.actions {
                                @if c.revoked.is_none() {
                                    form method="post" action=(format!("/certs/{}/revoke", urlencode(&c.serial)))
                                        data-confirm=(format!("Revoke the certificate {}?", c.subject)) {
                                        (csrf_field(ctx))
                                        select name="reason" aria-label="Reason" {
                                            @for r in RevocationReason::ALL { option value=(r.as_str()) { (r.label()) } }
                                        }
                                        " "
                                        button.danger.small type="submit" data-testid="cert-revoke" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(state, ctx, Nav::Certs, "Certificates", error, content)
}

/// `GET /certs`.
pub async fn certs(State(state): State<WebState>, Extension(ctx): Extension<AdminCtx>) -> Response {
    let users = state.backend().list_users().await.unwrap_or_default();
    match state.backend().list_certs().await {
        Ok(list) => render(
            StatusCode::OK,
            certs_page(&state, &ctx, &list, &users, None, &IssueForm::default()),
        ),
        Err(e) => backend_failure(&state, &ctx, Nav::Certs, "Certificates", &e),
    }
}

/// The CA certificate as DER, from the backend's PEM.
pub async fn ca_der(state: &WebState) -> Option<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = state.backend().ca_cert_pem().await.ok()?;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

/// `POST /certs`.
pub async fn issue_cert(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Form(form): Form<IssueForm>,
) -> Response {
    let req = match parse_issue(
        &form.common_name,
        &form.kind,
        &form.user,
        &form.validity_days,
    ) {
        Ok(r) => Ok(r),
        Err(msg) => Err(BackendError::Refused(msg)),
    };
    let issued = match req {
        Ok(req) => state.backend().issue_cert(&req).await.map(|c| (req, c)),
        Err(e) => Err(e),
    };
    let (req, mut cert) = match issued {
        Ok(x) => x,
        Err(e) => {
            ctx.audit(
                &state,
                "cert.issue",
                form.common_name.trim(),
                &e.to_string(),
            )
            .await;
            let users = state.backend().list_users().await.unwrap_or_default();
            let certs = state.backend().list_certs().await.unwrap_or_default();
            return render(
                backend_status(&e),
                certs_page(&state, &ctx, &certs, &users, Some(&e.to_string()), &form),
            );
        }
    };
    // An Apple profile that carries the legacy PKCS#12 (for user and device certificates).
    let mobileconfig = if req.kind == CertKind::Server {
        None
    } else {
        match state.backend().client_setup().await {
            Ok(setup) => {
                let ca = ca_der(&state).await;
                profiles::mobileconfig(
                    &setup.server_name,
                    AppleAuth::Certificate {
                        p12: &cert.p12_legacy,
                        name: &req.common_name,
                    },
                    ca.as_deref(),
                    req.user.as_deref(),
                )
                .ok()
            }
            Err(_) => None,
        }
    };
    let serial = cert.serial.clone();
    let pending = PendingIssue {
        serial: serial.clone(),
        common_name: req.common_name.clone(),
        expires: Instant::now() + state.config().p12_ttl,
        password: Some(Zeroizing::new(std::mem::take(&mut cert.password))),
        legacy: Some(Zeroizing::new(std::mem::take(&mut cert.p12_legacy))),
        aes: Some(Zeroizing::new(std::mem::take(&mut cert.p12_aes))),
        mobileconfig: mobileconfig.map(Zeroizing::new),
    };
    ctx.with_session(&state, |s| {
        s.issued.retain(|p| p.serial != serial);
        s.issued.push(pending);
    });
    ctx.audit(
        &state,
        "cert.issue",
        &format!("{serial} {}", req.common_name),
        "ok",
    )
    .await;
    see_other(&format!("/certs/issued/{}", urlencode(&serial)))
}

/// What the session still holds of an issued certificate.
struct IssuedState {
    common_name: String,
    password: Option<Zeroizing<String>>,
    legacy: bool,
    aes: bool,
    mobileconfig: bool,
    minutes_left: u64,
}

/// `GET /certs/issued/{serial}`: the password (once) and the download links.
pub async fn issued(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(serial): Path<String>,
) -> Response {
    let now = Instant::now();
    let found = ctx
        .with_session(&state, |s| {
            s.issued.retain(|p| p.expires > now);
            s.issued
                .iter_mut()
                .find(|p| p.serial == serial)
                .map(|p| IssuedState {
                    common_name: p.common_name.clone(),
                    password: p.password.take(),
                    legacy: p.legacy.is_some(),
                    aes: p.aes.is_some(),
                    mobileconfig: p.mobileconfig.is_some(),
                    minutes_left: (p.expires - now).as_secs().div_ceil(60),
                })
        })
        .flatten();
    let Some(st) = found else {
        return render(
            StatusCode::NOT_FOUND,
            layout(
                &state,
                &ctx,
                Nav::Certs,
                "Certificate files",
                Some(
                    "Nothing is waiting for download for this certificate: the files are kept only for a few minutes after issuing, in the session that issued them. Revoke it and issue a new one if the files were lost.",
                ),
                html! { p { a href="/certs" { "← Certificates" } } },
            ),
        );
    };
    if st.password.is_some() {
        ctx.audit(&state, "p12.password_shown", &serial, "ok").await;
    }
    let base = format!("/certs/issued/{}", urlencode(&serial));
    let content = html! {
        p { a href="/certs" { "← Certificates" } }
        div.panel {
            dl.kv {
                dt { "Name" } dd { (st.common_name) }
                dt { "Serial" } dd.mono { (serial) }
            }
            h2 { "Password of the .p12 files" }
            @if let Some(pw) = &st.password {
                p { span.secret #p12-password data-testid="p12-password" { (pw.as_str()) } " "
                    button.secondary.small type="button" data-copy="p12-password" hidden { "Copy" } }
                div.note { strong { "Shown only this once." } " It is not stored anywhere: write it down or pass it on now." }
            } @else {
                div.note data-testid="p12-password-gone" {
                    "The password was shown when this page was first opened and is not kept. "
                    "If it is lost, revoke this certificate and issue a new one."
                }
            }
            h2 { "Downloads" }
            p.muted.small { "Each file can be downloaded once, for another " (st.minutes_left) " minutes." }
            div.buttons {
                @if st.legacy {
                    a.button href=(format!("{base}/legacy.p12")) data-testid="download-legacy" download {
                        "PKCS#12 for Apple and older Windows" }
                } @else { span.badge { "legacy .p12 downloaded" } }
                @if st.aes {
                    a.button href=(format!("{base}/aes.p12")) data-testid="download-aes" download {
                        "PKCS#12 (AES) for current systems" }
                } @else { span.badge { "AES .p12 downloaded" } }
                @if st.mobileconfig {
                    a.button.secondary href=(format!("{base}/roadgate.mobileconfig")) data-testid="download-mobileconfig" download {
                        "Apple profile with this certificate" }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        layout(
            &state,
            &ctx,
            Nav::Certs,
            "Certificate issued",
            None,
            content,
        ),
    )
}

/// `GET /certs/issued/{serial}/{file}`: each file once; 410 after that.
pub async fn issued_download(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path((serial, file)): Path<(String, String)>,
) -> Response {
    let now = Instant::now();
    enum Taken {
        NoSuchIssue,
        NoSuchFile,
        Gone,
        File(Vec<u8>, String),
    }
    let taken = ctx
        .with_session(&state, |s| {
            s.issued.retain(|p| p.expires > now);
            let Some(p) = s.issued.iter_mut().find(|p| p.serial == serial) else {
                return Taken::NoSuchIssue;
            };
            let bytes: Option<Vec<u8>> = match file.as_str() {
                "legacy.p12" => p.legacy.take().map(|b| b.to_vec()),
                "aes.p12" => p.aes.take().map(|b| b.to_vec()),
                "roadgate.mobileconfig" => p.mobileconfig.take().map(|b| b.as_bytes().to_vec()),
                _ => return Taken::NoSuchFile,
            };
            match bytes {
                Some(b) => Taken::File(b, p.common_name.clone()),
                None => Taken::Gone,
            }
        })
        .unwrap_or(Taken::NoSuchIssue);
    match taken {
        Taken::NoSuchIssue | Taken::NoSuchFile => not_found().await,
        Taken::Gone => message_page(
            StatusCode::GONE,
            "Already downloaded",
            "This file was downloaded once already and is not kept. Revoke the certificate and issue a new one if it was lost.",
        ),
        Taken::File(bytes, cn) => {
            ctx.audit(&state, "p12.download", &format!("{serial} {file}"), "ok")
                .await;
            let stem = file_stem(&cn);
            let bytes = Zeroizing::new(bytes);
            match file.as_str() {
                "roadgate.mobileconfig" => attachment(
                    "application/x-apple-aspen-config",
                    &format!("roadgate-{stem}.mobileconfig"),
                    bytes.to_vec(),
                ),
                "legacy.p12" => attachment(
                    "application/x-pkcs12",
                    &format!("{stem}-legacy.p12"),
                    bytes.to_vec(),
                ),
                _ => attachment(
                    "application/x-pkcs12",
                    &format!("{stem}.p12"),
                    bytes.to_vec(),
                ),
            }
        }
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    reason: String,
    confirm: Option<String>,
}

/// `POST /certs/{serial}/revoke`.
pub async fn revoke_cert(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(serial): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let Some(reason) = RevocationReason::parse(&form.reason) else {
        ctx.flash(
            &state,
            false,
            format!("“{}” is not a revocation reason.", form.reason),
        );
        return see_other("/certs");
    };
    if !confirmed(&form.confirm) {
        return confirm_page(
            &state,
            &ctx,
            Nav::Certs,
            "Revoke a certificate",
            &format!(
                "Revoke the certificate {serial} ({})? Clients using it can no longer connect.",
                reason.label()
            ),
            &format!("/certs/{}/revoke", urlencode(&serial)),
            &[("reason", reason.as_str())],
            "Revoke",
            "/certs",
        );
    }
    let outcome = state.backend().revoke_cert(&serial, reason).await;
    let target = format!("{serial} {}", reason.as_str());
    ctx.audit_outcome(&state, "cert.revoke", &target, &outcome)
        .await;
    match outcome {
        Ok(()) => ctx.flash(&state, true, format!("Revoked the certificate {serial}.")),
        Err(e) => ctx.flash(&state, false, e.to_string()),
    }
    see_other("/certs")
}

/// `GET /certs/ca.crt`.
pub async fn ca_cert(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
) -> Response {
    match state.backend().ca_cert_pem().await {
        Ok(pem) => attachment(
            "application/x-pem-file",
            "roadgate-ca.crt",
            pem.into_bytes(),
        ),
        Err(e) => backend_failure(&state, &ctx, Nav::Certs, "CA certificate", &e),
    }
}

/// `GET /certs/crl.der`.
pub async fn crl(State(state): State<WebState>, Extension(ctx): Extension<AdminCtx>) -> Response {
    match state.backend().crl_der().await {
        Ok(der) => attachment("application/pkix-crl", "roadgate.crl", der),
        Err(e) => backend_failure(&state, &ctx, Nav::Certs, "Revocation list", &e),
    }
}

// ----------------------------------------------------------------------------------------------
// Client setup

fn setup_page(state: &WebState, ctx: &AdminCtx, s: &SetupInfo) -> Markup {
    let server_ok = profiles::valid_server_name(&s.server_name);
    let psk_script = profiles::powershell_script(&s.server_name, Mode::Psk, s.psk.as_deref());
    let nmcli = profiles::nmcli_command(&s.server_name, s.psk.as_deref(), "alice");
    let psk_text = s
        .psk
        .as_deref()
        .unwrap_or("(the pre-shared key; ask the server administrator)");
    let content = html! {
        @if !server_ok {
            div.note data-testid="server-name-warning" {
                "The server name “" (s.server_name) "” is not a DNS name or an IP address; "
                "check server.public_name in the configuration. The scripts quote it safely, "
                "but clients will not reach it."
            }
        }
        div.panel {
            dl.kv {
                dt { "Server" } dd.mono data-testid="setup-server" { (s.server_name) }
                @if !s.server_addresses.is_empty() {
                    dt { "Addresses" } dd.mono { (s.server_addresses.join(", ")) }
                }
                dt { "Pre-shared key mode" } dd { @if s.psk_mode_enabled { "on" } @else { "off" } }
                dt { "Certificate mode" } dd { @if s.cert_mode_enabled { "on" } @else { "off" } }
                @if s.psk_mode_enabled {
                    dt { "Pre-shared key" }
                    dd { @if let Some(k) = &s.psk { code data-testid="setup-psk" { (k) } } @else {
                        span.muted { "hidden (set web.show_psk in the configuration to show it here and put it in the profiles)" } } }
                }
            }
            div.buttons {
                a.button.secondary href="/setup/roadgate-ca.crt" data-testid="setup-ca" { "CA certificate" }
            }
        }

        h2 { "Windows 10 and 11" }
        div.panel {
            div.buttons {
                @if s.psk_mode_enabled {
                    a.button href="/setup/roadgate-psk.ps1" data-testid="download-ps1-psk" { "PowerShell script (pre-shared key)" }
                }
                @if s.cert_mode_enabled {
                    a.button href="/setup/roadgate-cert.ps1" data-testid="download-ps1-cert" { "PowerShell script (certificate)" }
                }
            }
            p {
                "The script adds the connection with " code { "Add-VpnConnection -TunnelType L2tp" }
                ": with " code { "-L2tpPsk" } " for the pre-shared key, or without it for a machine certificate "
                "(the certificate script imports the CA certificate and the .p12 into the computer's store first). "
                "Users log in with their name and password (MS-CHAPv2)."
            }
            div.note {
                strong { "Behind NAT: " }
                "Windows refuses L2TP/IPsec servers that are themselves behind NAT (error 809) unless "
                code { "AssumeUDPEncapsulationContextOnSendRule" } " is 2. Run the script with "
                code { "-NatTraversal" } " as administrator, or set it by hand, then restart Windows:"
                pre { "reg add HKLM\\SYSTEM\\CurrentControlSet\\Services\\PolicyAgent /v AssumeUDPEncapsulationContextOnSendRule /t REG_DWORD /d 2 /f" }
            }
            @if let Ok(script) = &psk_script {
                @if s.psk_mode_enabled {
                    details {
                        summary { "Show the pre-shared key script" }
                        pre data-testid="ps1-preview" { (script.trim_start_matches('\u{feff}')) }
                    }
                }
            }
        }

        h2 { "iPhone, iPad and Mac" }
        div.panel {
            @if s.psk_mode_enabled && s.psk.is_some() {
                div.buttons {
                    a.button href="/setup/roadgate.mobileconfig" data-testid="download-mobileconfig-psk" { "Configuration profile (pre-shared key)" }
                }
                p.muted.small { "Open it on the device (AirDrop, mail, Safari), then Settings → Profile Downloaded → Install." }
            }
            @if s.cert_mode_enabled {
                p { "For certificate login, issue a certificate on the " a href="/certs" { "Certificates" } " page: "
                    "it offers a profile that carries the certificate." }
            }
            p { "By hand: Settings → General → VPN & Device Management → VPN → Add VPN Configuration → "
                strong { "L2TP" } "; Server " code { (s.server_name) } ", account and password, Secret: the pre-shared key. "
                "On a Mac: System Settings → VPN → Add VPN Configuration → L2TP over IPSec. Leave the group name empty." }
        }

        h2 { "Android 11 and older" }
        div.panel {
            p { "Settings → Network & internet → VPN → +, type " strong { "L2TP/IPSec PSK" } ", server address "
                code { (s.server_name) } ", IPSec pre-shared key " code { (psk_text) }
                ". Leave “L2TP secret” and “IPSec identifier” empty. Android 12 and later cannot create L2TP/IPsec profiles." }
        }

        h2 { "Linux (NetworkManager)" }
        div.panel {
            p { "Install " code { "network-manager-l2tp" } ", then (replace alice with the user's name):" }
            @if let Some(cmd) = &nmcli {
                pre data-testid="nmcli" { (cmd) }
            } @else {
                p.muted { "The key contains characters that nmcli's vpn.data cannot carry; enter it in the connection's IPsec settings instead." }
            }
            p.muted.small { "Or in the settings: VPN → + → Layer 2 Tunneling Protocol (L2TP); IPsec Settings: enable the IPsec tunnel and enter the pre-shared key." }
        }
    };
    layout(state, ctx, Nav::Setup, "Client setup", None, content)
}

/// `GET /setup`.
pub async fn setup(State(state): State<WebState>, Extension(ctx): Extension<AdminCtx>) -> Response {
    match state.backend().client_setup().await {
        Ok(s) => render(StatusCode::OK, setup_page(&state, &ctx, &s)),
        Err(e) => backend_failure(&state, &ctx, Nav::Setup, "Client setup", &e),
    }
}

/// `GET /setup/{file}`: scripts, profile, CA certificate.
pub async fn setup_file(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Path(file): Path<String>,
) -> Response {
    if file == "roadgate-ca.crt" {
        return match state.backend().ca_cert_pem().await {
            Ok(pem) => attachment(
                "application/x-pem-file",
                "roadgate-ca.crt",
                pem.into_bytes(),
            ),
            Err(e) => backend_failure(&state, &ctx, Nav::Setup, "Client setup", &e),
        };
    }
    let setup = match state.backend().client_setup().await {
        Ok(s) => s,
        Err(e) => return backend_failure(&state, &ctx, Nav::Setup, "Client setup", &e),
    };
    let made = match file.as_str() {
        "roadgate-psk.ps1" if setup.psk_mode_enabled => {
            profiles::powershell_script(&setup.server_name, Mode::Psk, setup.psk.as_deref())
                .map(|s| ("text/plain; charset=utf-8", s))
        }
        "roadgate-cert.ps1" if setup.cert_mode_enabled => {
            profiles::powershell_script(&setup.server_name, Mode::Cert, None)
                .map(|s| ("text/plain; charset=utf-8", s))
        }
        "roadgate.mobileconfig" if setup.psk_mode_enabled => match setup.psk.as_deref() {
            Some(psk) => {
                profiles::mobileconfig(&setup.server_name, AppleAuth::SharedSecret(psk), None, None)
                    .map(|s| ("application/x-apple-aspen-config", s))
            }
            None => Err(
                "The pre-shared key is hidden from the web UI, so no profile can carry it.".into(),
            ),
        },
        _ => return not_found().await,
    };
    match made {
        Ok((content_type, text)) => {
            ctx.audit(&state, "setup.download", &file, "ok").await;
            attachment(content_type, &file, text.into_bytes())
        }
        Err(msg) => render(
            StatusCode::BAD_REQUEST,
            layout(
                &state,
                &ctx,
                Nav::Setup,
                "Client setup",
                Some(&msg),
                html! {},
            ),
        ),
    }
}

// ----------------------------------------------------------------------------------------------
// Accounting, settings, logs, audit

#[derive(Deserialize, Default)]
pub struct SinceQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// Unix seconds of a `YYYY-MM-DD` date (midnight UTC) or of a plain number.
pub fn parse_since(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(Some(n));
    }
    let parts: Vec<&str> = s.split('-').collect();
    let bad = || format!("“{s}” is not a date (YYYY-MM-DD).");
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d) = (
        y.parse::<i64>().map_err(|_| bad())?,
        m.parse::<i64>().map_err(|_| bad())?,
        d.parse::<i64>().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(Some((era * 146_097 + doe - 719_468) * 86_400))
}

/// `GET /accounting`.
pub async fn accounting(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Query(q): Query<SinceQuery>,
) -> Response {
    let since_text = q.since.clone().unwrap_or_default();
    let since = match parse_since(&since_text) {
        Ok(s) => s,
        Err(msg) => {
            return render(
                StatusCode::BAD_REQUEST,
                layout(
                    &state,
                    &ctx,
                    Nav::Accounting,
                    "Accounting",
                    Some(&msg),
                    html! {},
                ),
            );
        }
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let rows = match state.backend().accounting(since, limit).await {
        Ok(r) => r,
        Err(e) => return backend_failure(&state, &ctx, Nav::Accounting, "Accounting", &e),
    };
    let csv = match since {
        Some(s) => format!("/accounting.csv?since={s}"),
        None => "/accounting.csv".to_string(),
    };
    let content = html! {
        form.grid method="get" action="/accounting" {
            div { label for="since" { "Since (YYYY-MM-DD)" } input #since type="date" name="since" value=(since_text); }
            div { label for="limit" { "Records" } input #limit type="number" min="1" max="5000" name="limit" value=(limit); }
            div.buttons {
                button type="submit" { "Show" }
                a.button.secondary href=(csv) data-testid="accounting-csv" { "Export CSV" }
            }
        }
        div.table-wrap {
            table.cards data-testid="accounting-table" {
                thead { tr {
                    th { "Time" } th { "Status" } th { "User" } th { "Session" } th { "Address" } th { "Client" }
                    th.num { "In" } th.num { "Out" } th.num { "Duration" } th { "Cause" }
                } }
                tbody {
                    @if rows.is_empty() { tr { td.empty colspan="10" { "No accounting records." } } }
                    @for r in &rows {
                        tr {
                            td data-label="Time" { (format_time(r.time)) }
                            td data-label="Status" { (r.status.as_str()) }
                            td data-label="User" { (r.user) }
                            td data-label="Session" { span.mono.small { (r.session_id) } }
                            td data-label="Address" { @if let Some(a) = r.address { span.mono { (a) } } @else { "–" } }
                            td data-label="Client" { span.mono { (r.client) } }
                            td.num data-label="In" title=(format!("{} packets", r.input_packets)) { (format_bytes(r.input_octets)) }
                            td.num data-label="Out" title=(format!("{} packets", r.output_packets)) { (format_bytes(r.output_octets)) }
                            td.num data-label="Duration" { (format_duration(r.session_time)) }
                            td data-label="Cause" { (r.cause.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        layout(&state, &ctx, Nav::Accounting, "Accounting", None, content),
    )
}

/// `GET /accounting.csv`.
pub async fn accounting_csv(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Query(q): Query<SinceQuery>,
) -> Response {
    let since = match parse_since(q.since.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    match state.backend().accounting_csv(since).await {
        Ok(csv) => {
            ctx.audit(&state, "accounting.export", "", "ok").await;
            attachment(
                "text/csv; charset=utf-8",
                "roadgate-accounting.csv",
                csv.into_bytes(),
            )
        }
        Err(e) => (backend_status(&e), e.to_string()).into_response(),
    }
}

/// `GET /settings`.
pub async fn settings(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
) -> Response {
    let list = match state.backend().settings().await {
        Ok(l) => l,
        Err(e) => return backend_failure(&state, &ctx, Nav::Settings, "Settings", &e),
    };
    let mut sections: Vec<(&str, Vec<&crate::backend::Setting>)> = Vec::new();
    for s in &list {
        match sections.iter_mut().find(|(name, _)| *name == s.section) {
            Some((_, v)) => v.push(s),
            None => sections.push((&s.section, vec![s])),
        }
    }
    let content = html! {
        p.muted { "The running configuration, read-only; secrets are masked. Change it in the configuration file and reload." }
        div.cols {
            @for (section, items) in &sections {
                div.panel {
                    h2 { "[" (section) "]" }
                    dl.kv { @for s in items { dt { (s.key) } dd.mono { (s.value) } } }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        layout(&state, &ctx, Nav::Settings, "Settings", None, content),
    )
}

/// A log message with the failure reason (`reason=...` to the end) marked.
fn log_message(line: &LogLine) -> Markup {
    match line.message.find("reason=") {
        Some(i) => {
            let (before, reason) = line.message.split_at(i);
            html! { (before) mark { (reason) } }
        }
        None => html! { (line.message) },
    }
}

/// `GET /logs`.
pub async fn logs(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
    Query(q): Query<SinceQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(300).clamp(1, 5000);
    let lines = match state.backend().recent_logs(limit).await {
        Ok(l) => l,
        Err(e) => return backend_failure(&state, &ctx, Nav::Logs, "Logs", &e),
    };
    let content = html! {
        p.muted { "The server's most recent log lines, newest last; warnings and errors are highlighted, with the reason marked." }
        div.table-wrap {
            table.cards.log data-testid="log-table" {
                thead { tr { th { "Time" } th { "Level" } th { "Message" } } }
                tbody {
                    @if lines.is_empty() { tr { td.empty colspan="3" { "No log lines." } } }
                    @for l in &lines {
                        @let class = match l.level.to_ascii_uppercase().as_str() {
                            "ERROR" => "level-error", "WARN" | "WARNING" => "level-warn", _ => "" };
                        tr class=(class) {
                            td data-label="Time" { (format_time(l.time)) }
                            td data-label="Level" { (l.level) }
                            td data-label="Message" { (log_message(l)) }
                        }
                    }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        layout(&state, &ctx, Nav::Logs, "Logs", None, content),
    )
}

/// `GET /audit`.
pub async fn audit_page(
    State(state): State<WebState>,
    Extension(ctx): Extension<AdminCtx>,
) -> Response {
    let store = state.admins().clone();
    let entries = tokio::task::spawn_blocking(move || store.recent_audit(300)).await;
    let entries = match entries {
        Ok(Ok(e)) => e,
        _ => {
            return render(
                StatusCode::INTERNAL_SERVER_ERROR,
                layout(
                    &state,
                    &ctx,
                    Nav::Audit,
                    "Audit",
                    Some("The audit log cannot be read."),
                    html! {},
                ),
            );
        }
    };
    let content = html! {
        p.muted { "What administrators did, newest first." }
        div.table-wrap {
            table.cards data-testid="audit-table" {
                thead { tr { th { "Time" } th { "Administrator" } th { "Action" } th { "Target" } th { "From" } th { "Result" } } }
                tbody {
                    @if entries.is_empty() { tr { td.empty colspan="6" { "Nothing yet." } } }
                    @for e in &entries {
                        tr {
                            td data-label="Time" { (format_time(e.ts)) }
                            td data-label="Administrator" { (e.admin) }
                            td data-label="Action" { span.mono { (e.action) } }
                            td data-label="Target" { (e.target) }
                            td data-label="From" { span.mono { (e.source) } }
                            td data-label="Result" {
                                @if e.result == "ok" { span.badge.on { "ok" } } @else { span.badge.off { (e.result) } }
                            }
                        }
                    }
                }
            }
        }
    };
    render(
        StatusCode::OK,
        layout(&state, &ctx, Nav::Audit, "Audit", None, content),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_dates() {
        assert_eq!(parse_since("").unwrap(), None);
        assert_eq!(parse_since("1970-01-01").unwrap(), Some(0));
        assert_eq!(parse_since("2000-03-01").unwrap(), Some(951_868_800));
        assert_eq!(parse_since("12345").unwrap(), Some(12345));
        assert!(parse_since("2000-13-01").is_err());
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn issue_form() {
        assert!(parse_issue("", "user", "alice", "").is_err());
        assert!(parse_issue("alice", "user", "", "").is_err());
        assert!(parse_issue("alice", "cat", "alice", "").is_err());
        assert!(parse_issue("alice", "user", "alice", "0").is_err());
        let r = parse_issue("laptop", "device", "", "30").unwrap();
        assert_eq!(r.validity_days, 30);
        assert_eq!(r.kind, CertKind::Device);
    }

    #[test]
    fn pool_meter() {
        assert_eq!(percent_class(0, 0), "w0");
        assert_eq!(percent_class(5, 10), "w50");
        assert_eq!(percent_class(10, 10), "w100");
    }
}
