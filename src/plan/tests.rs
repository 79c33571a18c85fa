//! Table cases for every rule of SPEC 4.1 to 4.3 and 5.4, plus properties: planning is
//! deterministic, and applying a plan's `after`s then planning again gives nothing to send.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::model::{ApplicationDates, Side, Step};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - Duration::days(days)
}

fn options() -> PlanOptions {
    PlanOptions {
        site_id: "site-1".to_owned(),
        programme_name: ProgrammeName::ShortName,
        late_events: LateEvents::TrueTime,
        full_read: false,
        excluded: [false; crate::model::ATTRIBUTES.len()],
        on_leave: OnLeave::Mark,
    }
}

fn fingerprinter() -> Fingerprinter {
    Fingerprinter::new([7; 32])
}

fn person(id: PersonId) -> Person {
    Person {
        id,
        email: Some(format!("p{id}@example.org")),
        first_name: Some("Ana".to_owned()),
        ..Person::default()
    }
}

fn app(id: ApplicationId, person_id: PersonId, status: &str) -> Application {
    Application {
        id,
        person_id: Some(person_id),
        status: status.to_owned(),
        opportunity_id: Some(9000 + id),
        opportunity_title: Some("Teach English".to_owned()),
        programme: Some(Programme {
            short_name: Some("GV".to_owned()),
            short_name_display: Some("GVd".to_owned()),
        }),
        dates: ApplicationDates::default(),
    }
}

fn run(state: &State, people: &[Person], apps: &[Application], options: &PlanOptions) -> Plan {
    plan(state, people, apps, &fingerprinter(), options, now())
}

/// Plans, confirms everything, and returns the plan.
fn settle(
    state: &mut State,
    people: &[Person],
    apps: &[Application],
    options: &PlanOptions,
) -> Plan {
    let planned = run(state, people, apps, options);
    confirm_all(&planned, state);
    planned
}

/// Confirms every write of `plan` the way the sync does, in plan order.
fn confirm_all(plan: &Plan, state: &mut State) {
    for person in &plan.people {
        if let Some(identify) = &person.identify {
            state.confirm_identify(person.person_id, &identify.after);
        }
        for event in &person.events {
            state.confirm_event(event.application_id, &event.after);
        }
    }
    let removals: Vec<Removal> = plan.people.iter().filter_map(|p| p.removal).collect();
    state.confirm_removals(&removals);
}

fn events(plan: &Plan) -> Vec<&PlannedEvent> {
    plan.people.iter().flat_map(|p| &p.events).collect()
}

fn names(plan: &Plan) -> Vec<&str> {
    events(plan).iter().map(|e| e.name.as_str()).collect()
}

fn occurrences(plan: &Plan) -> Vec<u32> {
    events(plan)
        .iter()
        .map(|e| {
            let kind = EventKind::ALL
                .into_iter()
                .find(|k| e.name == format!("GV{}", k.name()))
                .expect("test events use programme GV");
            e.after.count[kind.index()]
        })
        .collect()
}

fn timestamps(plan: &Plan) -> Vec<i64> {
    events(plan).iter().map(|e| e.timestamp).collect()
}

#[test]
fn first_sight_as_approved_replays_each_step_with_its_own_date() {
    let mut application = app(1, 10, "approved");
    application.dates.created_at = Some(days_ago(30));
    application.dates.meta_date_matched = Some(days_ago(20));
    application.dates.an_signed_at = Some(days_ago(19));
    application.dates.meta_date_approved = Some(days_ago(10));
    application.dates.updated_at = Some(days_ago(1));
    let planned = run(&State::default(), &[person(10)], &[application], &options());

    assert_eq!(names(&planned), ["GVapplied", "GVaccepted", "GVapproved"]);
    let expected = [days_ago(30), days_ago(20), days_ago(10)].map(|t| t.timestamp());
    assert_eq!(timestamps(&planned), expected);
    let all = events(&planned);
    for (event, at) in all.iter().zip(expected) {
        assert_eq!(event.data.to_json()["occurred_at"], json!(at));
        assert_eq!(event.data.to_json()["application_id"], json!(1));
        assert_eq!(event.data.to_json()["opportunity_id"], json!(9001));
        assert_eq!(event.data.to_json()["oid"], json!(9001));
        assert_eq!(
            event.data.to_json()["opportunity_title"],
            json!("Teach English")
        );
        assert_eq!(event.data.to_json()["programme"], json!("GV"));
        assert_eq!(event.data.to_json()["status"], json!("approved"));
    }
    let ranks: Vec<u8> = all.iter().map(|e| e.after.rank).collect();
    assert_eq!(ranks, [1, 2, 3]);
    assert!(all.iter().all(|e| e.after.person_id == 10));
    assert_eq!(all[0].id, event_id("site-1", 1, "GVapplied", 1));
    assert_eq!(
        planned.identify_count(),
        1,
        "a new person is identified first"
    );
    assert_eq!(planned.event_count(), 3);
}

