//! Queries. Nothing here writes; lists are filtered and paginated in SQL, never after fetching.

use crate::rows::{self, Params};
use crate::write::audit_hash_parts;
use crate::{AuditKey, AuditSeal, Db};
use anyhow::Context as _;
use holdfast_domain::search::{TermMatch, also_found_via};
use holdfast_domain::{CustomFieldDef, CustomFieldKind, Entity, Record, Timestamp};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::BTreeSet;
use std::collections::HashSet;

/// A list request, already validated by the app.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Equality filters on integer columns (`owner_id`, `company_id`, …).
    pub int_filters: Vec<(&'static str, i64)>,
    /// Equality filters on text columns (`stage`, `status`, `kind`, …).
    pub text_filters: Vec<(&'static str, String)>,
    pub tag: Option<String>,
    pub updated_since: Option<Timestamp>,
    /// All must match (see `holdfast_domain::search`).
    pub search: Option<Vec<TermMatch>>,
    pub sort: Sort,
    /// Keyset cursor: the sort value and id of the last row of the previous page.
    pub after: Option<(SortValue, i64)>,
    pub limit: i64,
    /// The records the asking user reaches; `None` for all.
    pub reach: Option<Reach>,
}

/// Records a user reaches under their record scope: owned by one of `owners`, or one of `ids`
/// (shared with them one by one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    pub owners: Vec<i64>,
    pub ids: Vec<i64>,
}

impl Reach {
    /// The SQL condition, with its values bound into `params`.
    pub(crate) fn condition(&self, params: &mut Params) -> String {
        self.condition_on(params, "owner_id")
    }

