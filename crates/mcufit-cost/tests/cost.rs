use mcufit_cost::{Boards, CostModel, CostOptions, MemoryOptions, Resource, SearchLimits};
use mcufit_ir::{zoo, Graph, GraphBuilder, Op, Padding, Shape};
use proptest::prelude::*;
use support::wide;

mod support;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn usage(name: &str) -> mcufit_cost::Usage {
    let g = zoo::get(name).unwrap();
    let m = CostModel::new(&g, CostOptions::default()).unwrap();
    m.usage(&m.sizes(), None)
}

fn within(actual: f64, reference: f64, tol: f64) -> bool {
    ((actual - reference) / reference).abs() <= tol
}

/// Reference figures: MLPerf Tiny v0.5+ model cards (benchmark/README of mlcommons/tiny):
/// DS-CNN 2.66 M MACs / 22.6 K params (BN folded), MobileNetV1-0.25 7.49 M / 210.9 K,
/// ResNet-8 12.5 M / 77.7 K.
#[test]
fn zoo_matches_mlperf_tiny_published_figures() {
    for (name, macs, params) in
        [("ds-cnn", 2.66e6, 22.6e3), ("mobilenet-v1-025", 7.49e6, 210.9e3), ("resnet-8", 12.5e6, 77.7e3)]
    {
        let u = usage(name);
        assert!(within(u.macs, macs, 0.01), "{name}: {} MACs vs {macs}", u.macs);
        assert!(within(u.params, params, 0.01), "{name}: {} params vs {params}", u.params);
    }
    // Exact counts derived by hand from the layer list (see docs/cost-model.md).
    assert_eq!(usage("ds-cnn").macs, 2_656_768.0);
    assert_eq!(usage("ds-cnn").params, 22_604.0);
    assert_eq!(usage("mobilenet-v1-025").macs, 7_489_664.0);
    assert_eq!(usage("mobilenet-v1-025").params, 210_850.0);
    assert_eq!(usage("resnet-8").macs, 12_501_632.0);
    assert_eq!(usage("resnet-8").params, 77_706.0);
}

#[test]
fn model_bytes_count_int8_weights_and_int32_biases() {
    let u = usage("ds-cnn");
    // 22,604 params of which 64*6 + 12 = 396... biases: conv 64, 4 dw 64, 4 pw 64, dense 12 = 588.
    let biases = 64.0 * 9.0 + 12.0;
    assert_eq!(u.model_bytes, (u.params - biases) + 4.0 * biases);
}

#[test]
fn chain_peak_is_the_largest_adjacent_pair() {
    // DS-CNN is a chain: the peak is the largest input+output pair: the 49x10 input with the first
    // conv's 25x5x64 output = 490 + 8000, or any 8000 + 8000 pair inside the blocks.
    let u = usage("ds-cnn");
    assert_eq!(u.peak_memory, 16_000.0);
    let g = zoo::ds_cnn().unwrap();
    let mut m = CostModel::new(&g, CostOptions::default()).unwrap();
    m.options.memory.count_input = false;
    assert_eq!(m.usage(&m.sizes(), None).peak_memory, 16_000.0);
}

#[test]
fn in_place_add_saves_the_output_buffer() {
    let g = zoo::resnet_8().unwrap();
    let mut m = CostModel::new(&g, CostOptions::default()).unwrap();
    let first_add = m.fused.ops.iter().position(|o| o.inputs.len() == 2).unwrap();
    let add_step = |m: &CostModel| {
        let plan = m.memory_plan(&m.sizes());
        let k = plan.order.iter().position(|&o| o == first_add).unwrap();
        (plan.peak, plan.steps[k], plan.in_place_of[k])
    };
    let (peak, plain, none) = add_step(&m);
    assert_eq!(none, None);
    m.options.memory.in_place_add = true;
    let (peak_inplace, inplace, reused) = add_step(&m);
    // The plan names the input whose buffer the add takes over (exporters place it there).
    let reused = reused.expect("the add works in place");
    assert!(m.fused.ops[first_add].inputs.contains(&reused));
    // Stack 1's add reads two 32x32x16 tensors (16 KiB each) and writes a third, unless it may
    // overwrite one of them.
    assert_eq!(plain, 3.0 * 16_384.0);
    assert_eq!(inplace, 2.0 * 16_384.0);
    // The peak is elsewhere: the block's 2nd conv holds the shortcut, its input and its output.
    assert_eq!(peak, 3.0 * 16_384.0);
    assert_eq!(peak_inplace, peak);
}