#[test]
fn steps_without_their_own_date_take_updated_at_then_now() {
    let mut application = app(1, 10, "accepted");
    application.dates.created_at = Some(days_ago(9));
    application.dates.updated_at = Some(days_ago(2));
    let planned = run(
        &State::default(),
        &[person(10)],
        &[application.clone()],
        &options(),
    );
    assert_eq!(
        timestamps(&planned),
        [days_ago(9).timestamp(), days_ago(2).timestamp()]
    );

    application.dates.updated_at = None;
    let planned = run(&State::default(), &[person(10)], &[application], &options());
    assert_eq!(
        timestamps(&planned),
        [days_ago(9).timestamp(), now().timestamp()]
    );
}

#[test]
fn every_main_status_maps_to_its_rank() {
    let table = [
        ("open", 1),
        ("applied", 1),
        ("matched", 2),
        ("accepted", 2),
        ("approved_tn_manager", 2),
        ("approved_ep_manager", 2),
        ("approved", 3),
        ("realized", 4),
        ("remote_realized", 4),
        ("finished", 5),
        ("completed", 6),
    ];
    for (status, rank) in table {
        let planned = run(
            &State::default(),
            &[person(1)],
            &[app(1, 1, status)],
            &options(),
        );
        let expected: Vec<String> = Step::ALL[..rank]
            .iter()
            .map(|s| format!("GV{}", s.name()))
            .collect();
        assert_eq!(names(&planned), expected, "{status}");
    }
}

#[test]
fn moving_forward_sends_only_the_new_steps_and_backwards_sends_nothing() {
    let mut state = State::default();
    let people = [person(1)];
    settle(&mut state, &people, &[app(1, 1, "accepted")], &options());

    let forward = settle(&mut state, &people, &[app(1, 1, "realized")], &options());
    assert_eq!(names(&forward), ["GVapproved", "GVrealized"]);

    let before = state.clone();
    for status in ["approved", "applied", "open", "realized"] {
        let planned = run(&state, &people, &[app(1, 1, status)], &options());
        assert!(planned.people.is_empty(), "{status}: {:?}", names(&planned));
    }
    assert_eq!(state, before);
}

#[test]
fn approval_broken_on_first_sight_replays_to_approved_by_its_own_evidence() {
    // No dates at all: the broken status itself proves approval (rank 3).
    let mut application = app(1, 1, "approval_broken");
    application.dates.updated_at = Some(days_ago(3));
    let planned = run(
        &State::default(),
        &[person(1)],
        &[application.clone()],
        &options(),
    );
    assert_eq!(
        names(&planned),
        ["GVapplied", "GVaccepted", "GVapproved", "GVapproval_broken"]
    );
    assert_eq!(timestamps(&planned), [days_ago(3).timestamp(); 4]);
    let last = events(&planned)[3];
    assert_eq!(last.after.rank, 2, "approval_broken falls back to rank 2");
    assert_eq!(last.after.last_side, Some(Side::ApprovalBroken));

    // With dates: each event has its own stamp, the side event last.
    application.dates.created_at = Some(days_ago(40));
    application.dates.date_matched = Some(days_ago(30));
    application.dates.date_approved = Some(days_ago(20));
    application.dates.meta_date_approval_broken = Some(days_ago(5));
    let planned = run(&State::default(), &[person(1)], &[application], &options());
    assert_eq!(
        timestamps(&planned),
        [40, 30, 20, 5].map(|d| days_ago(d).timestamp())
    );
}

/// Each event carries the rule that produced it (what `explain` shows, SPEC 8.1): the
/// replayed steps below a main-path status, the status's own step, the steps a side status
/// has evidence for, and the side event.
#[test]
fn each_event_carries_the_rule_that_produced_it() {
    let rules = |plan: &Plan| events(plan).iter().map(|e| e.rule).collect::<Vec<_>>();
    let mut state = State::default();
    let people = [person(1)];
    let approved = settle(&mut state, &people, &[app(1, 1, "approved")], &options());
    assert_eq!(
        rules(&approved),
        [
            EventRule::StepReplay,
            EventRule::StepReplay,
            EventRule::MainStatus
        ]
    );
    let mut realized = app(1, 1, "realization_broken");
    realized.dates.date_realized = Some(days_ago(2));
    let broken = settle(&mut state, &people, &[realized], &options());
    assert_eq!(names(&broken), ["GVrealized", "GVrealization_broken"]);
    assert_eq!(rules(&broken), [EventRule::Evidence, EventRule::SideStatus]);
    // Realized again after the break (fallback rank 3): the status's step alone, a second
    // occurrence.
    let again = settle(&mut state, &people, &[app(1, 1, "realized")], &options());
    assert_eq!(names(&again), ["GVrealized"]);
    assert_eq!(rules(&again), [EventRule::MainStatus]);
    assert_eq!(occurrences(&again), [2]);
}

/// A side-status case: status, how to set the dates, the expected event names.
type SideCase = (
    &'static str,
    fn(&mut ApplicationDates),
    &'static [&'static str],
);

