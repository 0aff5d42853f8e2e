//! Speech Commands: WAV reading, speaker-disjoint split, augmentation, MFCC dataset.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;
use rayon::prelude::*;

use crate::dataset::{Augment, Dataset, InputEncoding, Samples, SpeechSamples};
use crate::error::DataError;
use crate::mfcc::{Mfcc, CLIP_SAMPLES, FEATURES_PER_CLIP, NUM_FRAMES, NUM_MFCC, SAMPLE_RATE};
use crate::split::{self, stable_hash};
use crate::{LoadOptions, Splits};

/// The 12 MLPerf Tiny KWS classes, in label order.
pub const MLPERF_LABELS: [&str; 12] =
    ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"];
const NOISE_DIR: &str = "_background_noise_";
/// Maximum time shift of the augmentation (100 ms).
pub(crate) const TIME_SHIFT: i64 = 1_600;
/// Probability that a training clip gets background noise.
pub(crate) const NOISE_PROB: f64 = 0.8;
/// Upper bound of the background volume.
pub(crate) const NOISE_MAX_VOLUME: f32 = 0.1;
/// Percent of speakers (hash buckets) in train and val; the rest is test.
const TRAIN_PCT: u64 = 80;
const VAL_PCT: u64 = 10;

/// Side of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Train,
    Val,
    Test,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }
}

/// One clip and the side of the split it falls in.
#[derive(Clone, Debug)]
pub struct SpeechClip {
    /// Path of the WAV file.
    pub path: PathBuf,
    /// Label index into [`SpeechSplit::class_names`].
    pub label: u32,
    /// Speaker id (the file-name token before `_nohash_`); `None` for `_silence_` clips and
    /// names without `_nohash_`, which are hashed by file name instead.
    pub speaker: Option<String>,
    /// Side the clip is assigned to.
    pub side: Side,
}

/// The speaker-disjoint assignment of every clip of a Speech Commands folder.
#[derive(Clone, Debug)]
pub struct SpeechSplit {
    /// Class names present, in MLPerf order.
    pub class_names: Vec<String>,
    /// Every clip, sorted by class then file name.
    pub clips: Vec<SpeechClip>,
}

/// Counts per side, index 0 = train, 1 = val, 2 = test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitReport {
    /// Clips per side.
    pub clips: [usize; 3],
    /// Distinct speakers per side.
    pub speakers: [usize; 3],
    /// Clips without a speaker id (e.g. `_silence_`) per side.
    pub clips_without_speaker: [usize; 3],
    /// Speakers found on more than one side (0 by construction).
    pub shared_speakers: usize,
}

impl std::fmt::Display for SplitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.clips;
        let [sa, sb, sc] = self.speakers;
        write!(
            f,
            "clips train/val/test = {a}/{b}/{c} (total {}), speakers = {sa}/{sb}/{sc}, \
             clips without speaker = {:?}, speakers on two sides = {}",
            a + b + c,
            self.clips_without_speaker,
            self.shared_speakers
        )
    }
}

impl SpeechSplit {
    /// Clip and speaker counts per side.
    pub fn report(&self) -> SplitReport {
        let mut clips = [0; 3];
        let mut none = [0; 3];
        let mut sides: HashMap<&str, HashSet<Side>> = HashMap::new();
        for c in &self.clips {
            clips[c.side.index()] += 1;
            match &c.speaker {
                Some(s) => {
                    sides.entry(s).or_default().insert(c.side);
                }
                None => none[c.side.index()] += 1,
            }
        }
        let mut speakers = [0; 3];
        for set in sides.values() {
            for s in set {
                speakers[s.index()] += 1;
            }
        }
        SplitReport {
            clips,
            speakers,
            clips_without_speaker: none,
            shared_speakers: sides.values().filter(|s| s.len() > 1).count(),
        }
    }
}

/// Speaker id of a Speech Commands file name: the last `_`-separated token before
/// `_nohash_` (`0a7c2a8d_nohash_0.wav` and `bed_0a7c2a8d_nohash_0.wav` give `0a7c2a8d`).
pub fn speaker_id(file_name: &str) -> Option<&str> {
    let (stem, _) = file_name.split_once("_nohash_")?;
    stem.rsplit('_').next().filter(|s| !s.is_empty())
}

fn side_of(seed: u64, key: &str) -> Side {
    match stable_hash(seed, key) % 100 {
        p if p < TRAIN_PCT => Side::Train,
        p if p < TRAIN_PCT + VAL_PCT => Side::Val,
        _ => Side::Test,
    }
}

fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            v.push((name, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

fn is_wav(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".wav")
}

/// Assigns every clip of a Speech Commands folder to train/val/test by hashing its
/// speaker id with `seed` (FNV-1a + SplitMix64 finalizer, bucket `hash % 100`: 0..80 train,
/// 80..90 val, 90..100 test), so all clips of a speaker land on one side.
///
/// Folders named like the MLPerf labels keep their label; any other folder except
/// `_background_noise_` counts as `_unknown_` (as in the full v0.02 release).
pub fn speech_split(dir: &Path, seed: u64) -> Result<SpeechSplit, DataError> {
    let mut folders: Vec<(usize, String, PathBuf)> = Vec::new();
    for (name, path) in list_dir(dir)? {
        if name == NOISE_DIR || !path.is_dir() {
            continue;
        }
        let class = MLPERF_LABELS.iter().position(|&l| l == name).unwrap_or(1);
        folders.push((class, name, path));
    }
    if folders.is_empty() {
        return Err(DataError::NotFound {
            path: dir.into(),
            what: "no label folders (yes, no, ..., _silence_, _unknown_)".into(),
        });
    }
    let present: Vec<usize> = {
        let mut p: Vec<usize> = folders.iter().map(|f| f.0).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let class_names = present.iter().map(|&c| MLPERF_LABELS[c].to_string()).collect();
    folders.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut clips = Vec::new();
    for (class, name, path) in folders {
        let label = present.iter().position(|&c| c == class).unwrap_or(0) as u32;
        let files: Vec<_> = list_dir(&path)?.into_iter().filter(|(n, _)| is_wav(n)).collect();
        if files.is_empty() {
            return Err(DataError::EmptyClass { path, what: "WAV files" });
        }
        for (file, fpath) in files {
            let speaker = if name == "_silence_" { None } else { speaker_id(&file).map(String::from) };
            let key = speaker.clone().unwrap_or_else(|| format!("{name}/{file}"));
            clips.push(SpeechClip { path: fpath, label, speaker, side: side_of(seed, &key) });
        }
    }
    Ok(SpeechSplit { class_names, clips })
}

/// Reads a 16 kHz, 16-bit PCM, mono WAV file.
/// Most samples one WAV file may declare: 30 minutes at 16 kHz.
const MAX_WAV_SAMPLES: u64 = 30 * 60 * SAMPLE_RATE as u64;

pub(crate) fn read_wav(path: &Path) -> Result<Vec<i16>, DataError> {
    let wav_err = |msg: String| DataError::Wav { path: path.into(), msg };
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::NotFound => DataError::io(path, io),
        other => wav_err(other.to_string()),
    })?;
    read_wav_from(reader, path)
}

/// The checking and sample-reading half of [`read_wav`], on any reader (the fuzz harness gives it bytes).
pub(crate) fn read_wav_from<R: std::io::Read>(reader: hound::WavReader<R>, path: &Path) -> Result<Vec<i16>, DataError> {
    let wav_err = |msg: String| DataError::Wav { path: path.into(), msg };
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(wav_err(format!("{} channels, expected mono", spec.channels)));
    }
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(wav_err(format!(
            "{}-bit {:?} samples, expected 16-bit integer PCM",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    if spec.sample_rate != SAMPLE_RATE {
        return Err(DataError::SampleRate { path: path.into(), found: spec.sample_rate, expected: SAMPLE_RATE });
    }
    // Clips are 1 s and the background noise files about 1 min; a header that declares more than
    // 30 min is refused before its samples are read.
    if u64::from(reader.len()) > MAX_WAV_SAMPLES {
        return Err(wav_err(format!(
            "the header declares {} samples ({:.0} min), over the {}-minute limit",
            reader.len(),
            f64::from(reader.len()) / f64::from(SAMPLE_RATE) / 60.0,
            MAX_WAV_SAMPLES / u64::from(SAMPLE_RATE) / 60
        )));
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| wav_err(format!("sample data unreadable or truncated: {e}")))
}

/// Pads with zeros at the end or trims to exactly 1 s.
pub(crate) fn fit_clip(mut v: Vec<i16>) -> Vec<i16> {
    v.resize(CLIP_SAMPLES, 0);
    v
}

/// Peak normalization as MLPerf Tiny (`wav / max`), using the absolute peak so a clip
/// whose largest excursion is negative keeps its sign; an all-zero clip stays zero.
pub(crate) fn normalized(wave: &[i16]) -> Vec<f32> {
    let peak = wave.iter().map(|&s| (s as i32).abs()).max().unwrap_or(0);
    if peak == 0 {
        return vec![0.0; wave.len()];
    }
    let inv = 1.0 / peak as f32;
    wave.iter().map(|&s| s as f32 * inv).collect()
}

/// MLPerf Tiny / TF speech_commands training augmentation on one normalized clip.
pub(crate) fn augment<R: Rng + ?Sized>(wave: &[i16], noise: &[Vec<f32>], rng: &mut R) -> Vec<f32> {
    let fg = normalized(wave);
    let n = fg.len() as i64;
    // Positive shift delays the clip (zeros in front), negative advances it.
    let shift = rng.random_range(-TIME_SHIFT..=TIME_SHIFT);
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let j = i - shift;
            if (0..n).contains(&j) {
                fg[j as usize]
            } else {
                0.0
            }
        })
        .collect();
    if !noise.is_empty() {
        let bg = &noise[rng.random_range(0..noise.len())];
        let off = rng.random_range(0..=bg.len() - x.len());
        let volume = if rng.random_bool(NOISE_PROB) { rng.random_range(0.0..NOISE_MAX_VOLUME) } else { 0.0 };
        for (v, &b) in x.iter_mut().zip(&bg[off..]) {
            *v = (*v + volume * b).clamp(-1.0, 1.0);
        }
    }
    x
}

