//! The OpenAPI 3.1 description of `/api/v1`, written by hand from [`OPERATIONS`] and the schemas
//! below. The HTTP tests check that every route of the API appears here and that every
//! operation here is answered by the router.

use serde_json::{Value, json};

/// What an operation returns on success.
#[derive(Debug, Clone, Copy)]
pub enum Returns {
    /// JSON of this schema (a name under `components/schemas`).
    Json(&'static str),
    /// A JSON array of this schema.
    JsonArray(&'static str),
    /// A body of this media type.
    Media(&'static str),
}

/// One API operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    /// The request body's schema, if any.
    pub request: Option<&'static str>,
    pub returns: Returns,
    /// The success status.
    pub status: u16,
    /// Query parameters (all optional).
    pub query: &'static [(&'static str, &'static str)],
}

const SINCE: (&str, &str) = (
    "since",
    "Only records at or after this time: Unix seconds or YYYY-MM-DD (UTC).",
);
const LIMIT: (&str, &str) = ("limit", "At most this many records (1 to 5000).");

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/v1/session",
        id: "getSession",
        summary: "The logged-in administrator and the CSRF token for X-CSRF-Token",
        request: None,
        returns: Returns::Json("SessionInfo"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/status",
        id: "getStatus",
        summary: "Server-wide figures",
        request: None,
        returns: Returns::Json("Status"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/sessions",
        id: "listSessions",
        summary: "Every VPN session",
        request: None,
        returns: Returns::JsonArray("Session"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/sessions/{id}/disconnect",
        id: "disconnectSession",
        summary: "End a session",
        request: None,
        returns: Returns::Json("Disconnected"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/users",
        id: "listUsers",
        summary: "Every local user",
        request: None,
        returns: Returns::JsonArray("User"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/users",
        id: "addUser",
        summary: "Add a user",
        request: Some("NewUser"),
        returns: Returns::Json("Name"),
        status: 201,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/users/{name}",
        id: "getUser",
        summary: "One user",
        request: None,
        returns: Returns::Json("User"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "put",
        path: "/api/v1/users/{name}",
        id: "updateUser",
        summary: "Change a user's settings",
        request: Some("UserOptions"),
        returns: Returns::Json("Name"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "delete",
        path: "/api/v1/users/{name}",
        id: "deleteUser",
        summary: "Delete a user",
        request: None,
        returns: Returns::Json("Deleted"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "put",
        path: "/api/v1/users/{name}/password",
        id: "setPassword",
        summary: "Set a user's password",
        request: Some("NewPassword"),
        returns: Returns::Json("Name"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/certs",
        id: "listCerts",
        summary: "Every certificate the CA issued",
        request: None,
        returns: Returns::JsonArray("Cert"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/certs",
        id: "issueCert",
        summary: "Issue a certificate; the answer carries both PKCS#12 files and their one-time password",
        request: Some("NewCert"),
        returns: Returns::Json("IssuedCert"),
        status: 201,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/certs/{serial}/revoke",
        id: "revokeCert",
        summary: "Revoke a certificate",
        request: Some("Revoke"),
        returns: Returns::Json("Revoked"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/ca.pem",
        id: "getCaCert",
        summary: "The CA certificate (PEM)",
        request: None,
        returns: Returns::Media("application/x-pem-file"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/crl",
        id: "getCrl",
        summary: "The current CRL (DER)",
        request: None,
        returns: Returns::Media("application/pkix-crl"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/accounting",
        id: "listAccounting",
        summary: "Accounting history, newest first",
        request: None,
        returns: Returns::JsonArray("AcctRow"),
        status: 200,
        query: &[SINCE, LIMIT],
    },
    Operation {
        method: "get",
        path: "/api/v1/accounting.csv",
        id: "exportAccounting",
        summary: "Accounting history as CSV",
        request: None,
        returns: Returns::Media("text/csv"),
        status: 200,
        query: &[SINCE],
    },
    Operation {
        method: "get",
        path: "/api/v1/settings",
        id: "listSettings",
        summary: "The running configuration, secrets masked",
        request: None,
        returns: Returns::JsonArray("Setting"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/logs",
        id: "recentLogs",
        summary: "The server's recent log lines",
        request: None,
        returns: Returns::JsonArray("LogLine"),
        status: 200,
        query: &[LIMIT],
    },
    Operation {
        method: "get",
        path: "/api/v1/setup",
        id: "getSetup",
        summary: "What client profiles need",
        request: None,
        returns: Returns::Json("SetupInfo"),
        status: 200,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/audit",
        id: "listAudit",
        summary: "The audit log, newest first",
        request: None,
        returns: Returns::JsonArray("AuditEntry"),
        status: 200,
        query: &[LIMIT],
    },
    Operation {
        method: "get",
        path: "/api/v1/openapi.json",
        id: "getOpenApi",
        summary: "This document (no authentication)",
        request: None,
        returns: Returns::Media("application/json"),
        status: 200,
        query: &[],
    },
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props })
}

fn schemas() -> Value {
    let s = json!({ "type": "string" });
    let int = json!({ "type": "integer", "minimum": 0 });
    let unix = json!({ "type": "integer", "description": "Unix seconds" });
    let ipv4 = json!({ "type": ["string", "null"], "format": "ipv4" });
    let opt_s = json!({ "type": ["string", "null"] });
    let kind = json!({ "type": "string", "enum": ["user", "device", "server"] });
    let reason = json!({ "type": "string", "enum": ["unspecified", "key_compromise", "affiliation_changed", "superseded", "cessation_of_operation"] });
    json!({
        "Error": obj(&["error"], json!({ "error": s })),
        "SessionInfo": obj(&["admin"], json!({ "admin": s, "csrf_token": opt_s })),
        "Status": obj(&["version", "uptime_secs", "sessions_up", "ike_sas", "pool_used", "pool_size", "counters"], json!({
            "version": s, "uptime_secs": int, "sessions_up": int, "ike_sas": int, "pool_used": int, "pool_size": int,
            "counters": { "type": "array", "items": { "type": "array", "prefixItems": [s, int], "minItems": 2, "maxItems": 2 } }
        })),
        "Session": obj(&["id", "client", "since_unix"], json!({
            "id": s, "user": opt_s, "address": ipv4, "client": s, "since_unix": int, "state": s,
            "bytes_in": int, "bytes_out": int, "packets_in": int, "packets_out": int,
            "ike": s, "esp": s, "acct_session_id": s, "auth": s
        })),
        "Disconnected": obj(&["disconnected"], json!({ "disconnected": int })),
        "User": obj(&["name", "enabled"], json!({
            "name": s, "enabled": { "type": "boolean" }, "static_ip": ipv4,
            "max_sessions": { "type": ["integer", "null"], "minimum": 0 }
        })),
        "UserOptions": obj(&["enabled"], json!({
            "enabled": { "type": "boolean" }, "static_ip": ipv4,
            "max_sessions": { "type": ["integer", "null"], "minimum": 0 }
        })),
        "NewUser": obj(&["name", "password"], json!({
            "name": s, "password": s, "enabled": { "type": "boolean", "default": true },
            "static_ip": ipv4, "max_sessions": { "type": ["integer", "null"], "minimum": 0 }
        })),
        "NewPassword": obj(&["password"], json!({ "password": s })),
        "Name": obj(&["name"], json!({ "name": s })),
        "Deleted": obj(&["deleted"], json!({ "deleted": s })),
        "Cert": obj(&["serial", "subject", "kind", "not_before", "not_after"], json!({
            "serial": s, "subject": s, "kind": kind, "user": opt_s, "not_before": unix, "not_after": unix,
            "revoked": { "oneOf": [ { "type": "null" }, obj(&["time", "reason"], json!({ "time": unix, "reason": reason })) ] }
        })),
        "NewCert": obj(&["common_name", "kind"], json!({
            "common_name": s, "kind": kind, "user": opt_s,
            "validity_days": { "type": "integer", "minimum": 1, "maximum": 3650, "default": 365 }
        })),
        "IssuedCert": obj(&["serial", "common_name", "password", "p12_legacy_base64", "p12_aes_base64"], json!({
            "serial": s, "common_name": s,
            "password": { "type": "string", "description": "The one-time password of both files; not stored anywhere" },
            "p12_legacy_base64": { "type": "string", "contentEncoding": "base64", "description": "PBE-SHA1-3DES, SHA-1 MAC (Apple, older Windows)" },
            "p12_aes_base64": { "type": "string", "contentEncoding": "base64", "description": "PBES2 AES-256-CBC, SHA-256 MAC" }
        })),
        "Revoke": obj(&["reason"], json!({ "reason": reason })),
        "Revoked": obj(&["revoked"], json!({ "revoked": s })),
        "AcctRow": obj(&["time", "status", "user", "session_id"], json!({
            "time": unix, "status": { "type": "string", "enum": ["Start", "Interim", "Stop"] },
            "user": s, "session_id": s, "address": ipv4, "client": s,
            "input_octets": int, "output_octets": int, "input_packets": int, "output_packets": int,
            "session_time": int, "cause": opt_s
        })),
        "Setting": obj(&["section", "key", "value"], json!({ "section": s, "key": s, "value": s })),
        "LogLine": obj(&["time", "level", "message"], json!({ "time": unix, "level": s, "message": s })),
        "SetupInfo": obj(&["server_name", "psk_mode_enabled", "cert_mode_enabled"], json!({
            "server_name": s, "server_addresses": { "type": "array", "items": s },
            "psk_mode_enabled": { "type": "boolean" }, "cert_mode_enabled": { "type": "boolean" }, "psk": opt_s
        })),
        "AuditEntry": obj(&["ts", "admin", "action", "target", "source", "result"], json!({
            "ts": unix, "admin": s, "action": s, "target": s, "source": s, "result": s
        })),
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema_ref("Error") } }
    })
}

fn operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = Vec::new();
    let mut rest = op.path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        params.push(
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }),
        );
        rest = &rest[start + len..];
    }
    for (name, description) in op.query {
        params.push(json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } }));
    }
    let content = match op.returns {
        Returns::Json(name) => json!({ "application/json": { "schema": schema_ref(name) } }),
        Returns::JsonArray(name) => {
            json!({ "application/json": { "schema": { "type": "array", "items": schema_ref(name) } } })
        }
        Returns::Media(media) => {
            let mut m = serde_json::Map::new();
            m.insert(media.to_string(), json!({ "schema": { "type": "string" } }));
            Value::Object(m)
        }
    };
    let mut responses = serde_json::Map::new();
    responses.insert(
        op.status.to_string(),
        json!({ "description": "Success", "content": content }),
    );
    if op.path != "/api/v1/openapi.json" {
        responses.insert("401".into(), error_response("Not logged in"));
    }
    if op.method != "get" {
        responses.insert(
            "400".into(),
            error_response("Refused; the message says why"),
        );
        responses.insert("403".into(), error_response("Missing or wrong CSRF token"));
    }
    if op.path.contains('{') {
        responses.insert("404".into(), error_response("No such thing"));
    }
    let mut o = json!({
        "operationId": op.id,
        "summary": op.summary,
        "parameters": params,
        "responses": responses,
    });
    if op.path == "/api/v1/openapi.json" {
        o["security"] = json!([]);
    }
    if let Some(req) = op.request {
        o["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema_ref(req) } }
        });
    }
    o
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Roadgate admin API",
            "version": "1",
            "description": "The operations of the Roadgate web UI. Authenticate with the session cookie of a web login (and send X-CSRF-Token, from GET /api/v1/session, on every POST, PUT and DELETE), or with Authorization: Bearer <API token>."
        },
        "servers": [ { "url": "/" } ],
        "security": [ { "sessionCookie": [], "csrfToken": [] }, { "apiToken": [] } ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "sessionCookie": { "type": "apiKey", "in": "cookie", "name": "__Host-roadgate" },
                "csrfToken": { "type": "apiKey", "in": "header", "name": "X-CSRF-Token" },
                "apiToken": { "type": "http", "scheme": "bearer" }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "missing schema {name}");
        }
        let ids: std::collections::HashSet<_> = OPERATIONS.iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), OPERATIONS.len(), "operation ids are unique");
    }
}