#[test]
fn side_status_replays_only_to_the_highest_rank_with_evidence() {
    let cases: [SideCase; 6] = [
        ("withdrawn", |_| {}, &["GVapplied", "GVwithdrawn"]),
        (
            "withdrawn",
            |d| d.experience_end_date = Some(days_ago(1)),
            &["GVapplied", "GVwithdrawn"],
        ),
        (
            "rejected",
            |d| d.date_realized = Some(days_ago(4)),
            &[
                "GVapplied",
                "GVaccepted",
                "GVapproved",
                "GVrealized",
                "GVrejected",
            ],
        ),
        (
            "declined",
            |d| d.an_signed_at = Some(days_ago(4)),
            &["GVapplied", "GVaccepted", "GVdeclined"],
        ),
        (
            "acceptance_broken",
            |_| {},
            &["GVapplied", "GVaccepted", "GVacceptance_broken"],
        ),
        (
            "remote_realization_broken",
            |_| {},
            &[
                "GVapplied",
                "GVaccepted",
                "GVapproved",
                "GVrealized",
                "GVremote_realization_broken",
            ],
        ),
    ];
    for (status, set_dates, expected) in cases {
        let mut application = app(1, 1, status);
        set_dates(&mut application.dates);
        let planned = run(&State::default(), &[person(1)], &[application], &options());
        assert_eq!(names(&planned), expected, "{status}");
    }
}

#[test]
fn side_events_take_their_own_dates() {
    let mut application = app(1, 1, "rejected");
    application.dates.created_at = Some(days_ago(9));
    application.dates.matched_or_rejected_at = Some(days_ago(6));
    application.dates.updated_at = Some(days_ago(1));
    let planned = run(&State::default(), &[person(1)], &[application], &options());
    assert_eq!(
        timestamps(&planned),
        [days_ago(9).timestamp(), days_ago(6).timestamp()]
    );
}

#[test]
fn break_then_reapproval_sends_a_new_occurrence_with_a_new_id() {
    let mut state = State::default();
    let people = [person(1)];
    let first = settle(&mut state, &people, &[app(1, 1, "approved")], &options());
    let broken = settle(
        &mut state,
        &people,
        &[app(1, 1, "approval_broken")],
        &options(),
    );
    assert_eq!(names(&broken), ["GVapproval_broken"]);

    let again = settle(&mut state, &people, &[app(1, 1, "approved")], &options());
    assert_eq!(names(&again), ["GVapproved"]);
    assert_eq!(occurrences(&again), [2]);
    let first_approved = events(&first)[2];
    let second_approved = events(&again)[0];
    assert_ne!(first_approved.id, second_approved.id);
    assert_eq!(second_approved.id, event_id("site-1", 1, "GVapproved", 2));

    let twice = settle(
        &mut state,
        &people,
        &[app(1, 1, "approval_broken")],
        &options(),
    );
    assert_eq!(names(&twice), ["GVapproval_broken"]);
    assert_eq!(occurrences(&twice), [2]);
}

#[test]
fn realization_broken_falls_back_to_approved() {
    let mut state = State::default();
    let people = [person(1)];
    settle(&mut state, &people, &[app(1, 1, "realized")], &options());
    settle(
        &mut state,
        &people,
        &[app(1, 1, "realization_broken")],
        &options(),
    );
    assert_eq!(state.applications[&1].rank, 3);
    let again = run(&state, &people, &[app(1, 1, "realized")], &options());
    assert_eq!(names(&again), ["GVrealized"]);
    assert_eq!(occurrences(&again), [2]);
}

#[test]
fn a_repeated_side_status_is_sent_once() {
    let mut state = State::default();
    let people = [person(1)];
    let first = settle(&mut state, &people, &[app(1, 1, "withdrawn")], &options());
    assert_eq!(names(&first), ["GVapplied", "GVwithdrawn"]);
    let again = run(&state, &people, &[app(1, 1, "withdrawn")], &options());
    assert!(again.people.is_empty());
    // A different side status is a new occurrence of that one.
    let rejected = run(&state, &people, &[app(1, 1, "rejected")], &options());
    assert_eq!(names(&rejected), ["GVrejected"]);
}

#[test]
fn unknown_status_sends_nothing_and_is_counted() {
    let mut state = State::default();
    let people = [person(1)];
    settle(&mut state, &people, &[app(1, 1, "accepted")], &options());
    let before = state.clone();
    let apps = [app(1, 1, "on_hold"), app(2, 1, "on_hold"), app(3, 1, "")];
    let planned = settle(&mut state, &people, &apps, &options());
    assert_eq!(planned.event_count(), 0);
    assert_eq!(
        planned.stats.unknown_statuses,
        BTreeMap::from([("on_hold".to_owned(), 2), (String::new(), 1)])
    );
    assert_eq!(state, before, "unknown statuses leave the state unchanged");
}

