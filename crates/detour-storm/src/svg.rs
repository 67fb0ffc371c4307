//! The run as one SVG picture, written by hand (a few hundred elements need no plotting
//! library): throughput per second of intake against the two ceilings, acknowledgement
//! latency percentiles per phase, fan-out progress, and the summary with the targets.

use crate::report::Report;
use crate::stats::PhaseReport;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 1150.0;
const SUMMARY_TOP: f64 = 820.0;
const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// A line on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 text.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn text(out: &mut String, x: f64, y: f64, size: f64, anchor: &str, extra: &str, s: &str) {
    out.push_str(&format!(
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\" {FONT} {extra}>{}</text>\n",
        escape(s)
    ));
}

/// Round tick steps (1, 2, 5 × 10^n) giving about `target` ticks up to `max`.
pub fn ticks(max: f64, target: usize) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let rough = max / target.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= rough).unwrap_or(magnitude * 10.0);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

fn human(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// How values map to height.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Linear {
        hi: f64,
    },
    /// Decades from `lo` to `hi`: the ceilings and intake differ by orders of magnitude, and on
    /// a linear axis intake would be a line along the floor.
    Log {
        lo: f64,
        hi: f64,
    },
}

impl Scale {
    fn linear(max: f64) -> (Self, Vec<f64>) {
        let t = ticks(max, 5);
        let hi = t.last().copied().unwrap_or(1.0).max(1e-9);
        (Self::Linear { hi }, t)
    }

    fn log(min_positive: f64, max: f64) -> (Self, Vec<f64>) {
        let lo = 10f64.powf(min_positive.max(1e-3).log10().floor());
        let hi = 10f64.powf(max.max(lo * 10.0).log10().ceil());
        let mut t = Vec::new();
        let mut d = lo;
        while d <= hi * 1.0001 {
            t.push(d);
            d *= 10.0;
        }
        (Self::Log { lo, hi }, t)
    }

    /// Share of the height, 0 at the bottom.
    fn at(self, v: f64) -> f64 {
        match self {
            Self::Linear { hi } => v / hi,
            Self::Log { lo, hi } => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
        }
    }
}

fn line_panel(
    out: &mut String,
    f: Frame,
    title: &str,
    x_label: &str,
    series: &[Series],
    flat: Option<(f64, &str)>,
    log: bool,
) {
    text(out, f.x, f.y - 14.0, 16.0, "start", "font-weight=\"bold\"", title);
    out.push_str(&format!(
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n",
        f.x, f.y, f.w, f.h
    ));
    let drawn: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
    if drawn.is_empty() {
        text(out, f.x + f.w / 2.0, f.y + f.h / 2.0, 14.0, "middle", "fill=\"#888\"", "not measured");
        return;
    }
    let max_x = drawn.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0_f64, f64::max);
    let max_y = drawn
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(flat.map(|(v, _)| v))
        .fold(1.0_f64, f64::max);
    let min_y =
        drawn.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| *v > 0.0).fold(max_y, f64::min);
    let xt = ticks(max_x, 8);
    let (scale, yt) = if log { Scale::log(min_y, max_y) } else { Scale::linear(max_y) };
    let x_hi = xt.last().copied().unwrap_or(1.0).max(1e-9);
    let px = |x: f64| f.x + x / x_hi * f.w;
    let py = |y: f64| f.y + f.h - scale.at(y) * f.h;
    for y in &yt {
        out.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/>\n",
            f.x,
            py(*y),
            f.x + f.w,
            py(*y)
        ));
        text(out, f.x - 6.0, py(*y) + 4.0, 11.0, "end", "fill=\"#555\"", &human(*y));
    }
    for x in &xt {
        text(out, px(*x), f.y + f.h + 16.0, 11.0, "middle", "fill=\"#555\"", &human(*x));
    }
    text(out, f.x + f.w / 2.0, f.y + f.h + 32.0, 12.0, "middle", "fill=\"#333\"", x_label);
    if let Some((v, label)) = flat {
        out.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"2 3\"/>\n",
            f.x,
            py(v),
            f.x + f.w,
            py(v)
        ));
        text(out, f.x + f.w - 4.0, py(v) - 4.0, 11.0, "end", "fill=\"#666\"", label);
    }
    for s in &drawn {
        let points: Vec<String> =
            s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        out.push_str(&format!(
            "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>\n",
            escape(&s.name),
            s.color,
            if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" },
            points.join(" ")
        ));
    }
    if log {
        // The throughput panel: its lines span the whole width, so the legend goes under it,
        // in a row.
        for (i, s) in drawn.iter().enumerate() {
            let x = f.x + i as f64 * 178.0;
            legend_entry(out, x, f.y + f.h + 52.0, s);
        }
    } else {
        // Inside, top left, on a veil so lines under it do not cross the names.
        out.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"230\" height=\"{:.1}\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ddd\"/>\n",
            f.x + 4.0,
            f.y + 4.0,
            drawn.len() as f64 * 16.0 + 6.0
        ));
        for (i, s) in drawn.iter().enumerate() {
            legend_entry(out, f.x + 10.0, f.y + 16.0 + i as f64 * 16.0, s);
        }
    }
}

