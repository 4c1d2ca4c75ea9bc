//! The Helm chart renders configurations the service accepts: every CI value set of the chart
//! (helm/emogate/ci/*.yaml) is rendered by `scripts/test_deploy.py`, and each ConfigMap's
//! `emogate.toml` must load and validate with [`Config::from_sources`] — the same code
//! `emogate serve` runs — including the `[archive]` keys (URL, object-store options, retries).
//! Without this, a key the chart writes but the service does not know (`deny_unknown_fields`)
//! would only show up as a crash-looping pod.

mod common;

use emogate::archive::ArchiveLocation;
use emogate::config::Config;

#[test]
fn every_rendered_configmap_is_a_valid_service_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("manifests");
    common::run_python("scripts/test_deploy.py", &["--out", out.to_str().unwrap()]);
    let extract = format!(
        "import glob, json, os, yaml\n\
         found = {{}}\n\
         for path in sorted(glob.glob(os.path.join({out:?}, '*.yaml'))):\n\
         \x20   for doc in yaml.safe_load_all(open(path)):\n\
         \x20       if doc and doc.get('kind') == 'ConfigMap' and 'emogate.toml' in doc.get('data', {{}}):\n\
         \x20           found[os.path.basename(path)] = doc['data']['emogate.toml']\n\
         print(json.dumps(found))",
        out = out.display().to_string()
    );
    let text = std::process::Command::new(common::python()).args(["-c", &extract]).output().unwrap();
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let configs: std::collections::BTreeMap<String, String> = serde_json::from_slice(&text.stdout).unwrap();
    assert!(configs.len() >= 5, "rendered value sets: {:?}", configs.keys());
    let mut remote = 0;
    for (name, toml) in &configs {
        // `${env:…}` secrets resolve to a placeholder: only their presence matters here.
        let config = Config::from_sources(Some(toml), name, Vec::new(), &|_| Some("placeholder".into()))
            .unwrap_or_else(|e| panic!("{name}: the service refuses the chart's config: {e}\n{toml}"));
        let location = config.archive.location().unwrap();
        remote += usize::from(location.is_remote());
        if let ArchiveLocation::Local(root) = &location {
            assert!(root.is_absolute(), "{name}: local archive {root:?} is not an absolute mount path");
        }
    }
    assert!(remote >= 2, "the remote-archive value sets render an object-store URL");
}