    /// The same on `column` (`+owner_id` keeps the owner index from driving the query, where
    /// a search's matches are the better start).
    fn condition_on(&self, params: &mut Params, column: &str) -> String {
        let list = |values: &[i64], params: &mut Params| -> String {
            values
                .iter()
                .map(|v| params.int(*v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.owners.is_empty(), self.ids.is_empty()) {
            (true, true) => "1 = 0".to_owned(),
            (false, true) => format!("{column} IN ({})", list(&self.owners, params)),
            (true, false) => format!("id IN ({})", list(&self.ids, params)),
            (false, false) => format!(
                "({column} IN ({}) OR id IN ({}))",
                list(&self.owners, params),
                list(&self.ids, params)
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// A NOT NULL column: `updated_at`, `created_at` or one of `Entity::sortable`.
    pub column: &'static str,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

impl Sort {
    pub fn is_integer(&self) -> bool {
        !matches!(self.column, "name" | "subject")
    }

    pub fn value_of(&self, record: &Record) -> SortValue {
        match self.column {
            "updated_at" => SortValue::Int(record.updated_at.micros()),
            "created_at" => SortValue::Int(record.created_at.micros()),
            column if self.is_integer() => SortValue::Int(record.field_i64(column).unwrap_or(0)),
            column => SortValue::Text(record.field_str(column).unwrap_or_default().to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VersionRow {
    pub entity: Entity,
    pub record_id: i64,
    pub version: i64,
    pub action: String,
    pub at: Timestamp,
    pub actor_id: i64,
    pub actor_name: Option<String>,
    pub op_id: String,
    pub reason: Option<String>,
    pub changed: Vec<String>,
    pub snapshot: Value,
}

/// A live record hanging off another: see [`Db::live_dependents`].
#[derive(Debug, Clone)]
pub struct Dependent {
    pub entity: Entity,
    pub id: i64,
    pub created_at: Timestamp,
    pub created_by: i64,
    pub updated_by: i64,
}

/// One record's history around a time: see [`Db::history_since`].
#[derive(Debug, Clone)]
pub struct RecordHistory {
    pub entity: Entity,
    pub record_id: i64,
    /// The version in force at the time; `None` if the record did not exist yet.
    pub then: Option<VersionRow>,
    /// Every later version, oldest first.
    pub after: Vec<VersionRow>,
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at: Timestamp,
    pub actor_id: i64,
    pub actor_name: String,
    pub op_id: String,
    pub action: String,
    pub entity: Option<String>,
    pub record_id: Option<i64>,
    pub version: Option<i64>,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
    /// The session or API token it came through, and the client's address.
    pub via: crate::write::Via,
}

/// Which audit entries to list; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub entity: Option<Entity>,
    pub record_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub token_id: Option<i64>,
    pub session_id: Option<i64>,
    /// The client address the entry names.
    pub client: Option<String>,
    /// An exact action (`contact.update`), or a prefix ending in a dot (`contact.`).
    pub action: Option<String>,
    /// Times, inclusive.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub after_seq: Option<i64>,
}

/// A deletion in the recycle bin: the record deleted, and how many others went with it.
#[derive(Debug, Clone)]
pub struct BinEntry {
    pub root: Record,
    pub related: Vec<(Entity, i64)>,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    /// The key of the user's role (`admin`, `manager`, `rep`, `auditor` or a custom role).
    pub role: String,
    pub team_id: Option<i64>,
    pub active: bool,
    /// Created, but not yet approved by an administrator: can log in, sees nothing.
    pub pending: bool,
    /// An administrator set the password: the user changes it before doing anything else.
    pub must_change_password: bool,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
    /// Interface language the user chose (`en`, `zh-CN`); `None` follows the browser.
    pub locale: Option<String>,
    /// Frozen by an administrator (when, why): every session and API token of theirs is
    /// suspended until the freeze is lifted; nothing is deleted.
    pub frozen: Option<(Timestamp, String)>,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    /// When the user last proved who they are in this session (password, second factor or
    /// passkey): sensitive actions ask again when it is too long ago.
    pub verified_at: Timestamp,
    /// How the session was signed in: `password`, `password+totp`, `password+recovery_code`,
    /// `password+passkey`, `passkey`.
    pub method: String,
    /// Signed in with "remember this device": longer limits.
    pub remembered: bool,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Reads only: any change made with it is refused.
    pub read_only: bool,
    /// The modules it may use (keys such as `contacts`); `None`: all its user's rights.
    pub modules: Option<Vec<String>>,
    /// Suspended by an administrator (not revoked: it works again once the freeze is lifted).
    pub frozen_at: Option<Timestamp>,
}

/// Open deals of one stage, summed per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTotal {
    pub pipeline: String,
    pub stage: String,
    pub currency: String,
    pub count: i64,
    pub amount_minor: i64,
}

const USER_COLUMNS: &str = "id, username, display_name, password_hash, role, active, created_at, last_login_at, locale, team_id, pending, must_change_password, frozen_at, frozen_reason";
const SESSION_COLUMNS: &str = "id, user_id, created_at, last_seen_at, expires_at, revoked_at, address, user_agent, verified_at, method, remembered";
const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, last_used_at, expires_at, revoked_at, read_only, modules, frozen_at";
/// Versions with the name of the user who made each (a LEFT JOIN: system changes have no user).
const VERSION_SELECT: &str = "SELECT v.entity, v.record_id, v.version, v.action, v.at, v.actor_id, u.username, v.op_id, v.reason, v.changed, v.snapshot
     FROM record_versions v LEFT JOIN users u ON u.id = v.actor_id";
const AUDIT_COLUMNS: &str = "seq, at, actor_id, actor_name, op_id, action, entity, record_id, version, detail, prev_hash, hash, session_id, token_id, client";

impl Db {
    pub async fn record(&self, entity: Entity, id: i64) -> anyhow::Result<Option<Record>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE id = $1",
            rows::select_list(entity),
            entity.plural()
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.read_pool())
            .await?;
        row.map(|row| rows::record_from_row(entity, &row))
            .transpose()
    }

    /// Ids of records of one kind (live or in the recycle bin) after `after`, in id order.
    pub async fn record_ids_after(
        &self,
        entity: Entity,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
            entity.plural()
        );
        sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?
            .iter()
            .map(|row| Ok(row.try_get::<i64, _>(0)?))
            .collect()
    }

    /// Live records matching `query`, at most `limit`, in sort order.
    ///
    /// A search of contacts also finds contacts whose company matches. The two are separate
    /// queries whose pages are merged here: each is simple enough for both planners to estimate
    /// (PostgreSQL misjudged a UNION of the two and hashed the whole contacts table).
    pub async fn list_records(
        &self,
        entity: Entity,
        query: &ListQuery,
    ) -> anyhow::Result<Vec<Record>> {
        let Some(search) = &query.search else {
            return self.list_page(entity, query, None).await;
        };
        let (terms, matches) = self.most_selective_first(entity, search).await?;
        // A common term (every Smith): walking the list's own order and checking each row's
        // terms finds the first page after a few thousand probes, where collecting every match
        // and sorting them would touch them all.
        let walk = self.walks(entity, matches).await?;
        let mut found = self
            .list_page(entity, query, Some(Matching::Own(&terms, walk)))
            .await?;
        if let Some((other, via)) = also_found_via(entity) {
            // The linked records' terms are counted on their own: walking every contact to find
            // the few whose company matches would read them all.
            let (other_terms, other_matches) = self.most_selective_first(other, search).await?;
            let other_walk = self.walks(other, other_matches).await?;
            let via_match = Matching::Via(other, via, &other_terms, other_walk);
            let linked = self.list_page(entity, query, Some(via_match)).await?;
            let seen: HashSet<i64> = found.iter().map(|r| r.id).collect();
            found.extend(linked.into_iter().filter(|r| !seen.contains(&r.id)));
            found.sort_by(|a, b| {
                let order = compare_sort(&query.sort.value_of(a), &query.sort.value_of(b))
                    .then(a.id.cmp(&b.id));
                if query.sort.descending {
                    order.reverse()
                } else {
                    order
                }
            });
            found.truncate(usize::try_from(query.limit).unwrap_or(0));
        }
        Ok(found)
    }

    /// "The record is live". The unary plus keeps SQLite from answering it through the
    /// `*_deleted` index (nearly every row is live) and sorting them all, instead of walking the
    /// sort order's index. On PostgreSQL the plain column measured worse for searches (its
    /// planner then hashed whole tables; BENCHMARKS.md), so both backends use the same text.
    fn live_condition(&self) -> &'static str {
        "+deleted_at IS NULL"
    }

    /// One page of live records matching the filters, the cursor and `matching`.
    async fn list_page(
        &self,
        entity: Entity,
        query: &ListQuery,
        matching: Option<Matching<'_>>,
    ) -> anyhow::Result<Vec<Record>> {
        let mut params = Params::default();
        let mut conditions = vec![self.live_condition().to_owned()];
        if let Some(reach) = &query.reach {
            // Without a search, a rep's list walks their rows through the owner index. With
            // one, the search's matches are fewer than the owner's rows: measured at 100,000
            // contacts, letting SQLite drive from the owner index made a rep's search of a
            // Chinese name 4× slower than the same search unscoped (BENCHMARKS.md).
            // A walking plan (a common search term) is the other way round: walking the owner's
            // rows through the owner index beats walking everyone's and skipping most.
            let walks = matches!(
                matching,
                Some(Matching::Own(_, true) | Matching::Via(_, _, _, true))
            );
            let column = if matching.is_some() && !walks {
                "+owner_id"
            } else {
                "owner_id"
            };
            conditions.push(reach.condition_on(&mut params, column));
        }
        for (column, value) in &query.int_filters {
            conditions.push(format!("{column} = {}", params.int(*value)));
        }
        for (column, value) in &query.text_filters {
            conditions.push(format!("{column} = {}", params.text(value.clone())));
        }
        if let Some(tag) = &query.tag {
            let code = params.int(entity.code());
            let tag = params.text(tag.clone());
            conditions.push(format!(
                "id IN (SELECT record_id FROM record_tags WHERE entity = {code} AND tag = {tag})"
            ));
        }
        if let Some(since) = query.updated_since {
            conditions.push(format!("updated_at >= {}", params.int(since.micros())));
        }
        let table = entity.plural();
        match matching {
            None => {}
            Some(Matching::Own(terms, true)) => {
                let own = term_exists(entity, terms, &format!("{table}.id"), &mut params);
                conditions.push(format!("({own})"));
            }
            Some(Matching::Own(terms, false)) => {
                let own = term_subquery(entity, terms, &mut params);
                conditions.push(format!("id IN ({own})"));
            }
            Some(Matching::Via(other, via, terms, true)) => {
                let linked = term_exists(other, terms, &format!("{table}.{via}"), &mut params);
                conditions.push(format!("({linked})"));
            }
            Some(Matching::Via(other, via, terms, false)) => {
                let linked = term_subquery(other, terms, &mut params);
                conditions.push(format!("{via} IN ({linked})"));
            }
        }
        let direction = if query.sort.descending { "DESC" } else { "ASC" };
        let column = query.sort.column;
        if let Some((value, id)) = &query.after {
            let value = match value {
                SortValue::Int(number) => params.int(*number),
                SortValue::Text(text) => params.text(text.clone()),
            };
            let id = params.int(*id);
            let op = if query.sort.descending { "<" } else { ">" };
            conditions.push(format!("({column}, id) {op} ({value}, {id})"));
        }
        let limit = params.int(query.limit);
        let sql = format!(
            "SELECT {} FROM {table} WHERE {} ORDER BY {column} {direction}, id {direction} LIMIT {limit}",
            rows::select_list(entity),
            conditions.join(" AND ")
        );
        let found = params
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| rows::record_from_row(entity, row))
            .collect()
    }

    /// The terms of a search, fewest matches first (counted up to [`COUNT_CAP`] each, in one
    /// round trip), so the cheapest term selects the candidates; with the count of the first.
    async fn most_selective_first(
        &self,
        entity: Entity,
        terms: &[TermMatch],
    ) -> anyhow::Result<(Vec<TermMatch>, i64)> {
        let mut params = Params::default();
        let counts: Vec<String> = terms
            .iter()
            .map(|term| {
                let code = params.int(entity.code());
                let condition = match term {
                    TermMatch::Exact(text) => format!("term = {}", params.text(text.clone())),
                    TermMatch::Prefix(prefix) => {
                        let low = params.text(prefix.clone());
                        let high = params.text(format!("{prefix}\u{10FFFF}"));
                        format!("term >= {low} AND term < {high}")
                    }
                };
                format!("(SELECT COUNT(*) FROM (SELECT 1 FROM search_terms WHERE entity = {code} AND {condition} LIMIT {COUNT_CAP}) c)")
            })
            .collect();
        let sql = format!("SELECT {}", counts.join(", "));
        let row = params
            .bind(sqlx::query(&sql))
            .fetch_one(self.read_pool())
            .await?;
        let mut counted: Vec<(i64, TermMatch)> = Vec::new();
        for (i, term) in terms.iter().enumerate() {
            counted.push((row.try_get::<i64, _>(i)?, term.clone()));
        }
        counted.sort_by_key(|(count, _)| *count);
        let fewest = counted.first().map(|(count, _)| *count).unwrap_or(0);
        Ok((counted.into_iter().map(|(_, term)| term).collect(), fewest))
    }

    /// Whether `matches` make walking the list's order cheaper than sorting the matches.
    /// Measured on SQLite: collecting and sorting costs ~0.7 µs a match; walking costs ~3 µs a
    /// row and needs about 51 · N / matches rows for a page. They meet near sqrt(200 · N):
    /// ~14,000 matches at a million records (never below 2,000).
    async fn walks(&self, entity: Entity, matches: i64) -> anyhow::Result<bool> {
        if matches < WALK_FLOOR {
            // Below the floor no table size changes the answer; skip the size query.
            return Ok(false);
        }
        let sql = format!("SELECT MAX(id) FROM {}", entity.plural());
        let rows: i64 = sqlx::query(&sql)
            .fetch_one(self.read_pool())
            .await?
            .try_get::<Option<i64>, _>(0)?
            .unwrap_or(0);
        let threshold = ((200 * rows) as f64).sqrt() as i64;
        Ok(matches >= threshold.clamp(WALK_FLOOR, COUNT_CAP))
    }

    /// A user's open activities due before `before` (overdue and today's follow-ups), soonest
    /// first. Served by the `activities_owner_due` index.
    pub async fn open_activities_due(
        &self,
        owner_id: i64,
        before: Timestamp,
        limit: i64,
    ) -> anyhow::Result<Vec<Record>> {
        let sql = format!(
            "SELECT {} FROM activities WHERE owner_id = $1 AND due_at < $2 AND done_at IS NULL AND {} ORDER BY due_at, id LIMIT $3",
            rows::select_list(Entity::Activity),
            self.live_condition()
        );
        let found = sqlx::query(&sql)
            .bind(owner_id)
            .bind(before.micros())
            .bind(limit)
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| rows::record_from_row(Entity::Activity, row))
            .collect()
    }

    /// Open deals per pipeline, stage and currency: how many and their total amount.
    pub async fn pipeline_totals(&self, reach: Option<&Reach>) -> anyhow::Result<Vec<StageTotal>> {
        let mut params = Params::default();
        let scope = reach.map_or_else(|| "1 = 1".to_owned(), |r| r.condition(&mut params));
        let sql = format!(
            "SELECT pipeline, stage, currency, COUNT(*), CAST(SUM(amount_minor) AS BIGINT) FROM deals WHERE status = 'open' AND deleted_at IS NULL AND {scope} GROUP BY pipeline, stage, currency"
        );
        let found = params
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| {
                Ok(StageTotal {
                    pipeline: row.try_get(0)?,
                    stage: row.try_get(1)?,
                    currency: row.try_get(2)?,
                    count: row.try_get(3)?,
                    amount_minor: row.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Live records by id, for showing what a record links to.
    pub async fn titles(
        &self,
        entity: Entity,
        ids: &[i64],
    ) -> anyhow::Result<Vec<(i64, String, bool, i64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let list: Vec<String> = ids.iter().map(|id| params.int(*id)).collect();
        let sql = format!(
            "SELECT id, {}, deleted_at, owner_id FROM {} WHERE id IN ({})",
            entity.title_field(),
            entity.plural(),
            list.join(", ")
        );
        let found = params
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>(0)?,
                    row.try_get::<String, _>(1)?,
                    row.try_get::<Option<i64>, _>(2)?.is_some(),
                    row.try_get::<i64, _>(3)?,
                ))
            })
            .collect()
    }

    pub async fn versions(&self, entity: Entity, id: i64) -> anyhow::Result<Vec<VersionRow>> {
        let found = sqlx::query(&format!(
            "{VERSION_SELECT} WHERE v.entity = $1 AND v.record_id = $2 ORDER BY v.version"
        ))
        .bind(entity.name())
        .bind(id)
        .fetch_all(self.read_pool())
        .await?;
        found.iter().map(version_from_row).collect()
    }

    pub async fn version(
        &self,
        entity: Entity,
        id: i64,
        version: i64,
    ) -> anyhow::Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "{VERSION_SELECT} WHERE v.entity = $1 AND v.record_id = $2 AND v.version = $3"
        ))
        .bind(entity.name())
        .bind(id)
        .bind(version)
        .fetch_optional(self.read_pool())
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// The version a record had at `at`: the newest one written at or before it.
    pub async fn version_at(
        &self,
        entity: Entity,
        id: i64,
        at: Timestamp,
    ) -> anyhow::Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "{VERSION_SELECT} WHERE v.entity = $1 AND v.record_id = $2 AND v.at <= $3 ORDER BY v.version DESC LIMIT 1"
        ))
        .bind(entity.name())
        .bind(id)
        .bind(at.micros())
        .fetch_optional(self.read_pool())
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// Every record of a kind as it was at `at` (its newest version then, deleted ones
    /// included), in id order after `after_id`. Purged records have no history and are absent.
    ///
    /// With `reach`, only records the asking user reaches now (the record as it stands decides,
    /// as for one record's history), in the SQL so nothing outside is read.
    pub async fn versions_as_of(
        &self,
        entity: Entity,
        at: Timestamp,
        after_id: i64,
        limit: i64,
        reach: Option<&Reach>,
    ) -> anyhow::Result<Vec<VersionRow>> {
        let mut params = Params::default();
        let kind = params.text(entity.name());
        let after = params.int(after_id);
        let at = params.int(at.micros());
        let scope = match reach {
            Some(reach) => format!(
                "AND v.record_id IN (SELECT id FROM {} WHERE {})",
                entity.plural(),
                reach.condition(&mut params)
            ),
            None => String::new(),
        };
        let limit = params.int(limit);
        let sql = format!(
            "{VERSION_SELECT} WHERE v.entity = {kind} AND v.record_id > {after} AND v.at <= {at} {scope}
               AND v.version = (SELECT MAX(w.version) FROM record_versions w
                                WHERE w.entity = v.entity AND w.record_id = v.record_id AND w.at <= {at})
             ORDER BY v.record_id LIMIT {limit}"
        );
        let found = params
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(version_from_row).collect()
    }

    /// Records with versions written after `since`, by `actor_id` if given: what a rogue mass
    /// change touched. At most `limit`, in (entity, id) order.
    pub async fn changed_since(
        &self,
        since: Timestamp,
        actor_id: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<(Entity, i64)>> {
        let found = sqlx::query(
            "SELECT DISTINCT entity, record_id FROM record_versions
             WHERE at > $1 AND ($2 = 0 OR actor_id = $2) ORDER BY entity, record_id LIMIT $3",
        )
        .bind(since.micros())
        .bind(actor_id.unwrap_or(0))
        .bind(limit)
        .fetch_all(self.read_pool())
        .await?;
        found
            .iter()
            .map(|row| {
                let name: String = row.try_get(0)?;
                Ok((
                    Entity::from_name(&name).context("unknown entity in history")?,
                    row.try_get(1)?,
                ))
            })
            .collect()
    }

    /// The operations (`op_id`s) made through one API token since a time, from the audit log:
    /// what a revert by token undoes.
    pub async fn ops_of_token(
        &self,
        token_id: i64,
        since: Timestamp,
    ) -> anyhow::Result<BTreeSet<String>> {
        let found =
            sqlx::query("SELECT DISTINCT op_id FROM audit_log WHERE token_id = $1 AND at > $2")
                .bind(token_id)
                .bind(since.micros())
                .fetch_all(self.read_pool())
                .await?;
        found
            .iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Records with a version written since `since` by one of `ops`.
    pub async fn changed_in_ops(
        &self,
        since: Timestamp,
        ops: &BTreeSet<String>,
    ) -> anyhow::Result<Vec<(Entity, i64)>> {
        let mut out = BTreeSet::new();
        let ops: Vec<&String> = ops.iter().collect();
        for chunk in ops.chunks(200) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT DISTINCT entity, record_id FROM record_versions WHERE at > $1 AND op_id IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(since.micros());
            for op in chunk {
                query = query.bind((*op).clone());
            }
            for row in query.fetch_all(self.read_pool()).await? {
                let name: String = row.try_get(0)?;
                let entity = Entity::from_name(&name).context("unknown entity in history")?;
                out.insert((entity, row.try_get::<i64, _>(1)?));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The history a revert reads for `records` (of one kind): for each, the version in force at
    /// `since` (if it existed then) and every version after it, oldest first.
    pub async fn history_since(
        &self,
        entity: Entity,
        records: &[i64],
        since: Timestamp,
    ) -> anyhow::Result<Vec<RecordHistory>> {
        let mut out: Vec<RecordHistory> = Vec::with_capacity(records.len());
        for chunk in records.chunks(500) {
            // Ids are integers, so listing them in the statement is safe and keeps one round trip.
            let ids = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let found = sqlx::query(&format!(
                "{VERSION_SELECT} WHERE v.entity = $1 AND v.record_id IN ({ids})
                   AND (v.at > $2 OR v.version = (SELECT MAX(w.version) FROM record_versions w
                        WHERE w.entity = v.entity AND w.record_id = v.record_id AND w.at <= $2))
                 ORDER BY v.record_id, v.version"
            ))
            .bind(entity.name())
            .bind(since.micros())
            .fetch_all(self.read_pool())
            .await?;
            for row in &found {
                let version = version_from_row(row)?;
                if out.last().is_none_or(|h| h.record_id != version.record_id) {
                    out.push(RecordHistory {
                        entity,
                        record_id: version.record_id,
                        then: None,
                        after: Vec::new(),
                    });
                }
                let Some(history) = out.last_mut() else {
                    continue;
                };
                if version.at <= since {
                    history.then = Some(version);
                } else {
                    history.after.push(version);
                }
            }
        }
        Ok(out)
    }

    /// Live records that hang off `(entity, id)` (a company's contacts, deals and activities; a
    /// contact's or deal's activities): what moving it to the recycle bin would take along.
    pub async fn live_dependents(&self, entity: Entity, id: i64) -> anyhow::Result<Vec<Dependent>> {
        let mut out = Vec::new();
        for (dependent, field) in entity.dependents() {
            let found = sqlx::query(&format!(
                "SELECT id, created_at, created_by, updated_by FROM {} WHERE {field} = $1 AND deleted_at IS NULL ORDER BY id",
                dependent.plural()
            ))
            .bind(id)
            .fetch_all(self.read_pool())
            .await?;
            for row in &found {
                out.push(Dependent {
                    entity: *dependent,
                    id: row.try_get(0)?,
                    created_at: Timestamp(row.try_get(1)?),
                    created_by: row.try_get(2)?,
                    updated_by: row.try_get(3)?,
                });
            }
        }
        Ok(out)
    }

    /// Records of a kind now in the recycle bin after being deleted at or after `since`, and
    /// records purged since then (from the audit log, which outlives them).
    pub async fn deleted_or_purged_since(
        &self,
        entity: Entity,
        since: Timestamp,
    ) -> anyhow::Result<Vec<i64>> {
        let binned = sqlx::query(&format!(
            "SELECT id FROM {} WHERE deleted_at >= $1 ORDER BY id",
            entity.plural()
        ))
        .bind(since.micros())
        .fetch_all(self.read_pool())
        .await?;
        let purged = sqlx::query(
            "SELECT DISTINCT record_id FROM audit_log WHERE action = $1 AND at >= $2 AND record_id IS NOT NULL",
        )
        .bind(format!("{}.purge", entity.name()))
        .bind(since.micros())
        .fetch_all(self.read_pool())
        .await?;
        let mut ids = binned
            .iter()
            .chain(&purged)
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Recycle-bin entries (deletion roots), newest first, with what went along with each.
    /// Deletions in the recycle bin, newest first; with `reach`, only those whose deleted
    /// record (the root) the asking user reaches.
    pub async fn recycle_bin(
        &self,
        entity: Option<Entity>,
        limit: i64,
        reach: impl Fn(Entity) -> Option<Reach>,
    ) -> anyhow::Result<Vec<BinEntry>> {
        let mut roots = Vec::new();
        for kind in Entity::ALL
            .into_iter()
            .filter(|k| entity.is_none_or(|e| e == *k))
        {
            let mut params = Params::default();
            let root = params.text(kind.name());
            let scope =
                reach(kind).map_or_else(|| "1 = 1".to_owned(), |r| r.condition(&mut params));
            let limit = params.int(limit);
            let sql = format!(
                "SELECT {} FROM {} WHERE deleted_at IS NOT NULL AND deleted_root_entity = {root} AND deleted_root_id = id AND {scope}
                 ORDER BY deleted_at DESC, id DESC LIMIT {limit}",
                rows::select_list(kind),
                kind.plural()
            );
            let found = params
                .bind(sqlx::query(&sql))
                .fetch_all(self.read_pool())
                .await?;
            for row in &found {
                roots.push(rows::record_from_row(kind, row)?);
            }
        }
        roots.sort_by_key(|r| std::cmp::Reverse((r.deleted.map(|d| d.at), r.id)));
        roots.truncate(usize::try_from(limit).unwrap_or(0));
        let mut entries = Vec::with_capacity(roots.len());
        for root in roots {
            let mut related = Vec::new();
            for kind in Entity::ALL {
                let sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE deleted_root_entity = $1 AND deleted_root_id = $2 AND NOT (id = $2 AND $3 = $4)",
                    kind.plural()
                );
                let count = sqlx::query(&sql)
                    .bind(root.entity.name())
                    .bind(root.id)
                    .bind(kind.code())
                    .bind(root.entity.code())
                    .fetch_one(self.read_pool())
                    .await?
                    .try_get::<i64, _>(0)?;
                if count > 0 {
                    related.push((kind, count));
                }
            }
            entries.push(BinEntry { root, related });
        }
        Ok(entries)
    }

    /// Deletion roots whose deletion happened before `cutoff`: due for the retention purge.
    pub async fn expired_bin_roots(
        &self,
        cutoff: Timestamp,
        limit: i64,
    ) -> anyhow::Result<Vec<(Entity, i64)>> {
        let mut due = Vec::new();
        for kind in Entity::ALL {
            let sql = format!(
                "SELECT id FROM {} WHERE deleted_at < $1 AND deleted_root_entity = $2 AND deleted_root_id = id ORDER BY id LIMIT $3",
                kind.plural()
            );
            let found = sqlx::query(&sql)
                .bind(cutoff.micros())
                .bind(kind.name())
                .bind(limit)
                .fetch_all(self.read_pool())
                .await?;
            for row in &found {
                due.push((kind, row.try_get::<i64, _>(0)?));
            }
        }
        Ok(due)
    }

    /// The newest audit entries whose action starts with one of `prefixes` (`access.`), newest
    /// first: the history of permission changes.
    pub async fn audit_with_prefixes(
        &self,
        prefixes: &[&str],
        limit: i64,
    ) -> anyhow::Result<Vec<AuditRow>> {
        let mut params = Params::default();
        let conditions: Vec<String> = prefixes
            .iter()
            .map(|prefix| format!("action LIKE {}", params.text(format!("{prefix}%"))))
            .collect();
        let limit = params.int(limit);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {} ORDER BY seq DESC LIMIT {limit}",
            conditions.join(" OR ")
        );
        let found = params
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(audit_from_row).collect()
    }

    pub async fn audit_entries(
        &self,
        entity: Option<Entity>,
        record_id: Option<i64>,
        after_seq: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<AuditRow>> {
        let filter = AuditFilter {
            entity,
            record_id,
            after_seq,
            ..AuditFilter::default()
        };
        self.audit_filtered(&filter, limit).await
    }

    /// Audit entries matching `filter`, oldest first, at most `limit`.
    pub async fn audit_filtered(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> anyhow::Result<Vec<AuditRow>> {
        let mut params = Params::default();
        let mut conditions = vec!["1 = 1".to_owned()];
        if let Some(entity) = filter.entity {
            conditions.push(format!("entity = {}", params.text(entity.name())));
        }
        for (column, value) in [
            ("record_id", filter.record_id),
            ("actor_id", filter.actor_id),
            ("token_id", filter.token_id),
            ("session_id", filter.session_id),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} = {}", params.int(value)));
            }
        }
        if let Some(client) = &filter.client {
            conditions.push(format!("client = {}", params.text(client.clone())));
        }
        match filter.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                // A range instead of LIKE: no wildcard characters to escape, and index-friendly.
                let low = params.text(prefix);
                let high = params.text(format!("{}/", prefix.trim_end_matches('.')));
                conditions.push(format!("action >= {low} AND action < {high}"));
            }
            Some(action) => conditions.push(format!("action = {}", params.text(action))),
            None => {}
        }
        if let Some(from) = filter.from {
            conditions.push(format!("at >= {}", params.int(from.micros())));
        }
        if let Some(to) = filter.to {
            conditions.push(format!("at <= {}", params.int(to.micros())));
        }
        if let Some(seq) = filter.after_seq {
            conditions.push(format!("seq > {}", params.int(seq)));
        }
        let limit = params.int(limit);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT {limit}",
            conditions.join(" AND ")
        );
        let found = params
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(audit_from_row).collect()
    }

    /// The newest audit entry's number and hash, as the chain's head records them; `None` for
    /// an empty log.
    pub async fn audit_head(&self) -> anyhow::Result<Option<(i64, String)>> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(self.read_pool())
            .await?;
        let Some(head) = head else {
            return Ok(None);
        };
        let seq = head.try_get::<i64, _>("seq")?;
        Ok((seq > 0)
            .then(|| head.try_get::<String, _>("hash"))
            .transpose()?
            .map(|hash| (seq, hash)))
    }

    /// The hash of audit entry `seq`, if it exists.
    pub async fn audit_hash_at(&self, seq: i64) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_optional(self.read_pool())
            .await?;
        Ok(row.map(|row| row.try_get::<String, _>(0)).transpose()?)
    }

    /// Which key seals the audit log, and its newest entry.
    pub async fn audit_seal(&self) -> anyhow::Result<AuditSeal> {
        let mut conn = self.read_pool().acquire().await?;
        let sealable = self.head_sealable(&mut conn).await?;
        let (seal, _) = crate::write::read_head(&mut conn, sealable)
            .await?
            .context("the audit head row is missing")?;
        Ok(seal)
    }

    /// Recomputes the audit hash chain. `Ok(n)` with the number of entries when intact,
    /// otherwise an error naming the first entry that does not match.
    ///
    /// A sealed log is checked with this database's audit key: entries before the one it
    /// was sealed at are plain SHA-256, every later one must carry the key's HMAC. A log that
    /// says it is not sealed while the key says it is was rewritten without the key.
    pub async fn verify_audit_chain(&self) -> anyhow::Result<i64> {
        let seal = self.audit_seal().await?;
        let own = self.audit_key();
        let key = crate::audit_key::resolve(&seal.key_id, own.iter())
            .map_err(|why| anyhow::anyhow!("{why}"))?;
        if let Some(key) = &key {
            anyhow::ensure!(
                seal.keyed_from == key.from(),
                "the database says its audit log is sealed from entry {}, the audit key says from entry {}: the seal was moved",
                seal.keyed_from,
                key.from()
            );
        }
        // Without a seal recorded, the key (if it seals anything yet) says where it starts.
        let key = key.or(own.filter(|own| own.from() > 0));
        let sealed_from = key.as_ref().map_or(i64::MAX, AuditKey::from);
        let mut prev_hash = String::new();
        let mut expected_seq = 1;
        loop {
            let batch = self
                .audit_entries(None, None, Some(expected_seq - 1), 1000)
                .await?;
            if batch.is_empty() {
                break;
            }
            for entry in &batch {
                anyhow::ensure!(
                    entry.seq == expected_seq,
                    "audit entry {expected_seq} is missing"
                );
                anyhow::ensure!(
                    entry.prev_hash == prev_hash,
                    "audit entry {} does not follow entry {}",
                    entry.seq,
                    entry.seq - 1
                );
                let detail = serde_json::to_string(&entry.detail)?;
                let hash = audit_hash_parts(
                    &prev_hash,
                    entry.seq,
                    entry.at.micros(),
                    entry.actor_id,
                    &entry.actor_name,
                    &entry.op_id,
                    &entry.action,
                    entry.entity.as_deref(),
                    entry.record_id,
                    entry.version,
                    &detail,
                    &entry.via,
                    key.as_ref().filter(|_| entry.seq >= sealed_from),
                );
                anyhow::ensure!(
                    hash == entry.hash,
                    "audit entry {} was altered after it was written{}",
                    entry.seq,
                    if entry.seq >= sealed_from && !seal.sealed() {
                        " (the log says it is not sealed, but the audit key seals it from this entry on)"
                    } else {
                        ""
                    }
                );
                prev_hash = hash;
                expected_seq += 1;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.read_pool())
            .await?;
        let head_seq = head.try_get::<i64, _>("seq")?;
        anyhow::ensure!(
            head_seq < expected_seq,
            "the audit log ends at entry {} before its recorded head (entry {head_seq}): entries were removed from the end",
            expected_seq - 1
        );
        anyhow::ensure!(
            head_seq == expected_seq - 1 && head.try_get::<String, _>("hash")? == prev_hash,
            "the audit log goes on after its recorded head (entry {head_seq}): entries {} to {} were added afterwards",
            head_seq + 1,
            expected_seq - 1
        );
        Ok(expected_seq - 1)
    }

    pub async fn user_by_username(&self, username: &str) -> anyhow::Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = sqlx::query(&sql)
            .bind(username.to_owned())
            .fetch_optional(self.read_pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user(&self, id: i64) -> anyhow::Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.read_pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn users(&self) -> anyhow::Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let found = sqlx::query(&sql).fetch_all(self.read_pool()).await?;
        found.iter().map(user_from_row).collect()
    }

    pub async fn user_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(self.read_pool())
            .await?
            .try_get::<i64, _>(0)?)
    }

    pub async fn sessions_of(&self, user_id: i64) -> anyhow::Result<Vec<SessionRow>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC"
        );
        let found = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(session_from_row).collect()
    }

    /// A session with its user, in one round trip (every page and API call starts here).
    pub async fn session_with_user(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(SessionRow, UserRow)>> {
        let sql = format!(
            "SELECT {}, {} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            prefixed("s", SESSION_COLUMNS),
            prefixed("u", USER_COLUMNS)
        );
        let row = sqlx::query(&sql)
            .bind(token_hash.to_owned())
            .fetch_optional(self.read_pool())
            .await?;
        let offset = SESSION_COLUMNS.split(", ").count();
        row.as_ref()
            .map(|row| Ok((session_from_row(row)?, user_from_row_at(row, offset)?)))
            .transpose()
    }

    /// An API token with its user, in one round trip.
    pub async fn token_with_user(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(TokenRow, UserRow)>> {
        let sql = format!(
            "SELECT {}, {} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
            prefixed("t", TOKEN_COLUMNS),
            prefixed("u", USER_COLUMNS)
        );
        let row = sqlx::query(&sql)
            .bind(token_hash.to_owned())
            .fetch_optional(self.read_pool())
            .await?;
        let offset = TOKEN_COLUMNS.split(", ").count();
        row.as_ref()
            .map(|row| Ok((token_from_row(row)?, user_from_row_at(row, offset)?)))
            .transpose()
    }

    pub async fn token_by_id(&self, id: i64) -> anyhow::Result<Option<TokenRow>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let found = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.read_pool())
            .await?;
        found.as_ref().map(token_from_row).transpose()
    }

    pub async fn tokens_of(&self, user_id: i64) -> anyhow::Result<Vec<TokenRow>> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC");
        let found = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.read_pool())
            .await?;
        found.iter().map(token_from_row).collect()
    }

    /// Failures under `key` since `since` recorded before the row `before` (the attempt being
    /// judged), and the newest of them.
    pub async fn login_failures_before(
        &self,
        key: &str,
        before: i64,
        since: Timestamp,
    ) -> anyhow::Result<(i64, Option<Timestamp>)> {
        let row = sqlx::query(
            "SELECT COUNT(*), MAX(at) FROM login_failures WHERE key = $1 AND at >= $2 AND id < $3",
        )
        .bind(key.to_owned())
        .bind(since.micros())
        .bind(before)
        .fetch_one(self.read_pool())
        .await?;
        Ok((
            row.try_get::<i64, _>(0)?,
            row.try_get::<Option<i64>, _>(1)?.map(Timestamp),
        ))
    }

    /// Every throttling key with failures since `since`: (key, failures, newest failure).
    pub async fn login_throttles(
        &self,
        since: Timestamp,
    ) -> anyhow::Result<Vec<(String, i64, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT key, COUNT(*), MAX(at) FROM login_failures WHERE at >= $1 GROUP BY key ORDER BY key",
        )
        .bind(since.micros())
        .fetch_all(self.read_pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    row.try_get::<i64, _>(1)?,
                    Timestamp(row.try_get::<i64, _>(2)?),
                ))
            })
            .collect()
    }

    pub async fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(self.read_pool())
            .await?;
        Ok(row.map(|row| row.try_get::<String, _>(0)).transpose()?)
    }

    pub async fn custom_fields(&self) -> anyhow::Result<Vec<CustomFieldDef>> {
        let found = sqlx::query("SELECT id, entity, key, label, kind, options, archived_at FROM custom_field_defs ORDER BY entity, id")
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| {
                let entity: String = row.try_get("entity")?;
                let kind: String = row.try_get("kind")?;
                Ok(CustomFieldDef {
                    id: row.try_get("id")?,
                    entity: Entity::from_name(&entity)
                        .context("custom field with unknown entity")?,
                    key: row.try_get("key")?,
                    label: row.try_get("label")?,
                    kind: CustomFieldKind::parse(&kind)
                        .context("custom field with unknown kind")?,
                    options: serde_json::from_str(&row.try_get::<String, _>("options")?)?,
                    archived: row.try_get::<Option<i64>, _>("archived_at")?.is_some(),
                })
            })
            .collect()
    }

    /// Pipelines as (key, name, stages).
    pub async fn pipelines(&self) -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
        let found = sqlx::query("SELECT key, name, stages FROM pipelines ORDER BY key")
            .fetch_all(self.read_pool())
            .await?;
        found
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("key")?,
                    row.try_get("name")?,
                    serde_json::from_str(&row.try_get::<String, _>("stages")?)?,
                ))
            })
            .collect()
    }

    /// Column names and types of a table, for the schema-parity test between backends.
    pub async fn table_columns(&self, table: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = match self.backend() {
            crate::Backend::Sqlite => {
                sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY name")
                    .bind(table.to_owned())
                    .fetch_all(self.read_pool())
                    .await?
            }
            crate::Backend::Postgres => {
                sqlx::query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY column_name",
                )
                .bind(table.to_owned())
                .fetch_all(self.read_pool())
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get(1)?;
                let kind = match kind.to_ascii_lowercase().as_str() {
                    "integer" | "bigint" => "integer",
                    "text" => "text",
                    other => return Ok((row.try_get(0)?, other.to_owned())),
                };
                Ok((row.try_get(0)?, kind.to_owned()))
            })
            .collect()
    }

    /// Table and index names, for the schema-parity test between backends.
    pub async fn schema_objects(&self) -> anyhow::Result<Vec<String>> {
        let rows = match self.backend() {
            crate::Backend::Sqlite => {
                sqlx::query("SELECT type || ' ' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY 1")
                    .fetch_all(self.read_pool())
                    .await?
            }
            crate::Backend::Postgres => {
                sqlx::query(
                    "SELECT 'table ' || table_name::text FROM information_schema.tables WHERE table_schema = current_schema()
                     UNION ALL
                     SELECT 'index ' || indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT IN (SELECT conname::text FROM pg_constraint)
                     ORDER BY 1",
                )
                .fetch_all(self.read_pool())
                .await?
            }
        };
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }
}

