//! The OpenAPI 3 document, generated from the route table in `lib.rs` and the entity field
//! tables in `holdfast-domain`.
//!
//! Derive-based generators (utoipa) cannot see our record schemas, which are data (the field
//! tables) rather than Rust structs, so the document is assembled here from the same data the
//! router and the validators use. A test compares it with the committed `docs/openapi.json`.

use holdfast_domain::Entity;
use holdfast_domain::entity::FieldKind;
use serde_json::{Map, Value, json};

/// The request body of an operation.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    None,
    /// A schema from [`static_schemas`].
    Named(&'static str),
    /// The entity's fields, for create.
    EntityInput,
    /// The entity's fields plus `expected_version`, for update.
    EntityPatch,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub method: &'static str,
    pub summary: &'static str,
    pub body: Body,
    /// The response schema name; `Record`, `RecordList` and `Outcome` are per entity.
    pub response: &'static str,
    pub query: Vec<&'static str>,
    /// Answers 201 Created (200 for a dry run, where the body has one) rather than 200.
    pub creates: bool,
}

/// The documentation of one path: its operations, and whether it is open without login.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub path: String,
    pub public: bool,
    /// `{collection}` stands for each entity's collection.
    pub per_entity: bool,
    pub operations: Vec<Operation>,
}

impl RouteDoc {
    fn build(
        method: &'static str,
        summary: &'static str,
        body: Body,
        response: &'static str,
    ) -> RouteDoc {
        RouteDoc {
            path: String::new(),
            public: false,
            per_entity: false,
            operations: vec![Operation {
                method,
                summary,
                body,
                response,
                query: Vec::new(),
                creates: false,
            }],
        }
    }

    pub fn new(
        method: &'static str,
        summary: &'static str,
        body: Body,
        response: &'static str,
    ) -> RouteDoc {
        RouteDoc::build(method, summary, body, response)
    }

    pub fn public(
        method: &'static str,
        summary: &'static str,
        body: Body,
        response: &'static str,
    ) -> RouteDoc {
        RouteDoc {
            public: true,
            ..RouteDoc::build(method, summary, body, response)
        }
    }

    pub fn per_entity(
        method: &'static str,
        summary: &'static str,
        body: Body,
        response: &'static str,
    ) -> RouteDoc {
        RouteDoc {
            per_entity: true,
            ..RouteDoc::build(method, summary, body, response)
        }
    }

    pub fn also(
        mut self,
        method: &'static str,
        summary: &'static str,
        body: Body,
        response: &'static str,
    ) -> RouteDoc {
        self.operations.push(Operation {
            method,
            summary,
            body,
            response,
            query: Vec::new(),
            creates: false,
        });
        self
    }

    /// The operation added last answers 201 Created.
    pub fn created(mut self) -> RouteDoc {
        if let Some(last) = self.operations.last_mut() {
            last.creates = true;
        }
        self
    }

