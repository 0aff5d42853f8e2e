//! The search space builds valid IR graphs that the cost model can price, for random genotypes,
//! mutation chains and inputs.

use mcufit_cost::{CostModel, CostOptions};
use mcufit_ir::Shape;
use mcufit_search::evolution::trial_rng;
use mcufit_search::{Genotype, Preset, SearchSpace};
use proptest::prelude::*;

fn check(space: &SearchSpace, g: &Genotype, input: Shape, classes: usize) {
    assert!(space.contains(g), "{g:?} is outside the {} space", space.preset);
    let graph = g.to_graph("t", input, classes).unwrap_or_else(|e| panic!("{}: {e}", g.describe()));
    graph.validate().unwrap();
    assert_eq!(graph.num_outputs(), classes);
    assert_eq!(graph.input_shape(), input);
    // The JSON round trip the store relies on.
    let back: Genotype = serde_json::from_str(&serde_json::to_string(g).unwrap()).unwrap();
    assert_eq!(&back, g);
    let model = CostModel::new(&graph, CostOptions::default()).unwrap();
    let usage = model.usage(&model.sizes(), None);
    assert!(usage.macs > 0.0 && usage.model_bytes > 0.0 && usage.peak_memory >= (input.h * input.w * input.c) as f64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_genotypes_and_their_mutations_build_valid_graphs(
        seed in any::<u64>(),
        preset in 0usize..3,
        h in 1usize..40,
        w in 1usize..40,
        rgb in any::<bool>(),
        classes in 2usize..20,
        max_blocks in 1usize..7,
    ) {
        let space = SearchSpace { max_blocks, ..SearchSpace::new(Preset::ALL[preset]) };
        let input = Shape::new(h, w, if rgb { 3 } else { 1 });
        let mut rng = trial_rng(seed, 0, 0);
        let mut g = space.random(&mut rng);
        check(&space, &g, input, classes);
        for _ in 0..8 {
            let child = space.mutate(&g, &mut rng);
            prop_assert_ne!(&child, &g);
            check(&space, &child, input, classes);
            g = child;
        }
    }
}

#[test]
fn presets_draw_their_own_block_kinds() {
    use mcufit_search::BlockKind;
    let mut rng = trial_rng(7, 0, 0);
    for preset in Preset::ALL {
        let space = SearchSpace::new(preset);
        let gs: Vec<Genotype> = (0..200).map(|_| space.random(&mut rng)).collect();
        let kinds: std::collections::HashSet<BlockKind> =
            gs.iter().flat_map(|g| g.blocks.iter().map(|b| b.kind)).collect();
        let residual = gs.iter().any(|g| g.blocks.iter().any(|b| b.residual));
        match preset {
            Preset::Cnn => assert!(kinds == [BlockKind::Conv].into() && !residual),
            Preset::DsCnn => assert!(kinds == [BlockKind::Separable].into() && !residual),
            Preset::Resnet => assert!(kinds.len() == 2 && residual),
        }
        assert_eq!(preset.name().parse::<Preset>().unwrap(), preset);
    }
    assert!("vgg".parse::<Preset>().unwrap_err().to_string().contains("cnn, ds-cnn, resnet"));
}

#[test]
fn a_residual_block_that_keeps_the_shape_adds_its_input() {
    use mcufit_search::{Block, BlockKind, Down, Head};
    let blk = |channels, down, residual| Block { kind: BlockKind::Conv, kernel: 3, channels, down, residual };
    let g = Genotype {
        stem: blk(8, Down::None, false),
        blocks: vec![blk(8, Down::None, true), blk(16, Down::None, true), blk(16, Down::Stride2, true)],
        head: Head::Gap,
        dense: vec![],
    };
    let graph = g.to_graph("r", Shape::new(8, 8, 1), 10).unwrap();
    let adds = graph.nodes.iter().filter(|n| matches!(n.op, mcufit_ir::Op::Add)).count();
    // Only the first block keeps both the channel count and the size.
    assert_eq!(adds, 1, "{}", graph.to_json());
}
