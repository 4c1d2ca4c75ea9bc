#!/usr/bin/env python3
"""Checks that the Grafana dashboard and the Prometheus alert rules only query metrics emogate
exports, with labels those metrics carry.

Every PromQL expression in the dashboard (panel targets, template variables) and in the rule
files (plain Prometheus rule files or PrometheusRule manifests) is parsed (promql-parser); each
vector selector's metric name and matcher labels are then looked up in one of:

  --contract FILE       the metric contract (deploy/metrics.txt, the default): name, type, labels
  --metrics-file FILE   a /metrics scrape saved to a file (Prometheus text exposition)
  --metrics-url URL     a live /metrics endpoint, e.g. http://127.0.0.1:9464/metrics

A histogram `x` is referenced as x_bucket (labels + le), x_sum or x_count, never bare. Labels the
scraper adds (job, instance, namespace, pod, ...) are always allowed. Against a scrape, a metric
family with labels and no samples yet (say, no dead letters in a short run) is absent from the
text: name it with --allow-absent to accept that; --strict-contract also requires the scrape and
the contract to list the same emogate_* metrics.

  check_dashboard_metrics.py [--dashboard F] [--rules F ...] [--contract F | --metrics-file F | --metrics-url U]
  check_dashboard_metrics.py --self-test
Exit status: 0 when every reference resolves, 1 otherwise (each problem on its own line).
"""
import argparse
import json
import os
import re
import sys
import urllib.request

import promql_parser
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "emogate_"
# Labels Prometheus and the Prometheus Operator attach to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "__name__"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's built-in interval variables become a duration, other variables a plain word, so
# that the expression parses; both only ever stand in range durations or label values.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)(_ms|_s)?|\$\{__(rate_interval|interval|range)\}")
GRAFANA_VARIABLE = re.compile(r"\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]+\]\]")