/// Ids of `entity` records that match every term. The first term drives (the caller puts the
/// most selective first: `c10000` rather than `example` in an e-mail address); each other term
/// is checked per candidate through the `search_terms_by_record` index, so a common word costs
/// a lookup per candidate instead of a scan of every record that has it. (No DISTINCT: `IN`
/// does not need it, and with it SQLite walks the new index for the driving term too.)
/// Which records of a search one query of [`Db::list_records`] looks for: those whose own terms
/// match, or those whose linked record (via the named column) matches; walking the list's order
/// (`true`) or collecting the matches.
enum Matching<'a> {
    Own(&'a [TermMatch], bool),
    Via(Entity, &'static str, &'a [TermMatch], bool),
}

/// Orders sort values the way the database does (integers; text by code point).
fn compare_sort(a: &SortValue, b: &SortValue) -> std::cmp::Ordering {
    match (a, b) {
        (SortValue::Int(a), SortValue::Int(b)) => a.cmp(b),
        (SortValue::Text(a), SortValue::Text(b)) => a.cmp(b),
        (SortValue::Int(_), SortValue::Text(_)) => std::cmp::Ordering::Less,
        (SortValue::Text(_), SortValue::Int(_)) => std::cmp::Ordering::Greater,
    }
}

/// Fewer matches than this are always collected and sorted, however large the table.
const WALK_FLOOR: i64 = 2_000;