#[test]
fn gradients_match_hand_derived_derivatives() {
    let g = zoo::mnist_cnn().unwrap();
    let m = CostModel::new(&g, CostOptions::default()).unwrap();
    let sizes = m.sizes();
    let plan = m.memory_plan(&sizes);
    let conv1 = m.groups.layouts[g.find("conv2d_1").unwrap()].segments[0];
    let grad = m.gradient(Resource::Macs, &sizes, &plan.order, None);
    // conv1 (28x28, 3x3x1 per filter) + conv2 reads it (14x14x64 outputs, 3x3 window).
    assert_eq!(grad[conv1], (28 * 28 * 9 + 14 * 14 * 9 * 64) as f64);
    let gb = m.gradient(Resource::ModelBytes, &sizes, &plan.order, None);
    // weights 9 + bias 4 per conv1 filter, and 9*64 weights of conv2 per input channel.
    assert_eq!(gb[conv1], (9 + 4 + 9 * 64) as f64);
    // Peak: input (784) + conv1 output (28*28*c) at the first step -> 784 per channel if that is the peak.
    let gp = m.gradient(Resource::PeakMemory, &sizes, &plan.order, None);
    let peak_live = &plan.live[plan.peak_step];
    let expected: f64 = peak_live
        .iter()
        .filter(|&&t| m.groups.layouts[m.fused.ops[t].output].segments.contains(&conv1))
        .map(|&t| m.fused.ops[t].shape.spatial() as f64)
        .sum();
    assert_eq!(gp[conv1], expected);
    assert!(expected > 0.0);
    // Fixed groups (input, classifier) get no gradient.
    let out = m.groups.layouts[g.output()].segments[0];
    assert_eq!(grad[out], 0.0);
}

#[test]
fn latency_uses_the_board_cycle_model() {
    let boards = Boards::builtin();
    assert!(boards.iter().count() >= 8);
    let b = boards.get("arduino-nano-33-ble").unwrap();
    let g = zoo::ds_cnn().unwrap();
    let m = CostModel::new(&g, CostOptions::default()).unwrap();
    let u = m.usage(&m.sizes(), Some(b));
    let cycles = u.latency_cycles.unwrap();
    assert!(cycles > u.macs, "at least a cycle per MAC on a Cortex-M4");
    assert!((u.latency_ms.unwrap() - cycles / 64e6 * 1e3).abs() < 1e-9);
    assert!(boards.get("no-such-board").unwrap_err().to_string().contains("arduino-nano-33-ble"));
}

#[test]
fn user_board_file_adds_boards_and_rejects_bad_ones() {
    let dir = std::env::temp_dir().join(format!("mcufit-boards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[boards.my-chip]\ntitle='x'\nmcu='y'\ncore='cortex-m4'\nclock_mhz=10\nsram_bytes=2048\nflash_bytes=8192\nsource='me'\n").unwrap();
    let b = Boards::with_file(&good).unwrap();
    assert_eq!(b.get("my-chip").unwrap().sram_bytes, 2048);
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[boards.x]\ntitle='x'\nmcu='y'\ncore='z80'\nclock_mhz=1\nsram_bytes=1\nflash_bytes=1\nsource='s'\n",
    )
    .unwrap();
    assert!(Boards::with_file(&bad).unwrap_err().to_string().contains("z80"));
}