fn load_noise(dir: &Path) -> Result<Vec<Vec<f32>>, DataError> {
    let nd = dir.join(NOISE_DIR);
    if !nd.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (name, path) in list_dir(&nd)? {
        if !is_wav(&name) {
            continue;
        }
        let s = read_wav(&path)?;
        if s.len() < CLIP_SAMPLES {
            return Err(DataError::malformed(
                &path,
                format!("background noise has {} samples, need at least {CLIP_SAMPLES}", s.len()),
            ));
        }
        // decode_wav scaling, as TF: noise is mixed at its recorded level.
        out.push(s.iter().map(|&v| v as f32 / 32768.0).collect());
    }
    Ok(out)
}

struct Side3 {
    clips: Vec<SpeechClip>,
    waves: Vec<i16>,
    features: Vec<f32>,
}

fn read_side(clips: Vec<SpeechClip>, mfcc: &Mfcc) -> Result<Side3, DataError> {
    let per: Vec<(Vec<i16>, Vec<f32>)> = clips
        .par_iter()
        .map(|c| {
            let w = fit_clip(read_wav(&c.path)?);
            let f = mfcc.compute(&normalized(&w));
            Ok((w, f))
        })
        .collect::<Result<_, DataError>>()?;
    let mut waves = Vec::with_capacity(per.len() * CLIP_SAMPLES);
    let mut features = Vec::with_capacity(per.len() * FEATURES_PER_CLIP);
    for (w, f) in per {
        waves.extend(w);
        features.extend(f);
    }
    Ok(Side3 { clips, waves, features })
}

/// Per-coefficient mean and standard deviation over all frames of `features`.
fn feature_stats(features: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut sum = [0f64; NUM_MFCC];
    let mut sq = [0f64; NUM_MFCC];
    for row in features.chunks_exact(NUM_MFCC) {
        for k in 0..NUM_MFCC {
            sum[k] += row[k] as f64;
            sq[k] += (row[k] as f64).powi(2);
        }
    }
    let n = (features.len() / NUM_MFCC).max(1) as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = (0..NUM_MFCC)
        .map(|k| {
            let var = (sq[k] / n - (sum[k] / n).powi(2)).max(0.0);
            // A constant coefficient would divide by zero; leave it unscaled.
            if var.sqrt() < 1e-6 {
                1.0
            } else {
                var.sqrt() as f32
            }
        })
        .collect();
    (mean, std)
}