/// Matches counted per search term at most: enough to choose a plan, bounded in cost.
const COUNT_CAP: i64 = 20_000;

/// `EXISTS` checks that the record `id_expr` has every term, each a probe of the
/// `search_terms_by_record` index.
fn term_exists(entity: Entity, terms: &[TermMatch], id_expr: &str, params: &mut Params) -> String {
    let checks: Vec<String> = terms
        .iter()
        .enumerate()
        .map(|(i, term)| {
            let alias = format!("e{}_{i}", entity.code());
            let code = params.int(entity.code());
            let matched = match term {
                TermMatch::Exact(text) => format!("{alias}.term = {}", params.text(text.clone())),
                TermMatch::Prefix(prefix) => {
                    let low = params.text(prefix.clone());
                    let high = params.text(format!("{prefix}\u{10FFFF}"));
                    format!("{alias}.term >= {low} AND {alias}.term < {high}")
                }
            };
            format!(
                "EXISTS (SELECT 1 FROM search_terms {alias} WHERE {alias}.entity = {code} AND {alias}.record_id = {id_expr} AND {matched})"
            )
        })
        .collect();
    checks.join(" AND ")
}

fn term_subquery(entity: Entity, terms: &[TermMatch], params: &mut Params) -> String {
    let ordered: Vec<&TermMatch> = terms.iter().collect();
    let condition = |alias: &str, term: &TermMatch, params: &mut Params| -> String {
        let code = params.int(entity.code());
        match term {
            TermMatch::Exact(text) => {
                let text = params.text(text.clone());
                format!("{alias}.entity = {code} AND {alias}.term = {text}")
            }
            TermMatch::Prefix(prefix) => {
                let low = params.text(prefix.clone());
                let high = params.text(format!("{prefix}\u{10FFFF}"));
                format!(
                    "{alias}.entity = {code} AND {alias}.term >= {low} AND {alias}.term < {high}"
                )
            }
        }
    };
    let Some((first, rest)) = ordered.split_first() else {
        return "SELECT record_id FROM search_terms WHERE 1 = 0".to_owned();
    };
    let mut sql = format!(
        "SELECT t0.record_id FROM search_terms t0 WHERE {}",
        condition("t0", first, params)
    );
    for (i, term) in rest.iter().enumerate() {
        let alias = format!("t{}", i + 1);
        let matched = condition(&alias, term, params);
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM search_terms {alias} WHERE {matched} AND {alias}.record_id = t0.record_id)"
        ));
    }
    sql
}

