//! Deterministic record generation: every generated person and application is a pure
//! function of (seed, index), so a million people cost a few compact rows each, and the full
//! GraphQL-shaped JSON is built only for the records a page actually returns.
//!
//! All dates are relative to the fixed [`GEN_END`], never the wall clock.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::rng::{mix, Rng};

/// Generated people get ids `PERSON_ID_BASE + index`.
pub(crate) const PERSON_ID_BASE: u64 = 1_000_000;
/// Generated applications get ids `APP_ID_BASE + index`.
pub(crate) const APP_ID_BASE: u64 = 50_000_000;
/// Opportunities are drawn from a pool with ids `OPP_ID_BASE + k`.
const OPP_ID_BASE: u64 = 300_000;
const OPP_POOL: u64 = 4_000;
/// The id of the bot that `currentPerson` answers with.
pub(crate) const BOT_ID: u64 = 999;

/// 2026-10-31T00:00:00Z: no generated date (except planned end dates) is later.
pub(crate) const GEN_END: i64 = 1_793_404_800;
/// Generated people signed up during the four years before [`GEN_END`].
const GEN_SPAN: i64 = 4 * 365 * 86_400;
/// 2000-01-01T00:00:00Z: rows store times as `u32` seconds from here.
const ROW_TIME_BASE: i64 = 946_684_800;
const DAY: i64 = 86_400;

const SALT_PERSON: u64 = 1;
const SALT_APP: u64 = 2;
const SALT_OPP: u64 = 3;
const SALT_EMAIL: u64 = 4;

/// Packs unix seconds into a row time.
pub(crate) fn pack_time(secs: i64) -> u32 {
    u32::try_from((secs - ROW_TIME_BASE).clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX)
}

/// Unpacks a row time into unix seconds.
pub(crate) fn unpack_time(t: u32) -> i64 {
    ROW_TIME_BASE + i64::from(t)
}

/// The statuses the generator draws from, with weights. The store's status table starts with
/// these, in this order, so a generated status code is an index into this list.
pub(crate) const APP_STATUSES: &[(&str, u32)] = &[
    ("open", 220),
    ("applied", 10),
    ("matched", 45),
    ("accepted", 70),
    ("approved_tn_manager", 15),
    ("approved_ep_manager", 15),
    ("approved", 120),
    ("realized", 80),
    ("remote_realized", 15),
    ("finished", 50),
    ("completed", 50),
    ("withdrawn", 80),
    ("rejected", 80),
    ("declined", 20),
    ("acceptance_broken", 10),
    ("approval_broken", 30),
    ("realization_broken", 10),
    ("remote_realization_broken", 5),
    ("paid", 10),
    ("on_hold", 5),
];

/// Person statuses (they lag their applications, as in GIS).
pub(crate) const PERSON_STATUSES: &[(&str, u32)] = &[
    ("open", 40),
    ("applied", 15),
    ("accepted", 12),
    ("approved", 10),
    ("realized", 8),
    ("finished", 5),
    ("completed", 5),
    ("approval_broken", 3),
    ("deleted", 2),
];

/// The programmes opportunities belong to: (id, short_name, short_name_display, weight).
/// The last one is a programme ciosync has never heard of.
const PROGRAMMES: &[(u64, &str, &str, u32)] = &[
    (7, "GCDP", "GV", 45),
    (8, "GIP", "GTa", 35),
    (9, "GE", "GTe", 19),
    (12, "GXP", "GTx", 1),
];

