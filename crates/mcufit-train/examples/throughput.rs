//! Training and evaluation throughput of one model, the mcufit side of `bench/train_vs_pytorch.sh`
//! (`bench/torch_throughput.py` is the PyTorch side; both read the same data file).
//!
//! Write the shared data file (N seeded random examples of the model's input shape, labels
//! uniform over the classes), the model's IR JSON next to it (`FILE.model.json`), and a
//! reference for `bench/torch_ir.py --check FILE`: the network after 3 training steps on the data
//! (`FILE.net/`, model.json + weights.safetensors) and its eval-mode logits on the first 256
//! examples (`FILE.logits`, f32 `[256, classes]`):
//!   `throughput --model M --write-data FILE [--n 2048] [--seed 1]`
//! Time it:
//!   `throughput --model M --data FILE [--threads 2] [--steps 40] [--warmup 5] [--repeats 3]`
//! prints one JSON line: model, threads, train_images_per_sec (median over repeats),
//! train_spread [min, max], eval_images_per_sec (median), eval_spread, params, engine.
//!
//! Protocol: batch 64, SGD momentum 0.9, weight decay 5e-4 (kernels only), constant LR 0.05, no
//! augmentation; batches are taken in order from the in-memory data (no copy, no shuffle), W
//! warm-up steps are untimed, then R timed blocks of S steps. Evaluation: `evaluate` over all N
//! examples at batch 256, once untimed, then R timed passes. Threads: the global rayon pool is set
//! once per process, so run one process per thread count.
//!
//! Data file (little endian): magic `MCUFITD1`, u32 n, h, w, c, classes, then n·h·w·c f32 (NHWC),
//! then n u32 labels.

use std::io::Write;
use std::time::Instant;

use mcufit_train::*;

const MAGIC: &[u8; 8] = b"MCUFITD1";
const BATCH: usize = 64;
const EVAL_BATCH: usize = 256;

struct Args {
    model: String,
    threads: usize,
    steps: usize,
    warmup: usize,
    repeats: usize,
    data: Option<String>,
    write_data: Option<String>,
    n: usize,
    seed: u64,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        model: "zoo:mnist-cnn".into(),
        threads: 2,
        steps: 40,
        warmup: 5,
        repeats: 3,
        data: None,
        write_data: None,
        n: 2048,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--model" => a.model = val()?,
            "--threads" => a.threads = num(val()?)?,
            "--steps" => a.steps = num(val()?)?,
            "--warmup" => a.warmup = num(val()?)?,
            "--repeats" => a.repeats = num(val()?)?,
            "--data" => a.data = Some(val()?),
            "--write-data" => a.write_data = Some(val()?),
            "--n" => a.n = num(val()?)?,
            "--seed" => a.seed = num(val()?)? as u64,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.steps == 0 || a.repeats == 0 || a.n == 0 {
        return Err("--steps, --repeats and --n must be at least 1".into());
    }
    Ok(a)
}

fn write_data(path: &str, graph: &mcufit_ir::Graph, n: usize, seed: u64) -> std::result::Result<(), String> {
    let s = graph.input_shape();
    let k = graph.num_outputs();
    let mut r = SplitMix64::new(seed);
    let mut buf = Vec::with_capacity(28 + 4 * n * (s.elements() + 1));
    buf.extend_from_slice(MAGIC);
    for v in [n, s.h, s.w, s.c, k] {
        buf.extend_from_slice(&(v as u32).to_le_bytes());
    }
    for _ in 0..n * s.elements() {
        buf.extend_from_slice(&r.uniform(0.0, 1.0).to_le_bytes());
    }
    for _ in 0..n {
        buf.extend_from_slice(&(r.below(k) as u32).to_le_bytes());
    }
    let io = |p: &str, e: std::io::Error| format!("{p}: {e}");
    std::fs::File::create(path).and_then(|mut f| f.write_all(&buf)).map_err(|e| io(path, e))?;
    let json = format!("{path}.model.json");
    std::fs::write(&json, graph.to_json()).map_err(|e| io(&json, e))
}

/// The reference for `bench/torch_ir.py --check`: a few training steps (so that BN running
/// statistics are not the identity), then the weights and eval-mode logits.
fn write_reference(path: &str, graph: &mcufit_ir::Graph, data: &InMemory, cfg: TrainConfig) -> Result<()> {
    let per = graph.input_shape().elements();
    let mut trainer = Trainer::new(Network::new(graph, &default_device(), 0)?, cfg)?;
    for b in 0..3.min(data.labels.len() / BATCH) {
        let (lo, hi) = (b * BATCH, (b + 1) * BATCH);
        trainer.step(&data.images[lo * per..hi * per], &data.labels[lo..hi], &mut NoHook)?;
    }
    let net = trainer.into_network()?;
    net.save(format!("{path}.net"))?;
    let m = EVAL_BATCH.min(data.labels.len());
    let x = net.input_from_nhwc(&data.images[..m * per], m, &net.device())?;
    let logits = net
        .forward_mode(x, Mode::Eval)?
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Data(format!("{e:?}")))?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = format!("{path}.logits");
    std::fs::write(&out, bytes).map_err(|e| TrainError::Data(format!("{out}: {e}")))
}

