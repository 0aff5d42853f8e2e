//! A realistic example report, for previews, documentation and tests.

use crate::{
    Confusion, Curve, KeyValue, LayerRow, Marker, MemoryStep, MemoryTimeline, OpProfile, ReportData, ResourceRow,
    Series, StepRow, Term,
};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: value.into() }
}

fn term(name: &str, value: f64) -> Term {
    Term { name: name.into(), value }
}

/// Deterministic noise in [-1, 1].
fn wiggle(i: usize, seed: f64) -> f64 {
    ((i as f64 * 12.9898 + seed * 78.233).sin() * 43758.5453).fract() * 2.0 - 1.0
}

/// A complete example: an MNIST depthwise-separable CNN pruned to fit an Arduino Nano 33 BLE, with every
/// section filled (9 layers, a 12-step memory timeline, 20 epochs of curves with phase markers, a 10-class
/// confusion matrix and a Cortex-M4 profile).
pub fn example() -> ReportData {
    #[allow(clippy::type_complexity)]
    let layer_specs: [(&str, &str, &str, Option<usize>, usize, u64, u64); 9] = [
        ("conv1", "conv2d", "28x28x12", Some(16), 12, 120, 84_672),
        ("pool1", "maxpool", "14x14x12", None, 12, 0, 0),
        ("dw2", "depthwise", "14x14x12", Some(16), 12, 120, 21_168),
        ("pw2", "conv2d", "14x14x20", Some(32), 20, 260, 47_040),
        ("pool2", "maxpool", "7x7x20", None, 20, 0, 0),
        ("dw3", "depthwise", "7x7x20", Some(32), 20, 200, 8_820),
        ("pw3", "conv2d", "7x7x36", Some(64), 36, 756, 35_280),
        ("gap", "avgpool", "1x1x36", None, 36, 0, 1_764),
        ("fc", "dense", "10", Some(10), 10, 370, 360),
    ];
    let layers: Vec<LayerRow> = layer_specs
        .iter()
        .map(|&(name, kind, output, before, after, params, macs)| LayerRow {
            name: name.into(),
            kind: kind.into(),
            output: output.into(),
            channels_before: before,
            channels_after: after,
            params,
            macs,
        })
        .collect();
    let total_macs: u64 = layers.iter().map(|l| l.macs).sum();

    let memory_steps = [
        ("input", 784.0),
        ("conv1", 10_192.0),
        ("pool1", 11_760.0),
        ("dw2", 4_704.0),
        ("pw2", 6_272.0),
        ("pool2", 4_900.0),
        ("dw3", 1_960.0),
        ("pw3", 2_744.0),
        ("gap", 1_800.0),
        ("fc", 46.0),
        ("softmax", 20.0),
        ("output", 10.0),
    ];
    let memory = MemoryTimeline {
        steps: memory_steps.iter().map(|&(op, b)| MemoryStep { op: op.into(), live_bytes: b }).collect(),
        peak_bytes: 11_760.0,
        limit_bytes: Some(16_384.0),
    };

    let epochs = 20;
    let markers =
        vec![Marker { x: 5.0, label: "pruning starts".into() }, Marker { x: 15.0, label: "fine-tune".into() }];
    let curve = |title: &str, y_label: &str, series: Vec<Series>| Curve {
        title: title.into(),
        x_label: "epoch".into(),
        y_label: y_label.into(),
        series,
        markers: markers.clone(),
    };
    let series = |name: &str, f: &dyn Fn(usize) -> f64| Series {
        name: name.into(),
        points: (1..=epochs).map(|e| [e as f64, (f(e) * 1e4).round() / 1e4]).collect(),
    };
    // Accuracy dips while channels are removed (epochs 5-15) and recovers in fine-tuning.
    let dip = |e: usize| if (6..=15).contains(&e) { 0.6 * (1.0 - ((e as f64 - 10.5) / 5.0).powi(2)) } else { 0.0 };
    let train_loss = |e: usize| 0.05 + 0.55 * (-(e as f64) / 2.2).exp() + 0.02 * dip(e) * 3.0 + 0.004 * wiggle(e, 1.0);
    let test_loss = |e: usize| 0.06 + 0.5 * (-(e as f64) / 2.4).exp() + 0.03 * dip(e) * 3.0 + 0.006 * wiggle(e, 2.0);
    let train_acc = |e: usize| 99.5 - 7.0 * (-(e as f64) / 1.8).exp() - 1.2 * dip(e) + 0.08 * wiggle(e, 3.0);
    let test_acc = |e: usize| 99.2 - 6.0 * (-(e as f64) / 1.9).exp() - 1.5 * dip(e) + 0.1 * wiggle(e, 4.0);
    let penalty = |e: usize| {
        if e < 5 {
            0.0
        } else if e <= 13 {
            1.8 * (-(e as f64 - 5.0) / 2.0).exp()
        } else {
            0.0
        }
    };
    let ram_frac = |e: usize| {
        if e < 5 {
            1.72
        } else if e < 13 {
            1.72 - 0.8 * (e as f64 - 5.0) / 8.0
        } else {
            0.92
        }
    };
    let mac_frac = |e: usize| {
        if e < 5 {
            2.45
        } else if e < 12 {
            2.45 - 1.66 * (e as f64 - 5.0) / 7.0
        } else {
            0.79
        }
    };
    let curves = vec![
        curve("loss", "cross-entropy", vec![series("train", &train_loss), series("test", &test_loss)]),
        curve("accuracy", "accuracy (%)", vec![series("train", &train_acc), series("test", &test_acc)]),
        curve("pruning penalty", "budget penalty", vec![series("penalty", &penalty)]),
        curve(
            "resources",
            "fraction of budget",
            vec![series("RAM", &ram_frac), series("MACs", &mac_frac), series("budget", &|_| 1.0)],
        ),
    ];

    let class_names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let support = [980usize, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
    // (true, predicted, count) of the errors
    let errors = [
        (0, 6, 2),
        (1, 7, 2),
        (2, 7, 5),
        (2, 8, 3),
        (3, 5, 4),
        (3, 2, 2),
        (4, 9, 6),
        (5, 3, 5),
        (5, 6, 2),
        (6, 0, 3),
        (6, 5, 2),
        (7, 2, 6),
        (7, 9, 4),
        (8, 3, 3),
        (8, 9, 2),
        (9, 4, 7),
        (9, 7, 3),
    ];
    let mut matrix = vec![vec![0usize; 10]; 10];
    for &(t, p, k) in &errors {
        matrix[t][p] += k;
    }
    for (t, row) in matrix.iter_mut().enumerate() {
        let wrong: usize = row.iter().sum();
        row[t] = support[t] - wrong;
    }
    let correct: usize = (0..10).map(|i| matrix[i][i]).sum();
    let total: usize = support.iter().sum();
    let accuracy = 100.0 * correct as f64 / total as f64;

    let m4 = [
        ("conv1", "conv2d", 84_672u64, 372_557u64),
        ("pool1", "maxpool", 0, 21_290),
        ("dw2", "depthwise", 21_168, 139_708),
        ("pw2", "conv2d", 47_040, 178_752),
        ("pool2", "maxpool", 0, 8_840),
        ("dw3", "depthwise", 8_820, 60_858),
        ("pw3", "conv2d", 35_280, 134_064),
        ("gap", "avgpool", 1_764, 9_350),
        ("fc", "dense", 360, 2_952),
    ];
    let weights: u64 = layers.iter().map(|l| l.params).sum();

    ReportData {
        title: format!("mnist-ds on mnist → 11,760 B peak, {} B weights", crate::format::group(weights as i128)),
        model: "zoo:mnist-ds".into(),
        data: "mnist:/data/mnist".into(),
        summary: vec![
            kv("int8 test accuracy", &format!("{accuracy:.2} %")),
            kv("float test accuracy", "99.45 %"),
            kv("peak RAM", "18,312 B"),
            kv("flash", "69.8 KiB"),
            kv("MACs / inference", &crate::format::count(total_macs as f64)),
            kv("latency (est.)", "3.4 ms"),
            kv("board", "arduino-nano-33-ble"),
            kv("channels kept", "110 / 170"),
        ],
        resources: vec![
            ResourceRow {
                name: "RAM".into(),
                unit: "B".into(),
                before: Some(28_410.0),
                value: 18_312.0,
                limit: Some(65_536.0),
                terms: vec![
                    term("arena", 11_760.0),
                    term("scratch", 456.0),
                    term("stack", 4_096.0),
                    term("runtime", 2_000.0),
                ],
            },
            ResourceRow {
                name: "flash".into(),
                unit: "B".into(),
                before: Some(96_120.0),
                value: 71_460.0,
                limit: Some(262_144.0),
                terms: vec![term("weights", weights as f64), term("graph", 6_876.0), term("TFLM runtime", 62_558.0)],
            },
            ResourceRow {
                name: "peak activations".into(),
                unit: "B".into(),
                before: Some(18_816.0),
                value: 11_760.0,
                limit: None,
                terms: vec![],
            },
            ResourceRow {
                name: "MACs".into(),
                unit: "MACs".into(),
                before: Some(612_000.0),
                value: total_macs as f64,
                limit: Some(250_000.0),
                terms: vec![],
            },
            ResourceRow {
                name: "latency".into(),
                unit: "ms".into(),
                before: Some(9.8),
                value: 3.4,
                limit: Some(5.0),
                terms: vec![],
            },
        ],
        layers,
        memory: Some(memory),
        curves,
        confusion: Some(Confusion { class_names, matrix }),
        m4_profile: m4
            .iter()
            .map(|&(op, kind, macs, instructions)| OpProfile { op: op.into(), kind: kind.into(), macs, instructions })
            .collect(),
        steps: vec![
            StepRow {
                step: "train".into(),
                status: "reused".into(),
                seconds: None,
                detail: "checkpoint runs/mnist-ds/best (20 epochs, test 99.45 %)".into(),
            },
            StepRow {
                step: "compress".into(),
                status: "done".into(),
                seconds: Some(1_530.0),
                detail: "differentiable channel pruning to RAM 64 KiB, flash 256 KiB, 250 K MACs; 170 → 110 channels"
                    .into(),
            },
            StepRow {
                step: "quantize".into(),
                status: "done".into(),
                seconds: Some(11.6),
                detail: "int8 per-channel, 1,000 calibration samples; accuracy −0.06 pt".into(),
            },
            StepRow {
                step: "export".into(),
                status: "done".into(),
                seconds: Some(1.2),
                detail: "model.tflite (7,088 B) and model.c".into(),
            },
            StepRow {
                step: "verify".into(),
                status: "done".into(),
                seconds: Some(48.3),
                detail: "TFLM on qemu Cortex-M4: outputs bit-exact on 100 test images".into(),
            },
            StepRow {
                step: "latency".into(),
                status: "skipped".into(),
                seconds: None,
                detail: "no board attached; estimated from the board profile".into(),
            },
        ],
        notes: vec![
            "Latency is an estimate from the board profile's cycles per MAC, not a measurement on hardware.".into(),
            "The training step reused an existing checkpoint; pass --retrain to train from scratch.".into(),
        ],
    }
}