fn version_from_row(row: &AnyRow) -> anyhow::Result<VersionRow> {
    let entity: String = row.try_get(0)?;
    Ok(VersionRow {
        entity: Entity::from_name(&entity).context("version with unknown entity")?,
        record_id: row.try_get(1)?,
        version: row.try_get(2)?,
        action: row.try_get(3)?,
        at: Timestamp(row.try_get(4)?),
        actor_id: row.try_get(5)?,
        actor_name: row.try_get(6)?,
        op_id: row.try_get(7)?,
        reason: row.try_get(8)?,
        changed: serde_json::from_str(&row.try_get::<String, _>(9)?)?,
        snapshot: serde_json::from_str(&row.try_get::<String, _>(10)?)?,
    })
}

fn audit_from_row(row: &AnyRow) -> anyhow::Result<AuditRow> {
    Ok(AuditRow {
        seq: row.try_get(0)?,
        at: Timestamp(row.try_get(1)?),
        actor_id: row.try_get(2)?,
        actor_name: row.try_get(3)?,
        op_id: row.try_get(4)?,
        action: row.try_get(5)?,
        entity: row.try_get(6)?,
        record_id: row.try_get(7)?,
        version: row.try_get(8)?,
        detail: serde_json::from_str(&row.try_get::<String, _>(9)?)?,
        prev_hash: row.try_get(10)?,
        hash: row.try_get(11)?,
        via: crate::write::Via {
            session_id: row.try_get(12)?,
            token_id: row.try_get(13)?,
            client: row.try_get(14)?,
        },
    })
}

