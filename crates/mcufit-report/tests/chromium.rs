//! The example report in a real browser: headless Chromium renders it without a console message or a
//! network request, its DOM has every section, and its screenshot (`target/report-screenshot.png`) is a
//! real picture of bars and charts.
//!
//! How problems are detected (checked against a deliberately bad page by `detector_catches_a_bad_page`):
//! - console: with `--enable-logging=stderr --v=0` Chromium writes every console message of a page,
//!   whatever its level, to stderr as `[pid:tid:MMDD/HHMMSS.us:INFO:CONSOLE:LINE] "text", source: URL (LINE)`;
//!   uncaught exceptions come as `"Uncaught ReferenceError: ..."` the same way. The report has no scripts,
//!   so any `:CONSOLE` line, and any `Uncaught`, is a failure.
//! - network: `--log-net-log` records every URL request; those a `file://` page starts carry
//!   `"network_isolation_key":"file://..."`. Any is a failure. `--host-resolver-rules=MAP * ~NOTFOUND`
//!   keeps every request (the browser's own background ones too) from leaving the machine.
//!
//! Without Chromium the tests print a loud SKIPPING line and pass, except under CI (env `CI` set), where
//! they fail: scripts/setup-test-env.sh, which scripts/test.sh runs, installs Debian's `chromium`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
const WIDTH: u32 = 1280;
const SECTION_IDS: [&str; 9] =
    ["summary", "resources", "layers", "memory", "curves", "confusion", "m4-profile", "steps", "notes"];

/// The Chromium binary: `$MCUFIT_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MCUFIT_CHROMIUM").map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Chromium, or None after a loud SKIPPING line; under CI a missing Chromium is a failure.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test}: chromium is not installed; scripts/setup-test-env.sh (run by scripts/test.sh) installs it \
                 (apt-get install chromium)"
            );
        }
        // written to the stderr handle itself, not through eprintln!, so the test harness does not swallow it
        let bar = "=".repeat(78);
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\nSKIPPING {test}: chromium not found. Install chromium (apt-get install chromium, or\n\
             bash scripts/setup-test-env.sh) to run the browser checks of the HTML report.\n{bar}\n"
        );
    }
    found
}

/// The workspace's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root), else `target/`.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => workspace.join(d),
        None => workspace.join("target"),
    };
    std::fs::create_dir_all(&dir).expect("create the target dir");
    dir
}

struct Run {
    stdout: String,
    stderr: String,
    netlog: String,
}

/// Runs headless Chromium on `url` with a fresh profile, killing it after [`TIMEOUT`].
fn run_chromium(bin: &Path, url: &str, extra: &[String]) -> Run {
    let tmp = tempfile::tempdir().expect("temp dir");
    let netlog_path = tmp.path().join("netlog.json");
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", tmp.path().join("profile").display()));
    args.push(format!("--log-net-log={}", netlog_path.display()));
    args.extend(extra.iter().cloned());
    args.push(url.to_string());

    let mut child = Command::new(bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!("chromium ran over {TIMEOUT:?} on {url}; killed it. stderr:\n{}", tail(&stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}) on {url}; stderr:\n{}", tail(&stderr));
    let netlog = std::fs::read_to_string(&netlog_path).unwrap_or_default();
    Run { stdout, stderr, netlog }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Console messages, uncaught exceptions and network requests that the page caused.
fn page_problems(run: &Run) -> Vec<String> {
    let mut problems: Vec<String> = run
        .stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(|l| format!("console: {}", l.trim()))
        .collect();
    const KEY: &str = "\"network_isolation_key\":\"file://";
    match serde_json::from_str::<serde_json::Value>(&run.netlog) {
        Ok(log) => {
            for event in log["events"].as_array().into_iter().flatten() {
                let params = &event["params"];
                let from_page = params["network_isolation_key"].as_str().is_some_and(|k| k.starts_with("file://"));
                if let (true, Some(url)) = (from_page, params["url"].as_str()) {
                    let problem = format!("network request: {url}");
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
            }
        }
        // a truncated log: fall back to a plain search
        Err(_) if run.netlog.contains(KEY) => problems.push("network request(s) from the page".to_string()),
        Err(_) => {}
    }
    problems
}

struct Picture {
    width: u32,
    height: u32,
    /// RGB triples
    rgb: Vec<[u8; 3]>,
}

fn decode_png(path: &Path) -> Picture {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open the screenshot"));
    let mut decoder = png::Decoder::new_with_limits(file, png::Limits { bytes: 1 << 30 });
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Indexed => panic!("indexed PNG after EXPAND"),
    };
    let rgb = buf[..info.line_size * info.height as usize]
        .chunks_exact(info.line_size)
        .flat_map(|row| row[..info.width as usize * channels].chunks_exact(channels))
        .map(|px| if channels >= 3 { [px[0], px[1], px[2]] } else { [px[0]; 3] })
        .collect();
    Picture { width: info.width, height: info.height, rgb }
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 4)
}

#[test]
fn detector_catches_a_bad_page() {
    let Some(bin) = chromium_or_skip("detector_catches_a_bad_page") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><title>bad</title></head><body><p>bad page</p>\
         <img src=\"https://example.invalid/x.png\" alt=\"\">\
         <script>console.error('boom'); notDefinedAnywhere();</script></body></html>",
    )
    .unwrap();
    let run = run_chromium(&bin, &format!("file://{}", page.display()), &["--dump-dom".to_string()]);
    let problems = page_problems(&run);
    assert!(problems.iter().any(|p| p.contains("\"boom\"")), "console.error not seen: {problems:?}");
    assert!(problems.iter().any(|p| p.contains("Uncaught ReferenceError")), "exception not seen: {problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("https://example.invalid/x.png")),
        "network request not seen: {problems:?}"
    );
}

