//! Real-data driver for `compress`, the baselines and plain training (the runs in
//! `bench/compress_RESULTS.md` use it until the CLI's `mcufit compress` is wired).
//!
//! ```text
//! cargo run -p mcufit-prune --release --example compress -- MODE MODEL DATA [--ram B] [--flash B]
//!     [--macs N] [--latency-ms X --board NAME] [--epochs N] [--from DIR] [--out DIR] [--lr X]
//!     [--batch N] [--seed N] [--limit N] [--threads N] [--salience bn_weight|taylor] [--resume] [--no-augment] [--ste-scale X]
//! MODE: compress | train | uniform | l1 | overhead
//! ```
//! `overhead` runs plain `train` and `compress` for the same epochs in one process and prints
//! both wall times and their ratio.

use std::path::PathBuf;
use std::time::Instant;

use mcufit_prune::baselines::{run_baseline, BaselineKind};
use mcufit_prune::{compress, BudgetSpec, CompressConfig, Salience};
use mcufit_train::{default_device, evaluate, train, Network, TrainConfig};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: compress MODE MODEL DATA [flags]".into());
    }
    let (mode, model, data) = (args[0].as_str(), &args[1], &args[2]);
    let mut spec = BudgetSpec::default();
    let (mut epochs, mut lr, mut batch, mut seed, mut limit, mut threads) = (10usize, 0.05f64, 64usize, 42u64, None, 2usize);
    let (mut from, mut out, mut resume, mut salience, mut no_augment) = (None, None, false, Salience::BnWeight, false);
    let mut ste_scale = 1.0f64;
    let (mut warmup_epochs, mut finetune_epochs) = (None, None);
    let (mut distill, mut distill_temperature) = (0.0f64, 1.0f64);
    let mut weight_decay = 5e-4f64;
    let mut i = 3;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--ram" => spec.ram = Some(v),
            "--flash" => spec.flash = Some(v),
            "--macs" => spec.macs = Some(v),
            "--latency-ms" => spec.latency_ms = Some(v.parse()?),
            "--board" => spec.board = Some(v),
            "--epochs" => epochs = v.parse()?,
            "--lr" => lr = v.parse()?,
            "--batch" => batch = v.parse()?,
            "--weight-decay" => weight_decay = v.parse()?,
            "--seed" => seed = v.parse()?,
            "--limit" => limit = Some(v.parse()?),
            "--threads" => threads = v.parse()?,
            "--from" => from = Some(PathBuf::from(v)),
            "--out" => out = Some(PathBuf::from(v)),
            "--salience" => salience = serde_json::from_str(&format!("\"{v}\""))?,
            "--ste-scale" => ste_scale = v.parse()?,
            "--warmup-epochs" => warmup_epochs = Some(v.parse()?),
            "--finetune-epochs" => finetune_epochs = Some(v.parse()?),
            "--distill" => distill = v.parse()?,
            "--distill-temperature" => distill_temperature = v.parse()?,
            "--no-augment" => {
                no_augment = true;
                i += 1;
                continue;
            }
            "--resume" => {
                resume = true;
                i += 1;
                continue;
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 2;
    }
    let graph = mcufit_ir::load_model(model)?;
    let boards = mcufit_cost::Boards::builtin();
    if mode == "plan" {
            let (board, budget) = spec.resolve(&boards)?;
            let m = mcufit_cost::CostModel::new(&graph, Default::default())?;
            let ranges = mcufit_prune::check_feasible(&m, &budget, board.as_ref())?;
            for r in ranges {
                println!("{}: start {:.0}, minimum {:.0}, limit {:.0}", r.resource.name(), r.start, r.minimum, r.limit);
            }
            let (alpha, sizes) = mcufit_prune::baselines::uniform_width(&m, &budget, board.as_ref())?;
            let u = m.usage(&sizes.iter().map(|&x| x as f64).collect::<Vec<_>>(), board.as_ref());
            println!("uniform alpha {alpha:.3} sizes {sizes:?}: peak {:.0} model {:.0} params {:.0} MACs {:.0}", u.peak_memory, u.model_bytes, u.params, u.macs);
            return Ok(());
    }
    let s = graph.input_shape();
    let opts = mcufit_data::LoadOptions { seed: 0, val_fraction: 0.1, target_shape: Some([s.h, s.w, s.c]), augment: !no_augment, limit };
    let splits = mcufit_data::load(data, &opts)?;
    eprintln!("data: train {} val {} test {}", splits.train.len(), splits.val.len(), splits.test.len());
    let tc = TrainConfig::new().with_epochs(epochs).with_lr(lr).with_batch_size(batch).with_seed(seed).with_threads(threads).with_augment(true).with_weight_decay(weight_decay);
    let tsplits = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    match mode {
        "train" => {
            let mut c = tc.clone();
            c.out_dir = out.as_ref().map(|o| o.display().to_string());
            c.resume = resume;
            let t = Instant::now();
            let r = train(&graph, &tsplits, &c)?;
            let secs = t.elapsed().as_secs_f64();
            let test = evaluate(&r.network, &splits.test, 256)?;
            if let Some(o) = &out {
                r.network.save(o)?;
            }
            println!("train {model}: {epochs} epochs, {secs:.1} s, test accuracy {:.2}%", 100.0 * test.accuracy);
        }
        "compress" | "overhead" => {
            let (board, budget) = spec.resolve(&boards)?;
            let mut cfg = CompressConfig::new(budget, tc.clone());
            cfg.board = board;
            cfg.from = from.clone();
            cfg.out_dir = out.clone();
            cfg.resume = resume;
            cfg.salience = salience;
            cfg.ste_scale = ste_scale;
            cfg.warmup_epochs = warmup_epochs;
            cfg.finetune_epochs = finetune_epochs;
            cfg.distill = distill;
            cfg.distill_temperature = distill_temperature;
            let t_train = if mode == "overhead" {
                let mut c = tc.clone();
                c.progress = false;
                let t = Instant::now();
                let r = train(&graph, &tsplits, &c)?;
                let secs = t.elapsed().as_secs_f64();
                let test = evaluate(&r.network, &splits.test, 256)?;
                println!("plain train: {epochs} epochs {secs:.1} s, test {:.2}%", 100.0 * test.accuracy);
                cfg.train.progress = false;
                Some(secs)
            } else {
                None
            };
            let t = Instant::now();
            let r = compress(&graph, &splits, &cfg)?;
            let secs = t.elapsed().as_secs_f64();
            print!("{}", mcufit_prune::summary(&r));
            println!("compress wall time {secs:.1} s");
            if let Some(tt) = t_train {
                println!("overhead: compress / train = {:.3} ({secs:.1} s / {tt:.1} s, same {epochs} epochs)", secs / tt);
            }
        }
        "uniform" | "l1" => {
            let (board, budget) = spec.resolve(&boards)?;
            let base = match &from {
                Some(d) => Some(Network::load(d, &default_device())?),
                None => None,
            };
            let kind = if mode == "uniform" { BaselineKind::Uniform } else { BaselineKind::L1 };
            let (r, net) = run_baseline(kind, &graph, &splits, base.as_ref(), &budget, board.as_ref(), &tc, (distill > 0.0).then_some((distill, distill_temperature)))?;
            if let Some(o) = &out {
                net.save(o)?;
            }
            println!(
                "{mode}: sizes {:?} alpha {:?}: peak {:.0} B, model {:.0} B, MACs {:.3} M; test accuracy {:.2}% ({} epochs, {:.1} s)",
                r.sizes,
                r.alpha,
                r.usage.peak_memory,
                r.usage.model_bytes,
                r.usage.macs / 1e6,
                100.0 * r.test_accuracy,
                r.epochs,
                r.seconds
            );
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
