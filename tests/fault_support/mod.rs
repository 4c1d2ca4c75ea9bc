//! Process-level harness of the fault suite: `emogate serve` as a real child process (its
//! config written as TOML, its log in a file, killed with SIGKILL by PID), its `/metrics` and
//! `/readyz` read over HTTP on 127.0.0.1, its RSS read from `/proc`, and a Tansu broker with
//! persistent storage that survives its own SIGKILL.
//!
//! The installed Tansu 0.6 binary has only the `memory://` and `s3://` storage engines
//! (`sqlite://`, `postgres://` and the rest report `FeatureNotEnabled`), so the persistent
//! broker keeps its log in a moto S3 server (a separate Python process on 127.0.0.1, from
//! `scripts/requirements-dev.txt`) that outlives the broker.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use emogate::config::Config;

use crate::common;
use crate::common::wait::wait_until;

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Spawns `program args` with its stdout and stderr appended to `log`.
fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
}

/// One `emogate serve` process.
pub struct Serve {
    child: Child,
    /// `/metrics` and `/readyz` address (127.0.0.1, free port), `None` when telemetry is off.
    pub http: Option<String>,
    pub log: PathBuf,
}

impl Serve {
    /// Writes `config` to `dir/name.toml` and starts `emogate serve --stage stage` on it, its
    /// output going to `dir/name.log`. Telemetry always listens on a fresh 127.0.0.1 port: a
    /// `None` would not survive the TOML file (the key is left out and the default
    /// `0.0.0.0:9464` applies).
    pub fn start(config: &Config, stage: &str, dir: &Path, name: &str) -> Serve {
        let mut config = config.clone();
        let addr = format!("127.0.0.1:{}", free_port());
        config.telemetry.listen = Some(addr.parse().unwrap());
        let http = Some(addr);
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(&config).expect("config as TOML")).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = spawn_logged(
            Command::new(env!("CARGO_BIN_EXE_emogate"))
                .args(["serve", "--config"])
                .arg(&path)
                .args(["--stage", stage])
                .env("RUST_LOG", "warn,emogate=info")
                .current_dir(common::repo_root()),
            &log,
        );
        Serve { child, http, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL by PID (what `Child::kill` sends on Unix): no drain, no commit, no destructor.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL emogate serve");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "SIGKILL must end the process abnormally: {status}");
    }

    /// SIGTERM by PID, then waits up to `timeout` for the graceful drain; the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -TERM {}", self.pid());
        self.wait_exit(timeout)
            .unwrap_or_else(|| panic!("no exit within {timeout:?} of SIGTERM:\n{}", self.log_text()))
    }

    /// The exit status once the process has ended, or `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if t0.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("emogate serve exited ({status}):\n{}", self.log_text());
        }
    }

    /// The last 80 lines of the process's log (for failure messages).
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// `GET path` on the telemetry listener: (status code, body), `None` if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let addr = self.http.as_ref().expect("telemetry is off");
        let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// Sum of every series of the metric `name` on `/metrics` (0 when absent or unreachable).
    pub fn metric(&self, name: &str) -> f64 {
        let Some((200, body)) = self.get("/metrics") else { return 0.0 };
        body.lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Predictions plus dead letters this process has produced.
    pub fn records_out(&self) -> u64 {
        (self.metric("emogate_records_accepted_total")
            + self.metric("emogate_records_rejected_total")
            + self.metric("emogate_records_dead_lettered_total")) as u64
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `/readyz` answers `code`; returns how long it took.
pub fn wait_readyz(serve: &mut Serve, code: u16, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        serve.assert_running();
        if serve.get("/readyz").is_some_and(|(c, _)| c == code) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "/readyz did not answer {code} within {timeout:?} (last: {:?})",
            serve.get("/readyz")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Tansu on a fixed 127.0.0.1 port with its storage in a moto S3 server, so that the broker
/// can be killed with SIGKILL and restarted on the same port with its topics, records and
/// committed offsets intact. Both processes are killed by PID on drop.
pub struct PersistentBroker {
    pub brokers: String,
    port: u16,
    s3: String,
    moto: Child,
    tansu: Option<Child>,
    log: PathBuf,
}

impl PersistentBroker {
    pub fn start(dir: &Path) -> PersistentBroker {
        let s3_port = free_port();
        let log = dir.join("broker.log");
        let moto = spawn_logged(
            Command::new(common::python()).args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &s3_port.to_string(),
            ]),
            &log,
        );
        let s3 = format!("http://127.0.0.1:{s3_port}");
        wait_until("moto S3 server listening", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", s3_port)).is_ok()
        });
        let bucket = Command::new(common::python())
            .args(["-c", "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-west-2', aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='tansu', CreateBucketConfiguration={'LocationConstraint': 'eu-west-2'})", &s3])
            .status()
            .unwrap();
        assert!(bucket.success(), "cannot create the S3 bucket for Tansu");
        let port = free_port();
        let mut broker =
            PersistentBroker { brokers: format!("127.0.0.1:{port}"), port, s3, moto, tansu: None, log };
        broker.restart();
        broker
    }

    /// Starts Tansu (again) on the same port and storage; waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.tansu.is_none(), "tansu is running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = spawn_logged(
            Command::new(crate::pipeline_support::tansu_binary())
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "s3://tansu/"])
                .env("AWS_ENDPOINT", &self.s3)
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_DEFAULT_REGION", "eu-west-2")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test"),
            &self.log,
        );
        self.tansu = Some(child);
        let port = self.port;
        wait_until("tansu listening", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGKILL of the Tansu process by PID; the S3 server (its storage) keeps running.
    pub fn kill9(&mut self) {
        let mut child = self.tansu.take().expect("tansu is not running");
        child.kill().expect("SIGKILL tansu");
        let _ = child.wait();
    }

    /// A handle for the shared topic/produce helpers (it does not own the process).
    pub fn client(&self) -> crate::pipeline_support::Broker {
        crate::pipeline_support::Broker::at(&self.brokers)
    }
}

impl Drop for PersistentBroker {
    fn drop(&mut self) {
        for child in self.tansu.iter_mut().chain(std::iter::once(&mut self.moto)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