pub(crate) fn load(dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    if let Some(t) = opts.target_shape {
        if t != [NUM_FRAMES, NUM_MFCC, 1] && t != [NUM_FRAMES, NUM_MFCC, crate::NATIVE_CHANNELS] {
            return Err(DataError::InvalidOption(format!(
                "speech-commands features are [{NUM_FRAMES}, {NUM_MFCC}, 1]; target shape {t:?} is not supported"
            )));
        }
    }
    let split = speech_split(dir, opts.seed)?;
    let mut sides: [Vec<SpeechClip>; 3] = Default::default();
    for c in split.clips {
        sides[c.side.index()].push(c);
    }
    let streams = [split::stream::ORDER_TRAIN, split::stream::ORDER_VAL, split::stream::ORDER_TEST];
    for (v, s) in sides.iter_mut().zip(streams) {
        v.shuffle(&mut split::rng(opts.seed, s));
        if let Some(l) = opts.limit {
            v.truncate(l);
        }
    }
    let mfcc = Arc::new(Mfcc::new());
    let noise = Arc::new(load_noise(dir)?);
    let [tr, va, te] = sides;
    let read = |v| read_side(v, &mfcc);
    let (tr, va, te) = (read(tr)?, read(va)?, read(te)?);
    if tr.clips.is_empty() {
        return Err(DataError::malformed(dir, "no clip falls in the training split"));
    }
    let (mean, std) = feature_stats(&tr.features);
    let encoding = InputEncoding::Features { mean, std };
    let make = |s: Side3, side: &str, train: bool| -> Dataset {
        let sources = s
            .clips
            .iter()
            .map(|c| {
                let folder = c.path.parent().and_then(Path::file_name).unwrap_or_default();
                let file = c.path.file_name().unwrap_or_default();
                format!("{}/{}", folder.to_string_lossy(), file.to_string_lossy())
            })
            .collect();
        Dataset {
            name: format!("speech-commands/{side}"),
            shape: [NUM_FRAMES, NUM_MFCC, 1],
            class_names: split.class_names.clone(),
            labels: s.clips.iter().map(|c| c.label).collect(),
            encoding: encoding.clone(),
            samples: Samples::Speech(SpeechSamples {
                features: s.features,
                // Only the training split is ever augmented; drop the others' audio.
                waves: train.then_some(s.waves),
                noise: noise.clone(),
                mfcc: mfcc.clone(),
            }),
            sources: Some(sources),
            augment: if train { Augment::Speech } else { Augment::None },
        }
    };
    Ok(Splits {
        train: make(tr, "train", true),
        val: make(va, "val", false),
        test: make(te, "test", false),
        // MFCC features are computed, not converted: there is never a conversion note.
        conversion: None,
    })
}

