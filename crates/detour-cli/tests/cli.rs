//! The `detour` binary as a person uses it: `detour dev` in one terminal, the client in another,
//! SIGTERM to stop, and the data still there after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_detour");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Dev {
    child: Child,
    server: String,
    /// An agent's token from the development issuer of this `detour dev`.
    token: String,
}

impl Dev {
    fn start(data_dir: &std::path::Path) -> Dev {
        let grpc = free_port();
        let metrics = free_port();
        let mut child = Command::new(BIN)
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .args([
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics}"),
            ])
            .env("DETOUR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // `detour dev` tells the person where it listens.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        for _ in 0..6 {
            stdout.read_line(&mut banner).unwrap();
        }
        assert!(banner.contains("detour token --role"), "{banner}");
        assert!(banner.contains(&format!("127.0.0.1:{grpc}")), "{banner}");
        assert!(banner.contains(&format!("127.0.0.1:{metrics}/metrics")), "{banner}");
        let server = format!("http://127.0.0.1:{grpc}");
        let minted = Command::new(BIN)
            .args(["token", "--role", "agent", "--data-dir"])
            .arg(data_dir)
            .output()
            .unwrap();
        assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
        let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
        let dev = Dev { child, server, token };
        dev.wait_until_answering();
        dev
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client(&self.server, &self.token, &["case", "list"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("detour dev never answered");
    }

    /// SIGTERM, as Kubernetes or a terminal's kill would send it; the suite must exit cleanly.
    fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "detour dev exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "detour dev did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Dev {
    /// SIGKILL: the process dies mid-whatever, with no chance to flush or drain.
    fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn client(server: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).args(["--server", server]).env("DETOUR_TOKEN", token).output().unwrap()
}

fn ok(dev: &Dev, args: &[&str]) -> String {
    let out = client(&dev.server, &dev.token, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn open_list_show_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());

    let open = [
        "case",
        "open",
        "--name",
        "Li Wei",
        "--email",
        "li.wei@example.com",
        "--channel",
        "phone",
        "--supplier",
        "CA",
        "--reference",
        "CA981",
        "--booking",
        "PNR7Q2",
        "--from",
        "PEK",
        "--to",
        "JFK",
        "--starts",
        "2026-12-03T10:00:00Z",
        "--price-minor",
        "520000",
        "--currency",
        "CNY",
        "--wants",
        "rebooking,refund",
        "--text",
        "My flight CA981 was cancelled at the gate",
        "--json",
    ];
    let ack: serde_json::Value = serde_json::from_str(&ok(&dev, &open)).unwrap();
    let id = ack["case_id"].as_str().unwrap().to_owned();
    assert!(ack["case_number"].as_str().unwrap().starts_with("DT-"));

    let list = ok(&dev, &["case", "list"]);
    assert!(list.contains(ack["case_number"].as_str().unwrap()), "{list}");

    // The case moves on through triage by itself; `show` prints its timeline.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = ok(&dev, &["case", "show", &id]);
        if shown.contains("case.triaged") {
            assert!(shown.contains("case.opened"), "{shown}");
            break;
        }
        assert!(Instant::now() < deadline, "never triaged: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Bad input is explained, with the field, and the command fails.
    // Without a token nothing is answered, and the person is told how to get one.
    let anonymous = Command::new(BIN)
        .args(["case", "list", "--server", &dev.server])
        .env_remove("DETOUR_TOKEN")
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    let err = String::from_utf8_lossy(&anonymous.stderr);
    assert!(err.contains("Unauthenticated") && err.contains("detour token"), "{err}");

    let bad = client(&dev.server, &dev.token, &["case", "show", "not-a-case-id"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("InvalidArgument") && err.contains("case_id"), "{err}");

    dev.terminate();

    let dev = Dev::start(dir.path());
    let shown: serde_json::Value = serde_json::from_str(&ok(&dev, &["case", "show", &id, "--json"])).unwrap();
    assert_eq!(shown["case_id"], id.as_str());
    assert!(shown["timeline"].as_array().unwrap().len() >= 2);
    dev.terminate();
}

#[test]
fn acknowledged_cases_survive_killing_the_process_right_after_the_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let mut acknowledged = Vec::new();
    for i in 0..12 {
        let text = format!("Contact {i}: my flight was cancelled");
        let phone = format!("+4477009001{i:02}");
        let open = [
            "case",
            "open",
            "--name",
            "Crash Test",
            "--phone",
            &phone,
            "--channel",
            "sms",
            "--supplier",
            "CA",
            "--reference",
            "CA981",
            "--booking",
            "PNRKILL",
            "--from",
            "PEK",
            "--to",
            "JFK",
            "--starts",
            "2026-12-03T10:00:00Z",
            "--text",
            &text,
            "--json",
        ];
        let ack: serde_json::Value = serde_json::from_str(&ok(&dev, &open)).unwrap();
        acknowledged.push(ack["case_id"].as_str().unwrap().to_owned());
    }
    // The last acknowledgement has just been printed: kill -9 now.
    dev.kill_hard();

    let dev = Dev::start(dir.path());
    for id in &acknowledged {
        let shown: serde_json::Value =
            serde_json::from_str(&ok(&dev, &["case", "show", id, "--json"])).unwrap();
        assert_eq!(shown["case_id"], id.as_str(), "an acknowledged case was lost");
    }
    dev.terminate();
}

#[test]
fn unknown_service_and_bad_settings_are_refused_with_a_reason() {
    let out = Command::new(BIN).args(["serve", "billing"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service `billing`"));

    let out =
        Command::new(BIN).args(["serve", "intake"]).env("DETOUR_DATABASE_URL", "mysql://x").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DETOUR_DATABASE_URL"));
}

#[test]
fn migrate_brings_every_schema_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["migrate", "all"]).env("DETOUR_DATA_DIR", dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for svc in ["intake", "triage", "supplier", "compensation", "feedback"] {
        assert!(text.contains(&format!("{svc}: schema up to date")), "{text}");
        assert!(dir.path().join(format!("{svc}.db")).exists());
    }
}

#[test]
fn a_supervisor_exports_erases_and_reads_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let opened = ok(
        &dev,
        &[
            "case",
            "open",
            "--name",
            "Ana Souza",
            "--email",
            "ana@example.com",
            "--document-number",
            "FZ123456",
            "--supplier",
            "TP",
            "--reference",
            "TP88",
            "--booking",
            "Q7",
            "--from",
            "LIS",
            "--to",
            "GRU",
            "--starts",
            "2026-12-03T10:00:00Z",
            "--text",
            "Lost luggage",
            "--json",
        ],
    );
    let case_id =
        serde_json::from_str::<serde_json::Value>(&opened).unwrap()["case_id"].as_str().unwrap().to_owned();
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&dev, &["case", "show", &case_id, "--json"])).unwrap();
    let traveler_id = shown["traveler_id"].as_str().unwrap().to_owned();
    // The development KEK was made in the data directory; nothing stored reads as plain text.
    assert!(dir.path().join(detour_vault::DEV_KEK_FILE).exists());
    let on_disk = std::fs::read(dir.path().join("intake.db")).unwrap();
    assert!(!String::from_utf8_lossy(&on_disk).contains("FZ123456"));

    let minted = Command::new(BIN)
        .args(["token", "--role", "supervisor", "--subject", "sup-1", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let supervisor = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let as_supervisor = |args: &[&str]| {
        let out = client(&dev.server, &supervisor, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    // An agent may not export; a supervisor may.
    let refused = client(&dev.server, &dev.token, &["case", "export", &traveler_id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));
    let export: serde_json::Value =
        serde_json::from_str(&as_supervisor(&["case", "export", &traveler_id])).unwrap();
    assert_eq!(export["traveler"]["document_number"], "FZ123456");

    let erased = as_supervisor(&["case", "erase", &traveler_id, "--reason", "request 42"]);
    assert!(erased.contains("on 1 case"), "{erased}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&dev, &["case", "show", &case_id, "--json"])).unwrap();
    assert!(shown["personal_data_erased_at"].is_string(), "{shown}");

    let trail = as_supervisor(&["case", "audit", &case_id]);
    assert!(trail.contains("IntakeService/EraseTraveler") && trail.contains("sup-1"), "{trail}");
    assert!(trail.contains("IntakeService/OpenCase") && trail.contains("dev-user"), "{trail}");
    let by_user: serde_json::Value =
        serde_json::from_str(&as_supervisor(&["case", "audit", "--actor", "sup-1", "--json"])).unwrap();
    let actions: Vec<&str> =
        by_user["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["detour.intake.v1.IntakeService/EraseTraveler", "detour.intake.v1.IntakeService/ExportTraveler"]
    );
    dev.terminate();
}

#[test]
fn kek_prints_a_fresh_key_in_the_settings_format() {
    let out = Command::new(BIN).args(["kek", "--id", "kek-2026-11"]).output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let again = String::from_utf8(Command::new(BIN).args(["kek"]).output().unwrap().stdout).unwrap();
    assert_ne!(line, again, "a fresh key each time");
    let parsed: toml::Value = toml::from_str(&format!("keks = [{}]", line.trim())).unwrap();
    let kek = &parsed["keks"][0];
    assert_eq!(kek["id"].as_str(), Some("kek-2026-11"));
    let settings = detour_vault::VaultSettings {
        keks: vec![detour_vault::KekSettings::new("kek-2026-11", kek["key"].as_str().unwrap())],
        primary: "kek-2026-11".into(),
    };
    settings.key_ring().unwrap();
}

#[test]
fn itineraries_import_from_a_csv_file_with_progress_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let minted = Command::new(BIN)
        .args(["token", "--role", "crisis_manager", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let csv = "booking_reference,traveler_id,full_name,email,phone,preferred_language,contact_channels,kind,supplier_code,service_reference,origin,destination,local_date,starts_at,ends_at
PNR1,00000000-0000-4000-8000-000000000001,Li Wei,li@example.com,+8613800138000,zh-CN,sms;email,flight,CA,CA981,PEK,JFK,2026-12-03,2026-12-03T01:00:00Z,2026-12-03T14:00:00Z
PNR1,00000000-0000-4000-8000-000000000002,Wang Fang,wang@example.com,,zh-CN,email,flight,CA,CA981,PEK,JFK,2026-12-03,2026-12-03T01:00:00Z,2026-12-03T14:00:00Z
PNR2,00000000-0000-4000-8000-000000000003,Ann Lee,ann@example.com,,en,,flight,CA,CA983,PEK,LAX,2026-12-03,2026-12-03T02:00:00Z,
PNR3,00000000-0000-4000-8000-000000000004,No Date,nd@example.com,,en,,flight,CA,CA985,PEK,SFO,,2026-12-03T03:00:00Z,
";
    let file = dir.path().join("bookings.csv");
    std::fs::write(&file, csv).unwrap();
    let out = client(
        &dev.server,
        &token,
        &["itinerary", "import", file.to_str().unwrap(), "--chunk", "2", "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["trips_stored"], 2);
    assert_eq!(done["segments_stored"], 2);
    assert_eq!(done["refused"][0]["booking_reference"], "PNR3");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("import: sent 2/3 trips") && progress.contains("import: sent 3/3 trips"),
        "{progress}"
    );
    // An agent may not import.
    let refused = client(&dev.server, &dev.token, &["itinerary", "import", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));
    dev.terminate();
}
