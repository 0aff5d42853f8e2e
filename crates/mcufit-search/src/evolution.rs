//! Aging evolution (Real et al. 2019) with μNAS's randomly scalarised multi-objective fitness
//! (Liberis et al. 2021), and the Pareto front of finished trials.
//!
//! - The first `population` proposals are drawn at random from the space.
//! - After that, each proposal looks at the **population** (the `population` most recent finished
//!   trials, by trial id), samples `sample` of them without replacement, draws one weight vector `w`
//!   uniformly on the simplex and picks the sampled trial with the lowest scalarised fitness
//!   `Σ_i w_i·o_i`; its genotype is mutated ([`SearchSpace::mutate`]) into the child. Older trials
//!   age out of the population as newer ones finish.
//! - Objectives `o` (all minimised, dimensionless): validation error divided by the population's mean
//!   error, and the delivered model's activation peak, model bytes and MACs each divided by its bound
//!   (by the population's largest figure when the resource is unbounded).
//!
//! Every proposal is a pure function of (search seed, trial id, finished trials with smaller ids in
//! the population), so a search replays exactly after a crash and the same seed gives the same
//! proposals (`tests/evolution.rs`).

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::space::{Genotype, SearchSpace};
use crate::store::{Resources, Status, Trial};

/// Aging evolution's sizes (μNAS: population 100, sample 25).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvolutionConfig {
    /// Finished trials that make up the population; also the number of random initial proposals.
    pub population: usize,
    /// Trials sampled from the population for each tournament.
    pub sample: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig { population: 100, sample: 25 }
    }
}

impl EvolutionConfig {
    pub fn validate(&self) -> crate::Result<()> {
        if self.population == 0 || self.sample == 0 || self.sample > self.population {
            return Err(crate::SearchError::Config(format!(
                "population {} and sample {}: need 1 ≤ sample ≤ population",
                self.population, self.sample
            )));
        }
        Ok(())
    }
}

/// The resource bounds objectives are normalised by (bytes, bytes, MACs); `None`: unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Bounds {
    pub peak: Option<f64>,
    pub model_bytes: Option<f64>,
    pub macs: Option<f64>,
}

/// A random-number stream for trial `id` of the search seeded `seed` (`stream` separates uses).
pub fn trial_rng(seed: u64, id: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(id.wrapping_mul(4).wrapping_add(stream));
    r
}

/// The training seed of trial `id` (weights, shuffling, augmentation).
pub fn trial_seed(seed: u64, id: u64) -> u64 {
    trial_rng(seed, id, 1).random::<u64>() >> 1
}

/// The finished trials a proposal for `id` learns from: done trials with smaller ids, in id order,
/// the most recent `population` of them.
pub fn population(trials: &[Trial], id: u64, population: usize) -> Vec<&Trial> {
    let mut done: Vec<&Trial> = trials.iter().filter(|t| t.status == Status::Done && t.id < id).collect();
    done.sort_by_key(|t| t.id);
    let skip = done.len().saturating_sub(population);
    done.split_off(skip)
}

/// The child genotype for trial `id`: random while fewer than `population` trials have finished,
/// otherwise a mutation of the tournament winner (see the module docs).
pub fn propose(
    space: &SearchSpace,
    evo: &EvolutionConfig,
    bounds: &Bounds,
    seed: u64,
    id: u64,
    trials: &[Trial],
) -> Genotype {
    let mut rng = trial_rng(seed, id, 0);
    let pop = population(trials, id, evo.population);
    if pop.len() < evo.population {
        return space.random(&mut rng);
    }
    let picked = sample(&mut rng, pop.len(), evo.sample.min(pop.len()));
    let w = simplex(&mut rng);
    let norms = Norms::of(&pop, bounds);
    let best = picked
        .iter()
        .map(|i| pop[i])
        .min_by(|a, b| {
            let fa = scalarise(&w, &norms.objectives(a));
            let fb = scalarise(&w, &norms.objectives(b));
            fa.total_cmp(&fb).then(a.id.cmp(&b.id))
        })
        .expect("a non-empty sample");
    space.mutate(&best.genotype, &mut rng)
}

/// Four weights uniform on the simplex (normalised exponentials).
fn simplex<R: Rng>(rng: &mut R) -> [f64; 4] {
    let mut w = [0.0; 4];
    for v in &mut w {
        *v = -(1.0 - rng.random::<f64>()).ln();
    }
    let s: f64 = w.iter().sum();
    w.map(|v| v / s)
}

fn scalarise(w: &[f64; 4], o: &[f64; 4]) -> f64 {
    w.iter().zip(o).map(|(a, b)| a * b).sum()
}

/// The normalisers of one population.
struct Norms {
    error: f64,
    peak: f64,
    bytes: f64,
    macs: f64,
}

impl Norms {
    fn of(pop: &[&Trial], b: &Bounds) -> Norms {
        let res = |f: fn(&Resources) -> f64| {
            pop.iter().filter_map(|t| t.resources.as_ref().map(f)).fold(0.0f64, f64::max).max(1.0)
        };
        let errors: Vec<f64> = pop.iter().map(|t| error(t)).collect();
        let mean = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
        Norms {
            error: mean.max(1e-4),
            peak: b.peak.unwrap_or_else(|| res(|r| r.peak)),
            bytes: b.model_bytes.unwrap_or_else(|| res(|r| r.model_bytes)),
            macs: b.macs.unwrap_or_else(|| res(|r| r.macs)),
        }
    }
    fn objectives(&self, t: &Trial) -> [f64; 4] {
        let r = t.resources.unwrap_or_default();
        [error(t) / self.error, r.peak / self.peak, r.model_bytes / self.bytes, r.macs / self.macs]
    }
}

fn error(t: &Trial) -> f64 {
    1.0 - t.val_accuracy.unwrap_or(0.0)
}

/// Indices (into `trials`) of the done trials on the Pareto front of validation accuracy (higher is
/// better) against activation peak, model bytes and MACs (lower is better), best accuracy first.
/// Of trials with identical figures only the one with the smallest id is kept.
pub fn pareto_front(trials: &[Trial]) -> Vec<usize> {
    let key = |t: &Trial| {
        let r = t.resources.unwrap_or_default();
        [-t.val_accuracy.unwrap_or(0.0), r.peak, r.model_bytes, r.macs]
    };
    let done: Vec<usize> =
        (0..trials.len()).filter(|&i| trials[i].status == Status::Done && trials[i].resources.is_some()).collect();
    let mut front: Vec<usize> = done
        .iter()
        .copied()
        .filter(|&i| {
            let a = key(&trials[i]);
            !done.iter().any(|&j| {
                let b = key(&trials[j]);
                let le = b.iter().zip(&a).all(|(x, y)| x <= y);
                let lt = b.iter().zip(&a).any(|(x, y)| x < y);
                j != i && le && (lt || trials[j].id < trials[i].id)
            })
        })
        .collect();
    front.sort_by(|&a, &b| key(&trials[a])[0].total_cmp(&key(&trials[b])[0]).then(trials[a].id.cmp(&trials[b].id)));
    front
}