#[test]
fn late_events_now_restamps_only_old_events_of_known_applications() {
    let mut state = State::default();
    let people = [person(1)];
    let mut known = app(1, 1, "applied");
    known.dates.created_at = Some(days_ago(30));
    settle(&mut state, &people, &[known.clone()], &options());

    known.status = "approved".to_owned();
    known.dates.date_matched = Some(days_ago(10));
    known.dates.date_approved = Some(now() - Duration::hours(71));
    let mut new = app(2, 1, "accepted");
    new.dates.created_at = Some(days_ago(8));
    new.dates.date_matched = Some(days_ago(7));
    let apps = [known, new];

    let late_now = PlanOptions {
        late_events: LateEvents::Now,
        ..options()
    };
    let planned = run(&state, &people, &apps, &late_now);
    assert_eq!(
        names(&planned),
        ["GVaccepted", "GVapproved", "GVapplied", "GVaccepted"]
    );
    let true_times = [
        days_ago(10),
        now() - Duration::hours(71),
        days_ago(8),
        days_ago(7),
    ]
    .map(|t| t.timestamp());
    assert_eq!(
        timestamps(&planned),
        [
            now().timestamp(),
            true_times[1],
            true_times[2],
            true_times[3]
        ]
    );
    let occurred: Vec<i64> = events(&planned)
        .iter()
        .map(|e| e.data.to_json()["occurred_at"].as_i64().expect("integer"))
        .collect();
    assert_eq!(occurred, true_times);

    let true_time = run(&state, &people, &apps, &options());
    assert_eq!(timestamps(&true_time), true_times);
}

#[test]
fn only_changed_attributes_are_sent_and_null_clears() {
    let mut state = State::default();
    let mut someone = person(1);
    someone.status = Some("open".to_owned());
    someone.can_apply = Some(true);
    someone.created_at = Some(days_ago(100));
    let first = settle(&mut state, &[someone.clone()], &[], &options());
    let identify = first.people[0].identify.as_ref().expect("new person");
    assert_eq!(
        identify.attributes.to_map(),
        json!({
            "email": "p1@example.org", "first_name": "Ana", "status": "open",
            "can_apply": true, "created_at": days_ago(100).timestamp()
        })
        .as_object()
        .expect("object")
        .clone(),
        "a new person's nulls are not sent"
    );

    assert!(run(&state, &[someone.clone()], &[], &options())
        .people
        .is_empty());

    someone.first_name = Some("Ana Maria".to_owned());
    someone.status = None;
    someone.created_at = Some(days_ago(99));
    let changed = settle(&mut state, &[someone.clone()], &[], &options());
    let identify = changed.people[0].identify.as_ref().expect("changed person");
    assert_eq!(
        Value::Object(identify.attributes.to_map()),
        json!({"first_name": "Ana Maria", "status": null}),
        "created_at is sent only the first time it is known"
    );
    assert!(run(&state, &[someone], &[], &options()).people.is_empty());
}

#[test]
fn a_new_person_without_any_attribute_still_gets_an_empty_identify() {
    let bare = Person {
        id: 5,
        ..Person::default()
    };
    let planned = run(&State::default(), &[bare], &[], &options());
    let identify = planned.people[0].identify.as_ref().expect("profile first");
    assert!(identify.attributes.is_empty());
    assert_eq!(identify.after, PersonState::default());
}

/// The dry run counts identifies by kind; the planner classifies each as it plans it.
#[test]
fn identifies_are_classified_new_changed_leaving_and_coming_back() {
    let kinds = |plan: &Plan| -> Vec<(PersonId, IdentifyKind)> {
        plan.people
            .iter()
            .filter_map(|p| Some((p.person_id, p.identify.as_ref()?.kind)))
            .collect()
    };
    let full = PlanOptions {
        full_read: true,
        ..options()
    };
    let mut state = State::default();
    let first = settle(&mut state, &[person(1), person(2)], &[], &full);
    assert_eq!(
        kinds(&first),
        [(1, IdentifyKind::New), (2, IdentifyKind::New)]
    );

    let mut renamed = person(1);
    renamed.first_name = Some("Bea".to_owned());
    let second = settle(&mut state, &[renamed.clone(), person(3)], &[], &full);
    assert_eq!(
        kinds(&second),
        [
            (1, IdentifyKind::Changed),
            (2, IdentifyKind::LeavingScope),
            (3, IdentifyKind::New)
        ]
    );

    let third = settle(&mut state, &[renamed, person(2), person(3)], &[], &full);
    assert_eq!(kinds(&third), [(2, IdentifyKind::ComingBack)]);
}

#[test]
fn long_strings_are_cut_on_a_char_boundary_and_counted() {
    let mut someone = person(1);
    someone.first_name = Some("a".to_owned() + &"é".repeat(600)); // 1201 bytes
    someone.last_name = Some("€".repeat(400)); // 1200 bytes
    someone.full_name = Some("x".repeat(1000)); // exactly the limit
    let mut state = State::default();
    let planned = settle(&mut state, &[someone.clone()], &[], &options());
    let attrs = &planned.people[0]
        .identify
        .as_ref()
        .expect("new")
        .attributes
        .to_map();
    let first = attrs["first_name"].as_str().expect("string");
    assert_eq!(first.len(), 999);
    assert_eq!(first, "a".to_owned() + &"é".repeat(499));
    assert_eq!(
        attrs["last_name"].as_str().expect("string"),
        "€".repeat(333)
    );
    assert_eq!(attrs["full_name"].as_str().expect("string").len(), 1000);
    assert_eq!(planned.stats.truncated_values, 2);
    // The cut value is what was fingerprinted: nothing to resend.
    assert!(run(&state, &[someone], &[], &options()).people.is_empty());
}

