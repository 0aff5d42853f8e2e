use mcufit_ir::{zoo, Graph, IrError, Op, Shape};

#[test]
fn zoo_models_build_and_round_trip_through_the_model_file() {
    for name in zoo::names() {
        let g = zoo::get(name).unwrap();
        let text = g.to_json();
        let back = Graph::from_json(&text).unwrap();
        assert_eq!(g, back, "{name} changed on a JSON round trip");
    }
}

#[test]
fn zoo_output_shapes_match_the_references() {
    let s = |n: &str| {
        let g = zoo::get(n).unwrap();
        let shapes = g.shapes().unwrap();
        (g.input_shape(), shapes[g.output()])
    };
    assert_eq!(s("ds-cnn"), (Shape::new(49, 10, 1), Shape::flat(12)));
    assert_eq!(s("mobilenet-v1-025"), (Shape::new(96, 96, 3), Shape::flat(2)));
    assert_eq!(s("resnet-8"), (Shape::new(32, 32, 3), Shape::flat(10)));
    // DS-CNN's first conv: SAME, stride 2 on 49x10 -> 25x5 (TF's ceil rule).
    let g = zoo::ds_cnn().unwrap();
    assert_eq!(g.shapes().unwrap()[1], Shape::new(25, 5, 64));
}

#[test]
fn same_padding_puts_the_odd_pixel_bottom_right() {
    use mcufit_ir::Padding;
    // 49 rows, kernel 10, stride 2: out 25, total pad (24*2+10-49)=9 -> 4 before, 5 after.
    assert_eq!(Padding::Same.pads(49, 10, 2), (4, 5));
    assert_eq!(Padding::Same.pads(28, 3, 1), (1, 1));
    assert_eq!(Padding::Same.pads(28, 2, 2), (0, 0));
    assert_eq!(Padding::Valid.out_len(5, 3, 2), Some(2));
    assert_eq!(Padding::Valid.out_len(2, 3, 1), None);
}

#[test]
fn residual_add_ties_its_producers_into_one_group() {
    let g = zoo::resnet_8().unwrap();
    let cg = g.channel_groups().unwrap();
    // Stack 1: the stem conv and the second conv of the block feed one add -> same group.
    let stem = g.find("conv2d_1").unwrap();
    let add = g.nodes.iter().position(|n| matches!(n.op, Op::Add)).unwrap();
    let grp = cg.layouts[add].segments[0];
    assert_eq!(cg.layouts[stem].segments[0], grp);
    assert!(cg.groups[grp].producers.len() >= 2);
    assert!(cg.groups[grp].prunable());
    // The classifier outputs and the input are fixed.
    assert!(!cg.groups[cg.layouts[g.output()].segments[0]].prunable());
    assert!(!cg.groups[cg.layouts[0].segments[0]].prunable());
}

#[test]
fn depthwise_inherits_and_concat_lays_groups_side_by_side() {
    let g = zoo::branchy_net().unwrap();
    let cg = g.channel_groups().unwrap();
    let dw = g.nodes.iter().position(|n| matches!(n.op, Op::DepthwiseConv2d(_))).unwrap();
    assert_eq!(cg.layouts[dw], cg.layouts[g.nodes[dw].inputs[0]]);
    let cat = g.nodes.iter().position(|n| matches!(n.op, Op::Concat)).unwrap();
    let l = &cg.layouts[cat];
    assert_eq!(l.segments.len(), 2);
    let sizes: Vec<usize> = l.segments.iter().map(|&s| cg.groups[s].size).collect();
    assert_eq!(sizes, vec![16, 24]);
    // Keeping channels {1} of the first segment and {0, 23} of the second -> offsets 1, 16, 39.
    let mut keep = vec![vec![]; cg.groups.len()];
    keep[l.segments[0]] = vec![1];
    keep[l.segments[1]] = vec![0, 23];
    assert_eq!(cg.kept_indices(cat, &keep), vec![1, 16, 39]);
}

#[test]
fn flatten_repeats_the_channel_pattern_per_pixel() {
    let g = zoo::mnist_cnn().unwrap();
    let cg = g.channel_groups().unwrap();
    let flat = g.nodes.iter().position(|n| matches!(n.op, Op::Flatten)).unwrap();
    assert_eq!(cg.layouts[flat].repeat, 49);
    let grp = cg.layouts[flat].segments[0];
    let mut keep = vec![vec![]; cg.groups.len()];
    keep[grp] = vec![0, 63];
    let idx = cg.kept_indices(flat, &keep);
    assert_eq!(&idx[..4], &[0, 63, 64, 127]);
    assert_eq!(idx.len(), 98);
}

#[test]
fn resizing_a_group_changes_every_tied_producer() {
    let g = zoo::resnet_8().unwrap();
    let cg = g.channel_groups().unwrap();
    let mut sizes = cg.sizes();
    let grp = cg.prunable().find(|gr| gr.producers.len() > 1).unwrap().id;
    sizes[grp] = 5;
    let small = g.with_group_sizes(&cg, &sizes).unwrap();
    for &p in &cg.groups[grp].producers {
        assert_eq!(small.shapes().unwrap()[p].c, 5);
    }
    let fixed = cg.groups.iter().find(|gr| !gr.prunable()).unwrap().id;
    let mut bad = cg.sizes();
    bad[fixed] += 1;
    assert!(g.with_group_sizes(&cg, &bad).is_err());
}

