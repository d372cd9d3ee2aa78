//! The .deb under a real systemd (PID 1 of a minimal bookworm root, booted in the server
//! namespace of a testbed): apt-get on that root brings everything the package runs, the unit starts to
//! `active` with its notify status, nginx as www-data feeds the daemon (the feed file),
//! `systemctl reload` applies a changed configuration and refuses a broken one while the
//! daemon keeps the old, a block made with the CLI drops the client's real traffic, restart
//! keeps it, stop leaves the filter enforcing, the journal has the daemon's lines, and no
//! unit fails. The test command builds the package and passes its path in FLOODGATE_DEB.

use std::{net::IpAddr, time::Duration};

use floodgate_tests::{
    floodgate_deb,
    net::{CLIENT_V4, SERVER_V4, Testbed},
    systemd::Container,
    wait_until,
};

fn config(iface: &str, extra_top: &str, ports: &str) -> String {
    format!("{extra_top}\n[filter]\ninterfaces = [\"{iface}\"]\nports = {ports}\n")
}

/// The site nginx serves in the container; the feed lines come from the shipped snippet.
const SITE: &str = "server { listen 80; listen [::]:80; location / { return 200 \"ok\\n\"; } }\n";
const FEED: &str = "include /usr/share/floodgate/nginx-floodgate.conf;\n";

fn status(c: &Container) -> serde_json::Value {
    serde_json::from_str(&c.ok(&["floodgate", "status", "--json"])).expect("status --json")
}

fn show(c: &Container, property: &str) -> String {
    c.ok(&["systemctl", "show", "-p", property, "--value", "floodgate"])
        .trim()
        .to_owned()
}

/// Every package the packaged binary and what it runs come from is in floodgate's Depends
/// (as the minimal root's dpkg resolves them).
fn assert_depends_complete(c: &Container) {
    let depends = c.ok(&["dpkg-query", "-W", "-f=${Depends}", "floodgate"]);
    let depends: Vec<&str> = depends
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    let needed = std::process::Command::new("objdump")
        .args(["-p"])
        .arg(format!("/proc/{}/root/usr/bin/floodgate", c.pid1()))
        .output()
        .expect("objdump");
    let needed = String::from_utf8_lossy(&needed.stdout).into_owned();
    let mut files: Vec<String> = needed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(|lib| format!("*/{}", lib.trim()))
        .collect();
    assert!(
        files.len() >= 2,
        "no NEEDED libraries in objdump -p:\n{needed}"
    );
    // What the daemon executes: `ss -K` to close a blocked source's connections.
    assert!(
        !c.sh("command -v ss").trim().is_empty(),
        "no ss on the root"
    );
    files.push("*bin/ss".to_owned());
    for file in files {
        let owners = c.ok(&["dpkg-query", "-S", &file]);
        for line in owners.lines() {
            let package = line.split(':').next().unwrap_or_default().trim();
            assert!(
                depends.contains(&package),
                "{line}: {package} is not in floodgate's Depends {depends:?}"
            );
        }
    }
}