#[test]
fn people_leaving_and_returning_get_in_scope_once() {
    let mut state = State::default();
    let full = PlanOptions {
        full_read: true,
        ..options()
    };
    settle(
        &mut state,
        &[person(1), person(2)],
        &[app(7, 2, "applied")],
        &full,
    );

    let incremental = run(&state, &[person(1)], &[], &options());
    assert!(
        incremental.people.is_empty(),
        "only a full read notices leavers"
    );

    let left = settle(&mut state, &[person(1)], &[app(7, 2, "approved")], &full);
    assert_eq!(left.people.len(), 1);
    let identify = left.people[0].identify.as_ref().expect("leaver");
    assert_eq!(left.people[0].person_id, 2);
    assert_eq!(
        Value::Object(identify.attributes.to_map()),
        json!({"in_scope": false})
    );
    assert!(
        left.people[0].events.is_empty(),
        "their applications stay untouched"
    );
    assert_eq!(left.stats.people_left_scope, 1);
    assert_eq!(left.stats.applications_deferred, 1);
    assert_eq!(state.applications[&7].rank, 1);
    assert!(
        run(&state, &[person(1)], &[], &full).people.is_empty(),
        "sent once"
    );

    let back = settle(
        &mut state,
        &[person(2)],
        &[app(7, 2, "approved")],
        &options(),
    );
    let identify = back.people[0].identify.as_ref().expect("returner");
    assert_eq!(
        Value::Object(identify.attributes.to_map()),
        json!({"in_scope": true})
    );
    assert_eq!(names(&back), ["GVaccepted", "GVapproved"]);
    assert_eq!(back.stats.people_returned, 1);
    assert!(state.people[&2].in_scope && state.people[&2].in_scope_sent);
    assert!(
        !state.people[&1].in_scope_sent,
        "a person who never left never gets it"
    );
}

#[test]
fn a_forgotten_person_gets_nothing_and_is_counted() {
    let mut state = State::default();
    settle(
        &mut state,
        &[person(1)],
        &[app(7, 1, "applied")],
        &options(),
    );
    state.begin_forget(1, false);
    let renamed = Person {
        first_name: Some("Bea".to_owned()),
        ..person(1)
    };
    let planned = run(&state, &[renamed], &[app(7, 1, "approved")], &options());
    let removal = Removal {
        person_id: 1,
        suppress: false,
        forget: true,
    };
    assert_eq!(planned.people.len(), 1, "only the unfinished removal");
    assert_eq!(planned.people[0].removal, Some(removal));
    assert!(planned.people[0].identify.is_none() && planned.people[0].events.is_empty());
    assert_eq!(planned.stats.skipped[skip::FORGOTTEN], 2);

    state.confirm_removals(&[removal]);
    assert!(!state.people.contains_key(&1) && !state.applications.contains_key(&7));
    let full = PlanOptions {
        full_read: true,
        on_leave: OnLeave::Delete,
        ..options()
    };
    let planned = run(&state, &[person(1)], &[app(7, 1, "approved")], &full);
    assert!(planned.people.is_empty(), "{:?}", planned.people);
}

#[test]
fn an_excluded_attribute_is_cleared_once_read_or_not_and_the_rest_is_untouched() {
    let mut state = State::default();
    settle(&mut state, &[person(1), person(2)], &[], &options());
    let excluding = PlanOptions {
        excluded: excluded_mask(&["first_name"]),
        ..options()
    };
    // Person 1 is read (and changed their name), person 2 is not.
    let renamed = Person {
        first_name: Some("Bea".to_owned()),
        ..person(1)
    };
    let planned = settle(&mut state, std::slice::from_ref(&renamed), &[], &excluding);
    let sent: Vec<(PersonId, Value)> = planned
        .people
        .iter()
        .map(|p| {
            let identify = p.identify.as_ref().expect("identify");
            (p.person_id, Value::Object(identify.attributes.to_map()))
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (1, json!({"first_name": null})),
            (2, json!({"first_name": null})),
        ]
    );
    assert!(run(&state, std::slice::from_ref(&renamed), &[], &excluding)
        .people
        .is_empty());
    let statuses = attribute_statuses(
        state.people.get(&1),
        Some(&renamed),
        &excluding.excluded,
        &fingerprinter(),
    );
    assert!(statuses.contains(&("first_name", AttributeStatus::Excluded)));
    assert!(statuses.contains(&("email", AttributeStatus::Unchanged)));

    // Included again: the value comes back, and only it.
    let planned = run(&state, &[renamed], &[], &options());
    let identify = planned.people[0].identify.as_ref().expect("identify");
    assert_eq!(
        Value::Object(identify.attributes.to_map()),
        json!({"first_name": "Bea"})
    );
}

