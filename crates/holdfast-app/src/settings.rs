//! Installation settings that shape customer data: custom fields and deal pipelines.
//! Reading them is open to every user (forms need them); changing them is for administrators.

use crate::{App, AppError};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, CustomFieldDef, CustomFieldKind, Entity, FieldErrors};
use holdfast_store::AuditDraft;
use serde_json::json;

pub async fn custom_fields(app: &App, actor: &Actor) -> Result<Vec<CustomFieldDef>, AppError> {
    require_some_records(actor)?;
    Ok(app.db.custom_fields().await?)
}

/// Settings that describe customer records (custom fields, pipelines) are for users who can
/// read at least one kind of record; a pending account is refused with its reason.
fn require_some_records(actor: &Actor) -> Result<(), AppError> {
    let mut first = None;
    for entity in Entity::ALL {
        match authorize(actor, Action::Read(entity)) {
            Ok(()) => return Ok(()),
            Err(denial) => {
                first.get_or_insert(denial);
            }
        }
    }
    Err(first.map_or_else(|| AppError::not_found("records"), AppError::Forbidden))
}

/// Defines a custom field from `draft` (its `id` and `archived` are ignored).
pub async fn create_custom_field(
    app: &App,
    actor: &Actor,
    op_id: &str,
    draft: CustomFieldDef,
) -> Result<CustomFieldDef, AppError> {
    authorize(actor, Action::Administer)?;
    let CustomFieldDef {
        entity,
        key,
        label,
        kind,
        options,
        ..
    } = draft;
    let mut errors = FieldErrors::default();
    let key = key.trim();
    let key_ok = (1..=40).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !key_ok {
        errors.push(
            "key",
            "invalid_key",
            "1 to 40 lowercase letters, digits or _, starting with a letter (e.g. region)",
        );
    }
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 100 {
        errors.push("label", "invalid_label", "1 to 100 characters");
    }
    let options: Vec<String> = options
        .iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    match kind {
        CustomFieldKind::Select if options.is_empty() || options.len() > 100 => errors.push(
            "options",
            "required",
            "A select field needs 1 to 100 options",
        ),
        CustomFieldKind::Select => {}
        _ if !options.is_empty() => {
            errors.push("options", "not_allowed", "Only select fields have options")
        }
        _ => {}
    }
    errors.into_result()?;
    let mut def = CustomFieldDef {
        id: 0,
        entity,
        key: key.to_owned(),
        label: label.to_owned(),
        kind,
        options,
        archived: false,
    };
    let audit = AuditDraft::new(
        actor,
        op_id,
        "custom_field.create",
        json!({"entity": entity.name(), "key": key, "kind": kind.name()}),
    );
    let mut tx = app.db.begin_write(app.now()).await?;
    def.id = tx.create_custom_field(&def, audit).await?;
    tx.commit().await?;
    Ok(def)
}

/// Archives a custom field. Values already stored stay in the records and in their history.
pub async fn archive_custom_field(
    app: &App,
    actor: &Actor,
    op_id: &str,
    id: i64,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    let mut tx = app.db.begin_write(app.now()).await?;
    let audit = AuditDraft::new(actor, op_id, "custom_field.archive", json!({"id": id}));
    if !tx.archive_custom_field(id, audit).await? {
        return Err(AppError::not_found(format!("active custom field {id}")));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn pipelines(
    app: &App,
    actor: &Actor,
) -> Result<Vec<(String, String, Vec<String>)>, AppError> {
    require_some_records(actor)?;
    Ok(app.db.pipelines().await?)
}

/// Creates or redefines a pipeline. Deals keep their stage even if it is removed here; they
/// must be moved to an existing stage at their next edit.
pub async fn put_pipeline(
    app: &App,
    actor: &Actor,
    op_id: &str,
    key: &str,
    name: &str,
    stages: Vec<String>,
) -> Result<(), AppError> {
    authorize(actor, Action::Administer)?;
    let mut errors = FieldErrors::default();
    let key_ok = (1..=50).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !key_ok {
        errors.push(
            "key",
            "invalid_key",
            "1 to 50 lowercase letters, digits, - or _",
        );
    }
    if name.trim().is_empty() || name.chars().count() > 100 {
        errors.push("name", "invalid_name", "1 to 100 characters");
    }
    let stages: Vec<String> = stages.iter().map(|s| s.trim().to_owned()).collect();
    let mut unique = stages.clone();
    unique.sort();
    unique.dedup();
    if stages.is_empty()
        || stages.len() > 30
        || unique.len() != stages.len()
        || stages
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > 50)
    {
        errors.push(
            "stages",
            "invalid_stages",
            "1 to 30 different stage names, each 1 to 50 characters",
        );
    }
    errors.into_result()?;
    let audit = AuditDraft::new(
        actor,
        op_id,
        "pipeline.put",
        json!({"key": key, "stages": stages}),
    );
    let mut tx = app.db.begin_write(app.now()).await?;
    tx.put_pipeline(key, name.trim(), &stages, audit).await?;
    tx.commit().await?;
    Ok(())
}

/// The audit log, for administrators.
/// Audit entries matching `filter`, oldest first (at most 1,000 a page; page on with
/// `after_seq`).
pub async fn audit_log(
    app: &App,
    actor: &Actor,
    filter: &holdfast_store::AuditFilter,
    limit: i64,
) -> Result<Vec<holdfast_store::AuditRow>, AppError> {
    authorize(actor, Action::Audit)?;
    Ok(app.db.audit_filtered(filter, limit.clamp(1, 1000)).await?)
}
