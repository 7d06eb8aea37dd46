//! The foobar application: the home page and the JSON API over users and messages.
//!
//! Contract (tests and benchmarks depend on it):
//! - `GET /` → HTML page with the latest messages.
//! - `POST /api/users` `{"name","email"}` → 201 with the stored user and its `id`.
//! - `GET /api/users/{id}` → 200 or 404.
//! - `POST /api/messages` `{"user_id","body"}` → 201 with the stored message.
//! - `GET /api/messages/{id}` → 200 or 404; `GET /api/messages?limit=N` → the latest N
//!   (1–100, default 20), newest first.
//!
//! Input rules: bodies must be `application/json`, a JSON object with exactly the listed
//! fields. `name` 1–100 characters, `email` an address of at most 254 bytes with one `@`
//! and a dotted domain, `body` 1–2000 characters, no control characters other than
//! newline and tab; ids are positive integers. A malformed body gets 400, a field that
//! breaks a rule 422; both answer `{"error": .., "field": .., "message": ..}`. A duplicate
//! email is 409. Every statement that carries data is a prepared statement with bound
//! parameters.
//!
//! Writes answer with the GTID they committed, as the `X-Db-Gtid` header and the
//! `rampart_gtid` cookie; a read that presents either is read-your-writes consistent
//! (see `db.rs`).
//!
//! A write the database could not take answers 503 with `Retry-After: 1` and the reason
//! as the JSON `error`: `no_primary`, `not_writable` or `server_mismatch` (nothing was
//! written; retry), or `outcome_unknown` (the connection died after `COMMIT` was sent:
//! it may have been written; retry with the same `Idempotency-Key` to find out). The POST
//! endpoints take an `Idempotency-Key` (see `idempotency.rs`): a repeat of the same
//! request gets the first answer with `Idempotent-Replayed: true`; the same key with
//! another request gets 422 `idempotency_key_reused`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use sqlx::mysql::MySqlConnection;
use time::PrimitiveDateTime;

use crate::db::{error_number, Db, DbError, GtidSet, Refusal, Role, Served};
use crate::idempotency::{self, Claim, Idem};
use crate::metrics::Metrics;

pub const GTID_HEADER: &str = "x-db-gtid";
pub const GTID_COOKIE: &str = "rampart_gtid";

/// An application answer before the server adds the common headers.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    pub headers: HeaderMap,
    /// The database role that served the request's read, if any.
    pub db_role: Option<Role>,
    /// The database host that served it.
    pub db_server: Option<std::sync::Arc<str>>,
}

impl Reply {
    pub fn json(status: StatusCode, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: Bytes::from(v.to_string()),
            headers: HeaderMap::new(),
            db_role: None,
            db_server: None,
        }
    }

    /// A JSON error naming what was wrong. `field` is empty when no single field is.
    pub fn error(status: StatusCode, error: &str, field: &str, message: &str) -> Reply {
        let mut v = json!({ "error": error, "message": message });
        if !field.is_empty() {
            v["field"] = Value::from(field);
        }
        Reply::json(status, &v)
    }

    fn with_role(mut self, role: Role) -> Reply {
        self.db_role = Some(role);
        self
    }

    fn with_served(mut self, served: Served) -> Reply {
        self.db_role = Some(served.role);
        self.db_server = Some(served.server);
        self
    }

    fn with_gtid(mut self, gtid: Option<&GtidSet>) -> Reply {
        if let Some(g) = gtid {
            let s = g.to_string();
            if let Ok(v) = HeaderValue::from_str(&s) {
                self.headers.insert(GTID_HEADER, v);
            }
            let cookie =
                format!("{GTID_COOKIE}={s}; Path=/; Max-Age=300; Secure; HttpOnly; SameSite=Lax");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                self.headers.insert(http::header::SET_COOKIE, v);
            }
        }
        self
    }
}