#[test]
fn on_leave_delete_removes_leavers_on_a_full_read_and_people_gis_no_longer_has() {
    let mut state = State::default();
    let delete = PlanOptions {
        on_leave: OnLeave::Delete,
        ..options()
    };
    settle(&mut state, &[person(1), person(2), person(3)], &[], &delete);
    let incremental = run(&state, &[person(1)], &[], &delete);
    assert!(incremental.people.is_empty(), "only a full read notices");
    let full = PlanOptions {
        full_read: true,
        ..delete.clone()
    };
    let planned = run(&state, &[person(1), person(3)], &[], &full);
    assert_eq!(planned.people.len(), 1);
    assert_eq!(
        planned.people[0].removal,
        Some(Removal {
            person_id: 2,
            suppress: false,
            forget: false,
        })
    );
    assert_eq!(planned.stats.people_to_delete, 1);

    let (fingerprinter, mark) = (fingerprinter(), options());
    let mut planner = Planner::new(&full, &fingerprinter, now());
    assert!(planner.gone_from_gis(&state, 3).is_some());
    assert!(planner.gone_from_gis(&state, 99).is_none(), "unknown id");
    let mut marking = Planner::new(&mark, &fingerprinter, now());
    assert!(marking.gone_from_gis(&state, 3).is_none(), "mark: nothing");
}

#[test]
fn event_ids_are_stable_distinct_ulids() {
    let id = event_id("site-1", 42, "GVapproved", 1);
    assert_eq!(id, event_id("site-1", 42, "GVapproved", 1));
    assert_eq!(id.len(), 26);
    assert!(ulid::Ulid::from_string(&id).is_ok());
    let others = [
        event_id("site-2", 42, "GVapproved", 1),
        event_id("site-1", 43, "GVapproved", 1),
        event_id("site-1", 42, "GVapplied", 1),
        event_id("site-1", 42, "GVapproved", 2),
        event_id("site-", 42, "1GVapproved", 1),
    ];
    for other in &others {
        assert_ne!(&id, other);
    }
}

#[test]
fn programme_name_follows_config_and_falls_back() {
    let display = PlanOptions {
        programme_name: ProgrammeName::ShortNameDisplay,
        ..options()
    };
    let planned = run(
        &State::default(),
        &[person(1)],
        &[app(1, 1, "applied")],
        &display,
    );
    assert_eq!(names(&planned), ["GVdapplied"]);
    assert_eq!(
        events(&planned)[0].data.to_json()["programme"],
        json!("GVd")
    );

    let mut no_display = app(1, 1, "applied");
    no_display.programme = Some(Programme {
        short_name: Some("GTa".to_owned()),
        short_name_display: None,
    });
    let planned = run(&State::default(), &[person(1)], &[no_display], &display);
    assert_eq!(names(&planned), ["GTaapplied"]);

    let mut none = app(2, 1, "applied");
    none.programme = Some(Programme::default());
    let mut missing = app(3, 1, "applied");
    missing.programme = None;
    let planned = run(&State::default(), &[person(1)], &[none, missing], &display);
    assert_eq!(planned.event_count(), 0);
    assert_eq!(planned.stats.skipped[skip::WITHOUT_PROGRAMME], 2);
}

#[test]
fn counts_survive_a_change_of_programme_name() {
    let mut state = State::default();
    let people = [person(1)];
    settle(&mut state, &people, &[app(1, 1, "approved")], &options());
    settle(
        &mut state,
        &people,
        &[app(1, 1, "approval_broken")],
        &options(),
    );
    let display = PlanOptions {
        programme_name: ProgrammeName::ShortNameDisplay,
        ..options()
    };
    let planned = run(&state, &people, &[app(1, 1, "approved")], &display);
    assert_eq!(names(&planned), ["GVdapproved"]);
    assert_eq!(
        events(&planned)[0].after.count[EventKind::Step(Step::Approved).index()],
        2
    );
}

#[test]
fn unusable_applications_are_skipped_or_deferred() {
    let mut orphan = app(1, 1, "applied");
    orphan.person_id = None;
    let mut no_opportunity = app(2, 1, "applied");
    no_opportunity.opportunity_id = None;
    let mut long_name = app(3, 1, "approval_broken");
    long_name.programme = Some(Programme {
        short_name: Some("P".repeat(86)),
        short_name_display: None,
    });
    let mut fits = app(4, 1, "applied");
    fits.programme = long_name.programme.clone(); // 86 + "applied" fits in 100 bytes
    let unseen = app(5, 99, "applied");
    let planned = run(
        &State::default(),
        &[person(1)],
        &[orphan, no_opportunity, long_name, fits, unseen],
        &options(),
    );
    assert_eq!(planned.event_count(), 1);
    assert_eq!(events(&planned)[0].application_id, 4);
    assert_eq!(
        planned.stats.skipped,
        BTreeMap::from([
            (skip::WITHOUT_PERSON.to_owned(), 1),
            (skip::WITHOUT_OPPORTUNITY.to_owned(), 1),
            (skip::EVENT_NAME_TOO_LONG.to_owned(), 1),
        ])
    );
    assert_eq!(
        planned.stats.skipped_ids,
        [
            (skip::WITHOUT_PERSON.to_owned(), 1),
            (skip::WITHOUT_OPPORTUNITY.to_owned(), 2),
            (skip::EVENT_NAME_TOO_LONG.to_owned(), 3),
        ]
    );
    assert_eq!(planned.stats.applications_deferred, 1);
    assert_eq!(planned.stats.applications_seen, 5);
}

