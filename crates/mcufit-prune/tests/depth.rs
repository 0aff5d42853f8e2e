//! Depth pruning: the cut table's exact prices, the feasibility check before training, heads
//! trained on a frozen trunk (trunk unchanged, heads learn), and the choice of cut.

use mcufit_cost::{Budget, CostModel, CostOptions, Resource};
use mcufit_ir::{adapt_to_data, cut_points, head_graph, truncate_with_head, zoo, Graph, HeadSpec};
use mcufit_prune::depth::{assemble, CutFeatures};
use mcufit_prune::{depth_prune, train_heads, CutFit, CutTable, DepthConfig, PruneError};
use mcufit_train::{default_device, evaluate, train, Network, TrainConfig};

fn quick(epochs: usize) -> TrainConfig {
    TrainConfig::new().with_epochs(epochs).with_batch_size(32).with_lr(0.05).with_progress(false).with_seed(3)
}

/// The built-in digits at mnist-ds's 28x28 input.
fn digits28() -> mcufit_data::Splits {
    let opts = mcufit_data::LoadOptions { seed: 0, target_shape: Some([28, 28, 1]), ..Default::default() };
    mcufit_data::load("digits", &opts).unwrap()
}

/// zoo:mnist-ds fitted to the data (a no-op for digits, kept as the pipeline does it).
fn mnist_ds_for(splits: &mcufit_data::Splits) -> Graph {
    let [_, _, c] = splits.train.shape();
    adapt_to_data(&zoo::mnist_ds().unwrap(), splits.train.num_classes(), c).unwrap().0
}

#[test]
fn the_table_prices_every_zoo_cut_exactly() {
    let budget = Budget { peak_memory: Some(20_000.0), ..Default::default() };
    for name in zoo::names() {
        let g = zoo::get(name).unwrap();
        for head in [HeadSpec::default(), HeadSpec::Gap, HeadSpec::Conv(16)] {
            let t = CutTable::new(&g, &head, 7, &budget, None, CostOptions::default()).unwrap();
            assert_eq!(t.rows.len(), cut_points(&g).unwrap().len(), "{name}");
            for (i, row) in t.rows.iter().enumerate() {
                assert_eq!(row.cut.block, i);
                let tg = truncate_with_head(&g, &row.cut, &head, 7).unwrap();
                assert_eq!(row.graph, tg.name);
                let m = CostModel::new(&tg, CostOptions::default()).unwrap();
                let u = m.usage(&m.sizes(), None);
                assert_eq!(
                    (row.cost.params, row.cost.model_bytes, row.cost.macs, row.cost.peak_memory),
                    (u.params, u.model_bytes, u.macs, u.peak_memory),
                    "{}",
                    tg.name
                );
                assert!(u.macs > 0.0 && u.params > 0.0);
                for r in [Resource::PeakMemory, Resource::ModelBytes, Resource::Macs] {
                    assert!(row.minimum.get(r).unwrap() <= row.cost.get(r).unwrap(), "{} {r:?}", tg.name);
                }
                let expect = if u.peak_memory <= 20_000.0 {
                    CutFit::Fits
                } else if row.minimum.peak_memory <= 20_000.0 {
                    CutFit::WithWidth
                } else {
                    CutFit::No
                };
                assert_eq!(row.fit, expect, "{}", tg.name);
            }
        }
    }
    // A gap head adds no MACs beyond its dense layer, so cutting earlier never costs more MACs.
    let t =
        CutTable::new(&zoo::ds_cnn().unwrap(), &HeadSpec::Gap, 12, &Budget::default(), None, CostOptions::default())
            .unwrap();
    assert!(t.rows.windows(2).all(|w| w[0].cost.macs < w[1].cost.macs));
    assert!(t.rows.last().unwrap().cost.macs <= t.base.macs);
    assert!(t.rows.iter().all(|r| r.fit == CutFit::Fits), "no limit: everything fits");
}

