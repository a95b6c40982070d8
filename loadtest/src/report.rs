//! The run's report: a terminal summary, `report.json`, and `report.html` with SVG charts drawn
//! here (no network needed to view it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::audit::AuditReport;
use crate::charts;
use crate::cpu::{CpuPerSale, InstrumentUse};
use crate::schedule::{ArrivalModel, KeyPolicy};
use crate::stats::Summary;

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub targets: Vec<String>,
    /// The server's process, when known (its CPU is part of the CPU per sale).
    pub server_pid: Option<u32>,
    /// The server's stock strategy, as its audit view reports it.
    pub strategy: Option<String>,
    pub item_id: i64,
    pub shoppers: usize,
    pub units: i64,
    pub per_user_limit: i64,
    pub quantity: i64,
    pub arrival: ArrivalModel,
    /// Logical requests per second over the run.
    pub rate: f64,
    pub duration_s: f64,
    pub connections: usize,
    pub retry_share: f64,
    pub keys: KeyPolicy,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub config: RunConfig,
    pub summary: Summary,
    /// What the harness itself used of the machine while the load ran (Linux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<InstrumentUse>,
    /// CPU of the server and its stores per unit sold, from the first send until they were
    /// idle again (Linux only; `null` elsewhere).
    pub cpu_per_sale: Option<CpuPerSale>,
    /// The payment phase of `drop --pay` (its violations are in `audit` too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<crate::pay::PayReport>,
    pub audit: AuditReport,
}

impl Report {
    /// The terminal summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.load_lines(&mut out);
        self.cost_lines(&mut out);
        if let Some(payments) = &self.payments {
            pay_lines(payments, &mut out);
        }
        audit_lines(&self.audit, &mut out);
        out
    }

    /// What was run and what the load saw.
    fn load_lines(&self, out: &mut String) {
        let (s, c) = (&self.summary, &self.config);
        let _ = writeln!(
            out,
            "drop {} on {} ({}): {} shoppers, {} units, limit {}, {:?} arrivals at {:.0}/s for {:.1} s, {} connections, keys on {:?}",
            c.item_id,
            c.targets.join(","),
            c.strategy.as_deref().unwrap_or("?"),
            c.shoppers,
            c.units,
            c.per_user_limit,
            c.arrival,
            c.rate,
            c.duration_s,
            c.connections,
            c.keys
        );
        let _ = writeln!(
            out,
            "attempts {} in {:.2} s: {:.0}/s; units sold {}, the last at {:.2} s: {:.0} sales/s",
            s.attempts, s.elapsed_s, s.throughput_rps, s.units_sold, s.last_sale_s, s.sales_per_s
        );
        let l = &s.latency;
        let from = if c.arrival == ArrivalModel::Closed {
            "send"
        } else {
            "scheduled send"
        };
        let _ = writeln!(
            out,
            "latency ms (from {from}): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let outcomes: Vec<String> = s
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "outcomes: {}", outcomes.join(", "));
    }

    /// What the harness cost the machine, and what a sale cost the server and its stores.
    fn cost_lines(&self, out: &mut String) {
        if let Some(i) = &self.instrument {
            let _ = writeln!(
                out,
                "harness: {:.2} CPU s during the load, {:.0} % of the machine's {} cores, \
                 the machine {:.0} % busy",
                i.cpu_s,
                i.machine_share * 100.0,
                i.cores,
                i.machine_busy * 100.0
            );
        }
        if let Some(cpu) = &self.cpu_per_sale {
            let _ = writeln!(out, "{}", cpu_line(cpu));
        }
    }

    /// Writes `report.json` and `report.html` into `dir`; answers their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join("report.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)?;
        let html = dir.join("report.html");
        std::fs::write(&html, self.html()?)?;
        Ok((json, html))
    }

    fn html(&self) -> anyhow::Result<String> {
        let s = &self.summary;
        let mut page = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>hurry-loadtest report</title>\
             <style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}\
             pre{background:#f4f4f4;padding:1em}.fail{color:#b00;font-weight:bold}\
             .pass{color:#070;font-weight:bold}</style></head><body><h1>Drop load test</h1>",
        );
        let verdict = if self.audit.passed() {
            "<p class=\"pass\">Audit passed</p>"
        } else {
            "<p class=\"fail\">AUDIT FAILED</p>"
        };
        page.push_str(verdict);
        let _ = write!(page, "<pre>{}</pre>", escape(&self.text()));
        page.push_str("<h2>Throughput</h2>");
        page.push_str(&charts::throughput(s)?);
        page.push_str("<h2>Latency percentiles over time</h2>");
        page.push_str(&charts::latency_over_time(s)?);
        page.push_str("<h2>Latency distribution</h2>");
        page.push_str(&charts::cdf(s)?);
        page.push_str("<h2>Outcomes over time</h2>");
        page.push_str(&charts::outcomes(s)?);
        let _ = write!(
            page,
            "<p>Started {}. Latency is measured from each attempt's scheduled send time.</p></body></html>",
            escape(&self.started_at)
        );
        Ok(page)
    }
}

