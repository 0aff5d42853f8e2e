//! What the trainer needs from a dataset: a small trait so the engine does not depend on how data
//! is stored or augmented. `mcufit-data` datasets plug in through an adapter; [`InMemory`] is a
//! simple implementation for tests and generated data.

use crate::error::{Result, TrainError};

/// A labelled image dataset readable in batches.
pub trait BatchSource {
    /// Number of examples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image shape `[h, w, c]`.
    fn shape(&self) -> [usize; 3];
    fn num_classes(&self) -> usize;
    /// Fills `images` with the NHWC f32 images of `indices` (cleared first) and `labels` with
    /// their classes.
    fn batch(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()>;
    /// Like [`batch`](Self::batch) with training-time augmentation drawn from `seed` (the trainer
    /// derives it from the run seed, epoch and step, so augmentation is reproducible and
    /// resumable). Defaults to no augmentation.
    fn batch_augmented(
        &self,
        indices: &[usize],
        seed: u64,
        images: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) -> Result<()> {
        let _ = seed;
        self.batch(indices, images, labels)
    }
}

/// An in-memory dataset: NHWC images back to back.
#[derive(Debug, Clone)]
pub struct InMemory {
    pub shape: [usize; 3],
    pub num_classes: usize,
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
}

impl InMemory {
    pub fn new(shape: [usize; 3], num_classes: usize, images: Vec<f32>, labels: Vec<u32>) -> Result<Self> {
        let per: usize = shape.iter().product();
        if per == 0 || images.len() != labels.len() * per {
            return Err(TrainError::Data(format!(
                "{} floats for {} images of {:?}",
                images.len(),
                labels.len(),
                shape
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= num_classes) {
            return Err(TrainError::Data(format!("label {bad} is out of range for {num_classes} classes")));
        }
        Ok(InMemory { shape, num_classes, images, labels })
    }
}

impl BatchSource for InMemory {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn batch(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
        let per: usize = self.shape.iter().product();
        images.clear();
        labels.clear();
        for &i in indices {
            if i >= self.labels.len() {
                return Err(TrainError::Data(format!("index {i} out of range ({} examples)", self.labels.len())));
            }
            images.extend_from_slice(&self.images[i * per..(i + 1) * per]);
            labels.push(self.labels[i]);
        }
        Ok(())
    }
}

/// The data a training run uses. `val` drives best-checkpoint selection; without it the
/// training accuracy is used.
pub struct Splits<'a> {
    pub train: &'a dyn BatchSource,
    pub val: Option<&'a dyn BatchSource>,
}

/// `mcufit-data` datasets train directly. Augmentation draws from a ChaCha8 stream seeded with
/// the trainer's per-batch seed, so a resumed run augments identically.
impl BatchSource for mcufit_data::Dataset {
    fn len(&self) -> usize {
        mcufit_data::Dataset::len(self)
    }
    fn shape(&self) -> [usize; 3] {
        mcufit_data::Dataset::shape(self)
    }
    fn num_classes(&self) -> usize {
        mcufit_data::Dataset::num_classes(self)
    }
    fn batch(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
        mcufit_data::Dataset::batch(self, indices, images, labels).map_err(|e| TrainError::Data(e.to_string()))
    }
    fn batch_augmented(
        &self,
        indices: &[usize],
        seed: u64,
        images: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) -> Result<()> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        mcufit_data::Dataset::batch_augmented(self, indices, &mut rng, images, labels)
            .map_err(|e| TrainError::Data(e.to_string()))
    }
}
