//! The `check` report as a table for a person (the JSON form is the report's serde shape).
//!
//! Owns: layout and wording only. Must not: compute verdicts.

use std::fmt::Write as _;

use super::{PartReport, Report, Verdict};

pub fn table(report: &Report, strict: bool) -> String {
    let mut out = String::new();
    for p in &report.parts {
        part(&mut out, p);
    }
    for s in &report.skipped {
        let _ = writeln!(
            out,
            "route part {s}: not checked (passthrough or no reader)"
        );
    }
    let count = |name: &str| {
        report
            .parts
            .iter()
            .flat_map(|p| &p.writers)
            .filter(|w| w.verdict.name() == name)
            .count()
    };
    let (ok, lossy, bad) = (count("ok"), count("lossy"), count("incompatible"));
    let unframed: u64 = report.parts.iter().filter_map(|p| p.unframed).sum();
    let _ = write!(
        out,
        "result: {ok} ok, {lossy} lossy, {bad} incompatible writer schema(s)"
    );
    if unframed > 0 {
        let _ = write!(out, ", {unframed} unframed record(s) on the topics");
    }
    let _ = writeln!(
        out,
        " -> {}",
        if report.failed(strict) {
            if bad > 0 || unframed > 0 {
                "FAIL: records would be dead-lettered"
            } else {
                "FAIL (--strict): a reader would lose data"
            }
        } else {
            "pass"
        }
    );
    out
}

fn part(out: &mut String, p: &PartReport) {
    let _ = writeln!(
        out,
        "route {} {} ({}): reader {} (id {})",
        p.route,
        p.part.name(),
        p.format,
        p.reader,
        p.reader_id
    );
    let width = p
        .writers
        .iter()
        .map(|w| w.writer.len())
        .max()
        .unwrap_or(0)
        .max("WRITER".len());
    let _ = writeln!(out, "  {:width$}  {:12}  DETAILS", "WRITER", "VERDICT");
    if p.writers.is_empty() {
        let _ = writeln!(
            out,
            "  (no writer schema registered under the source subjects)"
        );
    }
    for w in &p.writers {
        // One detail per line, the first beside the verdict, the rest aligned under it.
        let mut details: Vec<String> = Vec::new();
        if let Some(n) = w.seen {
            details.push(format!("{n} record(s) on the topic"));
        }
        match &w.verdict {
            Verdict::Ok => details.push("every field resolves, nothing lost".into()),
            Verdict::Lossy { losses } => {
                details.extend(losses.iter().map(|l| format!("{}: {}", l.path, l.detail)));
            }
            Verdict::Incompatible { reason, losses, .. } => {
                details.push(reason.clone());
                details.extend(losses.iter().map(|l| format!("{}: {}", l.path, l.detail)));
            }
        }
        let mut lines = details.iter();
        let _ = writeln!(
            out,
            "  {:width$}  {:12}  {}",
            w.writer,
            w.verdict.name(),
            lines.next().map_or("", String::as_str)
        );
        for more in lines {
            let _ = writeln!(out, "  {:width$}  {:12}  {more}", "", "");
        }
    }
    if let Some(n) = p.unframed.filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "  {n} record(s) on the topic are not Confluent-framed: each is dead-lettered"
        );
    }
    for s in &p.subjects {
        let level = s
            .registry_level
            .as_deref()
            .unwrap_or("none (static schema directory)");
        let _ = writeln!(
            out,
            "  subject {} (versions {:?}): the registry enforces {level}",
            s.subject, s.versions
        );
        for l in &s.levels {
            let enforced = s.registry_level.as_deref() == Some(l.level.name());
            let mark = if enforced { " (enforced)" } else { "" };
            match &l.broken {
                None => {
                    let _ = writeln!(out, "    {:20} holds{mark}", l.level.name());
                }
                Some(why) => {
                    let _ = writeln!(out, "    {:20} broken{mark}: {why}", l.level.name());
                }
            }
        }
        // Where the history breaks a level, what this route makes of the breaking version.
        let mut told = Vec::new();
        for l in &s.levels {
            let Some(v) = l.broken_by.filter(|v| !told.contains(v)) else {
                continue;
            };
            told.push(v);
            let Some(w) = p
                .writers
                .iter()
                .find(|w| w.subject.as_deref() == Some(&s.subject) && w.version == Some(v))
            else {
                continue;
            };
            let what = match w.verdict {
                Verdict::Ok => "schemabridge resolves it for this reader, nothing lost",
                Verdict::Lossy { .. } => "schemabridge resolves it for this reader, with losses",
                Verdict::Incompatible { .. } => {
                    "schemabridge cannot repair it for this reader: records are dead-lettered"
                }
            };
            let _ = writeln!(out, "    version {v} breaks {}: {what}", l.level.name());
        }
    }
    out.push('\n');
}
