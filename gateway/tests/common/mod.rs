//! Test helpers: a real gateway on 127.0.0.1:0 with a real store in a temp
//! dir, and a blocking WebSocket client (tungstenite) that keeps frames it
//! was not looking for.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::{Config, Gateway};
use serde_json::{json, Value};
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tungstenite::{Message, WebSocket};

pub struct TestGateway {
    pub gw: Option<Gateway>,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    pub fn addr(&self) -> SocketAddr {
        self.gw.as_ref().unwrap().local_addr()
    }
    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().unwrap()
    }
}

pub fn test_config(dir: &std::path::Path, shards: usize) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        shards: Some(shards),
        ..Config::default()
    }
}

pub fn start(shards: usize) -> TestGateway {
    start_with(shards, |_| {})
}

pub fn start_with(shards: usize, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), shards);
    tweak(&mut cfg);
    let gw = Gateway::start(cfg).expect("gateway starts");
    TestGateway { gw: Some(gw), dir }
}

pub fn start_with_store(shards: usize, store: Arc<dyn storage::Store>) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path(), shards);
    let gw = Gateway::start_with_store(cfg, store).expect("gateway starts");
    TestGateway { gw: Some(gw), dir }
}

pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub hello: Value,
    backlog: VecDeque<Value>,
    next_id: u64,
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn ws_url(addr: SocketAddr, user: &str, device: &str) -> String {
    format!("ws://{addr}/ws?user={user}&device={device}")
}

impl Client {
    pub fn connect(addr: SocketAddr, user: &str, device: &str) -> Client {
        Self::try_connect(addr, user, device).expect("websocket connects")
    }

    pub fn try_connect(addr: SocketAddr, user: &str, device: &str) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, _) =
            tungstenite::client(ws_url(addr, user, device), stream).map_err(|e| e.to_string())?;
        Ok(Client::from_ws(ws))
    }

    /// Wraps an upgraded socket and reads its `hello`.
    pub fn from_ws(ws: WebSocket<TcpStream>) -> Client {
        let mut c = Client {
            ws,
            hello: Value::Null,
            backlog: VecDeque::new(),
            next_id: 1,
        };
        c.hello = c.next_frame();
        assert_eq!(
            c.hello["type"], "hello",
            "first frame is hello: {}",
            c.hello
        );
        c
    }

    /// Connects until the gateway puts the connection on `shard`.
    pub fn connect_on_shard(addr: SocketAddr, user: &str, shard: u64) -> Client {
        for i in 0..200 {
            let c = Client::connect(addr, user, &format!("dev{i}"));
            if c.hello["shard"] == shard {
                return c;
            }
        }
        panic!("could not land a connection on shard {shard}");
    }

    pub fn shard(&self) -> u64 {
        self.hello["shard"].as_u64().unwrap()
    }

    pub fn send_json(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    pub fn send_raw(&mut self, m: Message) {
        self.ws.send(m).unwrap();
    }

    /// The next frame from the socket (not the backlog); panics on timeout.
    pub fn next_frame(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return serde_json::from_str(&t).unwrap(),
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next frame: backlog first.
    pub fn recv(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        self.next_frame()
    }

    /// The first frame matching `pred`; others are kept for later.
    pub fn recv_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "timed out waiting for a frame");
            let v = self.next_frame();
            if pred(&v) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    /// A frame matching `pred` among those already received or arriving
    /// within 200 ms; None otherwise.
    pub fn recv_matching_now(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        self.ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut found = None;
        while let Ok(m) = self.ws.read() {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if pred(&v) {
                    found = Some(v);
                    break;
                }
                self.backlog.push_back(v);
            }
        }
        self.ws.get_ref().set_read_timeout(Some(TIMEOUT)).unwrap();
        found
    }

    pub fn recv_type(&mut self, ty: &str) -> Value {
        self.recv_matching(|v| v["type"] == ty)
    }

    /// The reply to request `id` (an ack, joined, error, ...).
    pub fn reply_to(&mut self, id: u64) -> Value {
        self.recv_matching(|v| v["id"] == id)
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn request(&mut self, mut v: Value) -> Value {
        let id = self.id();
        v["id"] = json!(id);
        self.send_json(v);
        self.reply_to(id)
    }

    pub fn join(&mut self, channel: &str, since: Option<u64>) -> u64 {
        let mut req = json!({"type": "join", "channel": channel});
        if let Some(s) = since {
            req["since"] = json!(s);
        }
        let r = self.request(req);
        assert_eq!(r["type"], "joined", "join reply: {r}");
        r["head"].as_u64().unwrap()
    }

    pub fn send_msg(&mut self, channel: &str, cmid: &str, text: &str) -> Value {
        self.request(
            json!({"type": "send", "channel": channel, "client_msg_id": cmid, "text": text}),
        )
    }

    /// Sends without waiting for the ack; returns the request id.
    pub fn send_msg_async(&mut self, channel: &str, cmid: &str, text: &str) -> u64 {
        let id = self.id();
        self.send_json(json!({"id": id, "type": "send", "channel": channel, "client_msg_id": cmid, "text": text}));
        id
    }

    /// The next `n` `msg` frames of `channel`, in arrival order.
    pub fn msgs(&mut self, channel: &str, n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| self.recv_matching(|v| v["type"] == "msg" && v["channel"] == channel))
            .collect()
    }

    /// Reads frames until the server closes; returns the close code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => return None,
                Err(e) => panic!("read failed before close: {e}"),
            }
        }
    }

    pub fn close(mut self) {
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = self.ws.flush();
    }
}

