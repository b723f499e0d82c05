#!/usr/bin/env python3
"""Checks the Grafana dashboards in deploy/grafana/dashboards without a Grafana.

Each dashboard must be well-formed for Grafana 10.4 (schemaVersion 39): a fixed uid unique among
the dashboards, every panel on the Prometheus datasource by its provisioned uid, a sane place on
the 24-column grid, and only template variables it defines. Above all, every metric name a panel
or a template variable queries must be one the code really exports: the names are read at test
time from the C++ sources that register them (string literals starting with "sched_"; histogram
families add _bucket, _sum and _count), so a metric renamed or removed in the code fails here
with the dashboard, the panel's title and the unknown name.

Only the standard library: PromQL is read with a small scanner, which knows the functions,
aggregations and keywords of PromQL and skips strings, label matchers, ranges and grouping
clauses (by, without, on, ignoring, group_left, group_right).
"""
import glob
import json
import os
import re
import sys
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DASHBOARD_DIR = os.path.join(ROOT, "deploy", "grafana", "dashboards")
DATASOURCE_FILE = os.path.join(ROOT, "deploy", "grafana", "provisioning", "datasources",
                               "sched.yaml")
PROVIDER_FILE = os.path.join(ROOT, "deploy", "grafana", "provisioning", "dashboards", "sched.yaml")
COMPOSE_FILE = os.path.join(ROOT, "deploy", "compose", "docker-compose.yml")

# Where schedd and sched-agent register their metric families.
METRIC_SOURCES = [
    "server/metrics/metrics.cc",
    "server/provision/autoscaler.cc",
    "server/daemon/daemon.cc",
    "server/service/*.cc",
    "agent/metrics.cc",
]

DATASOURCE_UID = "sched-prometheus"
SCHEMA_VERSION = 39  # what Grafana 10.3 and 10.4 write
GRID_COLUMNS = 24

# PromQL's functions (Prometheus 2.x and 3.x) and aggregation operators: an identifier followed by
# "(" must be one of these.
FUNCTIONS = set("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month
deg delta deriv double_exponential_smoothing exp floor histogram_avg histogram_count
histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum
holt_winters hour idelta increase info irate label_join label_replace last_over_time ln log10
log2 mad_over_time max_over_time min_over_time minute month pi predict_linear
present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time
timestamp vector year start end
""".split())
AGGREGATIONS = set("""
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
""".split())
# Identifiers that are not metric names when not followed by "(".
KEYWORDS = set("""
and or unless bool offset by without on ignoring group_left group_right atan2 inf nan
""".split())

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_GRAFANA_VAR = re.compile(
    r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)",
                       re.IGNORECASE)
_TOKEN = re.compile(r"""
    (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:[a-zA-Z]+\d*)*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


class PromQLError(ValueError):
    pass


def grafana_variables(text):
    """The names of the dashboard variables a query refers to ($x, ${x}, ${x:fmt}, [[x]])."""
    return {next(g for g in m.groups() if g) for m in _GRAFANA_VAR.finditer(text)}


def promql_metric_names(expr):
    """The metric names a PromQL expression selects. PromQLError for what cannot be checked: an
    unknown function, unbalanced brackets, a __name__ matched by a regex."""
    names = set()
    for m in _NAME_MATCHER.finditer(expr):
        if m.group(1) != "=":
            raise PromQLError("__name__%s%s cannot be checked against the exported names"
                              % (m.group(1), m.group(2)))
        names.add(m.group(2)[1:-1])
    s = _STRING.sub('""', expr)
    s = re.sub(r"#[^\n]*", " ", s)  # comments
    s = _GRAFANA_VAR.sub(" 0 ", s)
    for opener, closer in ("()", "[]", "{}"):
        if s.count(opener) != s.count(closer):
            raise PromQLError("unbalanced %s%s" % (opener, closer))
    while True:  # subqueries nest ranges: [5m:1m] inside (...)[...] is flat, but be safe
        t = _RANGE.sub(" ", s)
        if t == s:
            break
        s = t
    s = _MATCHERS.sub(" ", s)
    s = _GROUPING.sub(" ", s)
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(s) if m.lastgroup != "space"]
    for i, (kind, text) in enumerate(tokens):
        if kind != "ident":
            continue
        called = i + 1 < len(tokens) and tokens[i + 1][1] == "("
        if called:
            if text not in FUNCTIONS and text.lower() not in AGGREGATIONS:
                raise PromQLError("unknown function %s()" % text)
        elif text.lower() not in KEYWORDS:
            names.add(text)
    return names