/// The audit's lines: what it checked, and the verdict (loud when it failed).
fn pay_lines(p: &crate::pay::PayReport, out: &mut String) {
    let outcomes: Vec<String> = p
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let charged: Vec<String> = p.charged.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "payments: {} orders in {:.1} s, {:.0} paid/s, p50 {:.1} ms, p99 {:.1} ms; {}",
        p.attempted,
        p.seconds,
        p.paid_per_sec,
        p.p50_ms,
        p.p99_ms,
        outcomes.join(", ")
    );
    let first: Vec<String> = p
        .first_paid_ms
        .iter()
        .map(|(k, v)| format!("{k} {v:.0} ms"))
        .collect();
    let _ = writeln!(out, "first paid order per gateway: {}", first.join(", "));
    let _ = writeln!(
        out,
        "money: {} orders paid, charges {}",
        p.paid_orders,
        if charged.is_empty() {
            "none".to_owned()
        } else {
            charged.join(", ")
        }
    );
}

fn audit_lines(a: &AuditReport, out: &mut String) {
    let _ = writeln!(
        out,
        "audit: {} held of {} units, {} stored orders, {} acknowledged, {} retried requests{}",
        a.sold,
        a.units,
        a.stored_orders,
        a.acknowledged,
        a.retried_pairs,
        if a.checked_i3 {
            ", I3 checked"
        } else {
            ", I3 not checked"
        }
    );
    if a.passed() {
        let _ = writeln!(
            out,
            "audit PASSED: I1 I2 I4 I5{}",
            if a.checked_i3 { " I3" } else { "" }
        );
    } else {
        let _ = writeln!(
            out,
            "!!!!!!!! AUDIT FAILED: {} violation(s) !!!!!!!!",
            a.violations.len()
        );
        for v in &a.violations {
            let _ = writeln!(out, "  {}: {}", v.invariant, v.detail);
        }
    }
}