#[test]
fn an_impossible_budget_fails_before_training_with_the_smallest_figure() {
    let splits = digits28();
    let g = mnist_ds_for(&splits);
    let head = HeadSpec::default();
    let open = CutTable::new(&g, &head, 10, &Budget::default(), None, CostOptions::default()).unwrap();
    let least_full = open.rows.iter().map(|r| r.cost.peak_memory).fold(f64::INFINITY, f64::min);
    let least_width = open.rows.iter().map(|r| r.minimum.peak_memory).fold(f64::INFINITY, f64::min);
    assert!(least_width < least_full);
    // Below what any cut reaches even at one channel per group: infeasible, before training.
    let base = Network::new(&g, &default_device(), 1).unwrap();
    let budget = Budget { peak_memory: Some(least_width - 1.0), ..Default::default() };
    let mut cfg = DepthConfig::new(budget, quick(50));
    cfg.width = true;
    let t = std::time::Instant::now();
    let err = depth_prune(&base, &splits, &cfg).unwrap_err();
    assert!(t.elapsed().as_secs_f64() < 5.0, "took {:?}: it trained first", t.elapsed());
    match &err {
        PruneError::Infeasible(s) => {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].resource, Resource::PeakMemory);
            assert_eq!((s[0].best, s[0].minimum), (least_full, least_width));
        }
        other => panic!("expected Infeasible, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("peak memory") && msg.contains(&format!("{least_width:.0}")), "{msg}");
    // Between the two: reachable only with width pruning.
    let budget = Budget { peak_memory: Some(least_full - 1.0), ..Default::default() };
    let t = CutTable::new(&g, &head, 10, &budget, None, CostOptions::default()).unwrap();
    assert!(!t.check_feasible(true).unwrap().is_empty());
    match t.check_feasible(false).unwrap_err() {
        PruneError::Infeasible(s) => assert_eq!(s[0].minimum, least_full),
        other => panic!("expected Infeasible, got {other}"),
    }
    assert!(t.rows.iter().all(|r| r.fit != CutFit::Fits));
    // Limits that each cut meets only one of: no single cut fits, and the error says so.
    let mut t = open.clone();
    t.budget = Budget { model_bytes: Some(1000.0), macs: Some(1000.0), ..Default::default() };
    for (i, row) in t.rows.iter_mut().enumerate() {
        row.fit = CutFit::No;
        row.cost.model_bytes = if i == 0 { 900.0 } else { 5000.0 };
        row.cost.macs = if i == 1 { 900.0 } else { 5000.0 };
        row.minimum = row.cost;
    }
    let e = t.check_feasible(false).unwrap_err();
    assert!(matches!(e, PruneError::Config(_)), "{e}");
    let e = e.to_string();
    assert!(e.contains("meets every limit at once") && e.contains(&format!("'{}'", t.rows[1].cut.name)), "{e}");
    // A latency limit without a board, and a non-positive limit, are config errors.
    let bad = Budget { latency_ms: Some(5.0), ..Default::default() };
    assert!(CutTable::new(&g, &head, 10, &bad, None, CostOptions::default()).is_err());
    let bad = Budget { macs: Some(0.0), ..Default::default() };
    assert!(CutTable::new(&g, &head, 10, &bad, None, CostOptions::default()).is_err());
}

#[test]
fn a_bad_head_spec_names_itself_and_the_accepted_forms() {
    let e = "ds:32;16".parse::<HeadSpec>().unwrap_err().to_string();
    assert!(e.contains("head 'ds:32;16'") && e.contains("accepted forms") && e.contains("conv:C"), "{e}");
}

/// Weights of the trunk nodes (`0..=cut`) of a network, by name.
fn trunk_weights(net: &Network, cut: usize) -> Vec<(String, mcufit_ir::NodeWeights)> {
    let w = net.to_weights().unwrap();
    net.graph().nodes[..=cut].iter().filter_map(|n| Some((n.name.clone(), w.nodes.get(&n.name)?.clone()))).collect()
}

