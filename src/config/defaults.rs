//! The default of every optional key (SPEC 2), one named constant each.
//!
//! The resolver reads defaults from here and nowhere else. `config.example.toml` shows the
//! same values ("every other key is optional and the value shown is its default"); a unit
//! test (`example_file_shows_the_named_defaults`) compares the two, so changing a constant
//! without the example file, or the other way round, fails the build.
//!
//! Keys whose absence means "off" (`ca_file`, `customerio.track_url`, `log.dir`,
//! `monitoring.*`) have no default and so no constant here.

use std::time::Duration;

use super::types::{CioApi, LateEvents, LogFormat, ProgrammeName, Region};

/// `data_dir`: state, lock, credentials and `last_run.json`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ciosync";

/// `gis.endpoint`: AIESEC's production GraphQL API.
pub const DEFAULT_GIS_ENDPOINT: &str = "https://gis-api.aiesec.org/graphql";

/// `gis.page_size`: records per GIS page.
pub const DEFAULT_PAGE_SIZE: u32 = 200;

/// `gis.full_sync_every`: how often a run reads everything rather than the changes (24 h).
pub const DEFAULT_FULL_SYNC_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// `gis.request_timeout`: a hung GIS request must not hold the lock forever (30 s).
pub const DEFAULT_GIS_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `customerio.region`.
pub const DEFAULT_REGION: Region = Region::Us;

/// `customerio.api`: Track v2's `/api/v2/batch`.
pub const DEFAULT_CIO_API: CioApi = CioApi::Batch;

/// `customerio.max_requests_per_second`: the Track API's fair-use rate (about 100 requests
/// per second per workspace; not enforced with 429s, so the client must keep to it).
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 100;

/// `customerio.request_timeout`: a hung customer.io request must not hold the lock forever
/// (30 s).
pub const DEFAULT_CIO_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `events.programme_name`: `GCDP`, `GIP`, ... rather than the display names.
pub const DEFAULT_PROGRAMME_NAME: ProgrammeName = ProgrammeName::ShortName;

/// `events.late_events`: a late event keeps the time it happened at (SPEC 4.3).
pub const DEFAULT_LATE_EVENTS: LateEvents = LateEvents::TrueTime;

/// `log.level`: quiet when healthy, so cron mails only what needs a look.
pub const DEFAULT_LOG_LEVEL: &str = "warn";

/// `log.format`.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// `log.keep_days`: daily log files of the last two weeks are kept (today's included);
/// older ones are deleted, so `log.dir` does not grow forever.
pub const DEFAULT_LOG_KEEP_DAYS: u32 = 14;

/// `safety.time_budget`: under a 5-minute cron interval, so runs never pile up (4 min).
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(4 * 60);

/// `safety.max_event_share`: refuse a run that would send events to more than half of the
/// people the state knows.
pub const DEFAULT_MAX_EVENT_SHARE: f64 = 0.5;

/// `safety.min_people_share`: refuse a full read that returns fewer than half of the people
/// the state knows.
pub const DEFAULT_MIN_PEOPLE_SHARE: f64 = 0.5;