const FIRST_NAMES: &[&str] = &[
    "Ana", "Bruno", "Chloé", "Dmitri", "Eszter", "Fatima", "Gustavo", "Hana", "Ifeoma", "José",
    "Kaito", "Laila", "Mateus", "Nguyễn", "Olga", "Priya", "Quentin", "Rania", "Søren", "Zoë",
];
const LAST_NAMES: &[&str] = &[
    "Almeida",
    "Bianchi",
    "Çelik",
    "Dubois",
    "Eriksen",
    "Fernández",
    "García",
    "Horvát",
    "Ivanova",
    "Jansen",
    "Kowalski",
    "López",
    "Müller",
    "Novák",
    "O'Brien",
    "Pereira",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Weiß",
];
const PROJECTS: &[&str] = &[
    "Teach English",
    "Global Classroom",
    "Youth 4 Impact",
    "Software Engineering Intern",
    "Marketing Trainee",
    "Green Leaders",
    "Data Analyst",
    "Health Heroes",
];
const CITIES: &[&str] = &[
    "São Paulo",
    "Cairo",
    "Jakarta",
    "Kraków",
    "Medellín",
    "Nairobi",
    "Hanoi",
    "Izmir",
    "Lima",
];

/// The name of an LC the generator (or a move) places people in.
pub(crate) fn lc_name(lc: u64) -> String {
    match lc {
        1337 => "Atlantis".to_owned(),
        1338 => "Lemuria".to_owned(),
        2001 => "Avalon".to_owned(),
        2002 => "Thule".to_owned(),
        _ => format!("LC {lc}"),
    }
}

/// The MC (country) an LC belongs to.
pub(crate) fn mc_of(lc: u64) -> Value {
    if lc < 2000 {
        json!({"id": "1585", "name": "Neverland"})
    } else {
        json!({"id": "1626", "name": "Ruritania"})
    }
}

/// How a record writes its dates; real GIS data mixes these.
#[derive(Clone, Copy)]
enum DateStyle {
    Zulu,
    ZuluMillis(u32),
    PlusTwo,
    NoZone,
}

impl DateStyle {
    fn draw(rng: &mut Rng) -> DateStyle {
        match rng.below(100) {
            0..=69 => DateStyle::Zulu,
            70..=79 => DateStyle::ZuluMillis(u32::try_from(rng.below(1000)).unwrap_or(0)),
            80..=89 => DateStyle::PlusTwo,
            _ => DateStyle::NoZone,
        }
    }

    fn format(self, secs: i64) -> Value {
        let Some(t) = DateTime::<Utc>::from_timestamp(secs, 0) else {
            return Value::Null;
        };
        let text = match self {
            DateStyle::Zulu => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            DateStyle::ZuluMillis(ms) => format!("{}.{ms:03}Z", t.format("%Y-%m-%dT%H:%M:%S")),
            DateStyle::PlusTwo => {
                let local = t + chrono::Duration::hours(2);
                format!("{}+02:00", local.format("%Y-%m-%dT%H:%M:%S"))
            }
            DateStyle::NoZone => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
        };
        Value::String(text)
    }

    fn opt(self, secs: Option<i64>) -> Value {
        secs.map_or(Value::Null, |s| self.format(s))
    }
}

/// Formats a time the canonical way (`...Z`), as mutations stamp it.
pub(crate) fn format_time(t: DateTime<Utc>) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Parses the date formats GIS data and filters use: RFC 3339 (with or without fractional
/// seconds or offset), a zone-less date-time (UTC), `YYYY-MM-DD` and `DD/MM/YYYY`.
/// Returns unix seconds and whether only a date was given.
pub(crate) fn parse_time(text: &str) -> Option<(i64, bool)> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some((t.timestamp(), false));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return Some((t.and_utc().timestamp(), false));
        }
    }
    for fmt in ["%Y-%m-%d", "%d/%m/%Y"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(text, fmt) {
            return Some((d.and_hms_opt(0, 0, 0)?.and_utc().timestamp(), true));
        }
    }
    None
}

/// The compact facts of a generated person that filters and sorting need.
pub(crate) struct PersonCore {
    pub created: i64,
    pub updated: i64,
    pub lc_slot: usize,
    pub status: usize,
    pub app_count: u32,
}

