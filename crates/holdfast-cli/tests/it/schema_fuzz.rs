//! The OpenAPI document tells the truth about what the server accepts: for every operation with a
//! request body, requests generated from the document alone — only the required properties;
//! every property; strings at their longest and numbers at their bounds — are never refused as
//! malformed or invalid in shape (400, or 422 with a shape code such as `required`, `too_long`,
//! `wrong_type`, `unknown_field`), and a success has the documented status. What a schema cannot
//! say (an id that does not exist, a version someone else moved on) may still be refused.

use holdfast_test_support::{Client, TestApp, on_both_backends};
use serde_json::{Map, Value, json};

/// Field error codes that say a request was well-formed but does not fit the data.
const SEMANTIC: &[&str] = &[
    "not_found",
    "taken",
    "in_the_past",
    "last_admin",
    "cycle",
    "built_in_role",
    "role_in_use",
    "already_decided",
    "not_allowed",
    "in_recycle_bin",
    "archived",
    "invalid_credentials",
    "wrong_password",
    "wrong_code",
    "passkey_expired",
    "sign_in_expired",
    "no_passkey",
    "not_a_session",
];

/// Which value of a property to generate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    /// The documented example, else the first enum value, else something typical.
    Typical,
    /// Strings at `maxLength`, numbers at `maximum` (else `minimum`).
    Longest,
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn generate(document: &Value, schema: &Value, variant: Variant, all: bool) -> Value {
    let schema = resolve(document, schema);
    // A pattern is the generator's limit: such values come from the documented example.
    if let Some(example) = schema.get("example")
        && (variant == Variant::Typical
            || schema.get("maxLength").is_none()
            || schema.get("pattern").is_some())
    {
        return example.clone();
    }
    if let Some(options) = schema["enum"].as_array() {
        return options[0].clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds[0].as_str().unwrap_or("string"),
        other => other.as_str().unwrap_or("object"),
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            // `anyOf` alternatives that each require something: the first one is taken.
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .chain(schema["anyOf"][0]["required"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    // A dry run changes nothing, so the generated request would prove little.
                    if name == "dry_run" {
                        continue;
                    }
                    if all || required.contains(&name.as_str()) {
                        out.insert(name.clone(), generate(document, property, variant, all));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            let item = generate(document, &schema["items"], variant, all);
            json!([item])
        }
        "integer" => {
            let (min, max) = (schema["minimum"].as_i64(), schema["maximum"].as_i64());
            match variant {
                Variant::Longest => json!(max.or(min).unwrap_or(1)),
                Variant::Typical => json!(min.unwrap_or(1).max(1).min(max.unwrap_or(i64::MAX))),
            }
        }
        "boolean" => json!(false),
        _ => match schema["format"].as_str() {
            Some("date-time") => json!("2031-06-01T09:00:00+08:00"),
            Some("date") => json!("2031-06-01"),
            Some("email") => json!("someone@example.com"),
            _ => {
                let min = schema["minLength"].as_u64().unwrap_or(1).max(1) as usize;
                let length = match variant {
                    Variant::Longest => schema["maxLength"].as_u64().map_or(min, |m| m as usize),
                    Variant::Typical => min,
                };
                json!("x".repeat(length.max(min)))
            }
        },
    }
}

/// Ids the paths need, made before the requests are sent.
struct Fixture {
    ids: Vec<(&'static str, String)>,
}

async fn fixture(app: &TestApp, admin: &Client) -> Fixture {
    let rep = app.user("xiaozhou", "rep").await;
    let company = admin.create("companies", json!({"name": "周氏"})).await;
    let team = admin
        .post("/api/v1/access/teams", json!({"name": "华东"}))
        .await
        .expect(201)["team_id"]
        .as_i64()
        .unwrap();
    let request = rep
        .post(
            "/api/v1/access/requests",
            json!({"permission": "exports.export", "reason": "月度报表"}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let contact = admin
        .create("contacts", json!({"name": "周先生", "company_id": company}))
        .await;
    Fixture {
        ids: vec![
            ("/api/v1/contacts/{id}", contact.to_string()),
            ("/api/v1/users/{id}", rep.user_id.to_string()),
            ("/api/v1/access/teams/{id}", team.to_string()),
            ("/api/v1/access/requests/{id}", request.to_string()),
            ("/api/v1/access/reviews/{id}", rep.user_id.to_string()),
            ("/api/v1/backups/{id}", "1".into()),
            ("{id}", company.to_string()),
            ("{key}", "fuzzed".into()),
            ("{role}", "rep".into()),
            ("{module}", "deals".into()),
            ("{decision}", "approve".into()),
            ("{version}", "1".into()),
        ],
    }
}

impl Fixture {
    fn path(&self, template: &str) -> String {
        let mut path = template.to_owned();
        for (pattern, value) in &self.ids {
            if pattern.starts_with('/') {
                if let Some(prefix) = pattern.strip_suffix("/{id}")
                    && path.starts_with(&format!("{prefix}/{{id}}"))
                {
                    path = path.replacen("{id}", value, 1);
                }
            } else {
                path = path.replace(pattern, value);
            }
        }
        path
    }
}

on_both_backends!(
    requests_the_openapi_document_calls_valid_are_accepted_in_shape,
    |app| {
        let admin = app.admin().await;
        let fixture = fixture(&app, &admin).await;
        let document = holdfast_web::openapi::document(holdfast_web::routes().docs());
        let mut problems = Vec::new();
        let mut sent = 0;
        for (template, item) in document["paths"].as_object().unwrap() {
            // Contacts stand for every collection; the setup and login forms are the anonymous ones.
            let other_collection = ["/companies", "/deals", "/activities"]
                .iter()
                .any(|c| template.contains(c));
            if other_collection || template == "/api/v1/setup" || template == "/api/v1/auth/login" {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                let Some(schema) =
                    operation["requestBody"]["content"]["application/json"].get("schema")
                else {
                    continue;
                };
                let success: Vec<u16> = operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter_map(|k| k.parse().ok())
                    .collect();
                for (variant, all) in [
                    (Variant::Typical, false),
                    (Variant::Typical, true),
                    (Variant::Longest, true),
                ] {
                    let body = generate(&document, schema, variant, all);
                    let path = fixture.path(template);
                    let method =
                        reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                    let reply = admin.send(method.clone(), &path, Some(body.clone())).await;
                    sent += 1;
                    let status = reply.status.as_u16();
                    let shape_codes: Vec<&str> = reply.body["error"]["fields"]
                        .as_array()
                        .map(|fields| {
                            fields
                                .iter()
                                .filter_map(|f| f["code"].as_str())
                                .filter(|code| !SEMANTIC.contains(code))
                                .collect()
                        })
                        .unwrap_or_default();
                    let refused_in_shape = status == 400
                        || status >= 500
                        || (status == 422
                            && (!shape_codes.is_empty()
                                || reply.body["error"]["fields"].is_null()));
                    let wrong_success = (200..300).contains(&status) && !success.contains(&status);
                    if refused_in_shape || wrong_success {
                        problems.push(format!(
                            "{method} {path} ({variant:?}, all: {all}) {body} -> {status} {}",
                            reply.body
                        ));
                    }
                }
            }
        }
        assert!(sent > 60, "only {sent} requests were generated");
        assert!(
            problems.is_empty(),
            "{} valid requests refused:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
);
