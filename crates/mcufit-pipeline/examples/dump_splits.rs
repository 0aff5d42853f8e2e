//! Writes the exact training stream and validation split mcufit uses for a (model, data, seed,
//! limit) as `.npy` files, for an outside tool (bench/torch_pruning_peer.py) to train on the same
//! examples: the data come from the library's own loader ([`mcufit_pipeline::load_base_for_data`],
//! as `mcufit train` / `mcufit compress` load them), never from a copy of the split logic.
//!
//! ```sh
//! cargo run --release -p mcufit-pipeline --example dump_splits -- \
//!     --model zoo:mnist-ds --data mnist:../shared/datasets/mnist --seed 1 [--limit N] \
//!     [--epochs E] [--batch 64] --out DIR
//! ```
//!
//! Writes to DIR:
//! - `train_x.npy` (NHWC f32, clean features, mcufit's input encoding), `train_y.npy` (u32);
//! - `val_x.npy`, `val_y.npy`: the validation split (clean);
//! - `order_E.npy` (u32, E = 0..epochs): epoch E's batches as mcufit's trainer draws them for
//!   `--seed` and `--batch` (shuffled with the trainer's seed, a short last batch dropped), flattened;
//! - `train_x_aug_E.npy` where the training split augments (speech always does; image sets as the
//!   CLI loads them do not): row i is training example i as augmented in epoch E with the seed the
//!   trainer gives its batch (`SplitMix64::derive(seed, E, 0xA0_0000 + b)`);
//! - `meta.json`: spec, seed, limit, shape, classes, split sizes, whether it augments.
//!
//! The test split is **not** written: the peer never sees it; `mcufit eval` reads it once at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use mcufit_pipeline::config::LoadOptions;
use mcufit_train::{BatchSource, SplitMix64};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn usage() -> ! {
    eprintln!("usage: dump_splits --model MODEL --data SPEC --seed S [--limit N] [--epochs E] [--batch B] --out DIR");
    std::process::exit(2)
}

/// `.npy` v1.0 with a little-endian `descr` ("<f4" or "<u4") and C order.
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n', padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(bytes)?;
    f.flush()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Clean features and labels of a whole split.
fn all_of(ds: &mcufit_data::Dataset) -> Result<(Vec<f32>, Vec<u32>)> {
    let idx: Vec<usize> = (0..ds.len()).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    ds.batch(&idx, &mut x, &mut y)?;
    Ok((x, y))
}

/// The trainer's batches of epoch `epoch` (mcufit-train `Trainer::epoch_batches`, no step cap).
fn epoch_batches(len: usize, seed: u64, epoch: usize, bs: usize) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..len).collect();
    SplitMix64::derive(seed, epoch as u64, 0x5EED).shuffle(&mut idx);
    let mut batches: Vec<Vec<usize>> = idx.chunks(bs).map(|c| c.to_vec()).collect();
    if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
        batches.pop();
    }
    batches
}

fn main() -> Result<()> {
    let (mut model, mut data, mut seed, mut limit, mut epochs, mut batch, mut out) =
        (None, None, None, None, 0usize, 64usize, None::<PathBuf>);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--model" => model = Some(v()),
            "--data" => data = Some(v()),
            "--seed" => seed = Some(v().parse::<u64>()?),
            "--limit" => limit = Some(v().parse::<usize>()?),
            "--epochs" => epochs = v().parse()?,
            "--batch" => batch = v().parse()?,
            "--out" => out = Some(PathBuf::from(v())),
            _ => usage(),
        }
    }
    let (Some(model), Some(data), Some(seed), Some(out)) = (model, data, seed, out) else { usage() };
    // The options `mcufit train` / `compress` load with (TrainArgs::load_options).
    let opts = LoadOptions { seed, limit, ..Default::default() };
    let (graph, splits, _, _) = mcufit_pipeline::load_base_for_data(&model, &data, &opts)?;
    std::fs::create_dir_all(&out)?;
    let shape = splits.train.shape();
    let nhwc = |n: usize| vec![n, shape[0], shape[1], shape[2]];
    let (tx, ty) = all_of(&splits.train)?;
    write_npy(&out.join("train_x.npy"), "<f4", &nhwc(ty.len()), &f32_bytes(&tx))?;
    write_npy(&out.join("train_y.npy"), "<u4", &[ty.len()], &u32_bytes(&ty))?;
    let (vx, vy) = all_of(&splits.val)?;
    write_npy(&out.join("val_x.npy"), "<f4", &nhwc(vy.len()), &f32_bytes(&vx))?;
    write_npy(&out.join("val_y.npy"), "<u4", &[vy.len()], &u32_bytes(&vy))?;
    let augments = splits.train.augments();
    let len = splits.train.sample_len();
    for e in 0..epochs {
        let batches = epoch_batches(splits.train.len(), seed, e, batch);
        let order: Vec<u32> = batches.iter().flatten().map(|&i| i as u32).collect();
        write_npy(&out.join(format!("order_{e}.npy")), "<u4", &[order.len()], &u32_bytes(&order))?;
        if augments {
            // Examples not in any batch (the dropped short batch) keep their clean features.
            let mut aug = tx.clone();
            let (mut bx, mut by) = (Vec::new(), Vec::new());
            for (b, idx) in batches.iter().enumerate() {
                let s = SplitMix64::derive(seed, e as u64, 0xA0_0000 + b as u64).next_u64();
                BatchSource::batch_augmented(&splits.train, idx, s, &mut bx, &mut by)?;
                for (k, &i) in idx.iter().enumerate() {
                    aug[i * len..(i + 1) * len].copy_from_slice(&bx[k * len..(k + 1) * len]);
                }
            }
            write_npy(&out.join(format!("train_x_aug_{e}.npy")), "<f4", &nhwc(ty.len()), &f32_bytes(&aug))?;
        }
    }
    let meta = serde_json::json!({
        "model": graph.name,
        "data": data,
        "seed": seed,
        "limit": limit,
        "shape": shape,
        "classes": splits.train.num_classes(),
        "class_names": splits.train.class_names(),
        "train": splits.train.len(),
        "val": splits.val.len(),
        "test": splits.test.len(),
        "augments": augments,
        "epochs": epochs,
        "batch": batch,
    });
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    println!("{meta}");
    Ok(())
}