def template_query_exprs(query):
    """The PromQL inside a Prometheus template variable's query."""
    q = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_]\w*\s*\)", q, re.DOTALL)
    if m:
        return [m.group(1)]
    if re.fullmatch(r"label_values\(\s*[A-Za-z_]\w*\s*\)|label_names\(\s*\)", q):
        return []
    m = re.fullmatch(r"query_result\((.*)\)", q, re.DOTALL)
    if m:
        return [m.group(1)]
    if re.fullmatch(r"metrics\(.*\)|label_names\(.+\)", q, re.DOTALL):
        raise PromQLError("%s cannot be checked against the exported names" % q)
    return [q]


def exported_metrics(root=ROOT):
    """{metric name: source file} for every series the code exports, read from METRIC_SOURCES."""
    found = {}
    for pattern in METRIC_SOURCES:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            rel = os.path.relpath(path, root)
            literals = list(re.finditer(r'"(sched_[A-Za-z0-9_:]+)"', text))
            for i, m in enumerate(literals):
                name = m.group(1)
                before = text[max(0, m.start() - 200):m.start()]
                end = literals[i + 1].start() if i + 1 < len(literals) else len(text)
                after = text[m.end():end].split(";", 1)[0]
                built = re.search(r"Build(Histogram|Summary|Counter|Gauge)\(\)\s*\.Name\(\s*$",
                                  before)
                typed = re.search(r"MetricType::(Histogram|Summary)\b", after)
                kind = built.group(1) if built else (typed.group(1) if typed else "")
                found[name] = rel
                if kind == "Histogram":
                    for suffix in ("_bucket", "_sum", "_count"):
                        found[name + suffix] = rel
                elif kind == "Summary":
                    for suffix in ("_sum", "_count"):
                        found[name + suffix] = rel
    return found


def all_panels(dashboard):
    """Every panel, those inside collapsed rows included, each with its own list of siblings."""
    for panel in dashboard.get("panels", []):
        yield panel
        for inner in panel.get("panels", []) or []:
            yield inner


def _overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and
            a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def check_dashboard(name, dashboard, exported):
    """What is wrong with one dashboard, as sentences naming the dashboard and the panel."""
    problems = []

    def bad(where, what):
        problems.append("%s: %s: %s" % (name, where, what))

    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        bad("dashboard", "uid %r is not a fixed uid of 1-40 letters, digits, - and _" % (uid,))
    if not dashboard.get("title"):
        bad("dashboard", "no title")
    if dashboard.get("schemaVersion") != SCHEMA_VERSION:
        bad("dashboard", "schemaVersion %r, want %d (Grafana 10.4)"
            % (dashboard.get("schemaVersion"), SCHEMA_VERSION))
    if dashboard.get("id") is not None:
        bad("dashboard", "id %r: a provisioned dashboard carries no database id"
            % dashboard.get("id"))

    defined = set()
    for var in dashboard.get("templating", {}).get("list", []):
        vname = var.get("name")
        where = "variable %r" % vname
        if not vname or vname in defined:
            bad(where, "missing or repeated name")
        defined.add(vname)
        if var.get("type") != "query":
            continue
        ds = var.get("datasource")
        if not isinstance(ds, dict) or ds.get("uid") != DATASOURCE_UID:
            bad(where, "datasource %r, want uid %s" % (ds, DATASOURCE_UID))
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        try:
            for expr in template_query_exprs(query or ""):
                for metric in sorted(promql_metric_names(expr) - set(exported)):
                    bad(where, "%s is not a metric sched exports (query: %s)" % (metric, query))
        except PromQLError as e:
            bad(where, "%s (query: %s)" % (e, query))

    ids = set()
    top_level = []
    for panel in all_panels(dashboard):
        title = panel.get("title") or ""
        where = "panel %r" % title
        if not title:
            bad("panel id %r" % panel.get("id"), "no title")
        pid = panel.get("id")
        if not isinstance(pid, int) or pid in ids:
            bad(where, "id %r missing or repeated" % (pid,))
        ids.add(pid)
        pos = panel.get("gridPos")
        if (not isinstance(pos, dict) or
                not all(isinstance(pos.get(k), int) for k in ("x", "y", "w", "h"))):
            bad(where, "gridPos %r is not four integers x, y, w, h" % (pos,))
        elif (pos["x"] < 0 or pos["y"] < 0 or pos["w"] < 1 or pos["h"] < 1 or
              pos["x"] + pos["w"] > GRID_COLUMNS):
            bad(where, "gridPos %r is off the %d-column grid" % (pos, GRID_COLUMNS))
        elif any(panel is p for p in dashboard.get("panels", [])):
            top_level.append((title, pos))
        if panel.get("type") == "row":
            continue
        if not panel.get("description"):
            bad(where, "no description")
        ds = panel.get("datasource")
        if not isinstance(ds, dict) or ds.get("uid") != DATASOURCE_UID:
            bad(where, "datasource %r, want {type: prometheus, uid: %s}" % (ds, DATASOURCE_UID))
        targets = panel.get("targets") or []
        if not targets:
            bad(where, "no queries")
        ref_ids = set()
        for target in targets:
            ref = target.get("refId")
            if not ref or ref in ref_ids:
                bad(where, "refId %r missing or repeated" % (ref,))
            ref_ids.add(ref)
            tds = target.get("datasource")
            if tds is not None and (not isinstance(tds, dict) or
                                    tds.get("uid") != DATASOURCE_UID):
                bad(where, "query %s: datasource %r, want uid %s" % (ref, tds, DATASOURCE_UID))
            expr = target.get("expr") or ""
            if not expr.strip():
                bad(where, "query %s is empty" % ref)
                continue
            for var in sorted(grafana_variables(expr) - defined):
                if not var.startswith("__"):
                    bad(where, "query %s uses $%s, which the dashboard does not define"
                        % (ref, var))
            try:
                names = promql_metric_names(expr)
            except PromQLError as e:
                bad(where, "query %s: %s: %s" % (ref, e, expr))
                continue
            if not names:
                bad(where, "query %s selects no metric: %s" % (ref, expr))
            for metric in sorted(names - set(exported)):
                bad(where, "%s is not a metric sched exports (query %s: %s)"
                    % (metric, ref, expr))

    for i, (title_a, a) in enumerate(top_level):
        for title_b, b in top_level[i + 1:]:
            if _overlaps(a, b):
                bad("panel %r" % title_a, "overlaps panel %r on the grid" % title_b)
    return problems


