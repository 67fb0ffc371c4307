//! The CPU work intake does per contact and per fanned-out traveler, outside the database:
//! reading priority and language off the text, keying the segment, sealing and opening the
//! personal data, the lookup index, and rendering a notification. `cargo bench -p detour-intake`
//! prints each with criterion's confidence interval; compare them side by side in one run.

use criterion::{Criterion, criterion_group, criterion_main};
use detour_domain::{Channel, RequestedOutcome, Segment, SegmentKind, time};
use detour_intake::{contact, crisis};
use detour_notify::{Affected, DisruptionFacts, Language, NotifyChannel, Purpose, TemplateVars};
use detour_vault::{DataKey, SecretString};
use std::hint::black_box;

fn segment() -> Segment {
    Segment {
        kind: SegmentKind::Flight,
        supplier_code: "CA".into(),
        service_reference: "CA981".into(),
        origin: Some("PEK".into()),
        destination: Some("JFK".into()),
        starts_at: time::now(),
        ends_at: None,
        booking_reference: "PNR7Q2".into(),
        price: None,
    }
}

fn contact_path(c: &mut Criterion) {
    let zh = "航班取消了，我和家人被困在机场，需要改签和酒店";
    let en = "My flight CA981 was cancelled at the gate and nobody tells us anything, we need a hotel";
    let mut g = c.benchmark_group("contact");
    g.bench_function("priority_zh", |b| {
        b.iter(|| contact::priority(Channel::Sms, black_box(zh), &[RequestedOutcome::Rebooking]))
    });
    g.bench_function("priority_en", |b| b.iter(|| contact::priority(Channel::Email, black_box(en), &[])));
    g.bench_function("detect_language_zh", |b| b.iter(|| contact::detect_language(black_box(zh))));
    g.bench_function("segment_key", |b| {
        let s = segment();
        b.iter(|| crisis::segment_key(black_box(&s)))
    });
    g.finish();
}

fn personal_data(c: &mut Criterion) {
    let Ok(key) = DataKey::generate() else { return };
    let plain = br#"{"n":"Li Wei","e":"li.wei@example.com","p":"+8613800138000","d":"E73912458"}"#;
    let aad = b"detour.intake.personal.v1|default|0190f3d2-0000-7000-8000-000000000000";
    let mut g = c.benchmark_group("personal_data");
    g.bench_function("seal", |b| b.iter(|| detour_vault::seal(&key, black_box(plain), aad)));
    if let Ok(sealed) = detour_vault::seal(&key, plain, aad) {
        g.bench_function("open", |b| b.iter(|| detour_vault::open(&key, black_box(&sealed), aad)));
    }
    g.bench_function("blind_index", |b| {
        b.iter(|| detour_vault::blind_index(&key, b"phone", black_box(b"+8613800138000")))
    });
    g.finish();
}

fn notification(c: &mut Criterion) {
    let vars = TemplateVars {
        case_number: "DT-0012345".into(),
        first_response_due: Some(time::now()),
        traveler_name: Some(SecretString::new("李伟".to_owned())),
        disruption: Some(DisruptionFacts {
            kind: detour_notify::DisruptionKind::Cancelled,
            affected: Affected::Flight { number: "CA981".into(), local_date: "2026-12-03".into() },
            reason: Some("heavy snow at PEK".into()),
            delay_minutes: None,
            diverted_to: None,
        }),
    };
    let mut g = c.benchmark_group("render");
    for (name, lang, channel) in
        [("sms_zh", Language::Zh, NotifyChannel::Sms), ("email_en", Language::En, NotifyChannel::Email)]
    {
        g.bench_function(name, |b| {
            b.iter(|| detour_notify::render(Purpose::Disruption, lang, channel, black_box(&vars)))
        });
    }
    g.finish();
}

criterion_group!(benches, contact_path, personal_data, notification);
criterion_main!(benches);