fn user_from_row(row: &AnyRow) -> anyhow::Result<UserRow> {
    user_from_row_at(row, 0)
}

/// A user whose [`USER_COLUMNS`] start at column `at` (after a joined table's columns).
fn user_from_row_at(row: &AnyRow, at: usize) -> anyhow::Result<UserRow> {
    Ok(UserRow {
        id: row.try_get(at)?,
        username: row.try_get(at + 1)?,
        display_name: row.try_get(at + 2)?,
        password_hash: row.try_get(at + 3)?,
        role: row.try_get(at + 4)?,
        active: row.try_get::<i64, _>(at + 5)? == 1,
        created_at: Timestamp(row.try_get(at + 6)?),
        last_login_at: row.try_get::<Option<i64>, _>(at + 7)?.map(Timestamp),
        locale: row.try_get(at + 8)?,
        team_id: row.try_get(at + 9)?,
        pending: row.try_get::<i64, _>(at + 10)? == 1,
        must_change_password: row.try_get::<i64, _>(at + 11)? == 1,
        frozen: match row.try_get::<Option<i64>, _>(at + 12)? {
            Some(at_micros) => Some((
                Timestamp(at_micros),
                row.try_get::<Option<String>, _>(at + 13)?
                    .unwrap_or_default(),
            )),
            None => None,
        },
    })
}