/// What a client gets for a 503: retry after a second.
fn retry_later(mut r: Reply) -> Reply {
    r.headers
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn db_error(e: &DbError) -> Reply {
    match e {
        DbError::Unavailable(why) => {
            tracing::warn!(error = %why, "database unavailable");
            retry_later(Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "",
                "the database is unavailable; try again shortly",
            ))
        }
        // Logged (and counted) by `Db::write`.
        DbError::Refused { why, .. } => {
            let message = match why {
                Refusal::NoPrimary => {
                    "no primary database is available; nothing was written; retry shortly"
                }
                Refusal::NotWritable => {
                    "the primary database is not writable yet; nothing was written; retry shortly"
                }
                Refusal::ServerMismatch => {
                    "the primary database is changing; nothing was written; retry shortly"
                }
                Refusal::OutcomeUnknown => {
                    "the write may or may not have been stored; retry with the same \
                     Idempotency-Key to find out"
                }
            };
            retry_later(Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                why.as_str(),
                "",
                message,
            ))
        }
        DbError::Duplicate { field } => Reply::error(
            StatusCode::CONFLICT,
            "duplicate",
            field,
            "already taken by another record",
        ),
        DbError::Invalid { field, message } => Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            field,
            message,
        ),
        DbError::Query(err) => {
            tracing::error!(error = %err, "database query failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "",
                "internal error",
            )
        }
    }
}

/// What a write's transaction produced.
enum Written {
    /// Written now: the answer's body.
    Fresh(String),
    /// Written before under the same key: the stored answer and the leader's position.
    Replay(idempotency::Stored, Option<GtidSet>),
    /// The key came with another request.
    Mismatch,
}

/// A validated field problem.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: &'static str,
}

fn field_err(field: &str, message: &'static str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message,
    }
}

/// Parses a JSON request body into an object with exactly `fields`.
// The error is the reply itself, built once on a cold path; boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub fn parse_object(body: &[u8], fields: &[&str]) -> Result<Map<String, Value>, Reply> {
    let text = std::str::from_utf8(body).map_err(|_| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
            "the body is not valid UTF-8",
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
            &format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        let message = format!("unknown field; expected only {}", fields.join(", "));
        return Err(Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            unknown,
            &message,
        ));
    }
    Ok(map)
}

fn no_controls(s: &str, allow_newlines: bool) -> bool {
    s.chars()
        .all(|c| !c.is_control() || (allow_newlines && (c == '\n' || c == '\t' || c == '\r')))
}

fn text_field(
    map: &Map<String, Value>,
    field: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<String, FieldError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(field_err(field, "required")),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if s.trim().is_empty() {
                Err(field_err(field, "must not be empty"))
            } else if n > max_chars {
                Err(field_err(field, "too long"))
            } else if !no_controls(s, multiline) {
                Err(field_err(field, "must not contain control characters"))
            } else {
                Ok(s.clone())
            }
        }
        Some(_) => Err(field_err(field, "must be a string")),
    }
}

/// Checks the shape of an email address (not deliverability): one `@`, a local part of
/// 1–64 printable characters without spaces, a domain of dot-separated labels of letters,
/// digits and inner hyphens with at least one dot; at most 254 bytes in all.
pub fn valid_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@\"(),:;<>[\\]".contains(c))
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn id_field(map: &Map<String, Value>, field: &str) -> Result<u64, FieldError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(field_err(field, "required")),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|&v| v >= 1)
            .ok_or_else(|| field_err(field, "must be a positive integer")),
        Some(_) => Err(field_err(field, "must be a positive integer")),
    }
}

fn invalid(e: &FieldError) -> Reply {
    Reply::error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        &e.field,
        e.message,
    )
}

/// A new user, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub email: String,
}

pub fn validate_user(map: &Map<String, Value>) -> Result<NewUser, FieldError> {
    let name = text_field(map, "name", 100, false)?;
    let email = text_field(map, "email", 254, false)?;
    if !valid_email(&email) {
        return Err(field_err("email", "not an email address"));
    }
    Ok(NewUser { name, email })
}

/// A new message, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub user_id: u64,
    pub body: String,
}

pub fn validate_message(map: &Map<String, Value>) -> Result<NewMessage, FieldError> {
    let user_id = id_field(map, "user_id")?;
    let body = text_field(map, "body", 2000, true)?;
    Ok(NewMessage { user_id, body })
}

/// Parses a path id: a positive decimal integer of at most 20 digits.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&v| v >= 1)
}