#[test]
fn heads_train_on_a_frozen_trunk_and_the_best_fitting_cut_is_chosen() {
    let splits = digits28();
    let g = mnist_ds_for(&splits);
    let data = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    let base = train(&g, &data, &quick(3)).unwrap().network;
    let base_acc = evaluate(&base, &splits.val, 256).unwrap().accuracy;
    assert!(base_acc > 0.5, "base val accuracy {base_acc}");
    let cuts = cut_points(&g).unwrap();
    assert_eq!(cuts.len(), 3);
    let head = HeadSpec::default();
    let cfg = quick(5);

    // Loss of each head before training (the trainer initialises it from the same seed).
    let device = default_device();
    let before: Vec<f64> = cuts
        .iter()
        .map(|c| {
            let h = Network::new(&head_graph(&g, c, &head, 10).unwrap(), &device, cfg.seed).unwrap();
            evaluate(&h, &CutFeatures::new(&base, c, &splits.val).unwrap(), 256).unwrap().loss
        })
        .collect();
    let heads = train_heads(&base, &cuts, &head, &data, &cfg).unwrap();
    assert_eq!(heads.len(), 3);
    for ((h, cut), loss0) in heads.iter().zip(&cuts).zip(&before) {
        let name = &h.network.graph().name;
        assert_eq!(h.network.graph(), &truncate_with_head(&g, cut, &head, 10).unwrap());
        // The trunk is the base's, bit for bit (kernels, biases, BN parameters and statistics).
        let tw = trunk_weights(&h.network, cut.node);
        assert_eq!(tw, trunk_weights(&base, cut.node), "{name}");
        assert!(!tw.is_empty());
        // The head learned: lower loss than at its initialisation, over the training too.
        let after = evaluate(&h.network, &splits.val, 256).unwrap();
        assert!(after.loss < *loss0, "{name}: val loss {loss0} -> {}", after.loss);
        assert!(h.history.first().unwrap().train_loss > h.history.last().unwrap().train_loss, "{name}");
        eprintln!("{name}: val loss {loss0:.3} -> {:.3}, accuracy {:.3}", after.loss, after.accuracy);
        assert!(after.accuracy > 0.5, "{name}: val accuracy {}", after.accuracy);
        // What was trained (head on the trunk's features) is what the assembled network computes.
        let hg = head_graph(&g, cut, &head, 10).unwrap();
        let hw = h.network.to_weights().unwrap();
        let mut only = mcufit_ir::Weights::default();
        for n in &hg.nodes {
            if let Some(w) = hw.nodes.get(&n.name) {
                only.nodes.insert(n.name.clone(), w.clone());
            }
        }
        let head_net = Network::from_weights(&hg, &only, &device).unwrap();
        let on_features = evaluate(&head_net, &CutFeatures::new(&base, cut, &splits.val).unwrap(), 256).unwrap();
        assert_eq!(on_features.accuracy, after.accuracy, "{name}");
        assert!((on_features.loss - after.loss).abs() < 1e-4, "{name}: {} vs {}", on_features.loss, after.loss);
        assert_eq!(h.val_accuracy, Some(after.accuracy), "{name}: the head's best epoch is what is returned");
        // Re-assembling from the head network gives the same network.
        let again = assemble(&base, cut, &head, &head_net).unwrap();
        assert_eq!(again.to_weights().unwrap(), h.network.to_weights().unwrap());
    }

    // The whole run: a MACs budget the deepest cut does not meet.
    let open = CutTable::new(&g, &head, 10, &Budget::default(), None, CostOptions::default()).unwrap();
    let macs: Vec<f64> = open.rows.iter().map(|r| r.cost.macs).collect();
    assert!(macs[1] < macs[2]);
    let budget = Budget { macs: Some(macs[1]), ..Default::default() };
    let expect: Vec<bool> = macs.iter().map(|&m| m <= macs[1]).collect();
    let mut dc = DepthConfig::new(budget, cfg.clone());
    dc.finetune_epochs = 1;
    let r = depth_prune(&base, &splits, &dc).unwrap();
    let fits: Vec<bool> = r.table.rows.iter().map(|row| row.fit == CutFit::Fits).collect();
    assert_eq!(fits, expect);
    assert!(r.table.rows.iter().all(|row| row.val_accuracy.is_some() && row.test_accuracy.is_some()));
    let chosen = &r.table.rows[r.chosen];
    assert!(chosen.chosen && chosen.fit == CutFit::Fits);
    assert_eq!(r.table.rows.iter().filter(|row| row.chosen).count(), 1);
    let best_fitting = r
        .table
        .rows
        .iter()
        .filter(|row| row.fit == CutFit::Fits)
        .map(|row| row.val_accuracy.unwrap())
        .fold(0.0, f64::max);
    assert_eq!(chosen.val_accuracy, Some(best_fitting));
    let summary = r.table.summary();
    assert!(summary.contains("◀ chosen") && summary.contains(&chosen.cut.name), "{summary}");
    // The fine-tune unfroze the trunk: it moved, and the network is still the chosen graph.
    let net = r.network.as_ref().unwrap();
    assert_eq!(net.graph().name, chosen.graph);
    assert_ne!(trunk_weights(net, chosen.cut.node), trunk_weights(&base, chosen.cut.node));
    assert!(r.finetuned && r.finetune_history.len() == 1 && r.accuracy.test > 0.5, "{:?}", r.accuracy);
    let m = CostModel::new(net.graph(), CostOptions::default()).unwrap();
    assert!(m.usage(&m.sizes(), None).macs <= budget.macs.unwrap());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["table"]["rows"].as_array().unwrap().len(), 3);
}

