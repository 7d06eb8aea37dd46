//! The connectivity matrix of a running isolated site, shared by the tests that bring
//! one up (`scale.rs`, `deploy.rs`): `exec(host, script)` runs a bash script inside a
//! host's namespace and returns its stdout.

/// The connectivity matrix of `t` with every service up, from every host to every
/// address of every other host on the services' ports, and to the floating address:
/// each flow of the policy connects, every other one is dropped. A load balancer of the
/// pair listens on the floating address only, so its own public address answers its
/// allowed ports with a refusal (the firewall let the SYN through), but for plain HTTP
/// under `[acme]`. For `holder`, the
/// floating address is its own (loopback traffic), so it is not probed from there.
/// Returns how many flows were allowed and how many dropped.
pub fn matrix(
    exec: &dyn Fn(&str, &str) -> String,
    t: &rampart_topology::Topology,
    holder: &str,
) -> (usize, usize) {
    use rampart_topology::policy::Proto;
    use rampart_topology::{Role, Segment};
    let policy = t.policy();
    let mut ports: Vec<u16> = vec![
        80, 443, 53, 8443, 9180, 9181, 3306, 9090, 9100, 3000, 2379, 2380, 2381, 9104, 9107, 9108,
    ];
    // An ACME CA on one of the site's hosts: its port too (nothing listens there unless
    // the test started the CA).
    ports.extend(
        t.acme
            .as_ref()
            .map(|a| a.port)
            .filter(|p| !ports.contains(p)),
    );
    let vip = t.vip.map(|v| v.to_string());
    let (mut allowed_n, mut dropped_n) = (0, 0);
    let mut failures = Vec::new();
    for src in &t.hosts {
        let mut script = String::new();
        let mut cases: Vec<(String, String, u16)> = Vec::new();
        for dst in t.hosts.iter().filter(|d| d.name != src.name) {
            for (_, addr) in &dst.segments {
                for &port in &ports {
                    cases.push((dst.name.clone(), addr.to_string(), port));
                }
            }
        }
        if let Some(v) = vip.as_ref().filter(|_| src.name != holder) {
            for &port in &ports {
                cases.push(("(floating)".into(), v.clone(), port));
            }
        }
        for (i, (_, addr, port)) in cases.iter().enumerate() {
            script.push_str(&format!(
                "( e=$(timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port}' 2>&1); echo \"{i} $? $e\" ) &\n"
            ));
        }
        script.push_str("wait\n");
        let text = exec(&src.name, &script);
        let mut seen = 0;
        for line in text.lines() {
            let mut it = line.splitn(3, ' ');
            let (Some(i), Some(code)) = (it.next(), it.next()) else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            seen += 1;
            let err = it.next().unwrap_or("");
            let (dst, addr, port) = &cases[i];
            let result = if code == "0" {
                "connected"
            } else if err.contains("refused") {
                "refused"
            } else {
                "dropped"
            };
            let flows_to = |name: &str, segment_addr: Option<std::net::IpAddr>| {
                policy.flows.iter().any(|f| {
                    f.to == name
                        && f.port == *port
                        && f.proto == Proto::Tcp
                        && t.host(name).and_then(|d| t.segment_addr(d, f.segment)) == segment_addr
                        && t.sources(f).iter().any(|h| h.name == src.name)
                })
            };
            let expected = if dst == "(floating)" {
                // Whichever load balancer holds it: the public flows of the lbs.
                let lb = t.with_role(Role::Lb).next().unwrap();
                if flows_to(&lb.name, t.segment_addr(lb, Segment::Public)) {
                    "connected"
                } else {
                    "dropped"
                }
            } else if flows_to(dst, addr.parse().ok()) {
                let lb_public = t.host(dst).is_some_and(|d| {
                    d.role == Role::Lb && t.segment_addr(d, Segment::Public) == addr.parse().ok()
                });
                // Under ACME each also serves plain HTTP on its own address, where
                // the other relays challenges (`listen.http_own`).
                let own_http = t.acme.is_some() && *port == t.ports.lb_http;
                if lb_public && vip.is_some() && !own_http {
                    "refused"
                } else {
                    "connected"
                }
            } else {
                "dropped"
            };
            if expected == "dropped" {
                dropped_n += 1;
            } else {
                allowed_n += 1;
            }
            if result != expected {
                failures.push(format!(
                    "{} -> {dst} {addr}:{port}: {result}, expected {expected} ({err})",
                    src.name
                ));
            }
        }
        assert_eq!(seen, cases.len(), "{}: {text}", src.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "connectivity matrix: {allowed_n} allowed flows answered, {dropped_n} other flows dropped, \
         as the policy derived from the roles says"
    );
    (allowed_n, dropped_n)
}