#[test]
fn oversized_event_data_gets_a_shorter_title() {
    let mut application = app(1, 1, "applied");
    application.opportunity_title = Some("\"é".repeat(60_000)); // escaping makes it larger
    let planned = run(
        &State::default(),
        &[person(1)],
        &[application.clone()],
        &options(),
    );
    let data = &events(&planned)[0].data;
    let size = serde_json::to_vec(data).expect("serializes").len();
    assert!(size <= MAX_EVENT_DATA_BYTES, "{size}");
    assert!(
        // The check reserves room for the widest timestamp (20 characters); a real one
        // prints 10, and a cut character may take up to 6 escaped bytes.
        size > MAX_EVENT_DATA_BYTES - 20,
        "the longest prefix that fits: {size}"
    );
    let title = data.opportunity_title.as_deref().expect("a title");
    let original = application.opportunity_title.as_deref().expect("title");
    assert!(original.starts_with(title));
    assert_eq!(planned.stats.truncated_values, 1);
}

#[test]
fn output_is_sorted_by_person_then_application() {
    let people = [person(3), person(1), person(2)];
    let apps = [
        app(20, 1, "applied"),
        app(5, 3, "applied"),
        app(10, 1, "applied"),
    ];
    let planned = run(&State::default(), &people, &apps, &options());
    let ids: Vec<PersonId> = planned.people.iter().map(|p| p.person_id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let app_ids: Vec<ApplicationId> = planned.people[0]
        .events
        .iter()
        .map(|e| e.application_id)
        .collect();
    assert_eq!(app_ids, [10, 20]);
}

#[test]
fn fingerprints_are_keyed_per_attribute_and_never_zero() {
    let one = fingerprinter();
    let value = json!("Ana");
    assert_eq!(
        one.fingerprint("first_name", &value),
        one.fingerprint("first_name", &value)
    );
    assert_ne!(
        one.fingerprint("first_name", &value),
        one.fingerprint("last_name", &value)
    );
    assert_ne!(
        one.fingerprint("first_name", &value),
        Fingerprinter::new([8; 32]).fingerprint("first_name", &value)
    );
    assert_ne!(one.fingerprint("status", &Value::Null), 0);
    assert_eq!(format!("{one:?}"), "Fingerprinter(<redacted>)");
}

// ---------------------------------------------------------------------------------------
// Properties.

const STATUSES: [&str; 20] = [
    "open",
    "applied",
    "matched",
    "accepted",
    "approved_tn_manager",
    "approved_ep_manager",
    "approved",
    "realized",
    "remote_realized",
    "finished",
    "completed",
    "withdrawn",
    "rejected",
    "declined",
    "approval_broken",
    "realization_broken",
    "acceptance_broken",
    "remote_realization_broken",
    "on_hold",
    "",
];

fn date() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::of((0i64..2000).prop_map(|hours| now() - Duration::hours(hours)))
}

fn dates() -> impl Strategy<Value = ApplicationDates> {
    (
        (date(), date(), date(), date(), date(), date(), date()),
        (date(), date(), date(), date(), date(), date(), date()),
    )
        .prop_map(
            |((a, b, c, d, e, f, g), (h, i, j, k, l, m, n))| ApplicationDates {
                created_at: a,
                updated_at: b,
                date_matched: c,
                an_signed_at: d,
                date_approved: e,
                meta_date_realized: f,
                experience_end_date: g,
                meta_date_completed: h,
                meta_date_withdrawn: i,
                matched_or_rejected_at: j,
                date_approval_broken: k,
                meta_date_realisation_broke: l,
                meta_date_remote_realization_broken_at: m,
                meta_date_matched: n,
                ..ApplicationDates::default()
            },
        )
}

fn application(id: ApplicationId) -> impl Strategy<Value = Application> {
    (
        prop::option::weighted(0.9, 1u64..6),
        prop::sample::select(&STATUSES[..]),
        prop::option::weighted(0.9, Just(700 + id)),
        prop::option::weighted(
            0.9,
            (
                prop::option::of("[A-Za-z]{1,4}"),
                prop::option::of("[A-Za-z]{1,4}"),
            ),
        ),
        dates(),
    )
        .prop_map(
            move |(person_id, status, opportunity_id, programme, dates)| Application {
                id,
                person_id,
                status: status.to_owned(),
                opportunity_id,
                opportunity_title: Some(format!("Opportunity {id}")),
                programme: programme.map(|(short_name, short_name_display)| Programme {
                    short_name,
                    short_name_display,
                }),
                dates,
            },
        )
}

fn some_person(id: PersonId) -> impl Strategy<Value = Person> {
    (
        prop::option::of("[a-z]{1,3}"),
        prop::option::of(".{0,3}"),
        prop::option::of(Just("é".repeat(700))),
        prop::option::of(any::<bool>()),
        date(),
    )
        .prop_map(
            move |(email, first_name, cv_url, interviewed, created_at)| Person {
                id,
                email,
                first_name,
                cv_url,
                interviewed,
                created_at,
                ..Person::default()
            },
        )
}

fn application_state() -> impl Strategy<Value = ApplicationState> {
    (
        0u8..=6,
        prop::array::uniform13(0u32..3),
        prop::option::of(prop::sample::select(&Side::ALL[..])),
    )
        .prop_map(|(rank, count, last_side)| ApplicationState {
            person_id: 1,
            rank,
            count: count.into(),
            last_side,
        })
}

