//! The Kubernetes deployment (`deploy/k8s`) as a cluster would run it: the trust
//! service pod's command line, environment and probes, read from the manifest and run
//! here against a local PostgreSQL. `deploy/check` validates the manifests' schemas.

use std::process::Command;

use crate::common::{Scratch, Service};
use perun_client::{Caller, Client, ClientError};
use perun_trust::store::local_cluster::LocalCluster;

use serde_json::Value;

/// The trust service's Deployment as JSON, by the venv's PyYAML (installed with
/// kubernetes-validate); `None` outside CI where that Python is missing.
fn trust_deployment() -> Option<Value> {
    let python = std::env::var("PERUN_PYTHON").unwrap_or_else(|_| "target/py/bin/python".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/k8s/trust-service.yaml");
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]\n\
                  print(json.dumps([d for d in docs if d['kind'] == 'Deployment'][0]))";
    let out = Command::new(&python).args(["-c", script, manifest]).output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        r if std::env::var_os("CI").is_none() => {
            eprintln!("SKIP: {python} with PyYAML is missing (scripts/install-deps makes it): {r:?}");
            None
        }
        r => panic!("{python} could not read {manifest}: {r:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_trust_service_pod_runs_as_rendered_against_postgres_and_its_probes_answer() {
    let Some(deployment) = trust_deployment() else { return };
    if !crate::common::postgres_installed_or_skip() {
        return;
    }
    // A cluster of this test's own: stopping it must make the pod unready.
    let cluster = LocalCluster::start_tls(false).unwrap();
    let url = cluster.create_database("perun").unwrap();

    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let c = &spec["containers"][0];
    let command = strings(&c["command"]);
    let args = strings(&c["args"]);
    assert_eq!(command, ["perun"]);
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    let listen_at = args.iter().position(|a| a == "--listen").unwrap() + 1;
    assert_eq!(args[listen_at], format!("0.0.0.0:{port}"), "the service listens on the port the probes reach");
    let keys_at = args.iter().position(|a| a == "--keys").unwrap() + 1;
    let mounts: Vec<&str> =
        c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert!(mounts.contains(&args[keys_at].as_str()), "--keys {} is not mounted", args[keys_at]);
    let init = strings(&spec["initContainers"][0]["command"]).join(" ");
    assert!(init.contains(&args[keys_at]), "the init container does not fill {}: {init}", args[keys_at]);

    // The keys the operator makes once and puts in the Secret.
    let s = Scratch::new();
    let keys = s.path("keys");
    let made = s.perun(&["serve", "--keys", keys.to_str().unwrap(), "--make-keys"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    // The container's environment: values as given, Secret references as the operator
    // filled them (the store URL; the optional metrics token left out).
    let mut env = vec![];
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_owned();
        match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
            (Value::String(v), _) => env.push((name, v.clone())),
            (_, r) if r["name"] == "perun-store" => env.push((name, url.clone())),
            (_, r) if r["optional"] == true => {}
            _ => panic!("env {name}: a reference this test does not fill: {e}"),
        }
    }
    assert!(env.iter().any(|(n, _)| n == "PERUN_STORE"), "the store comes from the environment");
    let mut args = args.clone();
    args[keys_at] = keys.to_string_lossy().into_owned();
    // The CA the Secret `perun-postgres-tls` holds: here the local cluster's.
    let ca_at = args.iter().position(|a| a == "--store-ca").expect("the store is reached over verified TLS") + 1;
    assert!(mounts.iter().any(|m| args[ca_at].starts_with(m)), "--store-ca {} is not mounted", args[ca_at]);
    let ca = s.path("store-ca.crt");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    args[ca_at] = ca.to_string_lossy().into_owned();
    assert_eq!(args[0], "serve");
    // `Service` runs `perun serve --data D --listen L` and then these arguments: the
    // manifest's, but for the address (here a free loopback port) and the keys' folder.
    // `--data` is unused with --store and --keys.
    let rest: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 0 && *i + 1 != listen_at && *i != listen_at)
        .map(|(_, a)| a.as_str())
        .collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let svc = Service::start_with(&s, "127.0.0.1:0", &rest, &env_refs);

    // The probes, as the kubelet sends them (HTTPS, any certificate: here the pinned one).
    let anon = Client::new(&svc.url, svc.fingerprint, Caller::Anonymous).unwrap();
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS");
        let answer: Value = anon.call::<(), _>("GET", path, None).unwrap();
        assert!(answer["status"] == "ok" || answer["status"] == "ready", "{probe} {path}: {answer}");
    }
    // The store is the PostgreSQL one (its identity record is there), reached over TLS.
    let mut pg = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n: i64 = pg.query_one("SELECT count(*) FROM service", &[]).unwrap().get(0);
    assert_eq!(n, 1);
    let row = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = 'perun' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 1 && encrypted == all, "{encrypted} of {all} of the service's connections use TLS");
    drop(pg);

    // PostgreSQL gone: alive, but not ready (the Service stops sending it requests).
    drop(cluster);
    let ready = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    match anon.call::<(), Value>("GET", ready, None) {
        Err(ClientError::Unexpected { status, .. }) => assert_eq!(status, 503),
        r => panic!("ready without its store: {r:?}"),
    }
    let alive: Value =
        anon.call::<(), _>("GET", c["livenessProbe"]["httpGet"]["path"].as_str().unwrap(), None).unwrap();
    assert_eq!(alive["status"], "ok");
    svc.stop();
}