    /// Query parameters of the operation added last.
    pub fn params(mut self, names: &[&'static str]) -> RouteDoc {
        if let Some(last) = self.operations.last_mut() {
            last.query.extend_from_slice(names);
        }
        self
    }

    pub(crate) fn at(mut self, path: &str) -> RouteDoc {
        self.path = path.to_owned();
        self
    }
}

fn type_name(entity: Entity) -> String {
    let name = entity.name();
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn field_schema(kind: FieldKind) -> Value {
    match kind {
        FieldKind::Text { max } | FieldKind::LongText { max } => {
            json!({"type": "string", "maxLength": max})
        }
        FieldKind::Email => json!({"type": "string", "format": "email", "maxLength": 254}),
        FieldKind::Phone => {
            json!({"type": "string", "maxLength": 50, "pattern": "^[0-9 +()#/xX.-]*$", "description": "Digits (at least 3) with optional + - ( ) # / x and spaces", "example": "+86 138 0013 8000"})
        }
        FieldKind::Integer { min } => json!({"type": "integer", "format": "int64", "minimum": min}),
        FieldKind::Currency => {
            json!({"type": "string", "pattern": "^[A-Za-z]{3}$", "example": "CNY"})
        }
        FieldKind::Date => json!({"type": "string", "format": "date", "example": "2026-12-01"}),
        FieldKind::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldKind::Ref(target) => {
            json!({"type": "integer", "format": "int64", "description": format!("id of a {}", target.name())})
        }
        FieldKind::Choice(options) => json!({"type": "string", "enum": options}),
    }
}

fn entity_schemas(entity: Entity, schemas: &mut Map<String, Value>) {
    let name = type_name(entity);
    let mut fields = Map::new();
    let mut required = Vec::new();
    for def in entity.fields() {
        let mut schema = field_schema(def.kind);
        schema["description"] = def.doc.into();
        schema["nullable"] = (!def.required).into();
        fields.insert(def.name.to_owned(), schema);
        if def.required && def.default.is_none() && def.name != "stage" {
            required.push(def.name);
        }
    }
    let mut common = Map::new();
    common.insert("owner_id".into(), json!({"type": "integer", "format": "int64", "description": "Owning user; defaults to you"}));
    common.insert(
        "tags".into(),
        json!({"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 50}),
    );
    common.insert("custom".into(), json!({"type": "object", "description": "Values of custom fields by key; null removes one", "additionalProperties": true}));
    common.insert(
        "reason".into(),
        json!({"type": "string", "maxLength": 500, "description": "Why; kept in the history"}),
    );
    let mut input = fields.clone();
    input.extend(common.clone());
    schemas.insert(
        format!("{name}Input"),
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": input}),
    );
    let mut patch = input.clone();
    patch.insert(
        "expected_version".into(),
        json!({"type": "integer", "format": "int64", "description": "The version you last read"}),
    );
    schemas.insert(
        format!("{name}Patch"),
        json!({"type": "object", "additionalProperties": false, "required": ["expected_version"], "properties": patch}),
    );
    let mut record = fields;
    record.extend(common);
    record.remove("reason");
    for (key, schema) in [
        ("id", json!({"type": "integer", "format": "int64"})),
        ("entity", json!({"type": "string", "enum": [entity.name()]})),
        ("version", json!({"type": "integer", "format": "int64"})),
        (
            "created_at",
            json!({"type": "string", "format": "date-time"}),
        ),
        ("created_by", json!({"type": "integer", "format": "int64"})),
        (
            "updated_at",
            json!({"type": "string", "format": "date-time"}),
        ),
        ("updated_by", json!({"type": "integer", "format": "int64"})),
        (
            "deleted_at",
            json!({"type": "string", "format": "date-time", "nullable": true}),
        ),
        (
            "deleted_by",
            json!({"type": "integer", "format": "int64", "nullable": true}),
        ),
        ("deleted_with", json!({"type": "object", "nullable": true})),
    ] {
        record.insert(key.into(), schema);
    }
    schemas.insert(
        name.clone(),
        json!({"type": "object", "properties": record}),
    );
    schemas.insert(
        format!("{name}List"),
        json!({"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
            "next_cursor": {"type": "string", "nullable": true},
        }}),
    );
    schemas.insert(
        format!("{name}Outcome"),
        json!({"type": "object", "properties": {
            "record": {"$ref": format!("#/components/schemas/{name}")},
            "related": {"type": "array", "items": {"type": "object"}},
        }}),
    );
}

fn static_schemas(schemas: &mut Map<String, Value>) {
    let string = json!({"type": "string"});
    let object = |required: &[&str], props: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": props});
    schemas.insert("Object".into(), json!({"type": "object"}));
    schemas.insert(
        "Csv".into(),
        json!({"type": "string", "description": "text/csv; the first line names the columns"}),
    );
    schemas.insert("List".into(), json!({"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}));
    schemas.insert(
        "Health".into(),
        json!({"type": "object", "properties": {"status": string}}),
    );
    schemas.insert("Setup".into(), object(&["token", "username", "password"], json!({"token": string, "username": string, "display_name": string, "password": {"type": "string", "minLength": 10}})));
    schemas.insert(
        "Login".into(),
        object(
            &["username", "password"],
            json!({"username": string, "password": string, "remember": {"type": "boolean", "description": "Remember this device: stay signed in for 30 days without the idle limit"}}),
        ),
    );
    let credential = json!({"type": "object", "description": "The browser's PublicKeyCredential as JSON (credential.toJSON())"});
    let token = json!({"type": "string", "description": "The token that came with the options"});
    schemas.insert("SecondFactor".into(), object(&["sign_in_token", "code"], json!({"sign_in_token": string, "code": {"type": "string", "description": "6 digits from the authenticator app, or a recovery code"}})));
    schemas.insert(
        "PasskeyOptions".into(),
        object(
            &["username"],
            json!({"username": string, "remember": {"type": "boolean"}}),
        ),
    );
    schemas.insert(
        "Pending".into(),
        object(&["sign_in_token"], json!({"sign_in_token": string})),
    );
    schemas.insert(
        "PasskeyAnswer".into(),
        object(
            &["token", "credential"],
            json!({"token": token, "credential": credential}),
        ),
    );
    schemas.insert(
        "SecondFactorPasskey".into(),
        object(
            &["sign_in_token", "token", "credential"],
            json!({"sign_in_token": string, "token": token, "credential": credential}),
        ),
    );
    schemas.insert("Ceremony".into(), json!({"type": "object", "properties": {"token": string, "options": {"type": "object", "description": "For navigator.credentials (publicKey inside)"}}}));
    schemas.insert("Confirm".into(), object(&["password"], json!({"password": {"type": "string", "description": "Your password, or a code from your authenticator app, or a recovery code"}})));
    schemas.insert("TotpConfirm".into(), object(&["factor_id", "code"], json!({"factor_id": {"type": "integer"}, "code": {"type": "string", "pattern": "^[0-9]{6}$"}})));
    schemas.insert(
        "PasswordAgain".into(),
        object(&["password"], json!({"password": string})),
    );
    schemas.insert(
        "FactorRemove".into(),
        object(&["password"], json!({"password": string, "code": string})),
    );
    schemas.insert("PasskeyRegister".into(), object(&["token", "credential"], json!({"token": token, "name": {"type": "string", "maxLength": 100}, "credential": credential})));
    schemas.insert("NotMe".into(), object(&[], json!({"notice_id": {"type": "integer", "description": "The notice this is about, if any"}})));
    schemas.insert("Freeze".into(), object(&["reason"], json!({"reason": {"type": "string", "minLength": 1, "maxLength": 500, "description": "Shown to the user and kept in the audit log", "example": "token used from an unknown address"}})));
    schemas.insert("LockdownSwitch".into(), object(&["on"], json!({"on": {"type": "boolean", "example": false}, "reason": {"type": "string", "maxLength": 500, "description": "Required to lock down: shown to everyone and kept in the audit log"}})));
    schemas.insert(
        "TwoFactorPolicy".into(),
        object(&["required"], json!({"required": {"type": "boolean"}})),
    );
    schemas.insert("PasswordChange".into(), object(&["current_password", "new_password"], json!({"current_password": string, "new_password": {"type": "string", "minLength": 10}})));
    schemas.insert(
        "PasswordReset".into(),
        object(
            &["password"],
            json!({"password": {"type": "string", "minLength": 10}}),
        ),
    );
    schemas.insert("TokenCreate".into(), object(&["name", "password"], json!({"name": string, "password": {"type": "string", "description": "Your password (or a code from your authenticator app), asked again; a token cannot make tokens"}, "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 365, "description": "Default 90"}, "read_only": {"type": "boolean", "description": "The token may read but change nothing"}, "modules": {"type": "array", "minItems": 1, "uniqueItems": true, "items": {"type": "string", "enum": holdfast_domain::Module::ALL.iter().map(|m| m.key()).collect::<Vec<_>>()}, "description": "Only these modules (of the rights you have); left out: all of them"}, "never_expires": {"type": "boolean", "description": "No expiry; refused unless the administrators' policy allows it"}})));
    schemas.insert("Token".into(), json!({"type": "object", "properties": {"id": {"type": "integer"}, "name": string, "secret": string}}));
    let role_key = json!({"type": "string", "description": "admin, manager, rep, auditor or a custom role's key", "example": "rep"});
    let username = json!({"type": "string", "minLength": 2, "maxLength": 64, "pattern": "^[\\p{L}\\p{N}._@-]{2,64}$", "description": "Letters, digits and . _ - @; not case-sensitive", "example": "xiaoli"});
    let display_name =
        json!({"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"});
    let record_ref = json!({"type": "string", "pattern": "^(company|companies|contact|contacts|deal|deals|activity|activities):[1-9][0-9]*$", "description": "KIND:ID of one record", "example": "contact:1"});
    schemas.insert("User".into(), json!({"type": "object", "properties": {"id": {"type": "integer"}, "username": string, "display_name": string, "role": role_key, "team_id": {"type": ["integer", "null"]}, "active": {"type": "boolean"}, "pending": {"type": "boolean"}}}));
    schemas.insert("UserCreate".into(), object(&["username", "password"], json!({"username": username, "display_name": display_name, "password": {"type": "string", "minLength": 10}, "role": role_key})));
    schemas.insert("UserUpdate".into(), object(&[], json!({"display_name": display_name, "role": role_key, "team_id": {"type": ["integer", "null"]}, "active": {"type": "boolean"}, "approve": {"type": "boolean"}, "dry_run": {"type": "boolean"}})));
    let permissions: Vec<String> = holdfast_domain::Module::ALL
        .iter()
        .flat_map(|m| {
            m.rights()
                .iter()
                .map(move |r| holdfast_domain::access::permission_key((*m, *r)))
        })
        .collect();
    schemas.insert("Role".into(), object(&["name", "scope"], json!({"name": string, "rights": {"type": "array", "items": {"type": "string", "enum": permissions}}, "scope": {"type": "string", "enum": ["own", "team", "subteams", "all"]}, "fields": {"type": "object", "description": "entity.field → hidden or read_only", "additionalProperties": {"type": "string", "enum": ["hidden", "read_only", "hidden_outside_team", "read_only_when_won"]}}, "dry_run": {"type": "boolean"}})));
    schemas.insert("Team".into(), object(&["name"], json!({"name": string, "parent_id": {"type": ["integer", "null"]}, "manager_id": {"type": ["integer", "null"]}, "dry_run": {"type": "boolean"}})));
    schemas.insert(
        "ModuleSwitch".into(),
        object(
            &["on"],
            json!({"on": {"type": "boolean"}, "dry_run": {"type": "boolean"}}),
        ),
    );
    let mut request = object(
        &["reason"],
        json!({"permission": {"type": "string", "enum": permissions, "description": "A right to ask for"}, "record": record_ref, "reason": string}),
    );
    request["description"] =
        "Ask for a right (`permission`) or for one record to be shared (`record`)".into();
    request["anyOf"] = json!([{"required": ["permission"]}, {"required": ["record"]}]);
    schemas.insert("AccessRequest".into(), request);
    schemas.insert("Review".into(), object(&["outcome"], json!({"outcome": {"type": "string", "enum": ["confirmed", "trimmed"]}, "note": string})));
    schemas.insert(
        "Decision".into(),
        object(
            &[],
            json!({"expires_at": {"type": "string", "format": "date-time"}, "note": string}),
        ),
    );
    schemas.insert("AccessChange".into(), json!({"type": "object", "properties": {"applied": {"type": "boolean"}, "team_id": {"type": ["integer", "null"]}, "preview": {"type": "object", "properties": {"users_affected": {"type": "integer"}, "records_hidden_from_someone": {"type": "integer"}, "records_shown_to_someone": {"type": "integer"}, "users": {"type": "array", "items": {"type": "object"}}}}}}));
    schemas.insert("Explanation".into(), json!({"type": "object", "properties": {"allowed": {"type": "boolean"}, "steps": {"type": "array", "items": {"type": "object", "properties": {"check": string, "ok": {"type": "boolean"}, "code": string, "message": string, "can_change": {"type": "array", "items": string}}}}}}));
    schemas.insert("CustomFieldCreate".into(), object(&["entity", "key", "label", "kind"], json!({"entity": {"type": "string", "enum": ["company", "contact", "deal", "activity"]}, "key": string, "label": string, "kind": {"type": "string", "enum": ["text", "number", "date", "select"]}, "options": {"type": "array", "items": string}})));
    schemas.insert(
        "Pipeline".into(),
        object(
            &["name", "stages"],
            json!({"name": string, "stages": {"type": "array", "items": string}}),
        ),
    );
    schemas.insert(
        "Reason".into(),
        object(
            &[],
            json!({"reason": string, "expected_version": {"type": "integer"}}),
        ),
    );
    schemas.insert(
        "RestoreVersion".into(),
        object(
            &["expected_version"],
            json!({"reason": string, "expected_version": {"type": "integer", "description": "The record's current version, so a change made meanwhile is not overwritten"}}),
        ),
    );
    schemas.insert(
        "At".into(),
        object(
            &["at"],
            json!({"at": {"type": "string", "format": "date-time"}}),
        ),
    );
    let choice = json!({"type": "string", "enum": ["keep", "revert"]});
    schemas.insert("Revert".into(), object(&["to"], json!({
        "to": {"type": "string", "format": "date-time"},
        "by_user_id": {"type": "integer", "description": "Undo only this user's changes; without it, everyone's"},
        "dry_run": {"type": "boolean", "description": "Only say, record by record, what would change"},
        "conflicts": {"type": "string", "enum": ["keep", "revert"], "description": "Where someone else changed the same thing later: keep their change (default) or revert it too"},
        "choices": {"type": "array", "description": "Per conflict, overriding `conflicts`", "items": object(&["entity", "id", "field", "choice"], json!({
            "entity": {"type": "string", "enum": ["company", "contact", "deal", "activity"]},
            "id": {"type": "integer"},
            "field": {"type": "string", "description": "A field, or `record` for the record itself"},
            "choice": choice,
        }))},
    })));
    let mut restore = object(
        &[],
        json!({"ids": {"type": "array", "items": record_ref, "minItems": 1}, "deleted_since": {"type": "string", "format": "date-time"}, "entity": {"type": "string", "enum": ["company", "contact", "deal", "activity"]}, "matching": string}),
    );
    restore["description"] = "Which records: `ids`, or `entity` with `matching` (a name), or everything deleted or purged since `deleted_since`".into();
    restore["anyOf"] = json!([{"required": ["ids"]}, {"required": ["entity", "matching"]}, {"required": ["deleted_since"]}]);
    schemas.insert("RestoreRecords".into(), restore);
    schemas.insert("Error".into(), json!({"type": "object", "properties": {"error": {"type": "object", "required": ["code", "message", "op_id"], "properties": {
        "code": string, "message": string, "op_id": string,
        "fields": {"type": "array", "items": {"type": "object", "properties": {"field": string, "code": string, "message": string}}},
    }}}}));
}

fn operation(op: &Operation, entity: Option<Entity>, public: bool, path: &str) -> Value {
    let schema_ref = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let per_entity = |suffix: &str| {
        entity
            .map(|e| format!("{}{suffix}", type_name(e)))
            .unwrap_or_else(|| "Object".into())
    };
    let response = match op.response {
        "Record" => per_entity(""),
        "RecordList" => per_entity("List"),
        "Outcome" => per_entity("Outcome"),
        other => other.to_owned(),
    };
    let mut parameters: Vec<Value> = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let mut query: Vec<&str> = op.query.clone();
    if op.response == "RecordList"
        && let Some(entity) = entity
    {
        query.extend_from_slice(holdfast_app::records::COMMON_LIST_PARAMS);
        query.extend(holdfast_app::records::list_filters(entity));
    }
    parameters.extend(query.iter().map(|name| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}})));
    let success = if op.creates { "201" } else { "200" };
    let mut responses = json!({
        success: {"description": "Success", "content": {"application/json": {"schema": schema_ref(&response)}}},
        "default": {"description": "Error: 400 malformed, 401 not logged in, 403 not allowed, 404 not found, 408 body too slow, 409 conflict, 413 too large, 422 invalid fields, 429 throttled, 503 busy or database damaged (read-only), 507 disk full", "content": {"application/json": {"schema": schema_ref("Error")}}},
    });
    let dry_run = matches!(op.body, Body::Named(name) if named_has_dry_run(name));
    if op.creates && dry_run {
        responses["200"] = json!({"description": "Dry run: the preview; nothing was created", "content": {"application/json": {"schema": schema_ref(&response)}}});
    }
    let mut out = json!({
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
    });
    let body = match op.body {
        Body::None => None,
        Body::Named(name) => Some(name.to_owned()),
        Body::EntityInput => Some(per_entity("Input")),
        Body::EntityPatch => Some(per_entity("Patch")),
    };
    if let Some(body) = body {
        out["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(&body)}}});
    }
    if public {
        out["security"] = json!([]);
    }
    out
}

/// Whether a named request schema has a `dry_run` flag.
fn named_has_dry_run(name: &str) -> bool {
    let mut schemas = Map::new();
    static_schemas(&mut schemas);
    schemas
        .get(name)
        .is_some_and(|schema| schema["properties"].get("dry_run").is_some())
}

/// Builds the whole document.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let targets: Vec<(String, Option<Entity>)> = if route.per_entity {
            Entity::ALL
                .iter()
                .map(|e| (route.path.replace("{collection}", e.plural()), Some(*e)))
                .collect()
        } else {
            vec![(route.path.clone(), None)]
        };
        for (path, entity) in targets {
            let mut item = Map::new();
            for op in &route.operations {
                item.insert(
                    op.method.to_ascii_lowercase(),
                    operation(op, entity, route.public, &path),
                );
            }
            paths.insert(path, Value::Object(item));
        }
    }
    let mut schemas = Map::new();
    static_schemas(&mut schemas);
    for entity in Entity::ALL {
        entity_schemas(entity, &mut schemas);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Holdfast",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted CRM. Every change is kept as a version; deletes go to a recycle bin. Authenticate with the session cookie from /api/v1/auth/login or with Authorization: Bearer <API token>.",
        },
        "servers": [{"url": "/"}],
        "security": [{"session": []}, {"token": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": crate::extract::SESSION_COOKIE},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
    })
}