/// Parses `limit` from a query string: 1–100, default 20.
pub fn parse_limit(query: Option<&str>) -> Result<u32, FieldError> {
    let mut limit = 20;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "limit" {
            limit = v
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| field_err("limit", "must be an integer from 1 to 100"))?;
        }
    }
    Ok(limit)
}

fn rfc3339(t: PrimitiveDateTime) -> String {
    t.assume_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Now, at the microsecond resolution `DATETIME(6)` stores, so a write's answer matches
/// what a later read returns.
fn now_utc() -> PrimitiveDateTime {
    let now = time::OffsetDateTime::now_utc();
    let t = now.time();
    let t = t.replace_microsecond(t.microsecond()).unwrap_or(t);
    PrimitiveDateTime::new(now.date(), t)
}

type UserRow = (u64, String, String, PrimitiveDateTime);
type MessageRow = (u64, u64, String, String, PrimitiveDateTime);

fn user_json(r: &UserRow) -> Value {
    json!({ "id": r.0, "name": r.1, "email": r.2, "created_at": rfc3339(r.3) })
}

fn message_json(r: &MessageRow) -> Value {
    json!({ "id": r.0, "user_id": r.1, "author": r.2, "body": r.3, "created_at": rfc3339(r.4) })
}

/// The columns of a message with its author, for `MessageRow`.
macro_rules! message_select {
    () => {
        "SELECT m.id, m.user_id, u.name, m.body, m.created_at \
         FROM messages m JOIN users u ON u.id = m.user_id"
    };
}
const MESSAGE_BY_ID: &str = concat!(message_select!(), " WHERE m.id = ?");
const MESSAGES_LATEST: &str = concat!(message_select!(), " ORDER BY m.id DESC LIMIT ?");
const USER_BY_ID: &str = "SELECT id, name, email, created_at FROM users WHERE id = ?";

/// The application's handlers.
#[derive(Debug)]
pub struct App {
    pub db: Arc<Db>,
    pub metrics: Arc<Metrics>,
    pub server_name: String,
}

/// A write's statements: run inside its transaction, they return the answer's JSON.
type Work = Box<
    dyn for<'c> FnOnce(
            &'c mut MySqlConnection,
        ) -> futures_core::future::BoxFuture<'c, Result<Value, DbError>>
        + Send,
>;

impl App {
    /// Runs `work` as one write answered with `status` and its JSON, under `idem` if the
    /// request had a key: claimed before `work`, the answer recorded after it, all in the
    /// write's transaction (see `idempotency.rs`).
    async fn write_json(&self, idem: Option<Idem>, status: StatusCode, work: Work) -> Reply {
        let result = self
            .db
            .write(move |conn: &mut MySqlConnection| {
                Box::pin(async move {
                    if let Some(idem) = &idem {
                        match idempotency::claim(&mut *conn, idem).await? {
                            Claim::New => {}
                            Claim::Replay(stored) => {
                                let pos = idempotency::position(&mut *conn).await?;
                                return Ok(Written::Replay(stored, pos));
                            }
                            Claim::Mismatch => return Ok(Written::Mismatch),
                        }
                    }
                    let body = work(&mut *conn).await?.to_string();
                    if let Some(idem) = &idem {
                        idempotency::record(&mut *conn, idem, status.as_u16(), body.as_bytes())
                            .await?;
                    }
                    Ok(Written::Fresh(body))
                })
            })
            .await;
        match result {
            Ok((Written::Fresh(body), gtid)) => Reply {
                status,
                content_type: "application/json",
                body: Bytes::from(body),
                headers: HeaderMap::new(),
                db_role: None,
                db_server: None,
            }
            .with_role(Role::Primary)
            .with_gtid(gtid.as_ref()),
            Ok((Written::Replay(stored, pos), _)) => {
                self.metrics.idempotent_replays.inc();
                let mut r = Reply {
                    status: StatusCode::from_u16(stored.status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    content_type: "application/json",
                    body: Bytes::from(stored.body),
                    headers: HeaderMap::new(),
                    db_role: None,
                    db_server: None,
                };
                r.headers
                    .insert(idempotency::REPLAYED, HeaderValue::from_static("true"));
                r.with_role(Role::Primary).with_gtid(pos.as_ref())
            }
            Ok((Written::Mismatch, _)) => Reply::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                idempotency::HEADER,
                "this Idempotency-Key was used with a different request",
            ),
            Err(e) => db_error(&e),
        }
    }