fn legend_entry(out: &mut String, x: f64, y: f64, s: &Series) {
    out.push_str(&format!(
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"3\"{}/>\n",
        x,
        y - 4.0,
        x + 20.0,
        y - 4.0,
        s.color,
        if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" }
    ));
    text(out, x + 26.0, y, 12.0, "start", "fill=\"#222\"", &s.name);
}

/// Latency bars on a log scale, one group per phase: p50, p99, p99.9.
fn latency_panel(out: &mut String, f: Frame, phases: &[(&str, &PhaseReport)]) {
    text(
        out,
        f.x,
        f.y - 14.0,
        16.0,
        "start",
        "font-weight=\"bold\"",
        "Acknowledgement latency (ms, log scale)",
    );
    out.push_str(&format!(
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n",
        f.x, f.y, f.w, f.h
    ));
    let measured: Vec<&(&str, &PhaseReport)> =
        phases.iter().filter(|(_, p)| p.latency_ms.count > 0).collect();
    if measured.is_empty() {
        text(out, f.x + f.w / 2.0, f.y + f.h / 2.0, 14.0, "middle", "fill=\"#888\"", "not measured");
        return;
    }
    let values =
        measured.iter().flat_map(|(_, p)| [p.latency_ms.p50_ms, p.latency_ms.p99_ms, p.latency_ms.p999_ms]);
    let (lo, hi) =
        values.filter(|v| *v > 0.0).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = if lo == f64::MAX { 0.01 } else { 10f64.powf(lo.log10().floor()) };
    let hi = if hi == f64::MIN { 1.0 } else { 10f64.powf(hi.log10().ceil()) }.max(lo * 10.0);
    let span = hi.log10() - lo.log10();
    let py = |v: f64| {
        let v = v.max(lo);
        f.y + f.h - (v.log10() - lo.log10()) / span * f.h
    };
    let mut decade = lo;
    while decade <= hi * 1.0001 {
        out.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/>\n",
            f.x,
            py(decade),
            f.x + f.w,
            py(decade)
        ));
        text(out, f.x - 6.0, py(decade) + 4.0, 11.0, "end", "fill=\"#555\"", &human(decade));
        decade *= 10.0;
    }
    const BARS: [(&str, &str); 3] = [("p50", "#6baed6"), ("p99", "#2171b5"), ("p99.9", "#08306b")];
    let group = f.w / measured.len() as f64;
    let bar = (group * 0.7 / 3.0).min(40.0);
    for (i, (name, p)) in measured.iter().enumerate() {
        let gx = f.x + i as f64 * group + (group - bar * 3.0) / 2.0;
        let l = &p.latency_ms;
        for (j, ((label, color), v)) in BARS.iter().zip([l.p50_ms, l.p99_ms, l.p999_ms]).enumerate() {
            let x = gx + j as f64 * bar;
            let top = py(v);
            out.push_str(&format!(
                "<rect data-bar=\"{} {label}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n",
                escape(name),
                bar - 2.0,
                (f.y + f.h - top).max(0.0)
            ));
            text(out, x + bar / 2.0 - 1.0, top - 3.0, 9.0, "middle", "fill=\"#222\"", &human(v));
        }
        text(
            out,
            f.x + i as f64 * group + group / 2.0,
            f.y + f.h + 16.0,
            11.0,
            "middle",
            "fill=\"#333\"",
            name,
        );
    }
    // Legend under the phase names, clear of the bars and the title.
    for (j, (label, color)) in BARS.iter().enumerate() {
        let x = f.x + f.w - 190.0 + j as f64 * 64.0;
        out.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/>\n",
            f.y + f.h + 24.0
        ));
        text(out, x + 16.0, f.y + f.h + 34.0, 12.0, "start", "fill=\"#222\"", label);
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn ok_series(name: &str, color: &'static str, dashed: bool, p: Option<&PhaseReport>) -> Series {
    Series {
        name: name.to_owned(),
        color,
        dashed,
        // Whole seconds only: the last one holds just the drain of calls in flight, and
        // plotting it would draw a collapse that never happened.
        points: p
            .map(|p| {
                p.series
                    .iter()
                    .filter(|s| (s.t + 1) as f64 <= p.elapsed_secs || p.series.len() == 1)
                    .map(|s| (s.t as f64 + 0.5, s.ok as f64))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.1}{unit}"))
}

pub(crate) fn summary_lines(r: &Report) -> Vec<(String, String)> {
    let s = &r.summary;
    let pct = |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |v| format!("{:.1} %", v * 100.0));
    let echo = r.ceilings.echo.as_ref().map(|p| p.ok_per_sec);
    let pg = r.ceilings.postgres_insert.as_ref().map(|p| p.ok_per_sec);
    let shed = if s.shed_by_priority.is_empty() {
        "none".to_owned()
    } else {
        s.shed_by_priority.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    let fanout = r.disruption.as_ref().map_or_else(
        || "not measured".to_owned(),
        |d| {
            format!(
                "{} for {} travelers (server {}, sink {}){}",
                opt(d.last_notified_secs, " s"),
                d.expected_affected,
                opt(d.server_last_delivered_secs, " s"),
                opt(d.sink_last_message_secs, " s"),
                if d.timed_out { ", timed out" } else { "" }
            )
        },
    );
    let count = |v: Option<u64>| v.map_or_else(|| "not measured".to_owned(), |v| v.to_string());
    let mut lines = vec![
        ("accepted cases per second (saturated)".to_owned(), opt(s.accepted_cases_per_sec, "/s")),
        (
            "echo ceiling / PostgreSQL insert ceiling".to_owned(),
            format!("{} / {}", opt(echo, "/s"), opt(pg, "/s")),
        ),
        (
            "intake as share of echo / of PostgreSQL insert".to_owned(),
            format!("{} / {}", pct(r.ratios.intake_over_echo), pct(r.ratios.intake_over_postgres_insert)),
        ),
        (
            "acknowledgement p50 / p99 / p99.9 during the fan-out".to_owned(),
            format!(
                "{} / {} / {}",
                opt(s.ack_p50_ms, " ms"),
                opt(s.ack_p99_ms, " ms"),
                opt(s.ack_p999_ms, " ms")
            ),
        ),
        (
            "p99 at half load".to_owned(),
            format!("{} at {}", opt(s.half_load_p99_ms, " ms"), opt(r.ratios.half_load_rate_per_sec, "/s")),
        ),
        (
            "p99 at half of intake's own saturated rate".to_owned(),
            format!(
                "{} at {}",
                opt(s.half_own_load_p99_ms, " ms"),
                opt(r.ratios.half_own_load_rate_per_sec, "/s")
            ),
        ),
        ("report to last traveler notified".to_owned(), fanout),
        ("cases lost".to_owned(), count(s.cases_lost)),
        ("duplicates created".to_owned(), count(s.duplicates_created)),
        ("shed by priority".to_owned(), shed),
    ];
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "no verdict",
        };
        lines.push((format!("target: {}", t.name), format!("{verdict} ({}): {}", t.target, t.reached)));
    }
    for e in &r.errors {
        lines.push(("error".to_owned(), e.clone()));
    }
    lines
}

