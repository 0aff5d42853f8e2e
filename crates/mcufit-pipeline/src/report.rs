//! From a fit's figures to the HTML report's data ([`mcufit_report::ReportData`]).

use mcufit_report::{
    Confusion, Curve, KeyValue, Marker, MemoryTimeline, OpProfile, ReportData, ResourceRow, Series, StepRow,
    Term as RTerm,
};

use crate::budget::{human_bytes, human_count, FitCheck};
use crate::fit::FitReport;

pub use mcufit_report::render_html as render;

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue { key: key.into(), value }
}

fn resource_rows(check: &FitCheck, before: &FitCheck) -> Vec<ResourceRow> {
    check
        .rows
        .iter()
        .map(|r| ResourceRow {
            name: r.resource.clone(),
            unit: r.unit.clone(),
            before: before.rows.iter().find(|b| b.resource == r.resource).map(|b| b.value),
            value: r.value,
            limit: r.limit,
            terms: r.terms.iter().map(|t| RTerm { name: t.name.clone(), value: t.value }).collect(),
        })
        .collect()
}

/// The report of a fit.
pub fn from_fit(r: &FitReport) -> ReportData {
    let req = &r.request;
    let budget = &req.budget;
    let before_check = budget.check(&r.before);
    let mut summary = Vec::new();
    if let Some(a) = &r.accuracy {
        summary.push(kv("int8 test accuracy", format!("{:.2} %", 100.0 * a.int8.accuracy)));
        summary.push(kv("float test accuracy", format!("{:.2} %", 100.0 * a.float.accuracy)));
    }
    summary.push(kv("fits", if r.fit.fits { "yes".into() } else { "NO".into() }));
    summary.push(kv("RAM", human_bytes(r.after.ram() as f64)));
    summary.push(kv("flash", human_bytes(r.after.flash() as f64)));
    summary.push(kv("peak activations", human_bytes(r.after.arena as f64)));
    summary.push(kv("MACs", human_count(r.after.macs as f64)));
    if let Some(v) = &r.verify {
        summary.push(kv(
            "verified",
            if v.passed && v.skipped.is_empty() {
                "bit-exact".into()
            } else if v.passed {
                "partly".into()
            } else {
                "FAILED".into()
            },
        ));
    }
    if let Some(t) = &r.cuts {
        if let Some(row) = t.rows.iter().find(|row| row.chosen) {
            summary.push(kv("depth cut", format!("after {} + {}", row.cut.name, t.head)));
        }
    }
    summary.push(kv("wall time", format!("{:.0} s", r.seconds)));

    // Training curves: the base run, then the compress run after it.
    let mut curves = Vec::new();
    let base_h = r.base.as_ref().map(|b| b.history.clone()).unwrap_or_default();
    let offset = base_h.len() as f64;
    let comp_h = r.compress.as_ref().map(|c| c.history.clone()).unwrap_or_default();
    let pts =
        |h: &[mcufit_train::EpochStats],
         off: f64,
         f: &dyn Fn(&mcufit_train::EpochStats) -> Option<f64>|
         -> Vec<[f64; 2]> { h.iter().filter_map(|e| f(e).map(|v| [off + e.epoch as f64 + 1.0, v])).collect() };
    let mut markers = Vec::new();
    if let Some(c) = &r.compress {
        markers.push(Marker { x: offset + c.epochs.0 as f64, label: "pruning starts".into() });
        markers.push(Marker { x: offset + (c.epochs.0 + c.epochs.1) as f64, label: "fine-tune".into() });
    }
    if !base_h.is_empty() || !comp_h.is_empty() {
        let mut all = base_h.clone();
        all.extend(comp_h.iter().cloned().map(|mut e| {
            e.epoch += base_h.len();
            e
        }));
        curves.push(Curve {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "cross-entropy".into(),
            series: vec![
                Series { name: "train".into(), points: pts(&all, 0.0, &|e| Some(e.train_loss)) },
                Series { name: "validation".into(), points: pts(&all, 0.0, &|e| e.val_loss) },
            ],
            markers: markers.clone(),
        });
        curves.push(Curve {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "%".into(),
            series: vec![
                Series { name: "train".into(), points: pts(&all, 0.0, &|e| Some(100.0 * e.train_accuracy)) },
                Series { name: "validation".into(), points: pts(&all, 0.0, &|e| e.val_accuracy.map(|a| 100.0 * a)) },
            ],
            markers: markers.clone(),
        });
        if comp_h.iter().any(|e| e.extra_loss != 0.0) {
            curves.push(Curve {
                title: "pruning penalty".into(),
                x_label: "epoch".into(),
                y_label: "budget loss".into(),
                series: vec![Series { name: "penalty".into(), points: pts(&comp_h, offset, &|e| Some(e.extra_loss)) }],
                markers: markers.clone(),
            });
        }
    }
    if let Some(c) = &r.compress {
        let spe = c.steps_per_epoch.max(1) as f64;
        let x = |s: u64| offset + s as f64 / spe;
        let pct = |v: f64, start: f64| if start > 0.0 { 100.0 * v / start } else { 0.0 };
        let (p0, m0, k0) = (r.before.arena as f64, r.before.weights as f64, r.before.macs as f64);
        curves.push(Curve {
            title: "resources while pruning (% of the unpruned model)".into(),
            x_label: "epoch".into(),
            y_label: "%".into(),
            series: vec![
                Series {
                    name: "peak activations".into(),
                    points: c.log.iter().map(|l| [x(l.step), pct(l.peak_memory, p0)]).collect(),
                },
                Series {
                    name: "weights".into(),
                    points: c.log.iter().map(|l| [x(l.step), pct(l.model_bytes, m0)]).collect(),
                },
                Series { name: "MACs".into(), points: c.log.iter().map(|l| [x(l.step), pct(l.macs, k0)]).collect() },
            ],
            markers,
        });
    }

    let mut notes = r.adjustments.clone();
    if let Some(t) = &r.cuts {
        for row in &t.rows {
            notes.push(format!(
                "cut after {} ({}): {:.0} params, {} MACs, peak {}, validation {}{}",
                row.cut.name,
                row.cut.shape,
                row.cost.params,
                human_count(row.cost.macs),
                human_bytes(row.cost.peak_memory),
                row.val_accuracy.map_or("-".to_string(), |a| format!("{:.2} %", 100.0 * a)),
                if row.chosen { " (chosen)" } else { "" }
            ));
        }
    }
    notes.extend(r.notes.iter().cloned());
    if !r.fit.measured {
        notes.push("code and runtime terms are the target's estimates (no Cortex-M link was made)".into());
    }
    if let Some(v) = &r.verify {
        notes.extend(v.problems.iter().cloned());
        notes.extend(v.skipped.iter().map(|s| format!("not checked: {s}")));
    }
    ReportData {
        title: format!("{} on {} → {}", model_name(r), req.data, budget.describe()),
        model: req.model.clone(),
        data: req.data.clone(),
        summary,
        resources: resource_rows(&r.fit, &before_check),
        layers: r.layers.clone(),
        memory: (!r.memory.is_empty()).then(|| MemoryTimeline {
            steps: r.memory.clone(),
            peak_bytes: r.memory.iter().map(|m| m.live_bytes).fold(0.0, f64::max),
            limit_bytes: budget.peak.map(|p| p as f64).or_else(|| {
                budget.ram.map(|ram| ram.saturating_sub(r.after.scratch + r.after.stack + r.after.runtime_ram) as f64)
            }),
        }),
        curves,
        confusion: r
            .accuracy
            .as_ref()
            .map(|a| Confusion { class_names: r.class_names.clone(), matrix: a.int8.confusion.clone() }),
        m4_profile: r
            .verify
            .as_ref()
            .and_then(|v| v.m4.as_ref())
            .map(|m| {
                m.per_op
                    .iter()
                    .map(|o| OpProfile {
                        op: o.name.clone(),
                        kind: o.kind.clone(),
                        macs: o.macs,
                        instructions: o.instructions,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        steps: r
            .steps
            .iter()
            .map(|s| StepRow {
                step: s.step.clone(),
                status: s.status.clone(),
                seconds: s.seconds,
                detail: s.detail.clone(),
            })
            .collect(),
        notes,
    }
}

fn model_name(r: &FitReport) -> String {
    r.request.model.trim_start_matches("zoo:").to_string()
}
