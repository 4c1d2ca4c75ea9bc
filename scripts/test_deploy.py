#!/usr/bin/env python3
"""Offline tests of the deployment assets (deploy/, helm/emogate/), run by `make test`.

1. Dockerfiles: hadolint; every path they COPY exists and is let through by .dockerignore;
   explicit Cargo targets live in the copied directories; the build arguments agree with the
   Makefile's ORT_VERSION and with Cargo.toml's features.
2. Chart, for every value set in helm/emogate/ci/*.yaml: `helm lint --strict` for each
   Kubernetes version below; a client-side dry-run install with in-memory release storage
   (Helm's own engine, through helm-python-sdk); each rendered object validated with
   kubernetes-validate in strict mode for each version (CRD-backed kinds against
   tests/deploy/crd-schemas/); then the chart's own rules for every workload (Deployment and
   archive StatefulSet: security context, probes, grace period vs drain deadline, config
   checksum, the --stage each runs, archive storage that outlives the pod or an object store
   without any volume, object-store credentials only where the archive runs, GPU wiring) and
   for the release (rendered TOML equal to the values, Secret references, selectors that keep
   the workloads apart, autoscalers and PDB on the Deployment only, scaler settings).
3. Value sets that must be refused (tests/deploy/invalid/*.yaml, each naming the stage that must
   refuse it and the message): proves each stage above can fail.
4. deploy/prometheus/alerts.yaml equals the chart's PrometheusRule groups; the dashboard and all
   alert rules reference only exported metrics (scripts/check_dashboard_metrics.py, self-test
   included); the chart README documents every value and nothing else.

Usage: .cache/venv/bin/python scripts/test_deploy.py [--out DIR] [--write-alerts]
Rendered manifests are written to DIR (default target/deploy-test/) for inspection.
"""
import argparse
import base64
import copy
import functools
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "helm", "emogate")
KUBE_VERSIONS = ["1.25.0", "1.31.0", "1.37.0"]
RELEASE, NAMESPACE = "emogate", "ml"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
}
ALERTS_FILE = os.path.join(ROOT, "deploy", "prometheus", "alerts.yaml")
ALERTS_SELECTOR = 'job=~".*emogate.*"'
ALERTS_HEADER = """\
# emogate alert rules for a Prometheus without the Operator (rule_files: [alerts.yaml]).
# Generated from the Helm chart's PrometheusRule (helm/emogate/templates/_alerts.tpl) with the
# selector {selector}: change the selector to match your scrape job, or regenerate with
#   .cache/venv/bin/python scripts/test_deploy.py --write-alerts
# `make test` fails when this file and the chart disagree.
"""

# kubernetes-validate reads its (large) schema files on every call; they never change.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)


class Report:
    def __init__(self):
        self.passed, self.failed = 0, []

    def ok(self, name):
        self.passed += 1
        print(f"PASS {name}", flush=True)

    def fail(self, name, detail):
        self.failed.append(name)
        print(f"FAIL {name}\n     " + str(detail).replace("\n", "\n     "), flush=True)

    def check(self, name, problems):
        if problems:
            self.fail(name, "\n".join(problems))
        else:
            self.ok(name)


# ---------------------------------------------------------------------------------------------
# Dockerfiles


def dockerfile_instructions(path):
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("#") and not buf:
                continue
            if stripped.startswith("#"):
                continue
            buf += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
            if not stripped.endswith("\\"):
                if buf.strip():
                    word, _, rest = buf.strip().partition(" ")
                    out.append((word.upper(), rest.strip()))
                buf = ""
    return out


def dockerignore_allows(patterns, path):
    """Docker's rule: the last matching pattern wins; a pattern matches a path or its parents."""
    import fnmatch

    allowed = True
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            allowed = negate
    return allowed


