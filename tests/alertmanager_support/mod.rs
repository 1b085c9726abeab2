//! A real Alertmanager running deploy/alertmanager/alertmanager.yml with its receivers pointed
//! at [`Receiver`], an HTTP endpoint in the test speaking the PagerDuty Events API v2 and
//! recording the ticket and watchdog webhooks. Shared by tests/alerts_e2e.rs and
//! tests/alertmanager_e2e.rs.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml::Value;

use crate::alerts_support::root;
use crate::common::Proc;
use crate::tools;

pub const ROUTING_KEY: &str = "e2e0123456789abcdef0123456789abc";

/// One request received by [`Receiver`].
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub body: Json,
}

/// The PagerDuty Events API v2 (`POST /v2/enqueue`) plus the ticket and watchdog webhooks,
/// recording every request.
pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Receiver { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// PagerDuty events so far.
    pub fn events(&self) -> Vec<Json> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v2/enqueue")
            .map(|r| r.body)
            .collect()
    }

    /// Waits for a PagerDuty event matching `pred`.
    pub fn wait_event(
        &self,
        timeout: Duration,
        what: &str,
        diag: &dyn Fn() -> String,
        pred: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; received:\n{:#?}\n{}",
                self.requests(),
                diag()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let json: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
        let reply = if path == "/v2/enqueue" {
            let ok = json["routing_key"].as_str().is_some_and(|k| k.len() == 32)
                && matches!(
                    json["event_action"].as_str(),
                    Some("trigger" | "resolve" | "acknowledge")
                );
            let dedup = json["dedup_key"].as_str().unwrap_or_default().to_string();
            sink.lock().unwrap().push(Request { path, body: json });
            if ok {
                (
                    "202 Accepted",
                    format!(r#"{{"status":"success","message":"Event processed","dedup_key":"{dedup}"}}"#),
                )
            } else {
                ("400 Bad Request", r#"{"status":"invalid event"}"#.to_string())
            }
        } else {
            sink.lock().unwrap().push(Request { path, body: json });
            ("200 OK", "{}".to_string())
        };
        let resp = format!(
            "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            reply.0,
            reply.1.len(),
            reply.1
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `url` answers 200.
pub fn wait_ready(url: &str, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(url).timeout(Duration::from_secs(2)).call().is_err() {
        assert!(Instant::now() < deadline, "{url} not ready:\n{}", p.tail());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts Alertmanager with the example configuration, its receivers pointed at `rx`.
pub fn start_alertmanager(dir: &Path, rx: &Receiver) -> (Proc, u16) {
    let key_file = dir.join("pagerduty-routing-key");
    std::fs::write(&key_file, format!("{ROUTING_KEY}\n")).unwrap();
    let text = std::fs::read_to_string(root().join("deploy/alertmanager/alertmanager.yml")).unwrap();
    let mut cfg: Value = serde_yaml::from_str(&text).unwrap();
    cfg["global"]["pagerduty_url"] = rx.url("/v2/enqueue").into();
    cfg["templates"] = Value::Sequence(vec![root()
        .join("deploy/alertmanager/templates/*.tmpl")
        .to_string_lossy()
        .to_string()
        .into()]);
    cfg["route"]["group_wait"] = "1s".into();
    cfg["route"]["group_interval"] = "2s".into();
    for r in cfg["receivers"].as_sequence_mut().unwrap() {
        let name = r["name"].as_str().unwrap().to_string();
        if let Some(pd) = r.get_mut("pagerduty_configs").and_then(Value::as_sequence_mut) {
            for c in pd {
                c["routing_key_file"] = key_file.to_string_lossy().to_string().into();
            }
        }
        if let Some(wh) = r.get_mut("webhook_configs").and_then(Value::as_sequence_mut) {
            for c in wh {
                c["url"] = rx.url(&format!("/{name}")).into();
            }
        }
    }
    let cfg_path = dir.join("alertmanager.yml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.join("am-data")).unwrap();
    let p = Proc::spawn(
        Command::new(tools::alertmanager())
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
        dir.join("alertmanager.log"),
    );
    wait_ready(&format!("http://127.0.0.1:{port}/-/ready"), &p);
    (p, port)
}
pub fn runbook(alert: &str) -> String {
    let cfg: Value = serde_yaml::from_str(&std::fs::read_to_string(root().join("alerts/config.yml")).unwrap()).unwrap();
    format!("{}/{alert}.md", cfg["links"]["runbook_base_url"].as_str().unwrap())
}

pub fn class(e: &Json) -> &str {
    e["payload"]["class"].as_str().unwrap_or_default()
}

/// Posts alerts to Alertmanager's API as Prometheus would.
pub fn post_alerts(am_port: u16, alerts: &[(&[(&str, &str)], &str)]) {
    let body: Vec<Json> = alerts
        .iter()
        .map(|(labels, summary)| {
            let labels: serde_json::Map<String, Json> =
                labels.iter().map(|(k, v)| (k.to_string(), Json::from(*v))).collect();
            let alert = labels["alertname"].as_str().unwrap().to_string();
            serde_json::json!({
                "labels": labels,
                "annotations": {"summary": summary, "description": "test", "runbook_url": runbook(&alert)},
            })
        })
        .collect();
    ureq::post(&format!("http://127.0.0.1:{am_port}/api/v2/alerts"))
        .set("Content-Type", "application/json")
        .send_string(&Json::Array(body).to_string())
        .expect("post alerts");
}
