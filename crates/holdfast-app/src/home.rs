//! A user's day: what the home page shows.

use crate::records::{self, Page};
use crate::{App, AppError, StageTotal};
use holdfast_domain::access::authorize;
use holdfast_domain::{Action, Actor, Entity, Record, Timestamp};

/// Follow-ups shown at most on the home page; the activity list has the rest.
const DUE_LIMIT: i64 = 50;
const DEALS_LIMIT: &str = "20";

pub struct Day {
    /// Open activities of mine due before the end of today (in the team's time zone), soonest
    /// first; those due before `today_starts` are overdue.
    pub due: Vec<Record>,
    pub today_starts: Timestamp,
    /// My open deals, most recently changed first.
    pub open_deals: Page,
    /// Open deals per stage (of the deals the user reaches), for the pipeline chart.
    pub stages: Vec<StageTotal>,
}

/// The start of the day containing `now`, in a time zone `offset_minutes` east of UTC.
pub fn start_of_day(now: Timestamp, offset_minutes: i64) -> Timestamp {
    let offset = offset_minutes * 60_000_000;
    Timestamp(
        (now.micros() + offset).div_euclid(Timestamp::MICROS_PER_DAY) * Timestamp::MICROS_PER_DAY
            - offset,
    )
}

/// The parts of a user's day their rights allow: follow-ups with the right to view activities,
/// open deals with the right to view deals, the pipeline chart with the reports right too
/// (over the deals the user reaches). A user with none of them gets an empty day.
pub async fn my_day(app: &App, actor: &Actor) -> Result<Day, AppError> {
    let today_starts = start_of_day(app.now(), app.config.utc_offset_minutes);
    let tomorrow = Timestamp(today_starts.micros() + Timestamp::MICROS_PER_DAY);
    let due = if authorize(actor, Action::Read(Entity::Activity)).is_ok() {
        app.db
            .open_activities_due(actor.user_id, tomorrow, DUE_LIMIT)
            .await?
    } else {
        Vec::new()
    };
    let deals = authorize(actor, Action::Read(Entity::Deal)).is_ok();
    let open_deals = if deals {
        let params = [
            ("owner_id".to_owned(), actor.user_id.to_string()),
            ("status".to_owned(), "open".to_owned()),
            ("limit".to_owned(), DEALS_LIMIT.to_owned()),
        ];
        records::list(app, actor, Entity::Deal, &params).await?
    } else {
        Page {
            items: Vec::new(),
            next_cursor: None,
        }
    };
    let stages = if deals && authorize(actor, Action::Reports).is_ok() {
        let reach = records::reach(actor, Entity::Deal);
        app.db.pipeline_totals(reach.as_ref()).await?
    } else {
        Vec::new()
    };
    Ok(Day {
        due,
        today_starts,
        open_deals,
        stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_local_midnight() {
        // 2026-11-29T17:30:00Z is 01:30 on the 30th in Beijing (+08:00).
        let now = Timestamp::parse_rfc3339("2026-11-29T17:30:00Z").unwrap();
        assert_eq!(start_of_day(now, 0).to_rfc3339(), "2026-11-29T00:00:00Z");
        assert_eq!(
            start_of_day(now, 8 * 60).to_rfc3339(),
            "2026-11-29T16:00:00Z"
        );
        assert_eq!(
            start_of_day(now, -5 * 60).to_rfc3339(),
            "2026-11-29T05:00:00Z"
        );
    }
}