#[test]
fn one_shared_trunk_pass_trains_the_same_heads_as_separate_runs_and_resumes() {
    let splits = digits28();
    let g = mnist_ds_for(&splits);
    let data = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    let base = train(&g, &data, &quick(1)).unwrap().network;
    let cuts = cut_points(&g).unwrap();
    let head = HeadSpec::Conv(12);
    let cfg = quick(2).with_max_steps_per_epoch(Some(12));
    let shared = train_heads(&base, &cuts, &head, &data, &cfg).unwrap();
    let separate = mcufit_prune::train_heads_separately(&base, &cuts, &head, &data, &cfg).unwrap();
    for (a, b) in shared.iter().zip(&separate) {
        let name = &a.network.graph().name;
        assert!(a.network.to_weights().unwrap() == b.network.to_weights().unwrap(), "{name}: the heads differ");
        let losses = |h: &mcufit_prune::TrainedHead| {
            h.history.iter().map(|e| (e.train_loss, e.val_loss, e.val_accuracy)).collect::<Vec<_>>()
        };
        assert_eq!(losses(a), losses(b), "{name}");
        assert_eq!((a.best_epoch, a.val_accuracy), (b.best_epoch, b.val_accuracy), "{name}");
    }
    // Interrupted after one epoch, resumed for the second: the same heads as one straight run
    // (a constant LR, so that the 1-epoch run's schedule is the 2-epoch run's first epoch).
    let cfg = cfg.with_schedule(mcufit_train::LrSchedule::Constant).with_lr(0.02);
    let straight = train_heads(&base, &cuts, &head, &data, &cfg).unwrap();
    let dir = std::env::temp_dir().join(format!("mcufit-depth-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Some(dir.display().to_string());
    train_heads(&base, &cuts, &head, &data, &cfg.clone().with_epochs(1).with_out_dir(out.clone())).unwrap();
    assert!(dir.join("heads").join(format!("00-{}", cuts[0].name)).join("last/state.json").is_file());
    let resumed = train_heads(&base, &cuts, &head, &data, &cfg.clone().with_out_dir(out).with_resume(true)).unwrap();
    for (a, b) in straight.iter().zip(&resumed) {
        let name = &a.network.graph().name;
        assert!(a.network.to_weights().unwrap() == b.network.to_weights().unwrap(), "{name}: the heads differ");
        let figures = |h: &mcufit_prune::TrainedHead| {
            h.history.iter().map(|e| (e.epoch, e.train_loss, e.val_loss, e.lr_end)).collect::<Vec<_>>()
        };
        assert_eq!(figures(a), figures(b), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