fn read_data(path: &str) -> std::result::Result<InMemory, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() < 28 || &bytes[..8] != MAGIC {
        return Err(format!("{path}: not a data file written by --write-data"));
    }
    let u = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap()) as usize;
    let (n, h, w, c, k) = (u(0), u(1), u(2), u(3), u(4));
    let floats = n * h * w * c;
    if bytes.len() != 28 + 4 * (floats + n) {
        return Err(format!("{path}: {} bytes, header says {n} examples of {h}x{w}x{c}", bytes.len()));
    }
    let words = |off: usize, len: usize| {
        bytes[off..off + 4 * len].chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect::<Vec<_>>()
    };
    let images = words(28, floats).into_iter().map(f32::from_le_bytes).collect();
    let labels = words(28 + 4 * floats, n).into_iter().map(u32::from_le_bytes).collect();
    InMemory::new([h, w, c], k, images, labels).map_err(|e| e.to_string())
}

/// Trainable parameters (conv / dense kernels and biases, BN gamma and beta), as PyTorch counts
/// `parameters()`: BN running statistics are buffers, not parameters.
fn param_count(net: &Network) -> usize {
    let n = |d: &[usize]| d.iter().product::<usize>();
    net.layers
        .iter()
        .map(|l| {
            l.kernel.as_ref().map_or(0, |p| n(&p.val().dims()))
                + l.weight.as_ref().map_or(0, |p| n(&p.val().dims()))
                + l.bias.as_ref().map_or(0, |p| n(&p.val().dims()))
                + l.bn.as_ref().map_or(0, |b| n(&b.gamma.val().dims()) + n(&b.beta.val().dims()))
        })
        .sum()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

fn spread(v: &[f64]) -> [f64; 2] {
    [v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(0.0, f64::max)]
}

fn run(a: &Args) -> std::result::Result<(), String> {
    let graph = mcufit_ir::load_model(&a.model).map_err(|e| e.to_string())?;
    let err = |e: TrainError| e.to_string();
    let cfg = TrainConfig::new()
        .with_threads(a.threads)
        .with_batch_size(BATCH)
        .with_lr(0.05)
        .with_optimizer(OptimizerKind::Sgd { momentum: 0.9, nesterov: false })
        .with_weight_decay(5e-4)
        .with_schedule(LrSchedule::Constant)
        .with_augment(false)
        .with_progress(false);
    if let Some(path) = &a.write_data {
        write_data(path, &graph, a.n, a.seed)?;
        return write_reference(path, &graph, &read_data(path)?, cfg).map_err(err);
    }
    let path = a.data.as_deref().ok_or("give --data FILE (written by --write-data)")?;
    let data = read_data(path)?;
    let s = graph.input_shape();
    if data.shape != [s.h, s.w, s.c] || data.num_classes != graph.num_outputs() {
        return Err(format!(
            "{path} holds {:?} inputs / {} classes; {} wants {s} / {}",
            data.shape,
            data.num_classes,
            a.model,
            graph.num_outputs()
        ));
    }
    let nb = data.labels.len() / BATCH;
    if nb == 0 {
        return Err(format!("{path}: fewer than {BATCH} examples"));
    }
    let per = s.elements();
    let net = Network::new(&graph, &default_device(), 0).map_err(err)?;
    let params = param_count(&net);
    let mut trainer = Trainer::new(net, cfg).map_err(err)?;
    let engine = trainer.uses_engine().map_err(err)?;

    // Batches in order straight from the in-memory data, as the PyTorch side slices its tensor.
    let mut i = 0usize;
    let mut step = |trainer: &mut Trainer| -> std::result::Result<(), String> {
        let b = i % nb;
        i += 1;
        let x = &data.images[b * BATCH * per..(b + 1) * BATCH * per];
        let y = &data.labels[b * BATCH..(b + 1) * BATCH];
        trainer.step(x, y, &mut NoHook).map(|_| ()).map_err(err)
    };
    for _ in 0..a.warmup {
        step(&mut trainer)?;
    }
    let mut train = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let t = Instant::now();
        for _ in 0..a.steps {
            step(&mut trainer)?;
        }
        train.push((a.steps * BATCH) as f64 / t.elapsed().as_secs_f64());
    }

    let net = trainer.network().map_err(err)?;
    evaluate(net, &data, EVAL_BATCH).map_err(err)?; // warm-up
    let mut eval = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let t = Instant::now();
        evaluate(net, &data, EVAL_BATCH).map_err(err)?;
        eval.push(data.labels.len() as f64 / t.elapsed().as_secs_f64());
    }
    let line = serde_json::json!({
        "model": a.model,
        "threads": a.threads,
        "steps": a.steps,
        "warmup": a.warmup,
        "repeats": a.repeats,
        "batch": BATCH,
        "train_images_per_sec": median(&train),
        "train_spread": spread(&train),
        "eval_images_per_sec": median(&eval),
        "eval_spread": spread(&eval),
        "params": params,
        "engine": if engine { "mcufit" } else { "burn" },
    });
    println!("{line}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("throughput: {e}");
            }
            eprintln!(
                "usage: throughput --model M --write-data FILE [--n 2048] [--seed 1]\n       \
                 throughput --model M --data FILE [--threads 2] [--steps 40] [--warmup 5] [--repeats 3]"
            );
            std::process::ExitCode::from(2)
        }
    }
}
