//! Aging evolution (Real et al. 2019) with μNAS's randomly scalarised multi-objective fitness
//! (Liberis et al. 2021), and the Pareto front of finished trials.
//!
//! - The first `population` proposals are drawn at random from the space.
//! - After that, each proposal looks at the **population** (the `population` most recent finished
//!   trials, by trial id), samples `sample` of them without replacement, draws one weight vector `w`
//!   uniformly on the simplex and picks the sampled trial with the lowest scalarised fitness
//!   `Σ_i w_i·o_i` (with [`Fitness::Error`]: the lowest validation error); its genotype is mutated ([`SearchSpace::mutate`]) into the child. Older trials
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

/// Aging evolution's sizes (μNAS: population 100, sample 25) and how a tournament ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvolutionConfig {
    /// Finished trials that make up the population; also the number of random initial proposals.
    pub population: usize,
    /// Trials sampled from the population for each tournament.
    pub sample: usize,
    /// The tournament's ranking (stores written before it existed: [`Fitness::Scalarised`]).
    #[serde(default)]
    pub fitness: Fitness,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig { population: 100, sample: 25, fitness: Fitness::default() }
    }
}

/// How a tournament picks the parent among the sampled trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fitness {
    /// μNAS: validation error and the three resources, scalarised with weights drawn anew for each
    /// tournament; explores the whole front, and keeps rewarding a resource far below its bound.
    #[default]
    Scalarised,
    /// Validation error alone (ties: the smaller id). Every trial already fits the bounds (it is
    /// pruned into them), so this spends the search on the most accurate model within them; the
    /// Pareto front is still reported from all trials.
    Error,
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
    let fitness = |t: &Trial| match evo.fitness {
        Fitness::Scalarised => scalarise(&w, &norms.objectives(t)),
        Fitness::Error => error(t),
    };
    let best = picked
        .iter()
        .map(|i| pop[i])
        .min_by(|a, b| fitness(a).total_cmp(&fitness(b)).then(a.id.cmp(&b.id)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Preset;

    /// A finished trial with validation accuracy `acc` and every resource at `res` of its bound.
    fn done(id: u64, genotype: Genotype, acc: f64, res: f64) -> Trial {
        Trial {
            id,
            genotype,
            hyper: serde_json::Value::Null,
            status: Status::Done,
            worker: None,
            lease_expires: None,
            seed: id,
            attempts: 1,
            proposed_at: 0.0,
            started_at: None,
            finished_at: None,
            price_us: 1.0,
            unpruned: None,
            resources: Some(Resources { peak: 1000.0 * res, model_bytes: 1000.0 * res, macs: 1e6 * res, params: 0.0 }),
            val_accuracy: Some(acc),
            test_accuracy: None,
            timings: None,
            model_dir: None,
            error: None,
        }
    }

    #[test]
    fn error_fitness_always_breeds_from_the_most_accurate_and_scalarised_does_not() {
        let space = SearchSpace::new(Preset::DsCnn);
        let bounds = Bounds { peak: Some(1000.0), model_bytes: Some(1000.0), macs: Some(1e6) };
        let mut rng = trial_rng(3, 0, 0);
        // Trial 1: the most accurate, at its bounds; trials 2–4: 4 points worse, 5 % of the bounds.
        let trials: Vec<Trial> = (1..=4)
            .map(|id| {
                let (acc, res) = if id == 1 { (0.95, 1.0) } else { (0.91, 0.05) };
                done(id, space.random(&mut rng), acc, res)
            })
            .collect();
        let children_of_the_best = |fitness: Fitness| {
            let evo = EvolutionConfig { population: 4, sample: 4, fitness };
            (10..60)
                .filter(|&id| {
                    let child = propose(&space, &evo, &bounds, 7, id, &trials);
                    // The same draws as `propose` up to the mutation, then the mutation of trial 1.
                    let mut r = trial_rng(7, id, 0);
                    let _ = sample(&mut r, 4, 4);
                    let _ = simplex(&mut r);
                    child == space.mutate(&trials[0].genotype, &mut r)
                })
                .count()
        };
        assert_eq!(children_of_the_best(Fitness::Error), 50);
        // μNAS's fitness mostly prefers the small, less accurate trials here.
        assert!(children_of_the_best(Fitness::Scalarised) < 25);
    }
}