/// The compact facts of one generated person, `index` of `total`. `lcs` is the LC count.
pub(crate) fn person_core(seed: u64, index: u64, total: u64, lcs: usize) -> PersonCore {
    let mut rng = Rng::new(seed, SALT_PERSON, index);
    // Sign-up times grow with the index, so "created_at desc" is simply "index desc".
    let step = (GEN_SPAN / i64::try_from(total.max(1)).unwrap_or(i64::MAX)).max(1);
    let jitter = i64::try_from(rng.below(u64::try_from(step).unwrap_or(1))).unwrap_or(0);
    let created = GEN_END - GEN_SPAN + i64::try_from(index).unwrap_or(0) * step + jitter;
    let room = u64::try_from((GEN_END - created).max(0)).unwrap_or(0);
    let updated = created + i64::try_from(rng.below(room + 1)).unwrap_or(0);
    let lc_slot = usize::try_from(rng.below(lcs.max(1) as u64)).unwrap_or(0);
    let status = rng.weighted(PERSON_STATUSES);
    // About three applications on average: some none, a few more than ten.
    let app_count = match rng.below(100) {
        0..=14 => 0,
        15..=29 => 1,
        30..=49 => 2,
        50..=64 => 3,
        65..=76 => 4,
        77..=84 => 5,
        85..=89 => 6,
        90..=96 => 7,
        _ => rng.range(10, 14) as u32,
    };
    PersonCore {
        created,
        updated,
        lc_slot,
        status,
        app_count,
    }
}

fn relay_email(seed: u64, index: u64) -> String {
    let mut rng = Rng::new(seed, SALT_EMAIL, index);
    let hex: String = (0..3).map(|_| format!("{:016x}", rng.next_u64())).collect();
    format!("p_{}@inbound.aiesec.org", &hex[..40])
}

/// The full GraphQL-shaped JSON of a generated person. `lc` is the LC id, `status`, `created`
/// and `updated` come from the person's row (they may differ from the core after mutations
/// of compact fields, but a mutated person is stored as JSON anyway).
pub(crate) fn person_json(
    seed: u64,
    index: u64,
    lc: u64,
    status: &str,
    created: i64,
    updated: i64,
) -> Value {
    let mut rng = Rng::new(seed, SALT_PERSON ^ 0xFF, index);
    let style = DateStyle::draw(&mut rng);
    let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
    // Every hundredth person shares the previous person's relay address; a few have none.
    let email = if index % 100 == 1 {
        Value::String(relay_email(seed, index - 1))
    } else if rng.chance(1) {
        Value::Null
    } else {
        Value::String(relay_email(seed, index))
    };
    let dob = if rng.chance(15) {
        Value::Null
    } else {
        let year = 1990 + rng.below(16);
        Value::String(format!(
            "{year}-{:02}-{:02}",
            rng.range(1, 12),
            rng.range(1, 28)
        ))
    };
    let id = PERSON_ID_BASE + index;
    let cv_url = if rng.chance(40) {
        Value::Null
    } else {
        Value::String(format!("https://cdn.example.org/cvs/{id}/cv.pdf"))
    };
    let photo = if rng.chance(30) {
        Value::Null
    } else {
        Value::String(format!("https://cdn.example.org/photos/{id}.jpg"))
    };
    let nps = if rng.chance(70) {
        Value::Null
    } else {
        Value::String(rng.below(11).to_string())
    };
    let home_mc = if rng.chance(10) {
        Value::Null
    } else {
        mc_of(lc)
    };
    json!({
        "id": id.to_string(),
        "email": email,
        "secure_identity_email": format!("person-{:016x}@inbound.aiesec.org", mix(seed, 9, index)),
        "first_name": first,
        "last_name": last,
        "full_name": format!("{first} {last}"),
        "dob": dob,
        "gender": if rng.chance(50) { "Female" } else { "Male" },
        "created_at": style.format(created),
        "updated_at": style.format(updated),
        "interviewed": rng.chance(35),
        "profile_photo": photo,
        "status": status,
        "cv_url": cv_url,
        "nps_score": nps,
        "permissions": {"can_apply": rng.chance(85)},
        "contact_detail": {"email": null, "phone": null, "country_code": null},
        "home_lc": {"id": lc.to_string(), "name": lc_name(lc)},
        "home_mc": home_mc,
    })
}