def check_dockerfiles(report):
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignore = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    copied_dirs, context_copied = set(), False
    for name in ("Dockerfile", "Dockerfile.cuda"):
        path = os.path.join(ROOT, "deploy", name)
        proc = subprocess.run([hadolint, "--no-color", path], capture_output=True, text=True)
        if proc.returncode:
            report.fail(f"hadolint deploy/{name}", proc.stdout + proc.stderr)
        else:
            report.ok(f"hadolint deploy/{name}")

        problems, args = [], {}
        instructions = dockerfile_instructions(path)
        for word, rest in instructions:
            if word == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value.strip('"')
            if word not in ("COPY", "ADD"):
                continue
            tokens = shlex.split(rest)
            flags = [t for t in tokens if t.startswith("--")]
            paths = [t for t in tokens if not t.startswith("--")]
            if any(f.startswith("--from=") for f in flags):
                continue
            for src in paths[:-1]:
                if src == ".":
                    context_copied = True
                    continue
                full = os.path.join(ROOT, src)
                if not os.path.exists(full):
                    problems.append(f"COPY source {src} does not exist")
                elif not dockerignore_allows(ignore, src):
                    problems.append(f"COPY source {src} is excluded by .dockerignore")
                elif os.path.isdir(full):
                    copied_dirs.add(src.strip("/"))
        if not any(w == "USER" and not rest.startswith(("0", "root")) for w, rest in instructions):
            problems.append("no non-root USER")
        if any(w == "HEALTHCHECK" for w, _ in instructions):
            problems.append("HEALTHCHECK present (Kubernetes probes do that)")
        if [w for w, _ in instructions].count("FROM") < 3:
            problems.append("expected multi-stage build (ort, build, runtime)")
        report.check(f"deploy/{name}: copied paths exist and pass .dockerignore, non-root, multi-stage", problems)

        # Build arguments against the Makefile and Cargo.toml.
        problems = []
        with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
            features = set(tomllib.load(f).get("features", {}))
        with open(os.path.join(ROOT, "Makefile")) as f:
            make_ort = re.search(r"^ORT_VERSION \?= (\S+)", f.read(), re.M).group(1)
        wanted = set(args.get("CARGO_FEATURES", "").split())
        if not wanted or not wanted <= features:
            problems.append(f"CARGO_FEATURES {sorted(wanted)} not all in Cargo.toml features {sorted(features)}")
        ort = args.get("ORT_VERSION", "")
        minor = ort.split(".")[1] if ort.count(".") == 2 else "?"
        if f"ort-api-{minor}" not in wanted:
            problems.append(f"ORT_VERSION {ort} needs feature ort-api-{minor}, CARGO_FEATURES has {sorted(wanted)}")
        if name == "Dockerfile" and (ort != make_ort or args.get("ORT_PACKAGE") != "onnxruntime"):
            problems.append(f"CPU image ORT {args.get('ORT_PACKAGE')} {ort} differs from the Makefile's onnxruntime {make_ort}")
        if name == "Dockerfile.cuda" and (args.get("ORT_PACKAGE") != "onnxruntime-gpu" or "cuda" not in wanted):
            problems.append("CUDA image must use onnxruntime-gpu and the cuda feature")
        report.check(f"deploy/{name}: ORT version, C API feature and Cargo features agree", problems)

    # Cargo refuses to build when an explicitly declared target's file is missing.
    problems = []
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        manifest = tomllib.load(f)
    declared = [manifest.get("lib", {}).get("path", "src/lib.rs")]
    default_dir = {"bin": "src/bin", "bench": "benches", "test": "tests", "example": "examples"}
    package = manifest.get("package", {}).get("name")
    for kind in ("bin", "bench", "test", "example"):
        for t in manifest.get(kind, []):
            if "path" in t:
                declared.append(t["path"])
            elif kind == "bin" and t.get("name") == package:
                declared.append("src/main.rs")
            else:  # Cargo infers <dir>/<name>.rs (or <dir>/<name>/main.rs) and fails if absent
                declared.append(f"{default_dir[kind]}/{t['name']}.rs")
    build = manifest.get("package", {}).get("build")
    if build:
        declared.append(build)
    elif os.path.exists(os.path.join(ROOT, "build.rs")):
        declared.append("build.rs")
    for target in declared:
        if not (context_copied or any(target == d or target.startswith(d + "/") for d in copied_dirs)):
            problems.append(f"Cargo target {target} is not in a directory the images copy ({sorted(copied_dirs)})")
        elif context_copied and not dockerignore_allows(ignore, target):
            problems.append(f"Cargo target {target} is excluded from the build context by .dockerignore")
    for needed in ("Cargo.toml", "Cargo.lock", "src/bin/emogate/main.rs", "schemas"):
        if context_copied and not dockerignore_allows(ignore, needed):
            problems.append(f"{needed} is excluded from the build context by .dockerignore")
    report.check("Dockerfiles copy every file Cargo.toml declares", problems)


# ---------------------------------------------------------------------------------------------
# Chart rendering and validation


class Refused(Exception):
    def __init__(self, stage, message):
        super().__init__(message)
        self.stage = stage


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def install_dry_run(chart, values):
    """Client-side dry-run install with in-memory release storage: the manifest Helm would apply."""
    with helm.Config(storage_driver="memory", namespace=NAMESPACE) as cfg:
        release = cfg.install(chart, RELEASE, values, namespace=NAMESPACE, dry_run="client")
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    return release, docs


def render(chart, values):
    """(release, objects, templates) or Refused('schema'|'render', message)."""
    try:
        chart.validate_schema(values)
    except helm.HelmError as e:
        raise Refused("schema", str(e))
    try:
        release, docs = install_dry_run(chart, values)
        templates = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as e:
        raise Refused("render", str(e))
    return release, docs, templates


@functools.lru_cache(maxsize=None)
def crd_validator(api_version, kind):
    with open(os.path.join(ROOT, "tests", "deploy", "crd-schemas", CRD_SCHEMAS[(api_version, kind)])) as f:
        return jsonschema.Draft202012Validator(json.load(f))