/// The summary's line of the CPU per sale; `-` for what was not measured.
fn cpu_line(cpu: &CpuPerSale) -> String {
    let us = |part: Option<f64>| part.map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
    format!(
        "cpu per sale: server {} + postgres {} + redis {} = {} µs for {} units sold, \
         window {:.2} s{}",
        us(cpu.server_us),
        us(cpu.postgres_us),
        us(cpu.redis_us),
        us(cpu.total_us),
        cpu.units_sold,
        cpu.window_s,
        if cpu.idle_reached {
            " (until idle)"
        } else {
            " (NOT idle by its end: deferred work past it is missing)"
        }
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::Violation;
    use crate::stats::Outcome;

    pub(crate) fn report(violations: Vec<Violation>) -> Report {
        let outcomes: Vec<Outcome> = (0..300u64)
            .map(|i| Outcome {
                request: i as usize,
                shopper: i as usize,
                retry: false,
                scheduled: Duration::from_millis(i * 10),
                latency: Duration::from_micros(500 + i * 7),
                status: if i < 100 { 201 } else { 409 },
                code: (i >= 100).then(|| "sold_out".to_owned()),
                order_id: (i < 100).then_some(i as i64),
                quantity: 1,
            })
            .collect();
        Report {
            started_at: "2026-11-24T00:00:00Z".to_owned(),
            config: RunConfig {
                targets: vec!["http://127.0.0.1:1".to_owned()],
                server_pid: Some(4242),
                strategy: Some("actor".to_owned()),
                item_id: 1,
                shoppers: 300,
                units: 100,
                per_user_limit: 1,
                quantity: 1,
                arrival: ArrivalModel::Constant,
                rate: 100.0,
                duration_s: 3.0,
                connections: 8,
                retry_share: 0.0,
                keys: KeyPolicy::All,
            },
            summary: Summary::of(&outcomes),
            instrument: Some(InstrumentUse {
                cpu_s: 0.6,
                machine_share: 0.1,
                machine_busy: 0.75,
                cores: 2,
            }),
            payments: None,
            cpu_per_sale: Some(CpuPerSale {
                server_us: Some(91.6),
                postgres_us: Some(64.6),
                redis_us: Some(3.2),
                total_us: Some(159.4),
                units_sold: 100,
                window_s: 4.25,
                idle_reached: true,
            }),
            audit: AuditReport {
                units: 100,
                sold: 100,
                available: Some(0),
                stored_orders: 100,
                acknowledged: 100,
                retried_pairs: 0,
                checked_i3: true,
                violations,
            },
        }
    }

    #[test]
    fn the_report_files_hold_the_numbers_and_four_charts() {
        let dir = tempfile::tempdir().unwrap();
        let (json, html) = report(Vec::new()).write(dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        assert_eq!(json["summary"]["attempts"], 300);
        assert_eq!(json["summary"]["outcomes"]["409 sold_out"], 200);
        assert_eq!(json["summary"]["timeline"].as_array().unwrap().len(), 3);
        assert_eq!(json["summary"]["units_sold"], 100);
        assert_eq!(json["instrument"]["machine_share"], 0.1);
        // The 100th sale was planned at 0.99 s and answered 1.193 ms later.
        let last_sale = json["summary"]["last_sale_s"].as_f64().unwrap();
        assert!((last_sale - 0.991193).abs() < 1e-9, "{last_sale}");
        let html = std::fs::read_to_string(html).unwrap();
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("Audit passed"));
        assert!(!html.contains("http://www.w3.org/1999/xlink\" href=\"http"));
        assert!(html.contains("harness: 0.60 CPU s during the load, 10 % of the machine's 2 cores, the machine 75 % busy"));
        assert_eq!(json["cpu_per_sale"]["total_us"], 159.4);
        assert_eq!(json["cpu_per_sale"]["idle_reached"], true);
        assert_eq!(json["config"]["server_pid"], 4242);
        assert!(html.contains(
            "cpu per sale: server 92 + postgres 65 + redis 3 = 159 µs for 100 units sold, \
             window 4.25 s (until idle)"
        ));
    }

    #[test]
    fn what_was_not_measured_shows_as_a_dash_and_a_short_window_says_so() {
        let mut report = report(Vec::new());
        report.cpu_per_sale = report.cpu_per_sale.map(|cpu| CpuPerSale {
            server_us: None,
            total_us: None,
            idle_reached: false,
            ..cpu
        });

        let text = report.text();

        assert!(
            text.contains("cpu per sale: server - + postgres 65 + redis 3 = - µs"),
            "{text}"
        );
        assert!(text.contains("NOT idle"), "{text}");
        report.cpu_per_sale = None;
        assert!(!report.text().contains("cpu per sale"));
    }

    #[test]
    fn a_failed_audit_is_loud() {
        let violation = Violation {
            invariant: "I1",
            detail: "101 units held of 100".to_owned(),
        };
        let report = report(vec![violation]);
        assert!(report.text().contains("AUDIT FAILED"));
        assert!(report.text().contains("I1: 101 units held of 100"));
        assert!(report.html().unwrap().contains("AUDIT FAILED"));
    }
}