/// A random DAG with at most `max_ops` kernels on a 6x6 map: convs, depthwise convs, residual
/// adds and concats, branching anywhere; outputs nobody reads are concatenated at the end.
fn random_graph(seed: u64, max_ops: usize) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let c0 = rng.random_range(1..4);
    let mut b = GraphBuilder::new("random", Shape::new(6, 6, c0));
    let mut nodes: Vec<(usize, usize)> = vec![(0, c0)]; // (node id, channels)
    let mut read: Vec<usize> = Vec::new();
    let kernels = rng.random_range(2..=max_ops - 1);
    for _ in 0..kernels {
        let (x, c) = nodes[rng.random_range(0..nodes.len())];
        let (id, ch, inputs) = match rng.random_range(0..10) {
            0..=3 => {
                let f = rng.random_range(1..6);
                let k = if rng.random_bool(0.5) { 1 } else { 3 };
                let y = b.conv(x, f, k, 1, Padding::Same);
                (if rng.random_bool(0.5) { b.relu(y) } else { y }, f, vec![x])
            }
            4..=5 => (b.dw(x, 3, 1, Padding::Same), c, vec![x]),
            6..=7 => {
                let same: Vec<_> = nodes.iter().filter(|n| n.1 == c && n.0 != x).copied().collect();
                if same.is_empty() {
                    continue;
                }
                let (y, _) = same[rng.random_range(0..same.len())];
                (b.add(Op::Add, &[x, y]), c, vec![x, y])
            }
            _ => {
                let (y, c2) = nodes[rng.random_range(0..nodes.len())];
                if y == x {
                    continue;
                }
                (b.add(Op::Concat, &[x, y]), c + c2, vec![x, y])
            }
        };
        read.extend(inputs);
        nodes.push((id, ch));
    }
    let dangling: Vec<usize> = nodes.iter().map(|n| n.0).filter(|n| !read.contains(n)).collect();
    if dangling.len() > 1 {
        b.add(Op::Concat, &dangling);
    }
    b.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn optimal_peak_equals_brute_force_over_all_orders(seed in any::<u64>(), in_place in any::<bool>(), count_input in any::<bool>()) {
        let g = random_graph(seed, 9);
        let mut m = CostModel::new(&g, CostOptions::default()).unwrap();
        m.options.memory = MemoryOptions { count_input, in_place_add: in_place };
        let sizes = m.sizes();
        let plan = m.memory_plan(&sizes);
        prop_assert!(m.fused.ops.len() <= 10, "{} ops", m.fused.ops.len());
        let orders = all_orders(&m);
        let brute = orders.iter().map(|o| m.memory_for_order(&sizes, o).unwrap().peak).fold(f64::INFINITY, f64::min);
        prop_assert_eq!(plan.peak, brute);
        prop_assert_eq!(m.memory_for_order(&sizes, &plan.order).unwrap().peak, plan.peak);
    }
}

/// Every topological order of the fused graph (the scheduling problem with placeholder sizes).
fn all_orders(m: &CostModel) -> Vec<Vec<usize>> {
    let p = mcufit_cost::memory::MemoryProblem {
        inputs: m.fused.ops.iter().map(|f| f.inputs.clone()).collect(),
        consumers: m.fused.consumers(),
        bytes: vec![0.0; m.fused.ops.len()],
        in_place: vec![false; m.fused.ops.len()],
        options: m.options.memory,
    };
    p.all_orders()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Past its state limit the search still returns a valid order whose peak is at least the
    /// proven lower bound and at least the exact optimum (and equal to it when it says exact).
    #[test]
    fn bounded_search_gives_a_valid_order_between_the_bounds(
        seed in any::<u64>(),
        in_place in any::<bool>(),
        count_input in any::<bool>(),
        max_states in 1usize..6,
        beam_width in 1usize..4,
    ) {
        let g = random_graph(seed, 9);
        let mut m = CostModel::new(&g, CostOptions::default()).unwrap();
        m.options.memory = MemoryOptions { count_input, in_place_add: in_place };
        let sizes = m.sizes();
        let exact = m.memory_plan(&sizes);
        prop_assert!(exact.exact);
        prop_assert_eq!(exact.lower_bound, exact.peak);
        let bounded = m.memory_plan_within(&sizes, SearchLimits { max_states, beam_width });
        let replay = m.memory_for_order(&sizes, &bounded.order).unwrap();
        prop_assert_eq!(replay.peak, bounded.peak);
        prop_assert!(bounded.peak >= exact.peak);
        prop_assert!(bounded.lower_bound <= exact.peak, "lower bound {} above the optimum {}", bounded.lower_bound, exact.peak);
        prop_assert!(bounded.peak >= bounded.lower_bound);
        if bounded.exact {
            prop_assert_eq!(bounded.peak, exact.peak);
        }
        // The structural lower bound holds for the exact optimum too.
        let lb = m.memory_problem(&sizes).lower_bound();
        prop_assert!(lb <= exact.peak, "lower bound {lb} above the optimum {}", exact.peak);
    }
}