def validate(docs, versions):
    problems = []
    for doc in docs:
        ident = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_SCHEMAS:
            for err in crd_validator(*key).iter_errors(doc):
                path = ".".join(str(p) for p in err.absolute_path)
                problems.append(f"{ident}: {path}: {err.message}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                problems.append(f"{ident} (Kubernetes {version}): {path}: {err.message}")
            except kv_utils.SchemaNotFoundError as err:
                problems.append(f"{ident}: {err.message}")
    return problems


def derived_config(merged):
    """The configuration the chart must write, computed independently of its templates."""
    cfg = copy.deepcopy(merged.get("config") or {})
    cfg.setdefault("telemetry", {})["listen"] = f"0.0.0.0:{merged['service']['port']}"
    model = cfg.setdefault("model", {})
    if merged["gpu"]["enabled"] and model.get("execution_provider", "auto") == "auto":
        model["execution_provider"] = "cuda"
    sasl, tls = merged["auth"]["sasl"], merged["auth"]["tls"]
    if sasl["enabled"] or tls["enabled"]:
        props = {"security.protocol": {(True, True): "SASL_SSL", (True, False): "SASL_PLAINTEXT", (False, True): "SSL"}[(sasl["enabled"], tls["enabled"])]}
        if sasl["enabled"]:
            props["sasl.mechanism"] = sasl["mechanism"]
        if tls["enabled"]:
            props["ssl.ca.location"] = f"/etc/emogate/kafka-tls/{tls['caKey']}"
            if tls["certKey"]:
                props["ssl.certificate.location"] = f"/etc/emogate/kafka-tls/{tls['certKey']}"
                props["ssl.key.location"] = f"/etc/emogate/kafka-tls/{tls['keyKey']}"
        kafka = cfg.setdefault("kafka", {})
        kafka["properties"] = {**props, **(kafka.get("properties") or {})}
    # librdkafka properties and object_store options are strings.
    for props in ((cfg.get("kafka") or {}).get("properties") or {}, (cfg.get("archive") or {}).get("object_store") or {}):
        for k, v in props.items():
            if isinstance(v, bool):
                props[k] = "true" if v else "false"
            elif isinstance(v, (int, float)):
                props[k] = str(int(v)) if float(v).is_integer() else repr(v)

    def drop_nulls(d):
        return {k: drop_nulls(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return drop_nulls(cfg)


def same_typed(expected, actual, path="config"):
    """Equality that also requires integers to stay integers (the service's integer keys)."""
    problems = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a table, got {actual!r}"]
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                problems.append(f"{path}.{k}: missing from the rendered TOML")
            elif k not in expected:
                problems.append(f"{path}.{k}: in the rendered TOML but not in the values")
            else:
                problems += same_typed(expected[k], actual[k], f"{path}.{k}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        for i, (e, a) in enumerate(zip(expected, actual)):
            problems += same_typed(e, a, f"{path}[{i}]")
    elif isinstance(expected, bool) or isinstance(actual, bool):
        if expected is not actual:
            problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    elif isinstance(expected, int) and not isinstance(actual, int):
        problems.append(f"{path}: expected the integer {expected}, got {actual!r} ({type(actual).__name__})")
    elif expected != actual:
        problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    return problems


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://")


def expected_workloads(merged):
    """{kind: the --stage it runs} the values call for, derived independently of the templates:
    stage infer has no archive; the archive runs inline (in the Deployment's pods) or separate
    (a single-replica StatefulSet, the Deployment then runs infer, or is absent for stage archive)."""
    stage, workload = merged["stage"], merged["archive"]["workload"]
    if stage == "infer":
        return {"Deployment": "infer"}
    if workload == "inline":
        return {"Deployment": stage}
    return {"StatefulSet": "archive", **({"Deployment": "infer"} if stage == "all" else {})}


def archive_location(config):
    """("remote", url) for an object store, else ("local", the directory the service writes)."""
    archive = config.get("archive") or {}
    url = archive.get("url")
    if url and url.startswith(REMOTE_SCHEMES):
        return "remote", url
    if url:
        return "local", url[len("file://"):] if url.startswith("file://") else url
    return "local", archive.get("root")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def user_secret_names(entries):
    """Secret names a user's own env / envFrom entries reference (not the chart's business)."""
    names = set()
    for e in entries or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef") or e.get("secretRef") or {}
        if ref.get("name"):
            names.add(ref["name"])
    return names


def pod_policy(obj, runs, config, merged, templates):
    """Rules for one workload (Deployment or StatefulSet) whose container should run `runs`."""
    problems = []
    kind = obj["kind"]
    pod = obj["spec"]["template"]["spec"]
    c = pod["containers"][0]

    # Security context.
    sc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not set on the pod or the container")
    if (sc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
        problems.append("runs as uid 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("container readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append("privileged container")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if ":latest" in c["image"] or ("@" not in c["image"] and ":" not in c["image"]):
        problems.append(f"image {c['image']} is not pinned to a tag or digest")

    # Ports and probes.
    listen_port = int(config["telemetry"]["listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http-metrics") != listen_port:
        problems.append(f"containerPort http-metrics {ports.get('http-metrics')} != telemetry.listen port {listen_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("http-metrics", listen_port):
            problems.append(f"{probe} is not GET {path} on the metrics port: {c.get(probe)}")

    # Graceful termination outlives the drain deadline.
    drain_ms = (config.get("shutdown") or {}).get("drain_deadline_ms", 20000)
    grace = pod.get("terminationGracePeriodSeconds")
    if grace is None or grace * 1000 < drain_ms + 1000:
        problems.append(f"terminationGracePeriodSeconds {grace} leaves less than 1 s after the drain deadline {drain_ms} ms")

    # Config checksum = sha256 of the rendered ConfigMap template (rolls pods on change).
    annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
    want = hashlib.sha256(templates[f"{merged['_chart']}/templates/configmap.yaml"].encode()).hexdigest()
    if annotations.get("checksum/config") != want:
        problems.append(f"checksum/config {annotations.get('checksum/config')} != sha256 of the ConfigMap {want}")

    # Mounts: every mount has a volume (or claim template); each volume has one source; the
    # writable paths exist under the read-only root.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"]: t for t in obj["spec"].get("volumeClaimTemplates") or []}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes and m["name"] not in claims:
            problems.append(f"volumeMount {m['name']} has no volume")
    for v in volumes.values():
        sources = sorted(set(v) - {"name"})
        if len(sources) != 1:
            problems.append(f"volume {v['name']} has {len(sources)} sources {sources} (values merged into a default?)")
    if "/tmp" not in mounts:
        problems.append("no writable /tmp under the read-only root filesystem")
    args = c.get("args") or []
    stage = args[args.index("--stage") + 1] if "--stage" in args else "all"
    if stage != runs:
        problems.append(f"runs --stage {stage}, the values call for {runs}")
    if args[:3] != ["serve", "--config", "/etc/emogate/emogate.toml"] or "/etc/emogate/emogate.toml" not in mounts:
        problems.append(f"container does not serve the mounted config: args {args}")

    # Archive storage: never lost with the pod unless acknowledged; none for an object store.
    where, path = archive_location(config)
    archive_mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "archive"]
    if runs == "infer" or where == "remote":
        if archive_mounts or "archive" in volumes or claims:
            problems.append(f"{'infer' if runs == 'infer' else 'object-store'} archive, yet an archive volume/claim is rendered")
    else:
        m = mounts.get(path)
        if not m:
            problems.append(f"archive directory {path} is not mounted")
        elif m["name"] in claims:
            spec = claims[m["name"]]["spec"]
            p = merged["archive"]["persistence"]
            if spec["resources"]["requests"]["storage"] != p["size"] or spec["accessModes"] != p["accessModes"]:
                problems.append(f"archive claim {spec} does not follow archive.persistence {p}")
            if spec.get("storageClassName", "") != p["storageClassName"]:
                problems.append(f"archive claim storageClassName {spec.get('storageClassName')!r} != {p['storageClassName']!r}")
        elif m["name"] in volumes:
            vol = volumes[m["name"]]
            if "emptyDir" in vol and not merged["archive"]["acknowledgeDataLoss"]:
                problems.append("the archive is on an emptyDir (lost with the pod) without archive.acknowledgeDataLoss")
            if merged["archive"]["volume"] and {k: v for k, v in vol.items() if k != "name"} != merged["archive"]["volume"]:
                problems.append(f"archive volume {vol} is not archive.volume {merged['archive']['volume']}")

    # Object-store credentials reach exactly the pods that run the archive.
    creds = merged["archive"]["credentials"]
    env_names = [e["name"] for e in c.get("env", [])]
    from_secrets = [(e.get("secretRef") or {}).get("name") for e in c.get("envFrom", [])]
    extra_names = {e["name"] for e in merged["extraEnv"]}
    if creds["existingSecret"]:
        wired = from_secrets.count(creds["existingSecret"])
        if runs != "infer" and wired != 1:
            problems.append(f"archive.credentials.existingSecret {creds['existingSecret']} is not in envFrom (secretRef) once: {c.get('envFrom')}")
        if runs == "infer" and wired and creds["existingSecret"] not in user_secret_names(merged["extraEnvFrom"]):
            problems.append("the infer stage gets the archive's credentials Secret")
    for e in creds["env"]:
        if runs != "infer" and e not in c.get("env", []):
            problems.append(f"archive.credentials.env {e['name']} is not in the container's env")
        if runs == "infer" and e["name"] in env_names and e["name"] not in extra_names:
            problems.append(f"the infer stage gets the archive's credential variable {e['name']}")

    # GPU wiring: only the Deployment gets the GPU.
    limits = (c.get("resources") or {}).get("limits") or {}
    gpu = merged["gpu"]
    if gpu["enabled"] and kind == "Deployment":
        if str(limits.get(gpu["resourceName"])) != str(gpu["count"]):
            problems.append(f"gpu.enabled but limits have no {gpu['resourceName']}: {limits}")
        if any((pod.get("nodeSelector") or {}).get(k) != v for k, v in gpu["nodeSelector"].items()):
            problems.append("gpu.enabled but the GPU node selector is missing")
        if not all(t in (pod.get("tolerations") or []) for t in gpu["tolerations"]):
            problems.append("gpu.enabled but the GPU tolerations are missing")
        if not merged["image"]["tag"] and not c["image"].endswith(gpu_suffix(merged)):
            problems.append(f"gpu.enabled but image {c['image']} is not the CUDA image")
    elif gpu["resourceName"] in limits:
        problems.append("GPU requested without gpu.enabled" if kind == "Deployment" else "the archive workload requests a GPU")
    if kind == "StatefulSet" and (pod.get("runtimeClassName") or any(t in (pod.get("tolerations") or []) for t in gpu["tolerations"] if t not in merged["tolerations"])):
        problems.append("the archive workload gets the GPU runtime class or tolerations")
    if not (c.get("resources") or {}).get("requests"):
        problems.append("no resource requests")
    return problems


def chart_policy(docs, templates, merged):
    """The chart's own rules on one rendered release; returns problems."""
    problems = []
    configmaps = by_kind(docs, "ConfigMap")
    workloads = {kind: by_kind(docs, kind) for kind in ("Deployment", "StatefulSet")}
    if len(configmaps) != 1 or any(len(objs) > 1 for objs in workloads.values()):
        return [f"expected one ConfigMap and at most one Deployment and StatefulSet, got {len(configmaps)}, "
                f"{len(workloads['Deployment'])} and {len(workloads['StatefulSet'])}"]
    workloads = {kind: objs[0] for kind, objs in workloads.items() if objs}
    expected = expected_workloads(merged)
    if set(workloads) != set(expected):
        return [f"rendered workloads {sorted(workloads)}, the values call for {sorted(expected)}"]
    cm = configmaps[0]
    dep, sts = workloads.get("Deployment"), workloads.get("StatefulSet")
    labels_of = {kind: obj["spec"]["template"]["metadata"]["labels"] for kind, obj in workloads.items()}

    # Rendered configuration.
    try:
        config = tomllib.loads(cm["data"]["emogate.toml"])
    except tomllib.TOMLDecodeError as e:
        return [f"ConfigMap emogate.toml is not TOML: {e}"]
    problems += same_typed(derived_config(merged), config)

    for kind, obj in workloads.items():
        problems += [f"{kind}: {p}" for p in pod_policy(obj, expected[kind], config, merged, templates)]
        if not selects(obj["spec"]["selector"]["matchLabels"], labels_of[kind]):
            problems.append(f"{kind} selector does not select its own pods")
    # The two workloads never select each other's pods.
    if dep and sts:
        if selects(dep["spec"]["selector"]["matchLabels"], labels_of["StatefulSet"]):
            problems.append("the Deployment's selector matches the archive StatefulSet's pods")
        if selects(sts["spec"]["selector"]["matchLabels"], labels_of["Deployment"]):
            problems.append("the archive StatefulSet's selector matches the Deployment's pods")
    if sts:
        if sts["spec"].get("replicas") != 1:
            problems.append(f"the archive StatefulSet has {sts['spec'].get('replicas')} replicas, not 1 (single writer)")
        if sts["spec"].get("serviceName") not in {s["metadata"]["name"] for s in by_kind(docs, "Service")}:
            problems.append(f"StatefulSet serviceName {sts['spec'].get('serviceName')} is not a rendered Service")
    if archive_location(config)[0] == "remote" and by_kind(docs, "PersistentVolumeClaim"):
        problems.append("object-store archive, yet a PersistentVolumeClaim is rendered")

    # The Service (and so the ServiceMonitor) reaches every workload's pods on the metrics port.
    for svc in by_kind(docs, "Service"):
        for kind, pod_labels in labels_of.items():
            if not selects(svc["spec"]["selector"], pod_labels):
                problems.append(f"Service selector {svc['spec']['selector']} does not select the {kind}'s pods")
        if [p["targetPort"] for p in svc["spec"]["ports"]] != ["http-metrics"]:
            problems.append("Service does not target the http-metrics port")
    for sm in by_kind(docs, "ServiceMonitor"):
        if not any(selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"]) for s in by_kind(docs, "Service")):
            problems.append("ServiceMonitor selects no rendered Service")

    # Secrets: references resolve; secret values appear nowhere but in Secrets.
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    external = {merged["auth"]["sasl"]["existingSecret"], merged["auth"]["tls"]["existingSecret"],
                merged["archive"]["credentials"]["existingSecret"]} - {""}
    external |= user_secret_names(merged["extraEnv"]) | user_secret_names(merged["extraEnvFrom"])
    external |= user_secret_names(merged["archive"]["credentials"]["env"])
    refs = []
    for obj in workloads.values():
        pod = obj["spec"]["template"]["spec"]
        c = pod["containers"][0]
        refs += [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in (e.get("valueFrom") or {})]
        refs += [{"name": e["secretRef"]["name"], "key": None} for e in c.get("envFrom", []) if "secretRef" in e]
        refs += [{"name": v["secret"]["secretName"], "key": None} for v in pod.get("volumes", []) if "secret" in v]
    for ta in by_kind(docs, "TriggerAuthentication"):
        refs += [{"name": r["name"], "key": r["key"]} for r in ta["spec"].get("secretTargetRef", [])]
    for ref in refs:
        if ref["name"] in secrets:
            if ref["key"] and ref["key"] not in secrets[ref["name"]].get("data", {}):
                problems.append(f"Secret {ref['name']} has no key {ref['key']}")
        elif ref["name"] not in external:
            problems.append(f"reference to Secret {ref['name']}, which is neither rendered nor an existingSecret")
    others = yaml.safe_dump_all([d for d in docs if d.get("kind") != "Secret"])
    for s in secrets.values():
        for key, value in (s.get("data") or {}).items():
            plain = base64.b64decode(value).decode()
            if len(plain) >= 8 and plain in others:
                problems.append(f"the value of Secret {s['metadata']['name']} key {key} appears outside Secrets")

    # Scaling: autoscalers and the disruption budget act on the Deployment, never on the archive.
    partitions = merged["autoscaling"]["inputPartitions"]
    autoscaled = merged["autoscaling"]["hpa"]["enabled"] or merged["autoscaling"]["keda"]["enabled"]
    if autoscaled and dep and "replicas" in dep["spec"]:
        problems.append("Deployment sets replicas while an autoscaler owns them")
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if not dep or (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
            problems.append(f"HPA targets {ref['kind']}/{ref['name']}, not the Deployment")
        if partitions and hpa["spec"]["maxReplicas"] > partitions:
            problems.append("HPA maxReplicas exceeds the input partitions")
    for so in by_kind(docs, "ScaledObject"):
        spec = so["spec"]
        meta = spec["triggers"][0]["metadata"]
        kafka = config["kafka"]
        ref = spec["scaleTargetRef"]
        if not dep or (ref.get("kind", "Deployment"), ref["name"]) != ("Deployment", dep["metadata"]["name"]):
            problems.append(f"ScaledObject targets {ref.get('kind')}/{ref['name']}, not the Deployment")
        if partitions and spec["maxReplicaCount"] > partitions:
            problems.append("ScaledObject maxReplicaCount exceeds the input partitions")
        expect = {"bootstrapServers": kafka["brokers"], "consumerGroup": kafka["group_id"], "topic": kafka["topics"]["input"]}
        for k, v in expect.items():
            if meta.get(k) != v:
                problems.append(f"ScaledObject {k} {meta.get(k)!r} != service config {v!r}")
        auth_ref = spec["triggers"][0].get("authenticationRef")
        tas = {t["metadata"]["name"] for t in by_kind(docs, "TriggerAuthentication")}
        if (merged["auth"]["sasl"]["enabled"] or merged["auth"]["tls"]["enabled"]) and (not auth_ref or auth_ref["name"] not in tas):
            problems.append("Kafka auth is on but the scaler has no TriggerAuthentication")
    if sts:
        for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            for obj in by_kind(docs, kind):
                if obj["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"]:
                    problems.append(f"{kind} targets the archive StatefulSet")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not dep or not selects(sel, labels_of["Deployment"]):
            problems.append(f"PodDisruptionBudget selector {sel} does not select the Deployment's pods")
        if sts and selects(sel, labels_of["StatefulSet"]):
            problems.append("PodDisruptionBudget selects the single archive pod (it would block drains)")
    for np in by_kind(docs, "NetworkPolicy"):
        sel = np["spec"]["podSelector"]["matchLabels"]
        for kind, pod_labels in labels_of.items():
            if not selects(sel, pod_labels):
                problems.append(f"NetworkPolicy selector {sel} does not select the {kind}'s pods")
    return problems


def gpu_suffix(merged):
    return merged["image"]["gpuTagSuffix"]


def case_expectations(name, docs, merged):
    """What each committed value set is there to show."""
    kinds = sorted({d["kind"] for d in docs})
    problems = []
    base = {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"}
    want = {
        "default": base | {"StatefulSet"},
        "gpu": base | {"StatefulSet"},
        "keda": base | {"StatefulSet", "PrometheusRule", "ScaledObject", "Secret", "ServiceMonitor", "TriggerAuthentication"},
        "existing-secret": base | {"HorizontalPodAutoscaler", "NetworkPolicy"},
        "archive-s3-irsa": base | {"ScaledObject"},
        "archive-minio-secret": base | {"StatefulSet", "NetworkPolicy"},
        "archive-azure": base | {"StatefulSet", "HorizontalPodAutoscaler"},
    }.get(name)
    if want is not None and set(kinds) != want:
        problems.append(f"rendered kinds {kinds}, expected {sorted(want)}")
    if name == "existing-secret" and by_kind(docs, "Secret"):
        problems.append("a Secret was rendered although existing Secrets are configured")

    def args(obj):
        return obj["spec"]["template"]["spec"]["containers"][0].get("args") or []

    def container(obj):
        return obj["spec"]["template"]["spec"]["containers"][0]

    (cm,) = by_kind(docs, "ConfigMap")
    config = tomllib.loads(cm["data"]["emogate.toml"])
    deps, stss = by_kind(docs, "Deployment"), by_kind(docs, "StatefulSet")
    if name in ("default", "gpu", "keda"):
        # The default shape: infer in the (autoscaled) Deployment, the archive in a one-replica
        # StatefulSet whose claim template is mounted at the archive root.
        if deps and args(deps[0])[-2:] != ["--stage", "infer"]:
            problems.append(f"the Deployment does not run --stage infer: {args(deps[0])}")
        if stss:
            sts = stss[0]
            claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []]
            mounts = {m["mountPath"]: m["name"] for m in container(sts).get("volumeMounts", [])}
            root = config["archive"]["root"]
            if args(sts)[-2:] != ["--stage", "archive"] or sts["spec"]["replicas"] != 1:
                problems.append("the StatefulSet is not one replica of --stage archive")
            if mounts.get(root) not in claims:
                problems.append(f"no volumeClaimTemplate mounted at the archive root {root}: claims {claims}, mounts {mounts}")
            if sts["metadata"]["name"] != f"{deps[0]['metadata']['name']}-archive":
                problems.append(f"StatefulSet name {sts['metadata']['name']} is not <fullname>-archive")
    if name.startswith("archive-"):
        # Object-store archives: no claim and no archive volume anywhere.
        for obj in deps + stss:
            if obj["spec"].get("volumeClaimTemplates") or any(v["name"] == "archive" for v in obj["spec"]["template"]["spec"].get("volumes", [])):
                problems.append(f"{obj['kind']} has an archive volume or claim with {config['archive'].get('url')}")
    if name == "archive-s3-irsa":
        sa = by_kind(docs, "ServiceAccount")[0]
        if "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {}):
            problems.append("the ServiceAccount lacks the IRSA role annotation")
        if stss or (deps and "--stage" in args(deps[0])):
            problems.append("inline: expected one Deployment running both stages")
        if set(config["archive"].get("object_store", {})) != {"region", "endpoint"}:
            problems.append(f"object_store options {config['archive'].get('object_store')} in the TOML")
    if name == "archive-minio-secret":
        if config["archive"]["object_store"].get("allow_http") != "true":
            problems.append("object_store.allow_http is not the string \"true\" in the TOML")
        secret = merged["archive"]["credentials"]["existingSecret"]
        froms = {o["kind"]: [e.get("secretRef", {}).get("name") for e in container(o).get("envFrom", [])] for o in deps + stss}
        if froms.get("StatefulSet") != [secret] or secret in froms.get("Deployment", []):
            problems.append(f"envFrom secretRef {secret} should reach the archive StatefulSet only: {froms}")
    if name == "archive-azure":
        for obj in deps + stss:
            if obj["spec"]["template"]["metadata"]["labels"].get("azure.workload.identity/use") != "true":
                problems.append(f"{obj['kind']} pods lack the azure.workload.identity/use label")
    return problems


def check_chart(report, out_dir):
    chart = helm.Chart.load(CHART)
    chart_name = chart.name
    cases = sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))
    if len(cases) < 7:
        report.fail("chart value sets", f"expected at least 7 ci/*-values.yaml, found {cases}")
    for path in cases:
        name = os.path.basename(path)[: -len("-values.yaml")]
        values = load_values(path)
        t0 = time.time()
        for version in KUBE_VERSIONS:
            lint = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{version}")
            findings = [f"{m['path']}: {m['error']}" for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
            report.check(f"chart[{name}]: helm lint --strict (Kubernetes {version})", findings)
        try:
            release, docs, templates = render(chart, values)
        except Refused as e:
            report.fail(f"chart[{name}]: dry-run install", f"{e.stage}: {e}")
            continue
        with open(os.path.join(out_dir, f"{name}.yaml"), "w") as f:
            f.write(release["manifest"])
        report.ok(f"chart[{name}]: client dry-run install, in-memory storage ({len(docs)} objects)")
        report.check(f"chart[{name}]: kubernetes-validate --strict {', '.join(KUBE_VERSIONS)} + CRD schemas", validate(docs, KUBE_VERSIONS))
        merged = chart.merge_values(values)
        merged["_chart"] = chart_name
        report.check(f"chart[{name}]: security, probes, grace period, config TOML, checksums, secrets, scaling, GPU", chart_policy(docs, templates, merged))
        report.check(f"chart[{name}]: rendered kinds", case_expectations(name, docs, merged))
        if not release.get("notes", "").strip():
            report.fail(f"chart[{name}]: NOTES.txt", "empty")
        print(f"     ({time.time() - t0:.1f}s)")

    # Value sets that must be refused, at the stage each names.
    invalid = sorted(glob.glob(os.path.join(ROOT, "tests", "deploy", "invalid", "*.yaml")))
    stages_seen = set()
    for path in invalid:
        name = os.path.basename(path)
        with open(path) as f:
            header = f.readline()
        m = re.match(r"# expect: (schema|render|validate|policy): (.+)", header)
        if not m:
            report.fail(f"invalid[{name}]", "first line must be `# expect: <schema|render|validate|policy>: <message>`")
            continue
        stage, message = m.group(1), m.group(2).strip()
        stages_seen.add(stage)
        values = load_values(path)
        got_stage, got = None, ""
        try:
            _, docs, templates = render(chart, values)
            problems = validate(docs, KUBE_VERSIONS)
            if problems:
                got_stage, got = "validate", "\n".join(problems)
            else:
                merged = chart.merge_values(values)
                merged["_chart"] = chart_name
                problems = chart_policy(docs, templates, merged)
                if problems:
                    got_stage, got = "policy", "\n".join(problems)
        except Refused as e:
            got_stage, got = e.stage, str(e)
        detail = []
        if got_stage != stage or message not in got:
            detail.append(f"expected refusal at {stage} with {message!r}; got {got_stage or 'no refusal'}: {got}")
        if stage == "schema":
            # Lint validates values against the schema too. (It tolerates `fail` in templates,
            # so render-stage refusals are checked through the install above.)
            lint = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
            if not lint["errors"] and not any(msg["severity"] >= 2 for msg in lint["messages"]):
                detail.append("helm lint --strict accepted it")
        report.check(f"invalid[{name}]: refused at {stage}" + (" (and by lint)" if stage == "schema" else ""), detail)
    # Lint itself must be able to fail: a copy of the chart with a template that is not YAML.
    with tempfile.TemporaryDirectory() as tmp:
        broken = os.path.join(tmp, chart_name)
        shutil.copytree(CHART, broken)
        with open(os.path.join(broken, "templates", "broken.yaml"), "w") as f:
            f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata: [\n")
        lint = helm.lint(broken, {}, strict=True, namespace=NAMESPACE)
        report.check("helm lint --strict rejects a chart copy with a malformed template",
                     [] if lint["errors"] else [f"lint passed it: {lint}"])
    missing = {"schema", "render", "validate", "policy"} - stages_seen
    report.check("invalid value sets cover every stage", [f"no invalid case for stage {s}" for s in sorted(missing)])
    return chart


# ---------------------------------------------------------------------------------------------
# Alerts, dashboard, README


def chart_alert_groups(chart, selector):
    values = {"prometheusRule": {"enabled": True, "selector": selector}, "apiVersions": ["monitoring.coreos.com/v1/PrometheusRule"]}
    _, docs, _ = render(chart, values)
    (rule,) = by_kind(docs, "PrometheusRule")
    return rule["spec"]["groups"]


def write_alerts(chart):
    groups = chart_alert_groups(chart, ALERTS_SELECTOR)
    with open(ALERTS_FILE, "w") as f:
        f.write(ALERTS_HEADER.format(selector=ALERTS_SELECTOR))
        yaml.safe_dump({"groups": groups}, f, sort_keys=False, width=100, allow_unicode=True)
    print(f"wrote {os.path.relpath(ALERTS_FILE, ROOT)}")


def check_observability(report, chart, out_dir):
    checker = [sys.executable, os.path.join(ROOT, "scripts", "check_dashboard_metrics.py")]
    proc = subprocess.run(checker + ["--self-test"], capture_output=True, text=True)
    report.check("check_dashboard_metrics.py --self-test", [proc.stdout + proc.stderr] if proc.returncode else [])

    with open(ALERTS_FILE) as f:
        committed = yaml.safe_load(f)
    generated = chart_alert_groups(chart, ALERTS_SELECTOR)
    report.check(
        "deploy/prometheus/alerts.yaml equals the chart's PrometheusRule (regenerate with --write-alerts)",
        [] if committed == {"groups": generated} else ["they differ"],
    )

    rendered_rules = os.path.join(out_dir, "keda.yaml")
    rules = [ALERTS_FILE] + ([rendered_rules] if os.path.exists(rendered_rules) else [])
    cmd = checker + ["--dashboard", os.path.join(ROOT, "deploy", "grafana", "emogate.json")]
    for r in rules:
        cmd += ["--rules", r]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print("     " + proc.stdout.strip().replace("\n", "\n     "))
    report.check("dashboard and alert rules reference only metrics in deploy/metrics.txt", [proc.stdout + proc.stderr] if proc.returncode else [])

    # The dashboard covers what DESIGN §8 asks to watch.
    with open(os.path.join(ROOT, "deploy", "grafana", "emogate.json")) as f:
        dash_text = f.read()
    needed = ["emogate_records_consumed_total", "emogate_records_accepted_total", "emogate_records_rejected_total",
              "emogate_coverage_ratio", "emogate_coverage_target_ratio", "emogate_entropy_nats_bucket",
              "emogate_end_to_end_latency_seconds_bucket", "emogate_inference_seconds_bucket",
              "emogate_consumer_lag_records", "emogate_records_dead_lettered_total", "emogate_archive_rows_total"]
    report.check("dashboard shows throughput, accept rate, coverage vs target, entropy, latency, lag, DLQ, archive",
                 [f"dashboard never queries {n}" for n in needed if n not in dash_text])
    alerts = {r["alert"] for g in committed["groups"] for r in g["rules"]}
    report.check("alerts cover coverage drift, DLQ rate, lag growth, not ready",
                 [f"missing alert {a}" for a in ("EmogateCoverageDrift", "EmogateDeadLetterRate", "EmogateConsumerLagGrowing", "EmogateNotReady") if a not in alerts])


def value_paths(values, prefix=""):
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from value_paths(value, path + ".")
        else:
            yield path


def check_readme(report):
    with open(os.path.join(CHART, "values.yaml")) as f:
        paths = set(value_paths(yaml.safe_load(f)))
    with open(os.path.join(CHART, "README.md")) as f:
        documented = set(re.findall(r"^\| `([^`]+)` \|", f.read(), re.M))
    problems = [f"value {p} is not in the README's table" for p in sorted(paths - documented)]
    problems += [f"README documents {p}, which values.yaml does not have" for p in sorted(documented - paths)]
    report.check(f"helm/emogate/README.md documents all {len(paths)} values", problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "deploy-test"))
    ap.add_argument("--write-alerts", action="store_true", help="regenerate deploy/prometheus/alerts.yaml from the chart and exit")
    args = ap.parse_args()
    os.chdir(ROOT)
    if args.write_alerts:
        write_alerts(helm.Chart.load(CHART))
        return 0
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    print(f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), kubernetes-validate "
          f"{kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else kv_utils.__version__}, "
          f"Kubernetes {', '.join(KUBE_VERSIONS)}")
    report = Report()
    check_dockerfiles(report)
    chart = check_chart(report, args.out)
    check_observability(report, chart, args.out)
    check_readme(report)
    print(f"deploy tests: {time.time() - t0:.0f}s, manifests in {os.path.relpath(args.out, ROOT)}/")
    print(f"{report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
