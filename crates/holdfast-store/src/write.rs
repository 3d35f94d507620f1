//! The write transaction: the one path by which Holdfast changes stored data.
//!
//! A [`WriteTx`] is the only way to write customer records, their versions, the search and tag
//! indexes, and the audit log. Its record method, [`WriteTx::commit_record_change`], writes the
//! row, the version and the audit entry together, and the SQL behind each of those steps is
//! private to this module, so no caller can write one without the others. Administrative writes
//! (users, tokens, custom fields, pipelines) likewise append their audit entry in the same call.
//!
//! Every write transaction starts by locking the audit head row. That one statement serialises
//! writers on both backends (SQLite takes its write lock at once, as `BEGIN IMMEDIATE` would;
//! PostgreSQL takes a row lock that several Holdfast instances share), which keeps the audit
//! hash chain linear and makes the read-check-write inside a transaction safe without
//! in-process locks. The version predicate on every UPDATE is a second line of defence.

use crate::rows::{self, Param, Params};
use crate::snapshot::{self, BACKUP_TABLES, EPHEMERAL_TABLES, REBUILT_TABLES, TableSpec};
use crate::{AuditKey, AuditSeal, Backend, Db, StoreError};
use anyhow::Context as _;
use holdfast_domain::search::terms_for;
use holdfast_domain::{Actor, ActorKind, CustomFieldDef, Entity, Record, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::{Any, Row as _, Transaction};
use std::collections::{BTreeSet, HashSet};

/// An audit entry before it is chained and stored.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor_id: i64,
    pub actor_name: String,
    pub op_id: String,
    /// Dotted, stable: `contact.update`, `user.create`, `auth.login`.
    pub action: String,
    pub entity: Option<Entity>,
    pub record_id: Option<i64>,
    pub version: Option<i64>,
    /// What changed (field names, not values: the audit log holds no personal data, so erasing
    /// a person never requires rewriting the tamper-evident chain), the reason, and so on.
    pub detail: Value,
    /// How the actor acted: through which session or API token, from which address.
    pub via: Via,
}

/// The session or API token an audited action came through, and the client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    pub session_id: Option<i64>,
    pub token_id: Option<i64>,
    pub client: Option<String>,
}

impl Via {
    pub fn of(actor: &Actor) -> Via {
        let (session_id, token_id) = match actor.kind {
            ActorKind::Session { session_id } => (Some(session_id), None),
            ActorKind::ApiToken { token_id } => (None, Some(token_id)),
            ActorKind::System => (None, None),
        };
        Via {
            session_id,
            token_id,
            client: actor.client.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Via::default()
    }
}

impl AuditDraft {
    pub fn new(actor: &Actor, op_id: &str, action: impl Into<String>, detail: Value) -> AuditDraft {
        AuditDraft {
            actor_id: actor.user_id,
            actor_name: actor.username.clone(),
            op_id: op_id.to_owned(),
            action: action.into(),
            entity: None,
            record_id: None,
            version: None,
            detail,
            via: Via::of(actor),
        }
    }
}

/// One change to one record, as the app decided it.
pub struct RecordWrite<'a> {
    /// The row as read inside this transaction; `None` on create.
    pub before: Option<&'a Record>,
    /// The complete new state. On create an `id` of 0 asks the database for one; any other id
    /// is kept (a purged record brought back from a backup under its old id).
    pub after: Record,
    /// `create`, `update`, `delete`, `restore` or `restore_version`; recorded in the version
    /// and, as `<entity>.<action>`, in the audit log.
    pub action: &'static str,
    pub actor: &'a Actor,
    pub op_id: &'a str,
    pub reason: Option<&'a str>,
}

/// What [`WriteTx::seal_audit_log`] found or did.
#[derive(Debug, Clone)]
pub enum Sealing {
    /// The log was sealed with this key already (from the entry it records).
    Already(AuditKey),
    /// The log is sealed with this key from the next entry on.
    Sealed(AuditKey),
    /// The log is sealed with another key, by this id.
    Other(String),
}

pub struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    backend: Backend,
    /// Told when a commit goes through (a full disk has room again).
    health: std::sync::Arc<crate::health::Health>,
    pub(crate) now: Timestamp,
    pub(crate) head_seq: i64,
    head_hash: String,
    /// Whether the audit head has the seal's columns (schema 16 on).
    sealable: bool,
    /// The seal the head recorded when this transaction read it.
    seal: AuditSeal,
    /// The key the log's new entries are sealed with (`None`: a log not sealed), or why they
    /// cannot be written: the log is sealed with a key this Holdfast was not given.
    head_key: Result<Option<AuditKey>, String>,
    /// The key this Holdfast was given, to resolve a restored log's seal with.
    own_key: Option<AuditKey>,
    /// Whether audit entries were appended: the head row is written once, at commit.
    head_moved: bool,
    /// References found live in this transaction, so a batch of contacts at one company checks
    /// the company once. A record this transaction deletes or purges is taken out again.
    known_live: HashSet<(Entity, i64)>,
    /// Owners found active in this transaction (user changes do not share its transactions).
    known_active: HashSet<i64>,
    /// Version, audit and index rows waiting to be written as multi-row inserts: one statement
    /// for many records instead of several per record. Always written before the transaction
    /// commits and before anything in it deletes from those tables.
    pending: Pending,
}

