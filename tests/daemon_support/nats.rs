//! A real `nats-server -js` (Debian's package; `.ci/run` installs it) on a
//! free 127.0.0.1 port with its store in a test directory, stopped and
//! restarted at will, killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
}

pub fn nats_available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok()
}

impl NatsServer {
    pub fn start(store: &Path) -> NatsServer {
        assert!(
            nats_available(),
            "nats-server is not installed: `apt-get install -y nats-server` (.ci/run does this)"
        );
        // A free port can be taken by a parallel test between the probe and
        // the server's bind; the server then exits: try another port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut s = NatsServer {
                child: None,
                port,
                store: store.to_path_buf(),
            };
            if s.try_start() {
                return s;
            }
        }
        panic!("nats-server did not start on any of five ports");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and store.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "nats-server did not start again on port {}",
            self.port
        );
    }

    /// Start and wait until it accepts connections; false when it exited
    /// instead (its port was taken).
    fn try_start(&mut self) -> bool {
        let mut child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // What answered may be another test's server on a port this one
        // failed to bind: ours must still be running.
        std::thread::sleep(Duration::from_millis(200));
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        self.child = Some(child);
        true
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