/// Asserts `msgs` are exactly seqs `from..=to` in order.
pub fn assert_seqs(msgs: &[Value], from: u64, to: u64) {
    let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (from..=to).collect();
    assert_eq!(seqs, want, "seqs must be dense and in order");
}

/// An HTTP request with an optional JSON body; returns (status, JSON body
/// or Null).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A plain HTTP GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// The gateway binary as a child process.
pub struct Child {
    pub proc: std::process::Child,
    pub addr: SocketAddr,
}

impl Child {
    /// Starts `gateway` with `args` through `sh -c` (so `prefix`, e.g. a
    /// `ulimit`, applies) and waits for its "listening" line.
    pub fn spawn(prefix: &str, args: &[&str]) -> Result<Child, String> {
        use std::io::BufRead;
        let bin = env!("CARGO_BIN_EXE_gateway");
        let cmd = format!("{prefix} exec {bin} {}", args.join(" "));
        let mut proc = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = proc.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.is_empty() {
            let out = proc.wait_with_output().map_err(|e| e.to_string())?;
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        let addr = line
            .split("ws://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .ok_or_else(|| format!("unexpected first line: {line}"))?
            .parse()
            .map_err(|e| format!("{e}: {line}"))?;
        Ok(Child { proc, addr })
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// CPU time (user + system) of the process so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    pub fn kill9(mut self) {
        self.proc.kill().unwrap();
        self.proc.wait().unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// A gateway binary started with a TOML config (written to a temp dir
/// that lives as long as the process) on `127.0.0.1:0` with its own data
/// directory.
pub struct ConfiguredChild {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl ConfiguredChild {
    /// Starts `gateway --config <toml> --listen 127.0.0.1:0 --data-dir <tmp>`.
    pub fn start(toml: &str) -> ConfiguredChild {
        let dir = tempfile::tempdir().unwrap();
        ConfiguredChild::start_in(dir, toml)
    }

    /// As [`ConfiguredChild::start`], on an existing directory (a restart).
    pub fn start_in(dir: tempfile::TempDir, toml: &str) -> ConfiguredChild {
        let cfg = dir.path().join("gateway.toml");
        std::fs::write(&cfg, toml).unwrap();
        let data = dir.path().join("data");
        let child = Child::spawn(
            "",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ],
        )
        .unwrap();
        ConfiguredChild { child, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.child.addr
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The value of a plain (label-less) metric from `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .trim()
        .parse()
        .unwrap()
}

/// Masked client frames for `requests`, back to back: written with one
/// `write`, they reach the gateway in as few reads as the kernel allows.
pub fn pipelined(requests: impl IntoIterator<Item = Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        let mask = (i as u32).wrapping_mul(0x9e37_79b9).to_le_bytes();
        gateway::protocol::ws::encode_frame(
            &mut out,
            gateway::protocol::ws::WsOpcode::Text,
            r.to_string().as_bytes(),
            Some(mask),
        );
    }
    out
}

impl Client {
    /// Writes raw bytes to the socket (e.g. [`pipelined`] frames).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.ws.get_mut().write_all(bytes).unwrap();
        self.ws.get_mut().flush().unwrap();
    }

    /// Round-trip time of an app-level ping, in milliseconds.
    pub fn ping_ms(&mut self) -> u128 {
        let t = Instant::now();
        let r = self.request(json!({"type": "ping"}));
        assert_eq!(r["type"], "pong", "{r}");
        t.elapsed().as_millis()
    }
}

/// Polls `f` every 50 ms until it is true or `within` passed; returns
/// whether it became true.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