/// Writes a 16-bit mono WAV (test fixtures).
#[cfg(test)]
pub(crate) fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tone(freq: f32, amp: f32, n: usize) -> Vec<i16> {
        (0..n).map(|i| (amp * (2.0 * std::f32::consts::PI * freq * i as f32 / 16000.0).sin()) as i16).collect()
    }

    #[test]
    fn speaker_ids() {
        assert_eq!(speaker_id("0a7c2a8d_nohash_0.wav"), Some("0a7c2a8d"));
        assert_eq!(speaker_id("bed_0a7c2a8d_nohash_0.wav.wav"), Some("0a7c2a8d"));
        assert_eq!(speaker_id("1024.wav"), None);
    }

    #[test]
    fn wav_rejections_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stereo.wav");
        write_wav(&p, 16000, 2, &[0; 64]);
        let e = read_wav(&p).unwrap_err();
        assert!(matches!(e, DataError::Wav { .. }) && e.to_string().contains("stereo.wav"), "{e}");

        let p = dir.path().join("rate.wav");
        write_wav(&p, 8000, 1, &[0; 64]);
        assert!(matches!(read_wav(&p), Err(DataError::SampleRate { found: 8000, expected: 16000, .. })));

        let p = dir.path().join("eight_bit.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 8,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        w.write_sample(3i8).unwrap();
        w.finalize().unwrap();
        assert!(matches!(read_wav(&p), Err(DataError::Wav { .. })));

        let p = dir.path().join("garbage.wav");
        std::fs::write(&p, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
        assert!(matches!(read_wav(&p), Err(DataError::Wav { .. })));

        // Header announces more data than the file holds.
        let p = dir.path().join("cut.wav");
        write_wav(&p, 16000, 1, &tone(440.0, 1000.0, 1000));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 501]).unwrap();
        let e = read_wav(&p).unwrap_err();
        assert!(matches!(e, DataError::Wav { .. }) && e.to_string().contains("cut.wav"), "{e}");

        // A header that declares 2^31 - 1 samples (37 hours) is refused before any is read.
        let p = dir.path().join("huge.wav");
        write_wav(&p, 16000, 1, &tone(440.0, 1000.0, 100));
        let mut bytes = std::fs::read(&p).unwrap();
        let data = bytes.windows(4).position(|w| w == b"data").unwrap();
        bytes[data + 4..data + 8].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = read_wav(&p).unwrap_err().to_string();
        assert!(e.contains("huge.wav") && e.contains("30-minute limit"), "{e}");
    }

    #[test]
    fn augment_shifts_and_mixes() {
        let clip = fit_clip(tone(500.0, 8000.0, 16000));
        let base = normalized(&clip);
        assert!((base.iter().fold(0f32, |a, b| a.max(b.abs())) - 1.0).abs() < 1e-6);
        // Without noise the result is the clip shifted by at most 1600 samples.
        let mut r = ChaCha8Rng::seed_from_u64(5);
        let x = augment(&clip, &[], &mut r);
        let shift = (-TIME_SHIFT..=TIME_SHIFT)
            .find(|&s| {
                (0..16000i64).all(|i| {
                    let j = i - s;
                    let want = if (0..16000).contains(&j) { base[j as usize] } else { 0.0 };
                    x[i as usize] == want
                })
            })
            .expect("output is a time shift of the input");
        assert!(shift.abs() <= TIME_SHIFT);
        // A silent clip over constant noise 0.5 comes out as the constant volume * 0.5.
        let noise = vec![vec![0.5f32; 20000]];
        let silent = vec![0i16; 16000];
        let mut with_noise = 0;
        for seed in 0..200 {
            let y = augment(&silent, &noise, &mut ChaCha8Rng::seed_from_u64(seed));
            assert!(y.iter().all(|&v| v == y[0]));
            assert!((0.0..0.5 * NOISE_MAX_VOLUME).contains(&y[0]));
            with_noise += (y[0] > 0.0) as usize;
        }
        // Probability 0.8: expect about 160 of 200.
        assert!((140..=180).contains(&with_noise), "{with_noise}");
    }

    #[test]
    fn folder_split_and_features() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut n = 0;
        for (label, freq) in [("yes", 300.0), ("no", 1200.0)] {
            std::fs::create_dir(root.join(label)).unwrap();
            for spk in 0..12 {
                // One short clip per speaker: exercises the zero padding.
                let name = format!("{spk:08x}_nohash_0.wav");
                write_wav(&root.join(label).join(name), 16000, 1, &tone(freq, 6000.0, 12000));
                n += 1;
            }
        }
        std::fs::create_dir(root.join("cat")).unwrap();
        write_wav(&root.join("cat/cat_0000000a_nohash_1.wav"), 16000, 1, &tone(700.0, 500.0, 17000));
        std::fs::create_dir(root.join("_background_noise_")).unwrap();
        write_wav(&root.join("_background_noise_/hum.wav"), 16000, 1, &tone(50.0, 3000.0, 20000));
        n += 1;

        let split = speech_split(root, 3).unwrap();
        assert_eq!(split.class_names, vec!["_unknown_", "yes", "no"]);
        assert_eq!(split.clips.len(), n);
        let rep = split.report();
        assert_eq!(rep.shared_speakers, 0);
        // Speaker 0000000a has clips in `cat` and `no`/`yes`: all on one side.
        let sides: HashSet<Side> =
            split.clips.iter().filter(|c| c.speaker.as_deref() == Some("0000000a")).map(|c| c.side).collect();
        assert_eq!(sides.len(), 1);

        let opts = LoadOptions { seed: 3, ..LoadOptions::default() };
        let s = crate::load(&format!("speech-commands:{}", root.display()), &opts).unwrap();
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), n);
        assert_eq!(s.train.len(), rep.clips[0]);
        assert_eq!(s.train.shape(), [49, 10, 1]);
        let (mut out, mut lb) = (Vec::new(), Vec::new());
        let idx: Vec<usize> = (0..s.train.len()).collect();
        s.train.batch(&idx, &mut out, &mut lb).unwrap();
        // Train features are standardized per coefficient by construction.
        for k in 0..10 {
            let col: Vec<f32> = out.iter().skip(k).step_by(10).copied().collect();
            let mean = col.iter().sum::<f32>() / col.len() as f32;
            assert!(mean.abs() < 1e-3, "coef {k} mean {mean}");
        }
        // Augmented batches differ from plain ones and are reproducible.
        let (mut a1, mut a2) = (Vec::new(), Vec::new());
        s.train.batch_augmented(&idx[..4], &mut ChaCha8Rng::seed_from_u64(9), &mut a1, &mut lb).unwrap();
        s.train.batch_augmented(&idx[..4], &mut ChaCha8Rng::seed_from_u64(9), &mut a2, &mut lb).unwrap();
        assert_eq!(a1, a2);
        assert_ne!(a1[..], out[..4 * 490]);
        assert!(!s.test.augments());

        // An empty label folder is an error naming it.
        std::fs::create_dir(root.join("stop")).unwrap();
        let e = speech_split(root, 3).unwrap_err();
        assert!(matches!(e, DataError::EmptyClass { .. }) && e.to_string().contains("stop"), "{e}");
    }
}