#[test]
fn report_renders_in_chromium() {
    let Some(bin) = chromium_or_skip("report_renders_in_chromium") else { return };
    let html = mcufit_report::render_html(&mcufit_report::example());
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let target = target_dir();
    std::fs::write(target.join("report-sample.html"), &html).unwrap();
    let url = format!("file://{}", page.display());

    // 1. the DOM as the browser built it: every section, every chart, no console message, no request
    let dom = run_chromium(&bin, &url, &["--dump-dom".to_string(), format!("--window-size={WIDTH},900")]);
    let problems = page_problems(&dom);
    assert!(problems.is_empty(), "the report caused problems in Chromium:\n{}", problems.join("\n"));
    for id in SECTION_IDS {
        assert!(dom.stdout.contains(&format!("<section id=\"{id}\"")), "section #{id} missing from the DOM");
    }
    assert_eq!(dom.stdout.matches("<svg ").count(), 5, "1 memory chart + 4 curves");
    assert!(dom.stdout.contains("<title>mnist-ds on mnist → 11,760 B peak"), "title");
    assert!(!dom.stdout.contains("<script"), "no script in the DOM");

    // 2. the page's height, measured by a copy that writes it into its title (the report itself has no script)
    let probe = tmp.path().join("measure.html");
    let script = "<script>document.title = 'height=' + document.documentElement.scrollHeight;</script></body>";
    std::fs::write(&probe, html.replacen("</body>", script, 1)).unwrap();
    let measured = run_chromium(
        &bin,
        &format!("file://{}", probe.display()),
        &["--dump-dom".to_string(), format!("--window-size={WIDTH},900")],
    );
    let height: u32 = measured
        .stdout
        .split("<title>height=")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no height from the probe page; stdout:\n{}", tail(&measured.stdout)));
    assert!((2000..20_000).contains(&height), "implausible page height {height}");

    // 3. a full-page screenshot
    let shot = target.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let run = run_chromium(
        &bin,
        &url,
        &[format!("--screenshot={}", shot.display()), format!("--window-size={WIDTH},{height}")],
    );
    let problems = page_problems(&run);
    assert!(problems.is_empty(), "the report caused problems in Chromium:\n{}", problems.join("\n"));
    let pic = decode_png(&shot);
    assert_eq!((pic.width, pic.height), (WIDTH, height), "screenshot size");
    let background = [0xf1, 0xf5, 0xf9];
    let drawn = pic.rgb.iter().filter(|p| !near(**p, background)).count() as f64 / pic.rgb.len() as f64;
    assert!(drawn > 0.3, "only {:.1} % of the screenshot differs from the background", drawn * 100.0);
    let mut colours: Vec<[u8; 3]> = pic.rgb.clone();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 500, "only {} distinct colours: text and charts missing?", colours.len());
    for (name, rgb, min) in [
        ("green within-budget bars", [0x16, 0xa3, 0x4a], 2000),
        ("blue lines, bars and cells", [0x25, 0x63, 0xeb], 2000),
        ("red peak marker and budget line", [0xdc, 0x26, 0x26], 50),
        ("white panels", [0xff, 0xff, 0xff], 100_000),
    ] {
        let n = pic.rgb.iter().filter(|p| near(**p, rgb)).count();
        assert!(n >= min, "{n} pixels of {name} (#{:02x}{:02x}{:02x}), expected {min}+", rgb[0], rgb[1], rgb[2]);
    }
    eprintln!("screenshot: {} ({}x{})", shot.display(), pic.width, pic.height);
}