/// The dates of a generated application, as unix seconds.
#[derive(Default)]
pub(crate) struct Timeline {
    pub created: i64,
    pub updated: i64,
    pub status: usize,
    matched: Option<i64>,
    matched_top: bool,
    an_signed: Option<i64>,
    tn_approved: Option<i64>,
    ep_approved: Option<i64>,
    approved: Option<i64>,
    approved_top: bool,
    approved_meta: bool,
    realized: Option<i64>,
    remote_realized: Option<i64>,
    start: Option<i64>,
    end: Option<i64>,
    completed: Option<i64>,
    withdrawn: Option<i64>,
    rejected: Option<i64>,
    approval_broken: Option<i64>,
    realisation_broke: Option<i64>,
    remote_broken: Option<i64>,
    opportunity: u64,
    opportunity_shape: u64,
    style_draw: u64,
}

/// The main-path rank a generated status has reached (1 applied … 6 completed).
fn reached_rank(status: &str, rng: &mut Rng) -> usize {
    match status {
        "open" | "applied" => 1,
        "matched"
        | "accepted"
        | "approved_tn_manager"
        | "approved_ep_manager"
        | "paid"
        | "on_hold"
        | "declined"
        | "acceptance_broken" => 2,
        "approved" | "approval_broken" => 3,
        "realized" | "remote_realized" | "realization_broken" | "remote_realization_broken" => 4,
        "finished" => 5,
        "completed" => 6,
        "withdrawn" => 1 + rng.below(3) as usize,
        "rejected" => 1 + rng.below(2) as usize,
        _ => 1,
    }
}