def load_dashboards():
    paths = sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json")))
    dashboards = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            dashboards.append((os.path.relpath(path, ROOT), json.load(f)))
    return dashboards


def yaml_values(path, key):
    """Values of `key:` lines in a small YAML file (enough for the provisioning files)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [v.strip().strip("'\"") for v in
            re.findall(r"^\s*-?\s*%s:\s*([^#\n]+)" % re.escape(key), text, re.MULTILINE)]


class ExportedMetricsTest(unittest.TestCase):
    def test_reads_the_registered_names(self):
        exported = exported_metrics()
        for name in ("sched_jobs", "sched_job_submits_total", "sched_store_syncs_total",
                     "sched_provider_calls_total", "sched_rented_nodes",
                     "sched_agent_running_jobs", "sched_agent_gpu_utilization_ratio"):
            self.assertIn(name, exported)

    def test_histograms_add_their_series(self):
        exported = exported_metrics()
        for suffix in ("_bucket", "_sum", "_count"):
            self.assertIn("sched_rpc_duration_seconds" + suffix, exported)
        self.assertNotIn("sched_jobs_bucket", exported)


class PromQLScannerTest(unittest.TestCase):
    def names(self, expr):
        return promql_metric_names(expr)

    def test_selectors_matchers_and_ranges(self):
        self.assertEqual(self.names('rate(a_total{x="y", z=~"$v|b"}[$__rate_interval])'),
                         {"a_total"})
        self.assertEqual(self.names("sum by (le, method) (rate(h_bucket[5m]))"), {"h_bucket"})
        self.assertEqual(self.names("sum(rate(x[5m])) without (instance)"), {"x"})
        self.assertEqual(self.names("max_over_time(rate(c[1m])[1h:5m])"), {"c"})
        self.assertEqual(self.names('{__name__="named", job="j"}'), {"named"})

    def test_vector_matching_and_offsets(self):
        self.assertEqual(
            self.names("a * on (node, provider) group_left (gpu) b offset 1h30m"), {"a", "b"})
        self.assertEqual(self.names("a / ignoring(code) group_right b"), {"a", "b"})
        self.assertEqual(self.names("a > bool 0.5 and b or c unless d"), {"a", "b", "c", "d"})
        self.assertEqual(self.names("a @ start() - a @ 1609746000"), {"a"})

    def test_numbers_are_not_names(self):
        self.assertEqual(self.names("histogram_quantile(0.99, x) * 1e3 + 0x1f - Inf + NaN"),
                         {"x"})
        self.assertEqual(
            self.names("s + clamp_min(deriv(s[6h]), 0) * scalar((days_in_month() - "
                       "day_of_month() + 1) * 86400 - time() % 86400)"), {"s"})

    def test_strings_and_variables_are_not_names(self):
        self.assertEqual(self.names('label_replace(up_total, "dst", "$1", "src", "(.*)")'),
                         {"up_total"})
        self.assertEqual(self.names('topk(${n:raw}, m{a="$a"})'), {"m"})
        self.assertEqual(self.names('count_values("version", v)'), {"v"})
        self.assertEqual(grafana_variables('label_replace(x, "d", "$1", "s", "(.*)")'), set())
        self.assertEqual(grafana_variables('a{p=~"$project"}[$__rate_interval] ${n:raw} [[m]]'),
                         {"project", "__rate_interval", "n", "m"})

    def test_what_cannot_be_checked_is_refused(self):
        with self.assertRaisesRegex(PromQLError, "unknown function rat"):
            self.names("rat(x[5m])")
        with self.assertRaisesRegex(PromQLError, "unbalanced"):
            self.names("sum(rate(x[5m])")
        with self.assertRaisesRegex(PromQLError, "__name__"):
            self.names('{__name__=~"sched_.*"}')

    def test_template_queries(self):
        self.assertEqual(template_query_exprs("label_values(m{a=\"b\"}, project)"),
                         ['m{a="b"}'])
        self.assertEqual(template_query_exprs("label_values(project)"), [])
        self.assertEqual(template_query_exprs("query_result(topk(5, m))"), ["topk(5, m)"])
        with self.assertRaises(PromQLError):
            template_query_exprs("metrics(sched_.*)")


class CheckDashboardTest(unittest.TestCase):
    """check_dashboard itself fails where it should, with the panel and the name."""

    def dashboard(self, expr):
        ds = {"type": "prometheus", "uid": DATASOURCE_UID}
        return {"uid": "t", "title": "t", "schemaVersion": SCHEMA_VERSION, "id": None,
                "templating": {"list": []},
                "panels": [{"id": 1, "type": "timeseries", "title": "Bogus panel",
                            "description": "d", "datasource": ds,
                            "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
                            "targets": [{"refId": "A", "datasource": ds, "expr": expr}]}]}

    def test_unknown_metric_names_the_panel_and_the_metric(self):
        problems = check_dashboard("t.json", self.dashboard("rate(sched_bogus_total[5m])"),
                                   exported_metrics())
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("'Bogus panel'", problems[0])
        self.assertIn("sched_bogus_total is not a metric sched exports", problems[0])

    def test_undefined_variable_and_bad_grid(self):
        d = self.dashboard('sched_jobs{state=~"$state"}')
        d["panels"][0]["gridPos"] = {"x": 20, "y": 0, "w": 8, "h": 8}
        problems = "\n".join(check_dashboard("t.json", d, exported_metrics()))
        self.assertIn("uses $state", problems)
        self.assertIn("off the 24-column grid", problems)

    def test_a_good_panel_passes(self):
        self.assertEqual(check_dashboard("t.json", self.dashboard("sum(sched_jobs)"),
                                         exported_metrics()), [])


class DashboardsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dashboards = load_dashboards()
        cls.exported = exported_metrics()

    def test_the_three_dashboards_are_there(self):
        names = {os.path.basename(n) for n, _ in self.dashboards}
        self.assertLessEqual({"sched-overview.json", "sched-cost.json", "sched-nodes.json"},
                             names)

    def test_uids_and_titles_are_unique(self):
        uids = [d.get("uid") for _, d in self.dashboards]
        titles = [d.get("title") for _, d in self.dashboards]
        self.assertEqual(len(uids), len(set(uids)), uids)
        self.assertEqual(len(titles), len(set(titles)), titles)

    def test_dashboards(self):
        problems = []
        for name, dashboard in self.dashboards:
            problems += check_dashboard(name, dashboard, self.exported)
        if problems:
            self.fail("%d problem(s):\n%s" % (len(problems), "\n".join(problems)))

    def test_datasource_is_provisioned_with_the_uid_the_panels_use(self):
        self.assertEqual(yaml_values(DATASOURCE_FILE, "uid"), [DATASOURCE_UID])
        self.assertEqual(yaml_values(DATASOURCE_FILE, "type"), ["prometheus"])

    def test_compose_mounts_the_dashboards_where_the_provider_reads_them(self):
        paths = yaml_values(PROVIDER_FILE, "path")
        self.assertEqual(len(paths), 1, paths)
        with open(COMPOSE_FILE, encoding="utf-8") as f:
            compose = f.read()
        self.assertRegex(compose, r"\.\./grafana/dashboards:%s(:ro)?\b" % re.escape(paths[0]))
        self.assertRegex(compose, r"\.\./grafana/provisioning:/etc/grafana/provisioning(:ro)?\b")


if __name__ == "__main__":
    unittest.main(verbosity=2)
