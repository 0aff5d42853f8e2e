//! The search's rejection before training agrees with the cost model: a candidate is rejected
//! exactly when the candidate physically rebuilt with every prunable layer at one channel is over
//! a limit (with pruning), or when the candidate itself is (without).

use mcufit_ir::Shape;
use mcufit_pipeline::search::{price, Preset, SearchSpace};
use mcufit_pipeline::{BudgetSpec, Footprint};
use mcufit_search::evolution::trial_rng;

fn budget(peak: &str, size: &str, macs: &str) -> mcufit_pipeline::Budget {
    BudgetSpec { peak: Some(peak.into()), size: Some(size.into()), macs: Some(macs.into()), ..Default::default() }
        .resolve()
        .unwrap()
}

#[test]
fn rejection_agrees_with_the_cost_model_on_random_candidates() {
    // μNAS's MNIST bounds made 1.5x tighter, and a tighter one so both outcomes are common.
    let budgets = [budget("1700", "3000", "20M"), budget("900", "1200", "2M")];
    let (mut rejected, mut accepted) = (0, 0);
    for preset in Preset::ALL {
        let space = SearchSpace::new(preset);
        let mut rng = trial_rng(11, preset as u64, 0);
        for i in 0..60 {
            let g = space.random(&mut rng);
            let graph = g.to_graph("c", Shape::new(28, 28, 1), 10).unwrap();
            let b = &budgets[i % 2];
            let groups = graph.channel_groups().unwrap();
            let least: Vec<usize> = groups.groups.iter().map(|g| if g.prunable() { 1 } else { g.size }).collect();
            let smallest = graph.with_group_sizes(&groups, &least).unwrap();
            let fits_pruned = b.check(&Footprint::of_graph(&smallest, b).unwrap()).fits;
            let full = Footprint::of_graph(&graph, b).unwrap();
            match price(&graph, b, true).unwrap() {
                Ok(res) => {
                    accepted += 1;
                    assert!(fits_pruned, "{} accepted but its 1-channel form does not fit", g.describe());
                    assert_eq!(
                        (res.peak, res.model_bytes, res.macs),
                        (full.arena as f64, full.weights as f64, full.macs as f64)
                    );
                }
                Err(why) => {
                    rejected += 1;
                    assert!(!fits_pruned, "{} rejected ({why}) but its 1-channel form fits", g.describe());
                    assert!(why.contains("smallest this architecture can reach"), "{why}");
                }
            }
            // Without pruning a candidate must fit as it is.
            assert_eq!(price(&graph, b, false).unwrap().is_ok(), b.check(&full).fits, "{}", g.describe());
        }
    }
    assert!(rejected > 10 && accepted > 10, "both outcomes exercised: {rejected} rejected, {accepted} accepted");
}
