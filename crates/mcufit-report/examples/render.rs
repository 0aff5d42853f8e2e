//! Renders a report: `cargo run --release -p mcufit-report --example render -- [DATA.json] OUT.html`.
//! Without DATA.json it renders the built-in example (`mcufit_report::example()`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (data, out) = match args.as_slice() {
        [out] => (mcufit_report::example(), out.clone()),
        [json, out] => (serde_json::from_str(&std::fs::read_to_string(json)?)?, out.clone()),
        _ => return Err("usage: render [DATA.json] OUT.html".into()),
    };
    std::fs::write(&out, mcufit_report::render_html(&data))?;
    println!("wrote {out}");
    Ok(())
}