#[test]
fn fused_view_folds_bn_relu_and_flatten() {
    let g = zoo::ds_cnn().unwrap();
    let f = g.fused();
    // input, conv, 4x(dw, pw), avgpool(+flatten), dense, softmax
    assert_eq!(f.ops.len(), 1 + 1 + 8 + 1 + 1 + 1);
    assert_eq!(f.ops[1].activation, mcufit_ir::Activation::Relu);
    assert!(f.ops[1].batch_norm.is_some());
    assert_eq!(f.ops[10].shape, Shape::flat(64));
    // A residual add keeps its fused ReLU.
    let r = zoo::resnet_8().unwrap().fused();
    assert!(r.ops.iter().any(|o| o.activation == mcufit_ir::Activation::Relu && o.inputs.len() == 2));
}

fn expect_err(text: &str, needle: &str) {
    match Graph::from_json(text) {
        Ok(_) => panic!("accepted a bad model: {text}"),
        Err(e) => assert!(e.to_string().contains(needle), "error '{e}' does not mention '{needle}'"),
    }
}

#[test]
fn bad_model_files_give_clear_errors() {
    expect_err("{ not json", "not valid");
    expect_err(r#"{"format":"other","version":1,"name":"x","nodes":[]}"#, "format");
    expect_err(r#"{"format":"mcufit-model","version":9,"name":"x","nodes":[]}"#, "version 9");
    let add_mismatch = r#"{"format":"mcufit-model","version":1,"name":"x","nodes":[
        {"name":"input","op":"input","shape":[8,8,3]},
        {"name":"a","op":"conv2d","inputs":["input"],"filters":4,"kernel":[3,3],"padding":"same"},
        {"name":"b","op":"conv2d","inputs":["input"],"filters":5,"kernel":[3,3],"padding":"same"},
        {"name":"s","op":"add","inputs":["a","b"]}]}"#;
    expect_err(add_mismatch, "add needs inputs of equal shape");
    let undefined = r#"{"format":"mcufit-model","version":1,"name":"x","nodes":[
        {"name":"input","op":"input","shape":[8,8,3]},
        {"name":"d","op":"dense","inputs":["nope"],"units":3}]}"#;
    expect_err(undefined, "'nope' is not defined");
    let not_flat = r#"{"format":"mcufit-model","version":1,"name":"x","nodes":[
        {"name":"input","op":"input","shape":[8,8,3]},
        {"name":"d","op":"dense","inputs":["input"],"units":3}]}"#;
    expect_err(not_flat, "flat");
    let unknown_op = r#"{"format":"mcufit-model","version":1,"name":"x","nodes":[
        {"name":"input","op":"input","shape":[8,8,3]},
        {"name":"d","op":"lstm","inputs":["input"]}]}"#;
    expect_err(unknown_op, "lstm");
    assert!(matches!(zoo::get("nope"), Err(IrError::UnknownZoo { .. })));
}

#[test]
fn a_misspelt_model_field_is_refused_with_its_name() {
    let text = r#"{"format":"mcufit-model","version":1,"name":"x","nodes":[
        {"name":"input","op":"input","shape":[8,8,1]},
        {"name":"c","op":"conv2d","inputs":["input"],"filters":4,"kernel":[3,3],"strides":[2,2]}]}"#;
    let e = mcufit_ir::Graph::from_json(text).unwrap_err().to_string();
    assert!(e.contains("unknown field 'strides'") && e.contains("'c'") && e.contains("stride"), "{e}");
    let top = r#"{"format":"mcufit-model","version":1,"name":"x","nodez":[]}"#;
    assert!(mcufit_ir::Graph::from_json(top).is_err());
    // Every zoo model's file still loads (its fields are all known).
    for name in mcufit_ir::zoo::names() {
        let g = mcufit_ir::zoo::get(name).unwrap();
        assert_eq!(mcufit_ir::Graph::from_json(&g.to_json()).unwrap(), g);
    }
}

/// Found by the model_json fuzzer: an eps literal beyond f32's range read as infinity, was accepted,
/// and the graph then wrote a model file (`"eps": null`) it could not read back.
#[test]
fn a_batch_norm_eps_that_overflows_f32_is_refused() {
    for eps in ["1e98", "-0.001", "0"] {
        let text = format!(
            r#"{{"format":"mcufit-model","version":1,"name":"x","nodes":[
            {{"name":"input","op":"input","shape":[8,8,1]}},
            {{"name":"c","op":"conv2d","inputs":["input"],"filters":4,"kernel":[3,3]}},
            {{"name":"bn","op":"batch_norm","inputs":["c"],"eps":{eps}}}]}}"#
        );
        let e = mcufit_ir::Graph::from_json(&text).unwrap_err().to_string();
        assert!(e.contains("eps must be a positive finite number"), "{eps}: {e}");
    }
}