fn person_state() -> impl Strategy<Value = PersonState> {
    (prop::array::uniform14(0u32..3), any::<bool>()).prop_map(|(attrs, in_scope)| PersonState {
        attrs,
        in_scope,
        in_scope_sent: !in_scope,
    })
}

/// A random state and a random read of up to 5 people and 8 applications.
fn scenario() -> impl Strategy<Value = (State, Vec<Person>, Vec<Application>, PlanOptions)> {
    let people = prop::sample::subsequence((1u64..6).collect::<Vec<_>>(), 0..=5)
        .prop_flat_map(|ids| ids.into_iter().map(some_person).collect::<Vec<_>>());
    let apps = prop::sample::subsequence((1u64..9).collect::<Vec<_>>(), 0..=8)
        .prop_flat_map(|ids| ids.into_iter().map(application).collect::<Vec<_>>());
    let known_apps = prop::collection::btree_map(1u64..9, application_state(), 0..6);
    let known_people = prop::collection::btree_map(1u64..8, person_state(), 0..6);
    let forgotten = prop::collection::btree_map(1u64..8, (any::<bool>(), any::<bool>()), 0..3);
    let options = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(display, now, full, excluded_bits, delete)| PlanOptions {
            site_id: "site-p".to_owned(),
            programme_name: if display {
                ProgrammeName::ShortNameDisplay
            } else {
                ProgrammeName::ShortName
            },
            late_events: if now {
                LateEvents::Now
            } else {
                LateEvents::TrueTime
            },
            full_read: full,
            // Random exclusions (never `created_at`'s neighbours in particular: any mask).
            excluded: std::array::from_fn(|i| excluded_bits & (1 << i) != 0),
            on_leave: if delete {
                OnLeave::Delete
            } else {
                OnLeave::Mark
            },
        });
    (people, apps, known_apps, known_people, options, forgotten).prop_map(
        |(people, apps, mut applications, known_people, options, forgotten)| {
            // GIS never moves an application to another person: the state agrees with the
            // read on whose it is (a removal takes a person's applications with them).
            for app in &apps {
                if let (Some(known), Some(person_id)) =
                    (applications.get_mut(&app.id), app.person_id)
                {
                    known.person_id = person_id;
                }
            }
            let state = State {
                people: known_people.into_iter().collect(),
                applications: applications.into_iter().collect(),
                forgotten: forgotten
                    .into_iter()
                    .map(|(id, (suppressed, confirmed))| {
                        (
                            id,
                            crate::state::Forgotten {
                                suppressed,
                                confirmed,
                            },
                        )
                    })
                    .collect(),
                ..State::default()
            };
            (state, people, apps, options)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Confirming every write of a plan and planning the same read again sends nothing.
    #[test]
    fn replanning_after_applying_a_plan_is_empty((state, people, apps, options) in scenario()) {
        let first = plan(&state, &people, &apps, &fingerprinter(), &options, now());
        let mut confirmed = state.clone();
        confirm_all(&first, &mut confirmed);
        let second = plan(&confirmed, &people, &apps, &fingerprinter(), &options, now());
        prop_assert!(second.people.is_empty(), "{:?}", second.people);
    }

    /// Same input, same plan, whatever order the records arrived in.
    #[test]
    fn planning_is_deterministic((state, people, apps, options) in scenario()) {
        let first = plan(&state, &people, &apps, &fingerprinter(), &options, now());
        let again = plan(&state, &people, &apps, &fingerprinter(), &options, now());
        prop_assert_eq!(&first, &again);
        let people_reversed: Vec<Person> = people.iter().rev().cloned().collect();
        let apps_reversed: Vec<Application> = apps.iter().rev().cloned().collect();
        let reordered =
            plan(&state, &people_reversed, &apps_reversed, &fingerprinter(), &options, now());
        prop_assert_eq!(&first, &reordered);
    }

    /// A crash after any prefix of an application's events: the next plan sends exactly
    /// the rest, with the same names and ids (customer.io de-duplicates resends by id).
    #[test]
    fn a_partial_confirmation_resumes_with_the_same_ids(
        (state, people, apps, options) in scenario(),
        cut in 0usize..8,
    ) {
        let first = plan(&state, &people, &apps, &fingerprinter(), &options, now());
        let mut confirmed = state.clone();
        let mut rest = Vec::new();
        for person in &first.people {
            if let Some(identify) = &person.identify {
                confirmed.confirm_identify(person.person_id, &identify.after);
            }
            for (index, event) in person.events.iter().enumerate() {
                if index < cut {
                    confirmed.confirm_event(event.application_id, &event.after);
                } else {
                    rest.push((event.name.clone(), event.id.clone()));
                }
            }
        }
        let second = plan(&confirmed, &people, &apps, &fingerprinter(), &options, now());
        let resent: Vec<(String, String)> = events(&second)
            .iter()
            .map(|e| (e.name.clone(), e.id.clone()))
            .collect();
        prop_assert_eq!(resent, rest);
    }
}