/// Rows buffered by a [`WriteTx`], each as its bound parameters in column order.
#[derive(Default)]
struct Pending {
    versions: Vec<Vec<Param>>,
    audit: Vec<Vec<Param>>,
    /// Rows of (entity code, value, record id).
    terms: Vec<Vec<Param>>,
    tags: Vec<Vec<Param>>,
}

impl Pending {
    fn len(&self) -> usize {
        self.versions.len() + self.audit.len() + self.terms.len() + self.tags.len()
    }
}

/// Rows buffered before a flush is forced, which bounds the statement's size.
const PENDING_MAX: usize = 500;

const VERSION_COLUMNS: &str =
    "entity, record_id, version, action, at, actor_id, op_id, reason, changed, snapshot";
const AUDIT_INSERT_COLUMNS: &str = "seq, at, actor_id, actor_name, op_id, action, entity, record_id, version, detail, prev_hash, hash, session_id, token_id, client";

impl Db {
    /// Starts a write transaction stamped with `now`: the one time used for the rows, versions
    /// and audit entries it writes.
    ///
    /// Refused while the database is known to be damaged (see [`crate::health`]).
    pub async fn begin_write(&self, now: Timestamp) -> Result<WriteTx, StoreError> {
        if let Some(fault) = self.health.corrupt() {
            return Err(StoreError::ReadOnly(fault));
        }
        self.begin_write_in_read_only_mode(now).await
    }

    /// A write transaction even while the database is read-only because it was found damaged:
    /// only for signing in and out (so administrators can see what is wrong) and for restoring
    /// a whole backup over it.
    pub async fn begin_write_in_read_only_mode(
        &self,
        now: Timestamp,
    ) -> Result<WriteTx, StoreError> {
        let mut tx = self
            .write
            .begin()
            .await
            .context("starting a write transaction")?;
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await
            .context("locking the audit head")?;
        // A database at a schema before the seal (16) is written to while an older backup is
        // restored and upgraded.
        let sealable = self.head_sealable(&mut tx).await?;
        let (seal, head_hash) = read_head(&mut tx, sealable)
            .await?
            .context("the audit head row is missing")?;
        let own_key = self.audit_key();
        Ok(WriteTx {
            backend: self.backend,
            health: self.health.clone(),
            now,
            head_seq: seal.seq,
            head_hash,
            sealable,
            head_key: crate::audit_key::resolve(&seal.key_id, own_key.iter()),
            seal,
            own_key,
            head_moved: false,
            known_live: HashSet::new(),
            known_active: HashSet::new(),
            pending: Pending::default(),
            tx,
        })
    }

    /// Marks a session as used, for the idle timeout. Bookkeeping, not audited.
    pub async fn touch_session(&self, session_id: i64, now: Timestamp) -> anyhow::Result<()> {
        if self.health.corrupt().is_some() {
            return Ok(());
        }
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now.micros())
            .bind(session_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn touch_token(&self, token_id: i64, now: Timestamp) -> anyhow::Result<()> {
        if self.health.corrupt().is_some() {
            return Ok(());
        }
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now.micros())
            .bind(token_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records a login attempt under each key as a failure *before* its password is checked
    /// (committed at once), and returns the rows' ids. Counting afterwards then sees this
    /// attempt and every one committed before it, so however many guesses arrive at once, no
    /// more than the limit get past the count to the password check.
    pub async fn record_login_attempt(
        &self,
        keys: &[String],
        now: Timestamp,
    ) -> anyhow::Result<Vec<i64>> {
        let mut tx = self.write.begin().await?;
        let mut ids = Vec::new();
        for key in keys {
            let row =
                sqlx::query("INSERT INTO login_failures (key, at) VALUES ($1, $2) RETURNING id")
                    .bind(key.clone())
                    .bind(now.micros())
                    .fetch_one(&mut *tx)
                    .await?;
            ids.push(row.try_get::<i64, _>(0)?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Takes back attempts recorded by [`Db::record_login_attempt`] (a refused or a successful one).
    pub async fn forget_login_attempts(&self, ids: &[i64]) -> anyhow::Result<()> {
        for id in ids {
            sqlx::query("DELETE FROM login_failures WHERE id = $1")
                .bind(*id)
                .execute(&self.write)
                .await?;
        }
        Ok(())
    }

    /// Forgets every failure counted under `key` (an administrator lifts a throttle); returns how many.
    pub async fn forget_login_key(&self, key: &str) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key.to_owned())
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// Forgets failures of `key` (after a successful login) and any failure older than `before`.
    pub async fn clear_login_failures(&self, key: &str, before: Timestamp) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1 OR at < $2")
            .bind(key.to_owned())
            .bind(before.micros())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key.to_owned())
            .bind(value.to_owned())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn delete_meta(&self, key: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

/// A session to start.
pub struct NewSessionRow<'a> {
    pub user_id: i64,
    pub token_hash: &'a str,
    pub expires_at: Timestamp,
    pub address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// See [`crate::SessionRow::method`].
    pub method: &'a str,
    pub remembered: bool,
}

/// An API token to make (only its hash is stored).
pub struct NewTokenRow<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Option<Timestamp>,
    pub read_only: bool,
    /// Module keys it is limited to; `None`: all its user's rights.
    pub modules: Option<&'a [String]>,
}

/// Which of a user's sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum SessionScope {
    One(i64),
    /// All of them, except the given one (the session making the request) if any.
    AllExcept(Option<i64>),
}

/// Fields of a new user.
pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub team_id: Option<i64>,
    /// Waits for an administrator's approval before it sees anything.
    pub pending: bool,
    /// The password was chosen by an administrator: the user must change it first.
    pub must_change_password: bool,
}

/// Changes to a user; `None` leaves a column alone.
#[derive(Default)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    pub role: Option<String>,
    /// `Some(None)` takes the user out of their team.
    pub team_id: Option<Option<i64>>,
    pub active: Option<bool>,
    pub pending: Option<bool>,
    pub password_hash: Option<String>,
    pub must_change_password: Option<bool>,
    /// `Some(None)` clears the choice (back to the browser's language).
    pub locale: Option<Option<String>>,
}