#[test]
fn the_package_under_a_real_systemd() {
    let tb = Testbed::new();
    let iface = tb.server_if.clone();
    let c = Container::boot(
        &tb.server,
        &floodgate_deb(),
        &[
            ("/etc/floodgate/floodgate.toml", config(&iface, "", "[80]")),
            ("/etc/nginx/conf.d/site.conf", SITE.to_owned()),
            ("/etc/nginx/conf.d/floodgate.conf", FEED.to_owned()),
        ],
        &["/etc/nginx/sites-enabled/default"],
    );
    assert_depends_complete(&c);
    // The minimal root had no iproute2: installing the .deb brought it, before nginx.
    let (deb_part, _) = c
        .install_log
        .split_once("==> nginx")
        .expect("the install log has both parts");
    assert!(
        deb_part.contains("Setting up iproute2") && deb_part.contains("Setting up floodgate"),
        "apt-get install ./floodgate.deb did not bring iproute2:\n{deb_part}"
    );

    c.ok(&["systemctl", "start", "floodgate"]);
    assert_eq!(show(&c, "ActiveState"), "active", "{}", c.diagnostics());
    assert_eq!(show(&c, "StatusText"), format!("protecting {iface}"));
    assert_eq!(status(&c)["ports"], serde_json::json!([80]));

    // nginx (started at boot, workers as www-data) appends to the feed file the package's
    // tmpfiles.d entry made at boot (the shipped snippet), which the daemon follows.
    c.ok(&["systemctl", "restart", "nginx"]);
    let www_data = c.ok(&["id", "-u", "www-data"]).trim().to_owned();
    let worker_uids = c
        .sh("grep -l '^Name:[[:space:]]*nginx$' /proc/[0-9]*/status | xargs grep -h '^Uid:'; true");
    assert!(
        worker_uids
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&www_data)),
        "no nginx process runs as www-data ({www_data}):\n{worker_uids}"
    );
    let client: IpAddr = CLIENT_V4.into();
    let server: IpAddr = SERVER_V4.into();
    for _ in 0..5 {
        assert_eq!(
            tb.get(client, server),
            200,
            "nginx in the container answers"
        );
    }
    let fed = wait_until(Duration::from_secs(10), || {
        status(&c)["daemon"]["proxy"]["events"].as_u64() >= Some(5)
    });
    let proxy = &status(&c)["daemon"]["proxy"];
    assert!(fed, "nginx's requests did not reach the feed: {proxy}");
    assert_eq!(
        proxy["refused"], 0,
        "www-data is an allowed sender: {proxy}"
    );

    // `systemctl reload` runs `floodgate reload`: the new file is in force, no re-attach.
    let program_id = status(&c)["program_id"].clone();
    c.write(
        "/etc/floodgate/floodgate.toml",
        &config(&iface, "allow = [\"198.18.0.77\"]", "[80, 8080]"),
    );
    c.ok(&["systemctl", "reload", "floodgate"]);
    assert_eq!(status(&c)["ports"], serde_json::json!([80, 8080]));
    assert!(
        c.ok(&["floodgate", "allow", "list"])
            .contains("198.18.0.77")
    );
    assert_eq!(status(&c)["program_id"], program_id, "not re-attached");
    assert_eq!(show(&c, "ActiveState"), "active");

    // A block made with the CLI drops the client's real traffic.
    c.ok(&[
        "floodgate",
        "block",
        "add",
        &CLIENT_V4.to_string(),
        "--ttl",
        "10m",
    ]);
    assert!(
        wait_until(Duration::from_secs(5), || tb.get_timeout(
            client,
            server,
            Duration::from_millis(500)
        ) == 0),
        "the blocked client still reaches nginx"
    );

    // Restart keeps the block.
    c.ok(&["systemctl", "restart", "floodgate"]);
    assert_eq!(show(&c, "ActiveState"), "active", "{}", c.diagnostics());
    assert!(
        c.ok(&["floodgate", "block", "list"])
            .contains(&CLIENT_V4.to_string()),
        "block lost over restart"
    );
    // nginx, untouched, keeps appending to the feed file the restarted daemon follows.
    let other: IpAddr = "198.18.0.3".parse().expect("address");
    tb.add_client_addrs(&[other]);
    for _ in 0..5 {
        assert_eq!(tb.get(other, server), 200, "an unblocked client is served");
    }
    let fed = wait_until(Duration::from_secs(10), || {
        status(&c)["daemon"]["proxy"]["events"].as_u64() >= Some(5)
    });
    assert!(
        fed,
        "no feed after the restart: {}",
        status(&c)["daemon"]["proxy"]
    );

    // A broken file: the reload fails with the reason, the daemon keeps the running one.
    c.write("/etc/floodgate/floodgate.toml", &config(&iface, "", "[0]"));
    let reload = c.run(&["systemctl", "reload", "floodgate"]);
    assert!(!reload.status.success(), "a broken configuration reloaded");
    let direct = c.run(&["floodgate", "reload"]);
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert_eq!(direct.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("filter.ports") && stderr.contains("running one stays in force"),
        "{stderr}"
    );
    assert_eq!(show(&c, "ActiveState"), "active", "{}", c.diagnostics());
    assert_eq!(status(&c)["ports"], serde_json::json!([80, 8080]));
    assert!(
        show(&c, "StatusText").contains("the last reload was rejected"),
        "{}",
        show(&c, "StatusText")
    );

    // Stop: the unit is inactive (not failed) and the pinned filter keeps enforcing.
    c.ok(&["systemctl", "stop", "floodgate"]);
    assert_eq!(show(&c, "ActiveState"), "inactive", "{}", c.diagnostics());
    assert_eq!(
        tb.get_timeout(client, server, Duration::from_secs(1)),
        0,
        "the filter stopped enforcing with the daemon"
    );
    assert_eq!(tb.get(other, server), 200, "an unblocked client is served");

    let journal = c.ok(&["journalctl", "-u", "floodgate", "--no-pager", "-o", "cat"]);
    for line in [
        "ready: protecting",
        "reloaded /etc/floodgate/floodgate.toml",
        "reload rejected",
        "SIGTERM: stopping",
    ] {
        assert!(journal.contains(line), "journal lacks {line:?}:\n{journal}");
    }
    let failed = c.ok(&[
        "systemctl",
        "list-units",
        "--failed",
        "--no-legend",
        "--plain",
    ]);
    assert!(failed.trim().is_empty(), "failed units:\n{failed}");
}