/// The whole chart.
pub fn chart(r: &Report) -> String {
    let lines = summary_lines(r);
    let height = HEIGHT.max(SUMMARY_TOP + 24.0 + lines.len() as f64 * 18.0 + 20.0);
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\n"
    ));
    out.push_str(&format!("<rect width=\"{WIDTH}\" height=\"{height}\" fill=\"white\"/>\n"));
    text(&mut out, 40.0, 34.0, 20.0, "start", "font-weight=\"bold\"", "Detour storm benchmark");
    text(
        &mut out,
        40.0,
        54.0,
        12.0,
        "start",
        "fill=\"#555\"",
        &format!("{} · {} cores · {}", r.started_at, r.machine.cores, clip(&r.command, 150)),
    );

    let throughput = [
        ok_series("echo ceiling", "#999999", true, r.ceilings.echo.as_ref()),
        ok_series("PostgreSQL insert ceiling", "#8c564b", true, r.ceilings.postgres_insert.as_ref()),
        ok_series("intake saturated", "#d62728", false, r.saturation.as_ref()),
        ok_series("intake during fan-out", "#1f77b4", false, r.contacts.as_ref()),
        ok_series("intake at half load", "#2ca02c", false, r.half_load.as_ref()),
        ok_series("intake at half its own rate", "#bcbd22", false, r.half_own_load.as_ref()),
    ];
    line_panel(
        &mut out,
        Frame { x: 90.0, y: 100.0, w: 1070.0, h: 280.0 },
        "Acknowledged calls per second (log scale; each phase from its own start)",
        "seconds into the phase",
        &throughput,
        None,
        true,
    );

    let mut phases: Vec<(&str, &PhaseReport)> = Vec::new();
    for (name, p) in [
        ("echo", r.ceilings.echo.as_ref()),
        ("PG insert", r.ceilings.postgres_insert.as_ref()),
        ("fan-out", r.contacts.as_ref()),
        ("saturated", r.saturation.as_ref()),
        ("half load", r.half_load.as_ref()),
        ("half own", r.half_own_load.as_ref()),
    ] {
        if let Some(p) = p {
            phases.push((name, p));
        }
    }
    latency_panel(&mut out, Frame { x: 90.0, y: 490.0, w: 480.0, h: 260.0 }, &phases);

    let progress = r.disruption.as_ref().map(|d| d.progress.as_slice()).unwrap_or_default();
    let fanout = [
        Series {
            name: "cases opened".into(),
            color: "#ff7f0e",
            dashed: false,
            points: progress.iter().map(|s| (s.t, s.cases_opened as f64)).collect(),
        },
        Series {
            name: "travelers notified".into(),
            color: "#9467bd",
            dashed: false,
            points: progress
                .iter()
                .map(|s| {
                    let notified = s.notifications_delivered
                        + s.notifications_acknowledged
                        + s.notifications_undeliverable;
                    (s.t, notified as f64)
                })
                .collect(),
        },
        Series {
            name: "messages at the sink".into(),
            color: "#17becf",
            dashed: true,
            points: progress.iter().filter_map(|s| s.sink_messages.map(|n| (s.t, n as f64))).collect(),
        },
    ];
    let expected = r.disruption.as_ref().map(|d| (d.expected_affected as f64, "affected travelers"));
    line_panel(
        &mut out,
        Frame { x: 680.0, y: 490.0, w: 480.0, h: 260.0 },
        "Fan-out after ReportDisruption",
        "seconds since the report",
        &fanout,
        expected,
        false,
    );

    text(&mut out, 40.0, SUMMARY_TOP, 16.0, "start", "font-weight=\"bold\"", "Summary");
    for (i, (k, v)) in lines.iter().enumerate() {
        let y = SUMMARY_TOP + 24.0 + i as f64 * 18.0;
        text(&mut out, 40.0, y, 12.0, "start", "fill=\"#333\"", k);
        text(&mut out, 400.0, y, 12.0, "start", "fill=\"#000\"", &clip(v, 120));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use quick_xml::events::Event;
    use quick_xml::{Reader, XmlVersion};

    use super::*;
    use crate::scenario::{FanoutReport, FanoutSample, Verification};
    use crate::stats::{LatencySummary, SecondSample};

    fn phase(name: &str, per_sec: &[u64], p99: f64) -> PhaseReport {
        PhaseReport {
            name: name.into(),
            pacing: "closed",
            concurrency: 8,
            target_rate_per_sec: None,
            elapsed_secs: per_sec.len() as f64,
            sent: per_sec.iter().sum(),
            not_sent: 0,
            completed: per_sec.iter().sum(),
            ok: per_sec.iter().sum(),
            shed: 0,
            errors: 0,
            by_code: BTreeMap::new(),
            shed_by_priority: BTreeMap::from([("low".to_owned(), 4)]),
            ok_by_priority: BTreeMap::new(),
            ok_per_sec: 1.0,
            sustained_ok_per_sec: 1.0,
            latency_ms: LatencySummary {
                count: 10,
                mean_ms: 1.0,
                p50_ms: p99 / 4.0,
                p90_ms: p99 / 2.0,
                p99_ms: p99,
                p999_ms: p99 * 2.0,
                max_ms: p99 * 3.0,
            },
            series: per_sec
                .iter()
                .enumerate()
                .map(|(t, ok)| SecondSample { t: t as u64, ok: *ok, ..SecondSample::default() })
                .collect(),
        }
    }

    /// Every element of the document with its attributes; panics where the XML is not
    /// well-formed (quick-xml checks that end tags match their start tags).
    fn parse(svg: &str) -> Vec<(String, Vec<(String, String)>)> {
        let mut reader = Reader::from_str(svg);
        let mut elements = Vec::new();
        let mut depth = 0i32;
        loop {
            let event = reader.read_event().expect("well-formed XML");
            let element = match &event {
                Event::Start(e) => {
                    depth += 1;
                    Some(e.clone())
                }
                Event::Empty(e) => Some(e.clone()),
                Event::End(_) => {
                    depth -= 1;
                    None
                }
                // Entities stay unresolved in quick-xml; only XML's own five may appear.
                Event::GeneralRef(r) => {
                    let name = r.clone().into_inner();
                    assert!(["amp", "lt", "gt", "quot", "apos"].contains(&name.as_ref()), "entity &{name};");
                    None
                }
                Event::Eof => break,
                _ => None,
            };
            if let Some(e) = element {
                let name = e.name().as_ref().to_owned();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        let v = a
                            .normalized_value(XmlVersion::Implicit1_0)
                            .expect("escaped attribute")
                            .into_owned();
                        (a.key.as_ref().to_owned(), v)
                    })
                    .collect();
                elements.push((name, attrs));
            }
        }
        assert_eq!(depth, 0, "every element is closed");
        elements
    }

    #[test]
    fn the_chart_is_well_formed_svg_with_every_series() {
        let mut r = Report {
            command: "detour storm --seed 1 <&>".into(),
            started_at: "now".into(),
            ..Report::default()
        };
        r.ceilings.echo = Some(phase("echo", &[100, 120, 110], 1.5));
        r.ceilings.postgres_insert = Some(phase("pg", &[50, 60], 3.0));
        r.saturation = Some(phase("saturated", &[40, 45, 44, 43], 40.0));
        r.contacts = Some(phase("contacts", &[10, 10, 10], 20.0));
        r.disruption = Some(FanoutReport {
            expected_affected: 100,
            progress: (0..5)
                .map(|i| FanoutSample {
                    t: i as f64 * 0.25,
                    cases_opened: i * 25,
                    notifications_delivered: i * 20,
                    sink_messages: Some(i as u64 * 20),
                    ..FanoutSample::default()
                })
                .collect(),
            ..FanoutReport::default()
        });
        r.verification =
            Some(Verification { lost: 0, duplicates: 0, checked: 10, ..Verification::default() });
        r.conclude(None);
        let svg = chart(&r);
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("&lt;&amp;&gt;"), "text is escaped");
        let elements = parse(&svg);
        assert_eq!(elements.first().map(|e| e.0.as_str()), Some("svg"));
        let series: Vec<(&str, usize)> = elements
            .iter()
            .filter(|(n, _)| n == "polyline")
            .filter_map(|(_, a)| {
                let name = a.iter().find(|(k, _)| k == "data-series")?.1.as_str();
                let points = a.iter().find(|(k, _)| k == "points")?.1.split(' ').count();
                Some((name, points))
            })
            .collect();
        for (name, points) in [
            ("echo ceiling", 3),
            ("PostgreSQL insert ceiling", 2),
            ("intake saturated", 4),
            ("intake during fan-out", 3),
            ("cases opened", 5),
            ("travelers notified", 5),
            ("messages at the sink", 5),
        ] {
            assert!(series.contains(&(name, points)), "{name} with {points} points in {series:?}");
        }
        // No half-load phase: no line for it.
        assert!(!series.iter().any(|(n, _)| *n == "intake at half load"));
        let bars =
            elements.iter().filter(|(n, a)| n == "rect" && a.iter().any(|(k, _)| k == "data-bar")).count();
        assert_eq!(bars, 4 * 3);
        // Shed summed over the intake phases (fan-out 4 + saturated 4), not the ceilings.
        for needle in ["Summary", "cases lost", "duplicates created", "shed by priority", "low 8", "p99.9"] {
            assert!(svg.contains(needle), "{needle}");
        }
    }

    #[test]
    fn an_empty_report_still_draws() {
        let svg = chart(&Report::default());
        parse(&svg);
        assert!(svg.contains("not measured"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(95.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(7.0, 8), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(ticks(0.0, 5), vec![0.0, 1.0]);
        let (scale, decades) = Scale::log(3.0, 45_000.0);
        assert_eq!(decades, vec![1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0]);
        assert!((scale.at(1000.0) - 0.6).abs() < 1e-9);
        assert_eq!(scale.at(0.0), 0.0);
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
