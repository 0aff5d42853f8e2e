//! A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` in a temporary directory on a free
//! port (Debian's `postgresql`, binaries in /usr/lib/postgresql/*/bin). initdb refuses to run as
//! root, so as root the server runs as `nobody` (setpriv). Stopped (immediate) when dropped.
//! Included with `#[path]` by the tests that need it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pg {
    pub url: String,
    bin: PathBuf,
    dir: PathBuf,
    user: Option<&'static str>,
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let b = e.path().join("bin");
            b.join("initdb").is_file().then_some((v, b))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// The server, or `None` (after saying so) when PostgreSQL is not installed; under `CI` a missing
/// server fails the test instead.
pub fn start_or_skip(test: &str) -> Option<Pg> {
    let Some(bin) = bin_dir() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test}: PostgreSQL is not installed; scripts/setup-test-env.sh (run by scripts/test.sh) installs it \
                 (apt-get install postgresql)"
            );
        }
        let bar = "=".repeat(78);
        let _ = writeln!(
            std::io::stderr(),
            "{bar}\nSKIPPED {test}: PostgreSQL is not installed (apt-get install postgresql, or bash scripts/setup-test-env.sh)\n{bar}"
        );
        return None;
    };
    Some(Pg::start(bin))
}

fn run(user: Option<&str>, bin: &Path, args: &[&str]) {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={u}"), &format!("--regid={}", group(u)), "--clear-groups", "--"]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let out = cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn group(user: &str) -> String {
    let out = Command::new("id").args(["-g", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    fn start(bin: PathBuf) -> Pg {
        let dir = std::env::temp_dir().join(format!("mcufit-pg-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = is_root().then_some("nobody");
        if let Some(u) = user {
            let st =
                Command::new("chown").args([&format!("{u}:{}", group(u)), dir.to_str().unwrap()]).status().unwrap();
            assert!(st.success(), "chown {}", dir.display());
        }
        let data = dir.join("data");
        run(
            user,
            &bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-U", "mcufit", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        let port = free_port();
        let opts = format!("-p {port} -k {} -h 127.0.0.1 -c fsync=off", dir.display());
        let log = dir.join("server.log");
        run(
            user,
            &bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"],
        );
        Pg { url: format!("postgres://mcufit@127.0.0.1:{port}/postgres"), bin, dir, user }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = std::panic::catch_unwind(|| {
            run(self.user, &self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