impl WriteTx {
    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        if self.head_moved {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(self.head_seq)
                .bind(self.head_hash.clone())
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await.context("committing")?;
        self.health.write_succeeded();
        Ok(())
    }

    /// Reads a record inside the transaction (so the read and the write see the same state).
    pub async fn record(&mut self, entity: Entity, id: i64) -> Result<Option<Record>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE id = $1",
            rows::select_list(entity),
            entity.plural()
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row
            .map(|row| rows::record_from_row(entity, &row))
            .transpose()?)
    }

    /// Records of `entity` whose `field` points at `id`; only live ones unless `include_deleted`.
    pub async fn records_referencing(
        &mut self,
        entity: Entity,
        field: &str,
        id: i64,
        include_deleted: bool,
    ) -> Result<Vec<Record>, StoreError> {
        if entity.field(field).is_none() {
            return Err(anyhow::anyhow!("{entity} has no field {field}").into());
        }
        let live = if include_deleted {
            ""
        } else {
            " AND deleted_at IS NULL"
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {field} = $1{live} ORDER BY id",
            rows::select_list(entity),
            entity.plural()
        );
        let found = sqlx::query(&sql).bind(id).fetch_all(&mut *self.tx).await?;
        Ok(found
            .iter()
            .map(|row| rows::record_from_row(entity, row))
            .collect::<anyhow::Result<_>>()?)
    }

    /// Every record that went to the recycle bin as part of the deletion rooted at `root`.
    pub async fn records_in_batch(
        &mut self,
        root_entity: Entity,
        root_id: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let mut found = Vec::new();
        for entity in Entity::ALL {
            let sql = format!(
                "SELECT {} FROM {} WHERE deleted_root_entity = $1 AND deleted_root_id = $2 ORDER BY id",
                rows::select_list(entity),
                entity.plural()
            );
            let batch = sqlx::query(&sql)
                .bind(root_entity.name())
                .bind(root_id)
                .fetch_all(&mut *self.tx)
                .await?;
            for row in &batch {
                found.push(rows::record_from_row(entity, row)?);
            }
        }
        Ok(found)
    }

    /// Whether a live record exists; for checking references.
    pub async fn is_live(&mut self, entity: Entity, id: i64) -> Result<bool, StoreError> {
        if self.known_live.contains(&(entity, id)) {
            return Ok(true);
        }
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE id = $1 AND deleted_at IS NULL",
            entity.plural()
        );
        let live = sqlx::query(&sql)
            .bind(id)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get::<i64, _>(0)?
            > 0;
        if live {
            self.known_live.insert((entity, id));
        }
        Ok(live)
    }

    pub async fn is_active_user(&mut self, user_id: i64) -> Result<bool, StoreError> {
        if self.known_active.contains(&user_id) {
            return Ok(true);
        }
        let row = sqlx::query("SELECT COUNT(*) FROM users WHERE id = $1 AND active = 1")
            .bind(user_id)
            .fetch_one(&mut *self.tx)
            .await?;
        let active = row.try_get::<i64, _>(0)? > 0;
        if active {
            self.known_active.insert(user_id);
        }
        Ok(active)
    }

    /// Writes one record change: the row, its version, its tag and search index entries and its
    /// audit entry. Returns the record as stored (with its id on create).
    pub async fn commit_record_change(
        &mut self,
        write: RecordWrite<'_>,
    ) -> Result<Record, StoreError> {
        let RecordWrite {
            before,
            mut after,
            action,
            actor,
            op_id,
            reason,
        } = write;
        let entity = after.entity;
        match before {
            None => after.id = self.insert_row(&after).await?,
            Some(before) => self.update_row(before, &after).await?,
        }
        if after.is_deleted() {
            self.known_live.remove(&(entity, after.id));
        }
        let changed = after.changed_fields(before);
        self.insert_version(&after, action, actor, op_id, reason, &changed)
            .await?;
        self.sync_tags(before, &after).await?;
        self.sync_search_terms(before, &after).await?;
        let mut audit = AuditDraft::new(
            actor,
            op_id,
            format!("{}.{action}", entity.name()),
            json!({"changed": changed}),
        );
        if let Some(reason) = reason {
            audit.detail["reason"] = reason.into();
        }
        audit.entity = Some(entity);
        audit.record_id = Some(after.id);
        audit.version = Some(after.version);
        self.append_audit(audit).await?;
        Ok(after)
    }

    /// Removes a record from the recycle bin for good: the row, its history and its index
    /// entries. The audit entry that says so stays.
    pub async fn purge_record(
        &mut self,
        record: &Record,
        actor: &Actor,
        op_id: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        if !record.is_deleted() {
            return Err(anyhow::anyhow!("only records in the recycle bin can be purged").into());
        }
        // The purge deletes versions and index rows; none may still be waiting to be written.
        self.flush().await?;
        let entity = record.entity;
        let removed_versions =
            sqlx::query("DELETE FROM record_versions WHERE entity = $1 AND record_id = $2")
                .bind(entity.name())
                .bind(record.id)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        for table in ["record_tags", "search_terms"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE entity = $1 AND record_id = $2"
            ))
            .bind(entity.code())
            .bind(record.id)
            .execute(&mut *self.tx)
            .await?;
        }
        let sql = format!(
            "DELETE FROM {} WHERE id = $1 AND version = $2",
            entity.plural()
        );
        let deleted = sqlx::query(&sql)
            .bind(record.id)
            .bind(record.version)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if deleted != 1 {
            return Err(self.conflict(entity, record.id).await);
        }
        let mut audit = AuditDraft::new(
            actor,
            op_id,
            format!("{}.purge", entity.name()),
            json!({"reason": reason, "versions_removed": removed_versions}),
        );
        audit.entity = Some(entity);
        audit.record_id = Some(record.id);
        audit.version = Some(record.version);
        self.append_audit(audit).await
    }

    async fn insert_row(&mut self, record: &Record) -> Result<i64, StoreError> {
        let columns = rows::columns(record.entity);
        let mut params = Params::default();
        let keep_id = record.id != 0;
        let mut values = if keep_id {
            vec![Param::Int(Some(record.id))]
        } else {
            Vec::new()
        };
        values.extend(rows::record_params(record)?);
        let placeholders: Vec<String> = values.into_iter().map(|p| params.push(p)).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) RETURNING id",
            record.entity.plural(),
            columns[usize::from(!keep_id)..].join(", "),
            placeholders.join(", ")
        );
        let row = params
            .bind(sqlx::query(&sql))
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    async fn update_row(&mut self, before: &Record, after: &Record) -> Result<(), StoreError> {
        let columns = rows::columns(after.entity);
        let mut params = Params::default();
        let assignments: Vec<String> = rows::record_params(after)?
            .into_iter()
            .zip(&columns[1..])
            .map(|(param, column)| format!("{column} = {}", params.push(param)))
            .collect();
        let id = params.int(before.id);
        let version = params.int(before.version);
        let sql = format!(
            "UPDATE {} SET {} WHERE id = {id} AND version = {version}",
            after.entity.plural(),
            assignments.join(", ")
        );
        let updated = params
            .bind(sqlx::query(&sql))
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if updated != 1 {
            return Err(self.conflict(after.entity, before.id).await);
        }
        Ok(())
    }

    async fn conflict(&mut self, entity: Entity, id: i64) -> StoreError {
        let sql = format!("SELECT version FROM {} WHERE id = $1", entity.plural());
        match sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
        {
            Ok(Some(row)) => match row.try_get::<i64, _>(0) {
                Ok(current) => StoreError::VersionConflict { current },
                Err(error) => error.into(),
            },
            Ok(None) => {
                StoreError::Internal(anyhow::anyhow!("{entity} {id} vanished during the write"))
            }
            Err(error) => error.into(),
        }
    }

    async fn insert_version(
        &mut self,
        record: &Record,
        action: &str,
        actor: &Actor,
        op_id: &str,
        reason: Option<&str>,
        changed: &[String],
    ) -> Result<(), StoreError> {
        self.pending.versions.push(vec![
            Param::Text(Some(record.entity.name().to_owned())),
            Param::Int(Some(record.id)),
            Param::Int(Some(record.version)),
            Param::Text(Some(action.to_owned())),
            Param::Int(Some(self.now.micros())),
            Param::Int(Some(actor.user_id)),
            Param::Text(Some(op_id.to_owned())),
            Param::Text(reason.map(str::to_owned)),
            Param::Text(Some(
                serde_json::to_string(changed).context("encoding changed fields")?,
            )),
            Param::Text(Some(
                serde_json::to_string(&record.to_json()).context("encoding snapshot")?,
            )),
        ]);
        self.flush_if_full().await?;
        Ok(())
    }

    async fn sync_tags(
        &mut self,
        before: Option<&Record>,
        after: &Record,
    ) -> Result<(), StoreError> {
        let old: BTreeSet<String> = before
            .map(|b| b.tags.iter().cloned().collect())
            .unwrap_or_default();
        let new: BTreeSet<String> = after.tags.iter().cloned().collect();
        self.sync_index("record_tags", "tag", after, &old, &new)
            .await
    }

    async fn sync_search_terms(
        &mut self,
        before: Option<&Record>,
        after: &Record,
    ) -> Result<(), StoreError> {
        let old = before.map(terms_for).unwrap_or_default();
        let new = terms_for(after);
        self.sync_index("search_terms", "term", after, &old, &new)
            .await
    }

    async fn sync_index(
        &mut self,
        table: &str,
        column: &str,
        record: &Record,
        old: &BTreeSet<String>,
        new: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        if old.difference(new).next().is_some() {
            // A term added earlier in this transaction may be the one removed now.
            self.flush().await?;
        }
        for gone in old.difference(new) {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE entity = $1 AND {column} = $2 AND record_id = $3"
            ))
            .bind(record.entity.code())
            .bind(gone.clone())
            .bind(record.id)
            .execute(&mut *self.tx)
            .await?;
        }
        let tags = table == "record_tags";
        for added in new.difference(old) {
            let row = vec![
                Param::Int(Some(record.entity.code())),
                Param::Text(Some(added.clone())),
                Param::Int(Some(record.id)),
            ];
            if tags {
                self.pending.tags.push(row);
            } else {
                self.pending.terms.push(row);
            }
        }
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> Result<(), StoreError> {
        if self.pending.len() >= PENDING_MAX {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the buffered rows, a multi-row `INSERT` per table and at most 100 rows each.
    async fn flush(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        self.insert_many("record_versions", VERSION_COLUMNS, pending.versions)
            .await?;
        self.insert_many("audit_log", AUDIT_INSERT_COLUMNS, pending.audit)
            .await?;
        self.insert_many("search_terms", "entity, term, record_id", pending.terms)
            .await?;
        self.insert_many("record_tags", "entity, tag, record_id", pending.tags)
            .await
    }

    async fn insert_many(
        &mut self,
        table: &str,
        columns: &str,
        rows: Vec<Vec<Param>>,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(100) {
            let mut params = Params::default();
            let values: Vec<String> = chunk
                .iter()
                .map(|row| {
                    let cells: Vec<String> = row.iter().map(|p| params.push(p.clone())).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({columns}) VALUES {}",
                values.join(", ")
            );
            params
                .bind(sqlx::query(&sql))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Chains and stores an audit entry: its hash covers the previous entry's hash and all of
    /// its own fields, so editing or removing any entry breaks every hash after it.
    pub(crate) async fn append_audit(&mut self, draft: AuditDraft) -> Result<(), StoreError> {
        let seq = self.head_seq + 1;
        let detail = serde_json::to_string(&draft.detail).context("encoding audit detail")?;
        let key = match &self.head_key {
            Ok(key) => key.as_ref(),
            Err(why) => return Err(StoreError::Internal(anyhow::anyhow!("{why}"))),
        };
        let hash = audit_hash(
            &self.head_hash,
            seq,
            self.now.micros(),
            &draft,
            &detail,
            key,
        );
        self.pending.audit.push(vec![
            Param::Int(Some(seq)),
            Param::Int(Some(self.now.micros())),
            Param::Int(Some(draft.actor_id)),
            Param::Text(Some(draft.actor_name.clone())),
            Param::Text(Some(draft.op_id.clone())),
            Param::Text(Some(draft.action.clone())),
            Param::Text(draft.entity.map(|e| e.name().to_owned())),
            Param::Int(draft.record_id),
            Param::Int(draft.version),
            Param::Text(Some(detail)),
            Param::Text(Some(self.head_hash.clone())),
            Param::Text(Some(hash.clone())),
            Param::Int(draft.via.session_id),
            Param::Int(draft.via.token_id),
            Param::Text(draft.via.client.clone()),
        ]);
        self.head_seq = seq;
        self.head_hash = hash;
        self.head_moved = true;
        self.flush_if_full().await
    }

    /// An audit entry for an event that changes no stored row, such as a refused purge attempt
    /// or a configuration check.
    pub async fn audit_event(&mut self, draft: AuditDraft) -> Result<(), StoreError> {
        self.append_audit(draft).await
    }

    /// Seals the audit log with `key` from the next entry on, unless it is sealed already;
    /// entries this transaction appends afterwards are sealed. The caller keeps the returned key
    /// (with its first sealed entry) outside the database before committing.
    pub async fn seal_audit_log(&mut self, key: &AuditKey) -> Result<Sealing, StoreError> {
        if !self.sealable {
            return Err(anyhow::anyhow!(
                "the database is at a schema before the sealed audit log: run `holdfast upgrade`"
            )
            .into());
        }
        // The head row is locked for this transaction: the seal read at its start stands.
        if self.seal.key_id == key.id() {
            return Ok(Sealing::Already(key.sealing_from(self.seal.keyed_from)));
        }
        if self.seal.sealed() {
            return Ok(Sealing::Other(self.seal.key_id.clone()));
        }
        let sealed = key.sealing_from(self.head_seq + 1);
        sqlx::query("UPDATE audit_head SET key_id = $1, keyed_from = $2 WHERE id = 1")
            .bind(sealed.id())
            .bind(sealed.from())
            .execute(&mut *self.tx)
            .await?;
        self.head_key = Ok(Some(sealed.clone()));
        self.seal.key_id = sealed.id();
        self.seal.keyed_from = sealed.from();
        Ok(Sealing::Sealed(sealed))
    }

    pub async fn create_user(
        &mut self,
        user: NewUser<'_>,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO users (username, display_name, password_hash, role, active, created_at, updated_at, team_id, pending, must_change_password)
             VALUES ($1, $2, $3, $4, 1, $5, $5, $6, $7, $8) RETURNING id",
        )
        .bind(user.username.to_owned())
        .bind(user.display_name.to_owned())
        .bind(user.password_hash.to_owned())
        .bind(user.role.to_owned())
        .bind(self.now.micros())
        .bind(user.team_id)
        .bind(i64::from(user.pending))
        .bind(i64::from(user.must_change_password))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(|error| unique_violation(error, "username"))?;
        let id = row.try_get::<i64, _>(0)?;
        let mut audit = audit;
        audit.detail["user_id"] = id.into();
        self.append_audit(audit).await?;
        self.access_changed().await?;
        Ok(id)
    }

    pub async fn update_user(
        &mut self,
        user_id: i64,
        update: UserUpdate,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let mut params = Params::default();
        let access = update.role.is_some()
            || update.team_id.is_some()
            || update.active.is_some()
            || update.pending.is_some()
            || update.must_change_password.is_some()
            || update.display_name.is_some();
        let mut sets = vec![format!("updated_at = {}", params.int(self.now.micros()))];
        if let Some(name) = update.display_name {
            sets.push(format!("display_name = {}", params.text(name)));
        }
        if let Some(role) = update.role {
            sets.push(format!("role = {}", params.text(role)));
        }
        if let Some(team) = update.team_id {
            sets.push(format!("team_id = {}", params.push(Param::Int(team))));
        }
        if let Some(active) = update.active {
            sets.push(format!("active = {}", params.int(i64::from(active))));
        }
        if let Some(pending) = update.pending {
            sets.push(format!("pending = {}", params.int(i64::from(pending))));
        }
        if let Some(must) = update.must_change_password {
            sets.push(format!(
                "must_change_password = {}",
                params.int(i64::from(must))
            ));
        }
        if let Some(hash) = update.password_hash {
            sets.push(format!("password_hash = {}", params.text(hash)));
        }
        if let Some(locale) = update.locale {
            sets.push(format!("locale = {}", params.push(Param::Text(locale))));
        }
        let id = params.int(user_id);
        let sql = format!("UPDATE users SET {} WHERE id = {id}", sets.join(", "));
        params
            .bind(sqlx::query(&sql))
            .execute(&mut *self.tx)
            .await?;
        if access {
            self.access_changed().await?;
        }
        self.append_audit(audit).await
    }

    /// Starts a session after a successful login and records the login.
    pub async fn create_session(
        &mut self,
        session: &NewSessionRow<'_>,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at, address, user_agent, verified_at, method, remembered)
             VALUES ($1, $2, $3, $3, $4, $5, $6, $3, $7, $8) RETURNING id",
        )
        .bind(session.token_hash.to_owned())
        .bind(session.user_id)
        .bind(self.now.micros())
        .bind(session.expires_at.micros())
        .bind(session.address.map(str::to_owned))
        .bind(session.user_agent.map(|ua| ua.chars().take(300).collect::<String>()))
        .bind(session.method.to_owned())
        .bind(i64::from(session.remembered))
        .fetch_one(&mut *self.tx)
        .await?;
        let id = row.try_get::<i64, _>(0)?;
        sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
            .bind(self.now.micros())
            .bind(session.user_id)
            .execute(&mut *self.tx)
            .await?;
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Revokes sessions: one (`SessionScope::One`) or all of a user's but perhaps the one in
    /// use. Returns how many.
    pub async fn revoke_sessions(
        &mut self,
        user_id: i64,
        scope: SessionScope,
        audit: AuditDraft,
    ) -> Result<u64, StoreError> {
        let query = match scope {
            SessionScope::One(id) => {
                sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL")
                    .bind(self.now.micros())
                    .bind(user_id)
                    .bind(id)
            }
            SessionScope::AllExcept(keep) => {
                sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL")
                    .bind(self.now.micros())
                    .bind(user_id)
                    .bind(keep.unwrap_or(0))
            }
        };
        let revoked = query.execute(&mut *self.tx).await?.rows_affected();
        let mut audit = audit;
        audit.detail["sessions_revoked"] = revoked.into();
        self.append_audit(audit).await?;
        Ok(revoked)
    }

    pub async fn create_token(
        &mut self,
        token: &NewTokenRow<'_>,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let modules = token
            .modules
            .map(serde_json::to_string)
            .transpose()
            .context("encoding modules")?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at, read_only, modules) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(token.user_id)
        .bind(token.name.to_owned())
        .bind(token.token_hash.to_owned())
        .bind(self.now.micros())
        .bind(token.expires_at.map(Timestamp::micros))
        .bind(i64::from(token.read_only))
        .bind(modules)
        .fetch_one(&mut *self.tx)
        .await?;
        let id = row.try_get::<i64, _>(0)?;
        let mut audit = audit;
        audit.detail["token_id"] = id.into();
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Revokes tokens: one (`token_id`) or all of a user's (`None`). Returns how many.
    pub async fn revoke_tokens(
        &mut self,
        user_id: i64,
        token_id: Option<i64>,
        audit: AuditDraft,
    ) -> Result<u64, StoreError> {
        let query = match token_id {
            Some(id) => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL")
                .bind(self.now.micros())
                .bind(user_id)
                .bind(id),
            None => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(self.now.micros())
                .bind(user_id),
        };
        let revoked = query.execute(&mut *self.tx).await?.rows_affected();
        let mut audit = audit;
        audit.detail["tokens_revoked"] = revoked.into();
        self.append_audit(audit).await?;
        Ok(revoked)
    }

    pub async fn create_custom_field(
        &mut self,
        def: &CustomFieldDef,
        audit: AuditDraft,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO custom_field_defs (entity, key, label, kind, options, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(def.entity.name())
        .bind(def.key.clone())
        .bind(def.label.clone())
        .bind(def.kind.name())
        .bind(serde_json::to_string(&def.options).context("encoding options")?)
        .bind(self.now.micros())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(|error| unique_violation(error, "key"))?;
        let id = row.try_get::<i64, _>(0)?;
        self.append_audit(audit).await?;
        Ok(id)
    }

    /// Archives a custom field: it takes no new values, and every stored value stays.
    pub async fn archive_custom_field(
        &mut self,
        id: i64,
        audit: AuditDraft,
    ) -> Result<bool, StoreError> {
        let archived = sqlx::query(
            "UPDATE custom_field_defs SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL",
        )
        .bind(self.now.micros())
        .bind(id)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if archived == 1 {
            self.append_audit(audit).await?;
        }
        Ok(archived == 1)
    }

    pub async fn put_pipeline(
        &mut self,
        key: &str,
        name: &str,
        stages: &[String],
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pipelines (key, name, stages, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET name = excluded.name, stages = excluded.stages, updated_at = excluded.updated_at",
        )
        .bind(key.to_owned())
        .bind(name.to_owned())
        .bind(serde_json::to_string(stages).context("encoding stages")?)
        .bind(self.now.micros())
        .execute(&mut *self.tx)
        .await?;
        self.append_audit(audit).await
    }
}

/// Whole-database restore from a backup. A restore is one write transaction like any other:
/// it takes the audit head lock first, and if any step fails nothing of it remains.
impl WriteTx {
    async fn has_table(&mut self, table: &str) -> Result<bool, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let row = sqlx::query(sql)
            .bind(table.to_owned())
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Step 1: empties every table a backup holds, the indexes rebuilt from the records, and
    /// the tables that must not come back from the past (sessions, login throttling).
    /// `tables` are this database's backed-up tables (`Db::backup_tables`: at an older schema,
    /// only those it has).
    pub async fn restore_clear(&mut self, tables: &[TableSpec]) -> Result<(), StoreError> {
        self.flush().await?;
        // A database at an older schema (a backup being upgraded) lacks the newer ones.
        let mut present = Vec::new();
        for table in EPHEMERAL_TABLES.iter().chain(REBUILT_TABLES) {
            if self.has_table(table).await? {
                present.push(*table);
            }
        }
        let tables = present
            .into_iter()
            .chain(tables.iter().rev().map(|t| t.name.as_str()));
        for table in tables {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *self.tx)
                .await
                .with_context(|| format!("emptying {table}"))?;
        }
        self.known_live.clear();
        self.known_active.clear();
        Ok(())
    }

    /// Step 4 (after the restored rows were compared with the manifest): revokes every API
    /// token the backup brought back. A token revoked after the backup was taken would
    /// otherwise work again, and sessions were already emptied in step 1: everyone signs in
    /// again and scripts get new tokens. Returns how many were revoked.
    pub async fn restore_revoke_tokens(&mut self) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL")
            .bind(self.now.micros())
            .execute(&mut *self.tx)
            .await
            .context("revoking the restored API tokens")?;
        Ok(done.rows_affected())
    }

    /// Step 2: inserts rows as a backup holds them (see `snapshot`). A cell of the wrong type
    /// is refused, naming the table and column.
    pub async fn restore_rows(
        &mut self,
        table: &TableSpec,
        rows: Vec<Vec<Value>>,
    ) -> Result<(), StoreError> {
        if !BACKUP_TABLES.iter().any(|(name, _)| *name == table.name) {
            return Err(anyhow::anyhow!("{} is not a table backups hold", table.name).into());
        }
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let mut params = Vec::with_capacity(rows.len());
        for row in rows {
            if row.len() != columns.len() {
                return Err(anyhow::anyhow!(
                    "a row of {} has {} values for {} columns",
                    table.name,
                    row.len(),
                    columns.len()
                )
                .into());
            }
            let mut cells = Vec::with_capacity(row.len());
            for (value, column) in row.into_iter().zip(&table.columns) {
                let int = column.kind == "int";
                cells.push(match value {
                    Value::Null if int => Param::Int(None),
                    Value::Null => Param::Text(None),
                    Value::Number(n) if int && n.is_i64() => Param::Int(n.as_i64()),
                    Value::String(text) if !int => Param::Text(Some(text)),
                    other => {
                        return Err(anyhow::anyhow!(
                            "{}.{} holds {other}, which is not {}",
                            table.name,
                            column.name,
                            if int { "an integer" } else { "text" }
                        )
                        .into());
                    }
                });
            }
            params.push(cells);
        }
        self.insert_many(&table.name, &columns.join(", "), params)
            .await
    }

    /// Step 3: rebuilds the search and tag indexes from the restored records, moves
    /// PostgreSQL's id sequences past the restored ids, and continues the audit chain from the
    /// restored head. `progress` is told how many records were indexed so far.
    pub async fn restore_finish(
        &mut self,
        archive_key: Option<&AuditKey>,
        mut progress: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        let mut indexed = 0u64;
        // A schema from before the search index (3) has none to rebuild: the restore that
        // brings it up to date rebuilds it where it lands.
        let indexes = self.has_table("search_terms").await?;
        for entity in Entity::ALL.into_iter().filter(|_| indexes) {
            let mut after = 0i64;
            loop {
                let sql = format!(
                    "SELECT {} FROM {} WHERE id > $1 ORDER BY id LIMIT 2000",
                    rows::select_list(entity),
                    entity.plural()
                );
                let page = sqlx::query(&sql)
                    .bind(after)
                    .fetch_all(&mut *self.tx)
                    .await?;
                if page.is_empty() {
                    break;
                }
                for row in &page {
                    let record = rows::record_from_row(entity, row)?;
                    after = record.id;
                    self.sync_tags(None, &record).await?;
                    self.sync_search_terms(None, &record).await?;
                }
                indexed += page.len() as u64;
                progress(indexed);
            }
        }
        self.flush().await?;
        if self.backend == Backend::Postgres {
            for table in [
                "users",
                "api_tokens",
                "custom_field_defs",
                "companies",
                "contacts",
                "deals",
                "activities",
                "record_versions",
            ] {
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ))
                .execute(&mut *self.tx)
                .await
                .with_context(|| format!("moving the id sequence of {table}"))?;
            }
        }
        let (seal, head_hash) = read_head(&mut self.tx, self.sealable)
            .await?
            .context("the backup has no audit head row")?;
        self.head_seq = seal.seq;
        self.head_hash = head_hash;
        self.head_key =
            crate::audit_key::resolve(&seal.key_id, archive_key.into_iter().chain(&self.own_key));
        self.seal = seal;
        Ok(())
    }

    /// Rows as the restore left them, to compare with the backup before committing.
    pub async fn restore_read(
        &mut self,
        table: &TableSpec,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        self.flush().await?;
        Ok(snapshot::read_rows(&mut self.tx, table, after, limit).await?)
    }

    pub async fn restore_count(&mut self, table: &TableSpec) -> Result<i64, StoreError> {
        self.flush().await?;
        Ok(snapshot::count_rows(&mut self.tx, table).await?)
    }
}

