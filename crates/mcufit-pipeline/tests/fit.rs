//! `fit` end to end on the built-in digits at a tiny schedule: every step's output lands in the
//! directory, the delivered model fits the board, a rerun reuses finished steps, another request is
//! refused, and an impossible budget fails before anything is written.

use std::path::PathBuf;

use mcufit_pipeline::config::LoadOptions;
use mcufit_pipeline::fit::{FIT_JSON, REPORT_HTML};
use mcufit_pipeline::{BudgetSpec, Event, FitOptions, FitReport, FitRequest, ModelDir, Recipe};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcufit-fit-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn request(model: &str, spec: BudgetSpec) -> FitRequest {
    FitRequest {
        model: model.into(),
        data: "digits".into(),
        seed: 3,
        budget: spec.resolve().unwrap(),
        from: None,
        method: Default::default(),
        head: Default::default(),
    }
}

fn options() -> FitOptions {
    FitOptions {
        recipe: Some(Recipe { base_epochs: 8, prune_epochs: 2, finetune_epochs: 4, ..Recipe::default() }),
        no_verify: true,
        progress: false,
        ..FitOptions::default()
    }
}

fn run(req: &FitRequest, out: &std::path::Path) -> mcufit_pipeline::Result<(FitReport, Vec<String>)> {
    let load = LoadOptions { seed: req.seed, limit: None, ..Default::default() };
    let (graph, splits, adj) = mcufit_pipeline::load_model_for_data(&req.model, &req.data, &load)?;
    let mut steps = Vec::new();
    let mut ev = |e: Event| {
        if let Event::Step { step, .. } = e {
            steps.push(step)
        }
    };
    let r = mcufit_pipeline::fit(req, &graph, &splits, adj.lines(), out, &options(), &mut ev)?;
    Ok((r, steps))
}

#[test]
fn fit_delivers_a_model_that_fits_and_a_rerun_reuses_its_steps() {
    let out = tmp("digits");
    let req = request("zoo:mnist-ds", BudgetSpec { board: Some("nucleo-g031k8".into()), ..Default::default() });
    let (r, steps) = run(&req, &out).unwrap();
    assert_eq!(steps, ["train", "compress", "quantize", "export", "report"]);
    assert!(r.fit.fits, "{:?}", r.fit.failures());
    // The board's 8 KiB hold the arena, scratch, stack and runtime: the unpruned model's did not.
    assert!(!req.budget.check(&r.before).fits);
    assert!(r.after.ram() <= 8192 && r.after.flash() <= 65536, "{:?}", r.after);
    assert!(r.after.arena < r.before.arena);
    let a = r.accuracy.as_ref().unwrap();
    assert_eq!(a.int8.examples, a.float.examples);
    assert!(a.int8.accuracy > 0.6, "int8 accuracy {}", a.int8.accuracy);
    // The digits are 8x8: the model's 28x28 input is met by resizing, said once.
    assert!(r.adjustments.iter().any(|l| l.contains("8x8x1") && l.contains("28x28x1")), "{:?}", r.adjustments);
    for f in [
        "model.tflite",
        "c/mcufit_model.c",
        "c/mcufit_kernels.h",
        FIT_JSON,
        REPORT_HTML,
        "base/model.json",
        "compressed/model.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(out.join(REPORT_HTML)).unwrap();
    assert!(html.contains("<svg") && html.contains("mnist-ds"));
    let saved: FitReport = ModelDir::new(&out).read_json(FIT_JSON).unwrap().unwrap();
    assert_eq!(saved.request, req);

    // A rerun reuses the trained and the pruned model.
    let (r2, _) = run(&req, &out).unwrap();
    let status: Vec<(&str, &str)> = r2.steps.iter().map(|s| (s.step.as_str(), s.status.as_str())).collect();
    assert!(status.contains(&("train", "reused")) && status.contains(&("compress", "reused")), "{status:?}");
    assert_eq!(r2.after.arena, r.after.arena);
    assert_eq!(r2.accuracy.as_ref().unwrap().int8.accuracy, a.int8.accuracy);

    // Another request into the same directory is refused, nothing overwritten.
    let other = request("zoo:mnist-ds", BudgetSpec { peak: Some("3000".into()), ..Default::default() });
    let e = run(&other, &out).unwrap_err().to_string();
    assert!(e.contains("holds a fit"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn an_impossible_budget_fails_before_anything_is_written() {
    let out = tmp("impossible");
    let req = request("zoo:mnist-ds", BudgetSpec { peak: Some("100".into()), ..Default::default() });
    let e = run(&req, &out).unwrap_err();
    assert!(e.is_does_not_fit(), "{e}");
    assert!(e.to_string().contains("smallest"), "{e}");
    assert!(!out.exists());
    // RAM below the stack reserve: said in those terms.
    let req = request("zoo:mnist-ds", BudgetSpec { ram: Some("4KiB".into()), ..Default::default() });
    let e = run(&req, &out).unwrap_err();
    assert!(e.is_does_not_fit() && e.to_string().contains("stack"), "{e}");
    assert!(!out.exists());
}

#[test]
fn depth_and_depth_plus_width_fits_keep_the_cut_table() {
    for method in [mcufit_pipeline::Method::Depth, mcufit_pipeline::Method::DepthWidth] {
        let out = tmp(&format!("{method:?}"));
        let mut req = request("zoo:mnist-ds", BudgetSpec { size: Some("9000".into()), ..Default::default() });
        req.method = method;
        let (r, _) = run(&req, &out).unwrap();
        assert!(r.fit.fits, "{method:?}: {:?}", r.fit.failures());
        let table = r.cuts.as_ref().expect("the cut table is kept");
        assert_eq!(table.rows.iter().filter(|row| row.chosen).count(), 1);
        assert!(table.rows.iter().all(|row| row.val_accuracy.is_some()), "every cut's head was trained");
        assert!(r.after.weights <= 9000);
        let html = std::fs::read_to_string(out.join(REPORT_HTML)).unwrap();
        assert!(html.contains("depth cut"), "{method:?}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