class Catalogue:
    """Exported sample names -> the label names they carry (without target labels)."""

    def __init__(self, samples, families, source):
        self.samples = samples  # {sample name: set of label names}
        self.families = families  # {family name: type}
        self.source = source

    @classmethod
    def from_contract(cls, text, source="contract"):
        samples, families = {}, {}
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3 or parts[1] not in ("counter", "gauge", "histogram"):
                raise ValueError(f"{source}:{lineno}: expected `name type labels`, got {line!r}")
            name, kind, labels = parts
            labels = set() if labels == "-" else set(labels.split(","))
            if not name.startswith(PREFIX):
                raise ValueError(f"{source}:{lineno}: {name} lacks the {PREFIX} prefix")
            if name in families:
                raise ValueError(f"{source}:{lineno}: {name} listed twice")
            families[name] = kind
            if kind == "histogram":
                samples[name + "_bucket"] = labels | {"le"}
                samples[name + "_sum"] = set(labels)
                samples[name + "_count"] = set(labels)
            else:
                samples[name] = labels
        return cls(samples, families, source)

    @classmethod
    def from_exposition(cls, text, source="scrape"):
        samples, families = {}, {}
        number = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+|NaN|Inf)"
        sample_re = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+" + number + r"(?:\s+-?[0-9]+)?\s*$")
        label_re = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="(?:[^"\\]|\\.)*"')
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                families[name] = kind.strip()
                continue
            if not line.strip() or line.startswith("#"):
                continue
            m = sample_re.match(line)
            if not m:
                raise ValueError(f"{source}: cannot parse exposition line {line!r}")
            labels = set(label_re.findall(m.group(3) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
        return cls(samples, families, source)

    def emogate_families(self):
        names = set()
        for name, kind in self.families.items():
            if name.startswith(PREFIX):
                names.add(name)
        return names


def grafana_to_promql(expr):
    expr = GRAFANA_INTERVALS.sub("5m", expr)
    return GRAFANA_VARIABLE.sub("grafana_variable", expr)


def dashboard_expressions(dashboard, origin):
    """(where, PromQL) for every query in a Grafana dashboard model."""
    found = []

    def panels(items):
        for panel in items or []:
            yield panel
            yield from panels(panel.get("panels"))

    for panel in panels(dashboard.get("panels")):
        for i, target in enumerate(panel.get("targets") or []):
            if target.get("expr"):
                found.append((f"{origin}: panel {panel.get('title')!r} target {target.get('refId', i)}", target["expr"]))
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not query:
            continue
        where = f"{origin}: variable {var.get('name')!r}"
        m = re.fullmatch(r"\s*label_values\((.*?)(,\s*[A-Za-z_][A-Za-z0-9_]*)?\)\s*", query)
        if m:
            found.append((where, m.group(1)))
        elif re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", query):
            continue
        else:
            m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
            found.append((where, m.group(1) if m else query))
    for ann in (dashboard.get("annotations") or {}).get("list") or []:
        if ann.get("expr"):
            found.append((f"{origin}: annotation {ann.get('name')!r}", ann["expr"]))
    return found


def rule_expressions(documents, origin):
    """(where, PromQL) for every rule in Prometheus rule files or PrometheusRule manifests."""
    found = []
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        groups = doc.get("groups")
        if groups is None and doc.get("kind") == "PrometheusRule":
            groups = (doc.get("spec") or {}).get("groups")
        for group in groups or []:
            for rule in group.get("rules") or []:
                name = rule.get("alert") or rule.get("record")
                found.append((f"{origin}: group {group.get('name')!r} rule {name!r}", str(rule["expr"])))
    return found


def selectors(expr):
    """[(metric name, {label names in matchers})] of an expression's vector selectors."""
    out = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers} if node.matchers else set()
            name = node.name
            if name is None:
                for m in node.matchers.matchers if node.matchers else []:
                    if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                        name = m.value
            out.append((name, labels - {"__name__"}))
        return True

    promql_parser.walk(expr, visit)
    return out


def check(expressions, catalogue, allow_absent=()):
    """Problems (strings) of the expressions against the catalogue; also the names referenced."""
    problems, referenced = [], set()
    for where, raw in expressions:
        try:
            ast = promql_parser.parse(grafana_to_promql(raw))
        except ValueError as e:
            problems.append(f"{where}: PromQL does not parse ({e}): {raw}")
            continue
        for name, labels in selectors(ast):
            if name is None or not name.startswith(PREFIX):
                continue
            referenced.add(name)
            if name not in catalogue.samples:
                base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
                if catalogue.families.get(name) == "histogram":
                    problems.append(f"{where}: {name} is a histogram; query {name}_bucket, _sum or _count")
                elif name in allow_absent or (base and base in allow_absent):
                    continue
                else:
                    problems.append(f"{where}: {name} is not exported ({catalogue.source})")
                continue
            unknown = labels - catalogue.samples[name] - TARGET_LABELS
            if unknown:
                problems.append(
                    f"{where}: {name} has no label(s) {sorted(unknown)} "
                    f"(it has {sorted(catalogue.samples[name]) or 'none'}; {catalogue.source})"
                )
    return problems, referenced


def load_rules(path):
    with open(path) as f:
        return list(yaml.safe_load_all(f))


def self_test():
    """Exercises every rule of the checker on small inputs; returns the failures."""
    failures = []

    def expect(label, condition):
        if not condition:
            failures.append(label)

    contract = Catalogue.from_contract(
        "emogate_a_total counter reason\nemogate_h histogram attribute\nemogate_g gauge -\n", "test contract"
    )
    expect("contract: histogram expands to _bucket with le", contract.samples["emogate_h_bucket"] == {"attribute", "le"})
    expect("contract: histogram base is not a sample", "emogate_h" not in contract.samples)
    for bad in ("emogate_x counter", "other_total counter -", "emogate_x summary -", "emogate_g gauge -\nemogate_g gauge -"):
        try:
            Catalogue.from_contract(bad)
            failures.append(f"contract: {bad!r} accepted")
        except ValueError:
            pass

    dashboard = {
        "panels": [
            {"title": "ok", "targets": [{"refId": "A", "expr": 'sum by (reason) (rate(emogate_a_total{reason!="", job=~"$job"}[$__rate_interval]))'}]},
            {"title": "row", "type": "row", "panels": [
                {"title": "nested", "targets": [{"refId": "A", "expr": "histogram_quantile(0.9, sum by (le) (rate(emogate_h_bucket{attribute=\"valence\"}[${__interval}])))"}]},
            ]},
            {"title": "bare histogram", "targets": [{"refId": "A", "expr": "emogate_h"}]},
            {"title": "unknown", "targets": [{"refId": "A", "expr": "rate(emogate_nope_total[5m])"}]},
            {"title": "bad label", "targets": [{"refId": "A", "expr": 'emogate_g{attribute="x"}'}]},
            {"title": "syntax", "targets": [{"refId": "A", "expr": "sum(rate(emogate_a_total[5m])"}]},
            {"title": "foreign", "targets": [{"refId": "A", "expr": "up{job=\"$job\"}"}]},
        ],
        "templating": {"list": [
            {"type": "query", "name": "job", "query": {"query": "label_values(emogate_g, job)"}},
            {"type": "query", "name": "bad", "query": "label_values(emogate_missing, job)"},
            {"type": "datasource", "name": "ds", "query": "prometheus"},
        ]},
    }
    exprs = dashboard_expressions(dashboard, "dash")
    expect("dashboard: nested row panels and variables found", len(exprs) == 9)
    problems, referenced = check(exprs, contract)
    text = "\n".join(problems)
    expect("valid selectors pass", not any("'ok'" in p or "'nested'" in p or "'foreign'" in p or "'job'" in p for p in problems))
    expect("bare histogram reported", "emogate_h is a histogram" in text)
    expect("unknown metric reported", "emogate_nope_total is not exported" in text)
    expect("unknown variable metric reported", "emogate_missing is not exported" in text)
    expect("unknown label reported", "emogate_g has no label(s) ['attribute']" in text)
    expect("parse error reported", "does not parse" in text)
    expect("exactly the five problems", len(problems) == 5)
    expect("referenced names collected", {"emogate_a_total", "emogate_h_bucket", "emogate_g"} <= referenced)

    rules = rule_expressions(
        [
            {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "emogate_g == 0"}]}]},
            {"kind": "PrometheusRule", "spec": {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "emogate_zz"}]}]}},
        ],
        "rules",
    )
    problems, _ = check(rules, contract)
    expect("rules: plain file and PrometheusRule read", len(rules) == 2)
    expect("rules: unknown metric reported", len(problems) == 1 and "emogate_zz" in problems[0])

    scrape = Catalogue.from_exposition(
        "# HELP emogate_h x\n# TYPE emogate_h histogram\n"
        'emogate_h_bucket{attribute="valence",le="0.1"} 1\nemogate_h_bucket{attribute="valence",le="+Inf"} 2\n'
        'emogate_h_sum{attribute="valence"} 0.3\nemogate_h_count{attribute="valence"} 2\n'
        "# TYPE emogate_g gauge\nemogate_g 1\n# TYPE emogate_a_total counter\n",
        "test scrape",
    )
    expect("scrape: histogram samples with labels", scrape.samples.get("emogate_h_bucket") == {"attribute", "le"})
    expect("scrape: families from TYPE lines", scrape.emogate_families() == {"emogate_h", "emogate_g", "emogate_a_total"})
    sel = [("s", 'rate(emogate_a_total{reason="x"}[5m])'), ("t", "emogate_h_count")]
    problems, _ = check(sel, scrape)
    expect("scrape: family without samples reported", len(problems) == 1 and "emogate_a_total" in problems[0])
    problems, _ = check(sel, scrape, allow_absent={"emogate_a_total"})
    expect("scrape: --allow-absent accepts it", problems == [])
    try:
        Catalogue.from_exposition("not a sample line {", "bad")
        failures.append("scrape: garbage accepted")
    except ValueError:
        pass
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dashboard", action="append", help="Grafana dashboard JSON (default deploy/grafana/emogate.json)")
    ap.add_argument("--rules", action="append", help="rule file or PrometheusRule manifest (default deploy/prometheus/alerts.yaml)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--contract", help="metric contract (default deploy/metrics.txt)")
    src.add_argument("--metrics-file", help="saved /metrics text")
    src.add_argument("--metrics-url", help="live /metrics URL")
    ap.add_argument("--allow-absent", action="append", default=[], help="metric family allowed to be missing from a scrape")
    ap.add_argument("--strict-contract", action="store_true", help="with a scrape: it must export exactly the contract's emogate_* metrics")
    ap.add_argument("--self-test", action="store_true", help="check the checker on built-in cases and exit")
    args = ap.parse_args()

    if args.self_test:
        failures = self_test()
        for f in failures:
            print(f"self-test FAILED: {f}")
        print("check_dashboard_metrics self-test: " + ("ok" if not failures else f"{len(failures)} failure(s)"))
        return 1 if failures else 0

    contract_path = os.path.join(ROOT, "deploy", "metrics.txt")
    with open(args.contract or contract_path) as f:
        contract = Catalogue.from_contract(f.read(), os.path.relpath(args.contract or contract_path))
    if args.metrics_url:
        with urllib.request.urlopen(args.metrics_url, timeout=10) as resp:
            catalogue = Catalogue.from_exposition(resp.read().decode(), args.metrics_url)
    elif args.metrics_file:
        with open(args.metrics_file) as f:
            catalogue = Catalogue.from_exposition(f.read(), args.metrics_file)
    else:
        catalogue = contract

    expressions = []
    for path in args.dashboard or [os.path.join(ROOT, "deploy", "grafana", "emogate.json")]:
        with open(path) as f:
            expressions += dashboard_expressions(json.load(f), os.path.relpath(path))
    for path in args.rules or [os.path.join(ROOT, "deploy", "prometheus", "alerts.yaml")]:
        expressions += rule_expressions(load_rules(path), os.path.relpath(path))

    problems, referenced = check(expressions, catalogue, set(args.allow_absent))
    if catalogue is not contract and args.strict_contract:
        exported, listed = catalogue.emogate_families(), set(contract.families)
        for name in sorted(listed - exported - set(args.allow_absent)):
            problems.append(f"{catalogue.source}: contract metric {name} is not exported")
        for name in sorted(exported - listed):
            problems.append(f"{catalogue.source}: {name} is exported but not in {contract.source}")
    for p in problems:
        print(p)
    print(
        f"{len(expressions)} expressions, {len(referenced)} emogate metrics referenced, "
        f"checked against {catalogue.source}: {'ok' if not problems else f'{len(problems)} problem(s)'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