    pub async fn create_user(&self, body: &[u8], idem: Option<Idem>) -> Reply {
        let map = match parse_object(body, &["name", "email"]) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let user = match validate_user(&map) {
            Ok(u) => u,
            Err(e) => return invalid(&e),
        };
        let created = now_utc();
        let work: Work = Box::new(move |conn: &mut MySqlConnection| {
            Box::pin(async move {
                let r = sqlx::query("INSERT INTO users (name, email, created_at) VALUES (?, ?, ?)")
                    .bind(&user.name)
                    .bind(&user.email)
                    .bind(created)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| match error_number(&e) {
                        Some(1062) => DbError::Duplicate { field: "email" },
                        _ => DbError::from(e),
                    })?;
                Ok(user_json(&(
                    r.last_insert_id(),
                    user.name,
                    user.email,
                    created,
                )))
            })
        });
        self.write_json(idem, StatusCode::CREATED, work).await
    }

    pub async fn get_user(&self, id: &str, after: Option<&GtidSet>) -> Reply {
        self.get_by_id(id, after, USER_BY_ID, user_json, "no such user")
            .await
    }

    /// One row by its path id: 400 for an id that is not one, 404 when absent.
    async fn get_by_id<R>(
        &self,
        id: &str,
        after: Option<&GtidSet>,
        sql: &'static str,
        to_json: fn(&R) -> Value,
        missing: &str,
    ) -> Reply
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow> + Send + Unpin,
    {
        let Some(id) = parse_id(id) else {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "id",
                "must be a positive integer",
            );
        };
        let r = self
            .db
            .read(after, move |conn| {
                Box::pin(async move {
                    sqlx::query_as::<_, R>(sql)
                        .bind(id)
                        .fetch_optional(conn)
                        .await
                })
            })
            .await;
        match r {
            Ok((Some(row), served)) => {
                Reply::json(StatusCode::OK, &to_json(&row)).with_served(served)
            }
            Ok((None, served)) => {
                Reply::error(StatusCode::NOT_FOUND, "not_found", "id", missing).with_served(served)
            }
            Err(e) => db_error(&e),
        }
    }

    pub async fn create_message(&self, body: &[u8], idem: Option<Idem>) -> Reply {
        let map = match parse_object(body, &["user_id", "body"]) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let msg = match validate_message(&map) {
            Ok(m) => m,
            Err(e) => return invalid(&e),
        };
        let created = now_utc();
        let work: Work = Box::new(move |conn: &mut MySqlConnection| {
            Box::pin(async move {
                // The author check is a read inside the write: it runs in the write's
                // transaction on the leader, and locks the user row until commit.
                let author: Option<String> =
                    sqlx::query_scalar("SELECT name FROM users WHERE id = ? FOR UPDATE")
                        .bind(msg.user_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some(author) = author else {
                    return Err(DbError::Invalid {
                        field: "user_id",
                        message: "no such user",
                    });
                };
                let r = sqlx::query(
                    "INSERT INTO messages (user_id, body, created_at) VALUES (?, ?, ?)",
                )
                .bind(msg.user_id)
                .bind(&msg.body)
                .bind(created)
                .execute(&mut *conn)
                .await?;
                Ok(message_json(&(
                    r.last_insert_id(),
                    msg.user_id,
                    author,
                    msg.body,
                    created,
                )))
            })
        });
        self.write_json(idem, StatusCode::CREATED, work).await
    }

    pub async fn get_message(&self, id: &str, after: Option<&GtidSet>) -> Reply {
        self.get_by_id(id, after, MESSAGE_BY_ID, message_json, "no such message")
            .await
    }

    async fn latest(
        &self,
        limit: u32,
        after: Option<&GtidSet>,
    ) -> Result<(Vec<MessageRow>, Served), DbError> {
        self.db
            .read(after, move |conn| {
                Box::pin(async move {
                    sqlx::query_as::<_, MessageRow>(MESSAGES_LATEST)
                        .bind(limit)
                        .fetch_all(conn)
                        .await
                })
            })
            .await
    }

    pub async fn list_messages(&self, query: Option<&str>, after: Option<&GtidSet>) -> Reply {
        let limit = match parse_limit(query) {
            Ok(l) => l,
            Err(e) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    &e.field,
                    e.message,
                )
            }
        };
        match self.latest(limit, after).await {
            Ok((rows, served)) => {
                let items: Vec<Value> = rows.iter().map(message_json).collect();
                Reply::json(StatusCode::OK, &json!({ "messages": items })).with_served(served)
            }
            Err(e) => db_error(&e),
        }
    }

    /// The home page: the latest messages, rendered on the server (no script).
    pub async fn home(&self, after: Option<&GtidSet>) -> Reply {
        let (rows, served, note) = match self.latest(20, after).await {
            Ok((rows, served)) => (rows, Some(served), None),
            Err(e) => {
                tracing::warn!(error = %e, "home page without messages");
                (
                    Vec::new(),
                    None,
                    Some("Messages are unavailable right now; the database is not reachable."),
                )
            }
        };
        let mut html = String::with_capacity(4096);
        html.push_str(concat!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<title>foobar</title>\n<link rel=\"stylesheet\" href=\"/site.css\">\n",
            "<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n</head>\n<body>\n",
            "<header><img src=\"/logo.svg\" alt=\"\" width=\"40\" height=\"40\">",
            "<h1>foobar</h1><p class=\"tagline\">www.foobar.com</p></header>\n<main>\n",
            "<h2>Recent messages</h2>\n",
        ));
        if let Some(n) = note {
            html.push_str("<p class=\"empty\">");
            html.push_str(n);
            html.push_str("</p>\n");
        } else if rows.is_empty() {
            html.push_str("<p class=\"empty\">No messages yet. Post one with <code>POST /api/messages</code>.</p>\n");
        } else {
            html.push_str("<ol class=\"messages\">\n");
            for r in &rows {
                html.push_str("<li class=\"message\" id=\"m");
                html.push_str(&r.0.to_string());
                html.push_str("\"><span class=\"author\">");
                escape(&mut html, &r.2);
                html.push_str("</span> <time class=\"time\" datetime=\"");
                let t = rfc3339(r.4);
                html.push_str(&t);
                html.push_str("\">");
                html.push_str(&t);
                html.push_str("</time><p class=\"body\">");
                escape(&mut html, &r.3);
                html.push_str("</p></li>\n");
            }
            html.push_str("</ol>\n");
        }
        html.push_str("</main>\n<footer class=\"served\">served by <strong>");
        escape(&mut html, &self.server_name);
        html.push_str("</strong>");
        if let Some(role) = served.as_ref().map(|s| s.role) {
            html.push_str(" · messages read from the <strong>");
            html.push_str(role.as_str());
            html.push_str("</strong>");
        }
        html.push_str("</footer>\n</body>\n</html>\n");
        Reply {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body: Bytes::from(html),
            headers: HeaderMap::new(),
            db_role: served.as_ref().map(|s| s.role),
            db_server: served.map(|s| s.server),
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        match serde_json::from_str(s).unwrap() {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn user_validation() {
        let check = |input: &str, expected: Result<(), (&str, &str)>| {
            let got = validate_user(&obj(input))
                .map(|_| ())
                .map_err(|e| (e.field.clone(), e.message));
            let expected = expected.map_err(|(f, m)| (f.to_owned(), m));
            assert_eq!(got, expected, "{input}");
        };
        check(r#"{"name":"Ada","email":"ada@example.com"}"#, Ok(()));
        check(
            r#"{"name":"Zoë 李","email":"z.o+tag@mail.example.org"}"#,
            Ok(()),
        );
        check(r#"{"email":"ada@example.com"}"#, Err(("name", "required")));
        check(
            r#"{"name":null,"email":"a@b.co"}"#,
            Err(("name", "required")),
        );
        check(
            r#"{"name":"  ","email":"a@b.co"}"#,
            Err(("name", "must not be empty")),
        );
        check(
            r#"{"name":7,"email":"a@b.co"}"#,
            Err(("name", "must be a string")),
        );
        check(
            &format!(r#"{{"name":"{}","email":"a@b.co"}}"#, "x".repeat(101)),
            Err(("name", "too long")),
        );
        check(
            r#"{"name":"a\u0000b","email":"a@b.co"}"#,
            Err(("name", "must not contain control characters")),
        );
        check(
            r#"{"name":"Ada","email":"ada"}"#,
            Err(("email", "not an email address")),
        );
        check(
            r#"{"name":"Ada","email":"ada@localhost"}"#,
            Err(("email", "not an email address")),
        );
        check(
            r#"{"name":"Ada","email":"a b@c.de"}"#,
            Err(("email", "not an email address")),
        );
        check(
            r#"{"name":"Ada","email":"a@-c.de"}"#,
            Err(("email", "not an email address")),
        );
        check(
            r#"{"name":"Ada","email":"a@@c.de"}"#,
            Err(("email", "not an email address")),
        );
    }

    #[test]
    fn message_validation() {
        let check = |input: &str, expected: Result<(), (&str, &str)>| {
            let got = validate_message(&obj(input))
                .map(|_| ())
                .map_err(|e| (e.field.clone(), e.message));
            let expected = expected.map_err(|(f, m)| (f.to_owned(), m));
            assert_eq!(got, expected, "{input}");
        };
        check(r#"{"user_id":1,"body":"hi\nthere"}"#, Ok(()));
        check(
            r#"{"user_id":0,"body":"hi"}"#,
            Err(("user_id", "must be a positive integer")),
        );
        check(
            r#"{"user_id":-3,"body":"hi"}"#,
            Err(("user_id", "must be a positive integer")),
        );
        check(
            r#"{"user_id":1.5,"body":"hi"}"#,
            Err(("user_id", "must be a positive integer")),
        );
        check(
            r#"{"user_id":"1","body":"hi"}"#,
            Err(("user_id", "must be a positive integer")),
        );
        check(r#"{"body":"hi"}"#, Err(("user_id", "required")));
        check(
            r#"{"user_id":1,"body":""}"#,
            Err(("body", "must not be empty")),
        );
        check(
            &format!(r#"{{"user_id":1,"body":"{}"}}"#, "é".repeat(2001)),
            Err(("body", "too long")),
        );
    }

    #[test]
    fn body_parsing() {
        let check = |body: &[u8], expected: Option<(u16, &str)>| {
            let got = parse_object(body, &["name", "email"]).err().map(|r| {
                (
                    r.status.as_u16(),
                    String::from_utf8_lossy(&r.body).into_owned(),
                )
            });
            match (got, expected) {
                (None, None) => {}
                (Some((s, b)), Some((es, needle))) => {
                    assert_eq!(s, es, "{body:?}");
                    assert!(b.contains(needle), "{b} lacks {needle}");
                }
                (g, e) => panic!("{body:?}: got {g:?}, expected {e:?}"),
            }
        };
        check(br#"{"name":"a","email":"b"}"#, None);
        check(br#"{"name":"a""#, Some((400, "malformed_json")));
        check(b"\xff\xfe", Some((400, "not valid UTF-8")));
        check(b"[1,2]", Some((400, "must be a JSON object")));
        check(b"", Some((400, "malformed_json")));
        check(
            br#"{"name":"a","admin":true}"#,
            Some((422, r#""field":"admin""#)),
        );
    }

    #[test]
    fn ids_and_limits() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in [
            "0",
            "-1",
            "",
            "1e3",
            "４２",
            "99999999999999999999999",
            " 1",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        assert_eq!(parse_limit(None), Ok(20));
        assert_eq!(parse_limit(Some("limit=5")), Ok(5));
        assert_eq!(parse_limit(Some("x=1&limit=100")), Ok(100));
        assert!(parse_limit(Some("limit=0")).is_err());
        assert!(parse_limit(Some("limit=101")).is_err());
        assert!(parse_limit(Some("limit=abc")).is_err());
    }

    #[test]
    fn html_escaping() {
        let mut s = String::new();
        escape(&mut s, "<script>alert('x')</script> & \"q\"");
        assert_eq!(
            s,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