/// 40 parallel branches: 2^40 downsets. The search stops at its state limit and answers in well
/// under a second with a valid order and a proven bound (run with --nocapture for the figures).
#[test]
fn forty_parallel_branches_are_bounded() {
    let g = wide(40);
    let m = CostModel::new(&g, CostOptions::default()).unwrap();
    let sizes = m.sizes();
    let t = std::time::Instant::now();
    let plan = m.memory_plan(&sizes);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "wide-40: {} ops, {} states, peak {} B, lower bound {} B, gap {} B, exact: {}, {:.3} s",
        m.fused.ops.len(),
        plan.states,
        plan.peak,
        plan.lower_bound,
        plan.gap(),
        plan.exact,
        secs
    );
    assert!(plan.states >= SearchLimits::default().max_states, "the exact search gave up");
    assert_eq!(m.memory_for_order(&sizes, &plan.order).unwrap().peak, plan.peak);
    assert!(plan.peak >= plan.lower_bound);
    // The concat holds all 40 branch outputs and writes as many bytes again: no order does better.
    let branch_bytes: f64 = (0..40).map(|i| 16.0 * 16.0 * (4 + (i * 7) % 29) as f64).sum();
    assert!(plan.lower_bound >= 2.0 * branch_bytes);
    assert!(secs < 10.0, "{secs} s");
    // The same with a limit that leaves the bound loose, to see the gap reported.
    let tight = m.memory_plan_within(&sizes, SearchLimits { max_states: 10, beam_width: 1 });
    assert!(
        tight.peak >= plan.lower_bound && tight.gap() == if tight.exact { 0.0 } else { tight.peak - tight.lower_bound }
    );
}

/// Where the exact search finishes (every zoo model), it still does, and says so.
#[test]
fn zoo_plans_are_exact() {
    for name in zoo::names() {
        let g = zoo::get(name).unwrap();
        let m = CostModel::new(&g, CostOptions::default()).unwrap();
        let plan = m.memory_plan(&m.sizes());
        assert!(plan.exact && plan.gap() == 0.0 && plan.states < SearchLimits::default().max_states, "{name}");
    }
}

/// The Cortex-M4 kernel model (boards.toml `[cores.cortex-m4.kernels]`) is a polynomial of degree
/// ≤ 2 in the channel counts, so the gradient's central difference is exact: a wider step agrees.
#[test]
fn kernel_latency_model_has_an_exact_gradient() {
    let b = Boards::builtin().get("mps2-an386").unwrap().clone();
    assert!(b.cycles.kernels.is_some(), "the Cortex-M4 has a fitted kernel model");
    for g in [zoo::ds_cnn().unwrap(), zoo::resnet_8().unwrap()] {
        let m = CostModel::new(&g, CostOptions::default()).unwrap();
        let sizes: Vec<f64> = m.sizes().iter().map(|s| s * 0.7).collect();
        let order = m.memory_plan(&sizes).order;
        let grad = m.gradient(Resource::Latency, &sizes, &order, Some(&b));
        for grp in m.groups.groups.iter().filter(|g| g.prunable()) {
            let at = |d: f64| {
                let mut s = sizes.clone();
                s[grp.id] += d;
                m.resource_at_order(Resource::Latency, &s, &order, Some(&b))
            };
            let wide = (at(2.0) - at(-2.0)) / 4.0;
            assert!(
                (grad[grp.id] - wide).abs() <= 1e-6 * wide.abs().max(1.0),
                "{}: {} vs {wide}",
                g.name,
                grad[grp.id]
            );
            assert!(grad[grp.id] > 0.0, "more channels cost more time");
        }
    }
}