/// `a, b` → `t.a, t.b`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn session_from_row(row: &AnyRow) -> anyhow::Result<SessionRow> {
    Ok(SessionRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        created_at: Timestamp(row.try_get(2)?),
        last_seen_at: Timestamp(row.try_get(3)?),
        expires_at: Timestamp(row.try_get(4)?),
        revoked_at: row.try_get::<Option<i64>, _>(5)?.map(Timestamp),
        address: row.try_get(6)?,
        user_agent: row.try_get(7)?,
        verified_at: Timestamp(
            row.try_get::<Option<i64>, _>(8)?
                .unwrap_or(row.try_get::<i64, _>(2)?),
        ),
        method: row
            .try_get::<Option<String>, _>(9)?
            .unwrap_or_else(|| "password".into()),
        remembered: row.try_get::<i64, _>(10)? == 1,
    })
}

fn token_from_row(row: &AnyRow) -> anyhow::Result<TokenRow> {
    Ok(TokenRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        created_at: Timestamp(row.try_get(3)?),
        last_used_at: row.try_get::<Option<i64>, _>(4)?.map(Timestamp),
        expires_at: row.try_get::<Option<i64>, _>(5)?.map(Timestamp),
        revoked_at: row.try_get::<Option<i64>, _>(6)?.map(Timestamp),
        read_only: row.try_get::<i64, _>(7)? == 1,
        modules: row
            .try_get::<Option<String>, _>(8)?
            .and_then(|json| serde_json::from_str(&json).ok()),
        frozen_at: row.try_get::<Option<i64>, _>(9)?.map(Timestamp),
    })
}