/// The dates of generated application `index` of a person who signed up at `person_created`.
pub(crate) fn app_timeline(seed: u64, index: u64, person_created: i64) -> Timeline {
    let mut rng = Rng::new(seed, SALT_APP, index);
    let status = rng.weighted(APP_STATUSES);
    let name = APP_STATUSES[status].0;
    let rank = reached_rank(name, &mut rng);
    let days = |rng: &mut Rng, lo: u64, hi: u64| {
        i64::try_from(rng.range(lo, hi)).unwrap_or(0) * DAY
            + i64::try_from(rng.below(DAY as u64)).unwrap_or(0)
    };
    // Offsets from created_at, in the order the flow reaches them.
    let matched = days(&mut rng, 2, 40);
    let signed = matched + days(&mut rng, 0, 5);
    let approved = signed + days(&mut rng, 1, 25);
    let realized = approved + days(&mut rng, 14, 120);
    let end = realized + days(&mut rng, 42, 120);
    let completed = end + days(&mut rng, 3, 40);
    let side = days(&mut rng, 1, 30);
    let stage_offsets = [0, 0, signed, approved, realized, end, completed];
    let side_status = matches!(
        name,
        "withdrawn"
            | "rejected"
            | "declined"
            | "acceptance_broken"
            | "approval_broken"
            | "realization_broken"
            | "remote_realization_broken"
    );
    let last = stage_offsets[rank] + if side_status { side } else { 0 };
    let room = (GEN_END - person_created).max(0);
    // Fit the whole story between sign-up and GEN_END, squeezing it if the person is recent.
    let (created, scale) = if last <= room {
        let slack = u64::try_from((room - last).min(300 * DAY)).unwrap_or(0);
        (
            person_created + i64::try_from(rng.below(slack + 1)).unwrap_or(0),
            1.0,
        )
    } else {
        (person_created, room as f64 / last.max(1) as f64)
    };
    let at = |offset: i64| created + (offset as f64 * scale) as i64;
    let mut t = Timeline {
        created,
        status,
        ..Timeline::default()
    };
    if rank >= 2 {
        t.matched = Some(at(matched));
        t.matched_top = !rng.chance(5);
        if name != "matched" {
            t.an_signed = Some(at(signed));
        }
    }
    if rank >= 3 || name == "approved_tn_manager" {
        t.tn_approved = Some(at(approved) - DAY);
    }
    if rank >= 3 || name == "approved_ep_manager" {
        t.ep_approved = Some(at(approved) - DAY / 2);
    }
    if rank >= 3 {
        t.approved = Some(at(approved));
        t.approved_top = true;
        t.approved_meta = true;
        t.start = Some(at(realized));
        t.end = Some(at(end));
        if name == "approval_broken" {
            // GIS often clears the approval when it breaks.
            t.approved_top = rng.chance(50);
            t.approved_meta = t.approved_top && rng.chance(50);
        } else if rng.chance(3) {
            // An approval nobody dated: ciosync must fall back to updated_at.
            t.approved_top = false;
            t.approved_meta = false;
        } else if rng.chance(15) {
            // Broken once, then approved again: the break predates the approval.
            t.approval_broken = Some(at(signed) + (at(approved) - at(signed)) / 2);
        }
    }
    if rank >= 4 {
        if name == "remote_realized" || name == "remote_realization_broken" {
            t.remote_realized = Some(at(realized));
        } else {
            t.realized = Some(at(realized));
        }
    }
    if rank >= 6 {
        t.completed = Some(at(completed));
    }
    let side_at = Some(at(stage_offsets[rank] + side));
    match name {
        "withdrawn" => t.withdrawn = side_at,
        "rejected" => t.rejected = side_at,
        "approval_broken" => t.approval_broken = side_at,
        "realization_broken" => t.realisation_broke = side_at,
        "remote_realization_broken" => t.remote_broken = side_at,
        _ => {}
    }
    let latest = [
        Some(created),
        t.matched,
        t.an_signed,
        t.approved,
        t.realized,
        t.remote_realized,
        if rank >= 5 { t.end } else { None },
        t.completed,
        t.withdrawn,
        t.rejected,
        t.approval_broken,
        t.realisation_broke,
        t.remote_broken,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(created);
    t.updated =
        (latest + i64::try_from(rng.below(2 * DAY as u64)).unwrap_or(0)).min(GEN_END.max(latest));
    t.opportunity = rng.below(OPP_POOL);
    t.opportunity_shape = rng.below(1000);
    t.style_draw = rng.next_u64();
    t
}

fn programme_json(p: &(u64, &str, &str, u32)) -> Value {
    json!({"id": p.0.to_string(), "short_name": p.1, "short_name_display": p.2})
}

fn opportunity_json(seed: u64, k: u64, shape: u64) -> Value {
    // An application without an opportunity, or whose opportunity has no programme at all.
    if shape < 5 {
        return Value::Null;
    }
    let mut rng = Rng::new(seed, SALT_OPP, k);
    let weights: Vec<(u64, u32)> = PROGRAMMES.iter().map(|p| (p.0, p.3)).collect();
    let programme = &PROGRAMMES[rng.weighted(&weights)];
    let title = format!(
        "{} in {}",
        PROJECTS[rng.below(PROJECTS.len() as u64) as usize],
        CITIES[rng.below(CITIES.len() as u64) as usize]
    );
    let (single, list) = if shape < 8 {
        (Value::Null, json!([]))
    } else if rng.chance(25) {
        // GIS often leaves `programme` null while `programmes` is set.
        (Value::Null, json!([programme_json(programme)]))
    } else {
        (
            programme_json(programme),
            json!([programme_json(programme)]),
        )
    };
    json!({
        "id": (OPP_ID_BASE + k).to_string(),
        "title": title,
        "programme": single,
        "programmes": list,
    })
}

/// The full GraphQL-shaped JSON of generated application `index` of person `person_id`.
pub(crate) fn app_json(seed: u64, index: u64, person_id: u64, t: &Timeline) -> Value {
    let mut style_rng = Rng::new(t.style_draw, 0, 0);
    let s = DateStyle::draw(&mut style_rng);
    let status = APP_STATUSES[t.status].0;
    let approved_top = if t.approved_top { t.approved } else { None };
    let approved_meta = if t.approved_meta { t.approved } else { None };
    let matched_top = if t.matched_top { t.matched } else { None };
    let mut meta = Map::new();
    let mut put = |k: &str, v: Value| {
        meta.insert(k.to_owned(), v);
    };
    put("date_matched", s.opt(t.matched));
    put("date_tn_approved", s.opt(t.tn_approved));
    put("date_ep_approved", s.opt(t.ep_approved));
    put("date_approved", s.opt(approved_meta));
    put("date_realized", s.opt(t.realized));
    put("remote_realized_at", s.opt(t.remote_realized));
    put("date_completed", s.opt(t.completed));
    put("date_withdrawn", s.opt(t.withdrawn));
    put("date_rejected", s.opt(t.rejected));
    put("date_approval_broken", s.opt(t.approval_broken));
    put("date_realisation_broke", s.opt(t.realisation_broke));
    put("date_remote_realization_broken_at", s.opt(t.remote_broken));
    json!({
        "id": (APP_ID_BASE + index).to_string(),
        "status": status,
        "current_status": status,
        "created_at": s.format(t.created),
        "updated_at": s.format(t.updated),
        "date_matched": s.opt(matched_top),
        "an_signed_at": s.opt(t.an_signed),
        "date_approved": s.opt(approved_top),
        "date_realized": s.opt(t.realized),
        "experience_start_date": s.opt(t.start),
        "experience_end_date": s.opt(t.end),
        "matched_or_rejected_at": s.opt(t.rejected.or(t.matched)),
        "date_approval_broken": s.opt(t.approval_broken),
        "date_realisation_broke": s.opt(t.realisation_broke),
        "meta": Value::Object(meta),
        "person": {"id": person_id.to_string()},
        "opportunity": opportunity_json(seed, t.opportunity, t.opportunity_shape),
    })
}

/// The person `currentPerson` answers with: the sync bot, a member of LC 1337 who also holds
/// a position in LC 1338 (so `init` has two LCs to offer, one of them twice).
pub(crate) fn bot_json() -> Value {
    let office = |id: u64| json!({"id": id.to_string(), "name": lc_name(id)});
    json!({
        "id": BOT_ID.to_string(),
        "email": "ciosync-bot@example.org",
        "first_name": "Sync",
        "last_name": "Bot",
        "full_name": "Sync Bot",
        "status": "active",
        "home_lc": office(1337),
        "current_office": office(1337),
        "current_offices": [office(1337), office(1338)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_time_accepts_the_formats_the_generator_writes() {
        let t = 1_700_000_000;
        for style in [
            DateStyle::Zulu,
            DateStyle::ZuluMillis(5),
            DateStyle::PlusTwo,
            DateStyle::NoZone,
        ] {
            let text = style.format(t);
            let parsed = parse_time(text.as_str().expect("formatted as a string"));
            assert_eq!(parsed, Some((t, false)), "{text}");
        }
        assert_eq!(parse_time("2024-05-01"), Some((1_714_521_600, true)));
        assert_eq!(parse_time("01/05/2024"), Some((1_714_521_600, true)));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn timelines_stay_before_gen_end_and_after_signup() {
        for i in 0..2000 {
            let created = GEN_END - (i as i64 % 50) * DAY;
            let t = app_timeline(7, i, created);
            assert!(t.created >= created, "app {i}");
            assert!(t.updated <= GEN_END && t.updated >= t.created, "app {i}");
        }
    }
}