pub(crate) fn unique_violation(error: sqlx::Error, column: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(column),
        _ => error.into(),
    }
}

/// SHA-256 over the previous hash and every field of the entry, hex-encoded; HMAC-SHA-256 under
/// the audit key instead once the log is sealed.
pub(crate) fn audit_hash(
    prev_hash: &str,
    seq: i64,
    at: i64,
    draft: &AuditDraft,
    detail: &str,
    key: Option<&AuditKey>,
) -> String {
    audit_hash_parts(
        prev_hash,
        seq,
        at,
        draft.actor_id,
        &draft.actor_name,
        &draft.op_id,
        &draft.action,
        draft.entity.map(Entity::name),
        draft.record_id,
        draft.version,
        detail,
        &draft.via,
        key,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn audit_hash_parts(
    prev_hash: &str,
    seq: i64,
    at: i64,
    actor_id: i64,
    actor_name: &str,
    op_id: &str,
    action: &str,
    entity: Option<&str>,
    record_id: Option<i64>,
    version: Option<i64>,
    detail: &str,
    via: &Via,
    key: Option<&AuditKey>,
) -> String {
    let mut canonical = json!([
        prev_hash, seq, at, actor_id, actor_name, op_id, action, entity, record_id, version, detail
    ]);
    // Entries written before Holdfast recorded the session, token and address (schema 9) have
    // none, and hash exactly as they did then.
    if !via.is_empty()
        && let Some(parts) = canonical.as_array_mut()
    {
        parts.push(json!([via.session_id, via.token_id, via.client]));
    }
    let canonical = canonical.to_string();
    match key {
        Some(key) => key.seal(canonical.as_bytes()),
        None => {
            let digest = Sha256::digest(canonical.as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// Reads the audit head: its newest entry's number and hash, and its seal (from schema 16 on;
/// a head from before has none). It names its columns: a `SELECT *` prepared on a connection
/// that has not yet seen a migration add columns returns more columns than it was prepared
/// with, which the driver does not survive.
pub(crate) async fn read_head(
    conn: &mut sqlx::AnyConnection,
    sealable: bool,
) -> anyhow::Result<Option<(AuditSeal, String)>> {
    let sql = if sealable {
        "SELECT seq, hash, key_id, keyed_from FROM audit_head WHERE id = 1"
    } else {
        "SELECT seq, hash FROM audit_head WHERE id = 1"
    };
    let Some(row) = sqlx::query(sql)
        .fetch_optional(&mut *conn)
        .await
        .context("reading the audit head")?
    else {
        return Ok(None);
    };
    let seal = AuditSeal {
        seq: row.try_get(0)?,
        key_id: if sealable {
            row.try_get(2)?
        } else {
            String::new()
        },
        keyed_from: if sealable { row.try_get(3)? } else { 0 },
    };
    Ok(Some((seal, row.try_get(1)?)))
}

/// Whether the audit head has the seal's columns, from the catalog (which a connection that
/// missed a migration reads afresh).
pub(crate) async fn head_is_sealable(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> anyhow::Result<bool> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM pragma_table_info('audit_head') WHERE name = 'key_id'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'audit_head' AND column_name = 'key_id'"
        }
    };
    Ok(sqlx::query(sql)
        .fetch_one(&mut *conn)
        .await?
        .try_get::<i64, _>(0)?
        > 0)
}
