#!/usr/bin/env python3
"""The soak of issue 17 (item 4): `emogate serve` under paced load for a long run, with one broker
restart and one archive-storage outage in the middle (`make soak SOAK_MINUTES=N`).

What it does, all on 127.0.0.1:

1. Starts a Tansu broker whose storage survives its SIGKILL, so that it can be restarted on the
   same port with its topics, records and committed offsets: by default a SQLite file (Tansu 0.6
   built with its `libsql` feature, `make soak` installs it; see `Broker.index_headers` for the one
   index the soak adds to its schema), or with `--storage s3` a bucket in moto's S3 server as in
   the fault suite (tests/fault_support; moto then keeps each object in a file, `moto_main`). The
   S3 engine lists every batch object of a partition on each fetch and writes a cluster-wide
   meta.json on each produce, so on moto it sustains far less than the service does (measured:
   about 30 records/s from the paced producer); it is kept for short runs of the exactly-once
   mode, which the SQLite engine does not support (EndTxn unsupported).
2. Measures the end-to-end maximum in this set-up: `--calibrate-records` synthetic records are
   produced flat out to topics of their own, then one `emogate serve --stage infer` and one
   `--stage archive` process (the soak's config, groups of their own) drain them; the maximum is
   the rate of answers between 10 % and 90 % of the backlog. The calibration processes are
   stopped before the soak starts.
3. Starts the soak's two service processes (infer and archive, the two stages in separate
   processes so that each one's RSS is its own; `--mode`, default at_least_once) and
   `emogate produce --rate R` (not idempotent: a restarted Tansu fences idempotent producers)
   with R = `--load` (default 0.5) x the measured maximum, for `--minutes`.
4. Samples every `--sample-seconds` (10): VmRSS of both processes (/proc/PID/status), their
   /metrics and /readyz, the consumer lag of both groups computed outside the service (end
   offsets minus committed offsets, confluent-kafka), and the interval's p99 latency from the
   service's `emogate_end_to_end_latency_seconds` histogram. Writes the series as CSV.
5. At 1/3 of the load phase: SIGKILL of Tansu, restart 3 s later on the same port and storage.
   At 2/3: the archive root's parent directory is moved away and a regular file put in its
   place (fails for root too; tests/fault_suite.rs), for `--outage-seconds` (60), then put back.
   The same two service processes must survive both (same PIDs, never restarted).
6. When the producer is done: waits until both groups have caught up, stops both processes with
   SIGTERM (exit status 0 expected), reads every output topic back (read_committed, as
   scripts/kafka_readback.py does, decoding with its decoder) and the Parquet archive (pyarrow
   and DuckDB, through scripts/archive_readback.py's filesystem helper), and counts:
   lost = input offsets without an answer; duplicates = answers beyond the first per input
   (`emogate.input` header); archive rows missing / duplicated per output record.
7. Writes `--out`.json (figures), `--out`.csv (series) and `--out`.png (RSS, lag, p99 latency
   over time with the faults marked; matplotlib from scripts/requirements-soak.txt).

Criteria (exit status 1 when one fails): lost = 0; no archive row missing or duplicated; RSS slope
of each process after warm-up (least squares over the samples after max(20 %, 3 min)) below
`--max-slope` (1 MiB/min); consumer lag bounded (at the producer's end under 10 s of input, and
0 after the drain); no service process died or was restarted; duplicates within the mode's
promise: none outside the fault windows in either mode (at-least-once allows them around a fault;
exactly-once allows none on a broker that hides aborted transactions, which Tansu 0.6 does not,
so on Tansu they are counted and must also lie in a fault window).

  soak.py --emogate target/release/emogate --tansu .cache/tansu-libsql/bin/tansu --minutes 30 \
      --out docs/results/soak
"""

import argparse
import csv
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PARTITIONS = 4
KIB = 1024


# --------------------------------------------------------------------------------------------
# moto with its objects on disk


class DiskBuffer:
    """Stand-in for the `tempfile.SpooledTemporaryFile` moto keeps each S3 object's bytes in: the
    bytes live in a file opened only while it is read or written, so moto's memory and its open
    descriptors (20,000 at most here) do not grow with the data or the number of objects."""

    spool = None

    def __init__(self, max_size=0, *args, **kwargs):
        self._path = os.path.join(DiskBuffer.spool, uuid.uuid4().hex)
        self._pos = 0
        self._lock = threading.Lock()
        open(self._path, "wb").close()

    def seek(self, pos, whence=0):
        with self._lock:
            if whence == 0:
                self._pos = pos
            elif whence == 1:
                self._pos += pos
            else:
                self._pos = os.path.getsize(self._path) + pos
            return self._pos

    def tell(self):
        return self._pos

    def truncate(self, size=None):
        with self._lock:
            with open(self._path, "r+b") as f:
                f.truncate(self._pos if size is None else size)

    def write(self, data):
        with self._lock:
            with open(self._path, "r+b") as f:
                f.seek(self._pos)
                f.write(data)
            self._pos += len(data)
            return len(data)

    def read(self, n=-1):
        with self._lock:
            with open(self._path, "rb") as f:
                f.seek(self._pos)
                data = f.read() if n is None or n < 0 else f.read(n)
            self._pos += len(data)
            return data

    def close(self):
        try:
            os.remove(self._path)
        except FileNotFoundError:
            pass


def moto_main(port, spool):
    """`soak.py _moto PORT SPOOL`: moto's server with `DiskBuffer` as its object store."""
    import types

    import moto.s3.models
    import moto.server

    os.makedirs(spool, exist_ok=True)
    DiskBuffer.spool = spool
    shim = types.ModuleType("tempfile_on_disk")
    shim.SpooledTemporaryFile = DiskBuffer
    moto.s3.models.tempfile = shim
    moto.server.main(["-H", "127.0.0.1", "-p", str(port)])


# --------------------------------------------------------------------------------------------
# processes


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def wait_for(what, timeout, check, every=0.2):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if check():
            return time.time() - t0
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class Procs:
    """Every child this script starts, killed by PID at the end."""

    def __init__(self):
        self.children = []

    def start(self, cmd, log, env=None, cwd=REPO):
        f = open(log, "ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        f.close()
        self.children.append(p)
        return p

    def kill_all(self):
        for p in self.children:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


S3_ENV = {
    "AWS_ALLOW_HTTP": "true",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


class Broker:
    """Tansu on a fixed port with storage that outlives its SIGKILL: a SQLite file (`--storage
    sqlite`, a Tansu built with its `libsql` feature) or a bucket in moto's S3 server (`--storage
    s3`, the fault suite's set-up, tests/fault_support::PersistentBroker)."""

    def __init__(self, procs, work, tansu, storage):
        self.procs, self.work, self.tansu_bin, self.storage = procs, work, tansu, storage
        self.moto = None
        self.cwd = work
        self.env = dict(os.environ)
        if storage == "s3":
            self.s3_port = free_port()
            self.moto = procs.start(
                [sys.executable, os.path.abspath(__file__), "_moto", str(self.s3_port), os.path.join(work, "s3")],
                os.path.join(work, "moto.log"),
            )
            wait_for("moto listening", 60, lambda: listening(self.s3_port))
            import boto3

            s3 = f"http://127.0.0.1:{self.s3_port}"
            boto3.client(
                "s3", endpoint_url=s3, region_name="eu-west-2", aws_access_key_id="test", aws_secret_access_key="test"
            ).create_bucket(Bucket="tansu", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
            self.engine = "s3://tansu/"
            self.env.update(AWS_ENDPOINT=s3, **S3_ENV)
        else:
            # Tansu resolves a sqlite:// URL against its working directory
            self.cwd = os.path.join(work, "broker")
            os.makedirs(self.cwd, exist_ok=True)
            self.engine = "sqlite://tansu.db"
        self.port = free_port()
        self.brokers = f"127.0.0.1:{self.port}"
        self.tansu = None
        self.restart()

    def restart(self):
        assert self.tansu is None or self.tansu.poll() is not None
        url = f"tcp://127.0.0.1:{self.port}"
        self.tansu = self.procs.start(
            [self.tansu_bin, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.engine],
            os.path.join(self.work, "tansu.log"), env=self.env, cwd=self.cwd,
        )
        wait_for("tansu listening", 60, lambda: listening(self.port) or self.tansu.poll() is not None)
        if self.tansu.poll() is not None:
            raise RuntimeError(f"tansu exited with {self.tansu.returncode}; see {self.work}/tansu.log")
        if self.storage == "sqlite":
            self.index_headers()

    def index_headers(self):
        """Tansu 0.6's SQLite schema has no index on `header (topition, offset_id)`, and its fetch
        looks each fetched record's headers up one record at a time: every fetch then scans all
        header rows ever written, and the broker slows down as the run goes on (before this index:
        the paced producer fell from 185 to 55 records/s within 5 minutes, and reading the output
        topics back from offset 0 took longer than 60 s). The index changes no data and no answer.
        Tansu creates its tables before it listens."""
        import sqlite3

        db = sqlite3.connect(os.path.join(self.cwd, "tansu.db"), timeout=60)
        db.execute("create index if not exists soak_header_record on header (topition, offset_id)")
        db.commit()
        db.close()

    def kill9(self):
        os.kill(self.tansu.pid, signal.SIGKILL)
        self.tansu.wait()


def topic_names(tag):
    return {
        "input": f"ser.features.{tag}",
        "accepted": f"emotion.accepted.{tag}",
        "rejected": f"emotion.rejected.{tag}",
        "dlq": f"emotion.dlq.{tag}",
        "archive_dlq": f"emotion.archive.dlq.{tag}",
    }


def create_topics(brokers, topics):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers, "logger": client_logger()})
    for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics.values()]).values():
        fut.result(30)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def write_config(path, sections):
    lines = []
    for name, body in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


class Serve:
    """One `emogate serve --stage S` process and its telemetry port."""

    def __init__(self, procs, args, brokers, topics, tag, stage, work, archive_root):
        self.stage = stage
        self.http = f"127.0.0.1:{free_port()}"
        path = os.path.join(work, f"{tag}-{stage}.toml")
        delivery = {} if args.mode == "default" else {"mode": args.mode}
        sections = {
            "model": {"dir": os.path.abspath(args.model), "execution_provider": "cpu"},
            "kafka": {"brokers": brokers, "group_id": f"soak-{tag}-infer"},
            "kafka.topics": {k: topics[k] for k in ("input", "accepted", "rejected", "dlq")},
            "archive": {
                "root": archive_root,
                "group_id": f"soak-{tag}-archive",
                "dlq_topic": topics["archive_dlq"],
                "roll_rows": args.roll_rows,
                "roll_age_ms": args.roll_age_ms,
            },
            "telemetry": {"listen": self.http},
        }
        if delivery:
            sections["delivery"] = delivery
        write_config(path, sections)
        self.log = os.path.join(work, f"{tag}-{stage}.log")
        env = dict(os.environ, RUST_LOG=os.environ.get("SOAK_RUST_LOG", "warn,emogate=info"))
        self.proc = procs.start([args.emogate, "serve", "--config", path, "--stage", stage], self.log, env=env)
        self.pid = self.proc.pid

    def get(self, path, timeout=3.0):
        try:
            with urllib.request.urlopen(f"http://{self.http}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def metrics(self):
        code, body = self.get("/metrics")
        return parse_metrics(body) if code == 200 else None

    def ready(self):
        return self.get("/readyz")

    def alive(self):
        return self.proc.poll() is None

    def terminate(self, timeout=90):
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def parse_metrics(text):
    """{name: [(labels dict, value)]} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            series, value = line.rsplit(" ", 1)
            value = float(value)
        except ValueError:
            continue
        labels = {}
        if "{" in series:
            name, rest = series.split("{", 1)
            for part in rest.rstrip("}").split(","):
                if "=" in part:
                    k, v = part.split("=", 1)
                    labels[k] = v.strip('"')
        else:
            name = series
        out.setdefault(name, []).append((labels, value))
    return out


def total(m, name):
    return sum(v for _, v in (m or {}).get(name, []))


def answered(m):
    return total(m, "emogate_records_accepted_total") + total(m, "emogate_records_rejected_total") + total(
        m, "emogate_records_dead_lettered_total"
    )


def buckets(m, name="emogate_end_to_end_latency_seconds"):
    """Cumulative histogram as sorted [(le, count)] (le = inf for +Inf)."""
    out = []
    for labels, v in (m or {}).get(name + "_bucket", []):
        le = labels.get("le")
        out.append((math.inf if le == "+Inf" else float(le), v))
    return sorted(out)


def hist_quantile(q, cum):
    """Prometheus `histogram_quantile` on cumulative buckets (linear within a bucket)."""
    if not cum or cum[-1][1] <= 0:
        return None
    rank = q * cum[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in cum:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def hist_delta(a, b):
    """Buckets of b minus buckets of a (same bounds)."""
    if not a:
        return b
    da = dict(a)
    return [(le, c - da.get(le, 0.0)) for le, c in b]


# --------------------------------------------------------------------------------------------
# Kafka positions from outside the service


def client_logger():
    """librdkafka's log lines of this script's own clients go to the work directory's
    kafka-clients.log (they are noisy while the broker is down), not to the terminal."""
    import logging

    log = logging.getLogger("soak.kafka")
    return log


def setup_client_log(work):
    import logging

    log = client_logger()
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = logging.FileHandler(os.path.join(work, "kafka-clients.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


class LagProbe:
    """End offsets minus a group's committed offsets, read with a confluent-kafka client that
    only asks (OffsetFetch, ListOffsets) and never joins the group."""

    def __init__(self, brokers, group, topics):
        from confluent_kafka import Consumer, TopicPartition

        self.tp = TopicPartition
        self.consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False,
                                  "logger": client_logger()})
        self.parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]

    def ends(self, timeout=5.0):
        out = {}
        for tp in self.parts:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            out[(tp.topic, tp.partition)] = (low, high)
        return out

    def lag(self, timeout=5.0):
        """(lag, end offsets total) or (None, None) when the broker does not answer."""
        try:
            ends = self.ends(timeout)
            committed = self.consumer.committed([self.tp(t.topic, t.partition) for t in self.parts], timeout=timeout)
        except Exception:  # noqa: BLE001 - the broker is down or restarting
            return None, None
        lag = 0
        for c in committed:
            low, high = ends[(c.topic, c.partition)]
            pos = c.offset if c.offset >= 0 else low
            lag += max(0, high - pos)
        return lag, sum(h for _, h in ends.values())

    def close(self):
        self.consumer.close()


# --------------------------------------------------------------------------------------------
# the run


class Soak:
    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.events = []  # (t, name, detail)
        self.samples = []
        self.t0 = None
        self.lock = threading.Lock()
        self.stop_sampling = threading.Event()
        self.phase = "warm-up"

    def now(self):
        return time.time() - self.t0

    def event(self, name, **detail):
        t = self.now() if self.t0 else 0.0
        with self.lock:
            self.events.append({"t": round(t, 2), "event": name, **detail})
        print(f"[soak {t:7.1f}s] {name} {json.dumps(detail) if detail else ''}", flush=True)

    # -- calibration ---------------------------------------------------------------------------

    def calibrate(self, broker):
        a = self.args
        topics = topic_names("cal")
        create_topics(broker.brokers, topics)
        log = os.path.join(a.work, "cal-produce.log")
        t = time.time()
        produced = subprocess.run(
            [a.emogate, "produce", "--brokers", broker.brokers, "--topic", topics["input"],
             "--synthetic", str(a.calibrate_records), "--seed", "1000", "--json",
             "-X", "enable.idempotence=false"],
            cwd=REPO, capture_output=True, text=True, check=False,
        )
        with open(log, "w") as f:
            f.write(produced.stdout + produced.stderr)
        if produced.returncode != 0:
            raise RuntimeError(f"calibration produce failed: {produced.stderr[-2000:]}")
        print(f"[soak] calibration: {a.calibrate_records} records produced in {time.time() - t:.1f} s", flush=True)
        root = os.path.join(a.work, "cal-archive")
        infer = Serve(self.procs, a, broker.brokers, topics, "cal", "infer", a.work, root)
        archive = Serve(self.procs, a, broker.brokers, topics, "cal", "archive", a.work, root)
        n = a.calibrate_records
        marks = {}
        t_start = time.time()
        while len(marks) < 2:
            if not infer.alive() or not archive.alive():
                raise RuntimeError(f"calibration serve exited; see {infer.log} / {archive.log}")
            if time.time() - t_start > 900:
                raise RuntimeError("calibration did not drain in 900 s")
            done = answered(infer.metrics())
            for frac in (0.1, 0.9):
                if frac not in marks and done >= frac * n:
                    marks[frac] = (time.time(), done)
            time.sleep(0.25)
        (t1, d1), (t2, d2) = marks[0.1], marks[0.9]
        rate = (d2 - d1) / (t2 - t1)
        # the archive stage must keep up as well: wait until it has committed everything
        probe = LagProbe(broker.brokers, f"soak-cal-archive", [topics["accepted"], topics["rejected"]])
        archive_lag, _ = probe.lag()
        def caught_up():
            lag, _ = probe.lag()
            return lag is not None and lag <= 2 * PARTITIONS and answered(infer.metrics()) >= n

        wait_for("calibration archive caught up", 600, caught_up, every=1)
        cal_archive_s = time.time() - t2
        probe.close()
        for s in (infer, archive):
            status = s.terminate()
            if status != 0:
                raise RuntimeError(f"calibration {s.stage} exited with {status}; see {s.log}")
        result = {
            "records": n,
            "records_per_s": round(rate, 1),
            "window": "10 % to 90 % of the backlog answered",
            "archive_caught_up_s_after_90pct": round(cal_archive_s, 1),
            "archive_lag_at_90pct": archive_lag,
        }
        print(f"[soak] calibration: end-to-end maximum {rate:.0f} records/s", flush=True)
        return result

    # -- sampling -------------------------------------------------------------------------------

    def sampler(self, broker, infer, archive, topics):
        a = self.args
        infer_probe = LagProbe(broker.brokers, "soak-run-infer", [topics["input"]])
        archive_probe = LagProbe(broker.brokers, "soak-run-archive", [topics["accepted"], topics["rejected"]])
        prev_hist = None
        next_t = self.now()
        while not self.stop_sampling.is_set():
            try:
                prev_hist = self.sample(broker, infer, archive, infer_probe, archive_probe, prev_hist)
            except Exception as e:  # noqa: BLE001 - a failed sample is recorded, sampling goes on
                self.event("sample failed", error=repr(e))
            next_t += a.sample_seconds
            self.stop_sampling.wait(max(0.0, next_t - self.now()))
        infer_probe.close()
        archive_probe.close()

    def sample(self, broker, infer, archive, infer_probe, archive_probe, prev_hist):
        """One row of the series: RSS, /metrics, /readyz, lags, the interval's p99."""
        t = self.now()
        mi, ma = infer.metrics(), archive.metrics()
        ilag, produced = infer_probe.lag(timeout=2)
        alag, _ = archive_probe.lag(timeout=2)
        cum = buckets(mi)
        window = hist_delta(prev_hist, cum) if cum else None
        if cum:
            prev_hist = cum
        p99 = hist_quantile(0.99, window) if window else None
        row = {
            "t_s": round(t, 1),
            "unix": round(time.time(), 1),
            "phase": self.phase,
            "rss_infer_mib": mib(rss_kib(infer.pid)),
            "rss_archive_mib": mib(rss_kib(archive.pid)),
            "rss_tansu_mib": mib(rss_kib(broker.tansu.pid)) if broker.tansu.poll() is None else None,
            "rss_moto_mib": mib(rss_kib(broker.moto.pid)) if broker.moto else None,
            "infer_alive": int(infer.alive()),
            "archive_alive": int(archive.alive()),
            "produced": produced,
            "answered": answered(mi) if mi else None,
            "archive_rows": total(ma, "emogate_archive_rows_total") if ma else None,
            "infer_lag": ilag,
            "infer_lag_gauge": total(mi, "emogate_consumer_lag_records") if mi else None,
            "archive_lag": alag,
            "p99_window_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "window_answers": int(window[-1][1]) if window else None,
            "infer_ready": infer.ready()[0],
            "archive_ready": archive.ready()[0],
            "producer_renewals": total(mi, "emogate_producer_renewals_total") if mi else None,
            "rewinds": total(mi, "emogate_rewinds_total") if mi else None,
            "transactions_aborted": total(mi, "emogate_transactions_aborted_total") if mi else None,
            "archive_write_errors": total(ma, "emogate_archive_write_errors_total") if ma else None,
            "archive_paused_partitions": total(ma, "emogate_archive_paused_partitions") if ma else None,
            "archive_buffered_rows": total(ma, "emogate_archive_buffered_rows") if ma else None,
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        with self.lock:
            self.samples.append(row)
        return prev_hist

    # -- faults ---------------------------------------------------------------------------------

    def broker_fault(self, broker, infer, probe, before_lag):
        """SIGKILL Tansu, restart after 3 s; when answers resume, when /readyz is 200 again and
        when the input lag is back to its level before the fault."""
        a0 = answered(infer.metrics())
        t_kill = self.now()
        broker.kill9()
        self.event("broker SIGKILL", answered=a0)
        self.phase = "broker down"
        time.sleep(self.args.broker_down_seconds)
        saw_503 = False
        broker.restart()
        t_restart = self.now()
        self.event("broker restarted")
        self.phase = "broker recovery"
        resumed = ready = caught_up = None
        a1 = answered(infer.metrics())
        threshold = max(before_lag, self.rate * 2)
        while self.now() - t_restart < self.args.recovery_timeout:
            if not infer.alive():
                break
            code, _ = infer.ready()
            saw_503 |= code == 503
            if resumed is None and answered(infer.metrics()) > a1:
                resumed = self.now()
            if ready is None and code == 200 and resumed is not None:
                ready = self.now()
            if resumed is not None and caught_up is None:
                lag, _ = probe.lag(timeout=3)
                if lag is not None and lag <= threshold:
                    caught_up = self.now()
            if resumed and ready and caught_up:
                break
            time.sleep(0.5)
        out = {
            "killed_at_s": round(t_kill, 1),
            "restarted_at_s": round(t_restart, 1),
            "down_s": round(t_restart - t_kill, 1),
            "answers_resumed_after_restart_s": rnd(resumed, t_restart),
            "ready_after_restart_s": rnd(ready, t_restart),
            "lag_back_after_restart_s": rnd(caught_up, t_restart),
            "lag_threshold_records": threshold,
            "readyz_503_seen": saw_503,
        }
        self.event("broker recovered", **out)
        self.phase = "load"
        return out, (t_kill, caught_up if caught_up is not None else self.now())

    def archive_fault(self, archive, probe, before_lag, vol):
        """The archive root's parent becomes a regular file for --outage-seconds."""
        ma = archive.metrics()
        errors0 = total(ma, "emogate_archive_write_errors_total")
        away = vol + ".away"
        os.rename(vol, away)
        with open(vol, "w") as f:
            f.write("a file where the archive's parent directory should be (soak outage)\n")
        t_break = self.now()
        self.event("archive storage broken", path=vol)
        self.phase = "archive outage"
        unready = None
        max_paused = 0
        while self.now() - t_break < self.args.outage_seconds:
            code, why = archive.ready()
            if unready is None and code == 503 and "archive storage failing" in why:
                unready = self.now()
            max_paused = max(max_paused, total(archive.metrics(), "emogate_archive_paused_partitions"))
            time.sleep(0.5)
        ma = archive.metrics()
        errors = total(ma, "emogate_archive_write_errors_total") - errors0
        rows_at_fix = total(ma, "emogate_archive_rows_total")
        os.remove(vol)
        os.rename(away, vol)
        t_fix = self.now()
        self.event("archive storage fixed", write_errors=errors)
        self.phase = "archive recovery"
        resumed = ready = caught_up = None
        threshold = max(before_lag, self.rate * 2)
        while self.now() - t_fix < self.args.recovery_timeout:
            if not archive.alive():
                break
            m = archive.metrics()
            if resumed is None and total(m, "emogate_archive_rows_total") > rows_at_fix:
                resumed = self.now()
            code, _ = archive.ready()
            if ready is None and code == 200:
                ready = self.now()
            lag, _ = probe.lag(timeout=3)
            if caught_up is None and resumed is not None and lag is not None and lag <= threshold:
                caught_up = self.now()
            if resumed and ready and caught_up:
                break
            time.sleep(0.5)
        out = {
            "broken_at_s": round(t_break, 1),
            "fixed_at_s": round(t_fix, 1),
            "outage_s": round(t_fix - t_break, 1),
            "readyz_503_after_s": rnd(unready, t_break),
            "write_errors_during_outage": errors,
            "max_paused_partitions": max_paused,
            "rows_resumed_after_fix_s": rnd(resumed, t_fix),
            "ready_after_fix_s": rnd(ready, t_fix),
            "lag_back_after_fix_s": rnd(caught_up, t_fix),
            "lag_threshold_records": threshold,
        }
        self.event("archive recovered", **out)
        self.phase = "load"
        return out, (t_break, caught_up if caught_up is not None else self.now())

    # -- producer -------------------------------------------------------------------------------

    def start_producer(self, broker, topic, count, seed):
        a = self.args
        return self.procs.start(
            [a.emogate, "produce", "--brokers", broker.brokers, "--topic", topic, "--synthetic", str(count),
             "--rate", f"{self.rate:.3f}", "--seed", str(seed), "--json", "-X", "enable.idempotence=false"],
            os.path.join(a.work, "produce.log"),
        )

    # -- main -----------------------------------------------------------------------------------

    def run(self):
        a = self.args
        os.makedirs(a.work, exist_ok=True)
        setup_client_log(a.work)
        broker = Broker(self.procs, a.work, a.tansu, a.storage)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        calibration = self.calibrate(broker)
        self.rate = a.load * calibration["records_per_s"] if a.rate is None else a.rate
        topics = topic_names("run")
        create_topics(broker.brokers, topics)
        vol = os.path.join(a.work, "archive-volume")
        os.makedirs(vol, exist_ok=True)
        root = os.path.join(vol, "archive")
        infer = Serve(self.procs, a, broker.brokers, topics, "run", "infer", a.work, root)
        archive = Serve(self.procs, a, broker.brokers, topics, "run", "archive", a.work, root)
        pids = {"infer": infer.pid, "archive": archive.pid}
        wait_for("the infer stage ready", 300, lambda: infer.ready()[0] == 200 or not infer.alive(), every=0.5)
        if not infer.alive():
            raise RuntimeError(f"infer stage exited at start; see {infer.log}")

        load_s = a.minutes * 60.0
        count = int(round(self.rate * load_s))
        self.t0 = time.time()
        self.event("producer start", rate=round(self.rate, 2), records=count)
        producer = self.start_producer(broker, topics["input"], count, 1)
        producer_restarts = 0
        sampler = threading.Thread(target=self.sampler, args=(broker, infer, archive, topics), daemon=True)
        sampler.start()
        self.phase = "warm-up"
        infer_probe = LagProbe(broker.brokers, "soak-run-infer", [topics["input"]])
        archive_probe = LagProbe(broker.brokers, "soak-run-archive", [topics["accepted"], topics["rejected"]])
        faults, windows = {}, []
        warmup_s = max(0.2 * load_s, min(180.0, 0.5 * load_s))

        def recent_max(key, seconds=120):
            with self.lock:
                vals = [s[key] for s in self.samples if s[key] is not None and s["t_s"] >= self.now() - seconds]
            return max(vals) if vals else 0

        def keep_producing():
            nonlocal producer, producer_restarts
            if producer.poll() is not None and producer.returncode != 0:
                _, produced = infer_probe.lag()
                left = count - (produced or 0)
                self.event("producer exited", status=producer.returncode, left=left)
                if left > 0 and producer_restarts < 5:
                    producer_restarts += 1
                    producer = self.start_producer(broker, topics["input"], left, 1 + producer_restarts)

        def until(t_end):
            while self.now() < t_end:
                keep_producing()
                for s in (infer, archive):
                    if not s.alive():
                        raise ServiceDied(s)
                if self.now() >= warmup_s and self.phase == "warm-up":
                    self.phase = "load"
                time.sleep(0.5)

        until(load_s / 3)
        faults["broker_restart"], w = self.broker_fault(broker, infer, infer_probe, recent_max("infer_lag"))
        windows.append(w)
        until(2 * load_s / 3)
        faults["archive_outage"], w = self.archive_fault(archive, archive_probe, recent_max("archive_lag"), vol)
        windows.append(w)
        while True:
            until(self.now() + 1)  # restarts a producer that failed with records left (5 times at most)
            if producer.poll() is not None:
                break
            if self.now() > load_s * 1.5 + 300:
                raise RuntimeError("the producer did not finish")
        t_prod_end = self.now()
        self.event("producer done", status=producer.returncode)
        lag_at_end, produced = infer_probe.lag()
        self.phase = "drain"

        def drained():
            il, _ = infer_probe.lag()
            al, _ = archive_probe.lag()
            # exactly-once output partitions end with a commit marker the archive never
            # commits past: up to one per partition is "caught up"
            return il == 0 and al is not None and al <= 2 * PARTITIONS

        try:
            drain_s = wait_for("both groups caught up", a.drain_timeout, drained, every=2)
        except RuntimeError:
            drain_s = None
        self.event("drained", seconds=drain_s)
        time.sleep(a.sample_seconds)
        final_metrics = {"infer": infer.metrics(), "archive": archive.metrics()}
        alive_at_end = {"infer": infer.alive(), "archive": archive.alive()}
        self.stop_sampling.set()
        sampler.join(60)
        infer_probe.close()
        archive_probe.close()
        statuses = {}
        for s in (infer, archive):
            statuses[s.stage] = s.terminate() if s.alive() else s.proc.returncode
        self.event("service stopped", **statuses)

        readback = read_back(broker.brokers, topics)
        archive_rb = read_archive(root)
        figures = self.figures(
            started=started, calibration=calibration, faults=faults, windows=windows, readback=readback,
            archive_rb=archive_rb, final_metrics=final_metrics, statuses=statuses, alive_at_end=alive_at_end,
            pids=pids, lag_at_end=lag_at_end, drain_s=drain_s, t_prod_end=t_prod_end,
            producer_restarts=producer_restarts, count=count, warmup_s=warmup_s, produced=produced,
        )
        return figures

    # -- figures --------------------------------------------------------------------------------

    def figures(self, **k):
        a = self.args
        samples = self.samples
        load = [s for s in samples if s["t_s"] <= k["t_prod_end"] + a.sample_seconds]
        warm = [s for s in load if s["t_s"] >= k["warmup_s"]]
        rss = {}
        for proc in ("infer", "archive"):
            key = f"rss_{proc}_mib"
            pts = [(s["t_s"] / 60.0, s[key]) for s in warm if s[key] is not None]
            allp = [s[key] for s in samples if s[key] is not None]
            slope = lsq_slope(pts)
            rss[proc] = {
                "pid": k["pids"][proc],
                "start_mib": allp[0] if allp else None,
                "warm_mib": pts[0][1] if pts else None,
                "end_mib": pts[-1][1] if pts else None,
                "peak_mib": max(allp) if allp else None,
                "peak_after_warmup_mib": max(v for _, v in pts) if pts else None,
                "slope_mib_per_min": round(slope, 4) if slope is not None else None,
                "samples_in_fit": len(pts),
            }
        # a fault's window: from the fault to its lag being back, one sample interval either side
        pad = a.sample_seconds
        windows = [(lo - pad, hi + pad) for lo, hi in k["windows"]]

        def in_fault(t):
            return any(lo <= t <= hi for lo, hi in windows)

        # latency from the service's histogram: the whole run (final /metrics), and the sample
        # intervals clear of the fault windows
        mi = k["final_metrics"]["infer"]
        cum = buckets(mi)
        hist_p99 = hist_quantile(0.99, cum)
        hist_p50 = hist_quantile(0.5, cum)
        clear_p99 = [s["p99_window_ms"] for s in load if s["p99_window_ms"] is not None
                     and not in_fault(s["t_s"]) and not in_fault(s["t_s"] - a.sample_seconds)]
        rb = k["readback"]
        t0 = self.t0
        lat = rb["latency_ms"]  # (input timestamp ms, latency ms) of each input's first prediction
        lat_all = sorted(l for _, l in lat)
        lat_clear = sorted(l for ts, l in lat if not in_fault(ts / 1000.0 - t0))
        # duplicates: inside or outside a fault window (by when the extra answer was produced)
        dup_times = rb["duplicate_answer_times_ms"]
        dups_outside = sum(1 for ts in dup_times if not in_fault(ts / 1000.0 - t0))
        lag_vals = [s["infer_lag"] for s in load if s["infer_lag"] is not None]
        alag_vals = [s["archive_lag"] for s in load if s["archive_lag"] is not None]
        clear_lag = [s["infer_lag"] for s in load if s["infer_lag"] is not None and not in_fault(s["t_s"])
                     and s["t_s"] >= k["warmup_s"]]
        arb = k["archive_rb"]
        pred_keys = rb["prediction_keys"]
        archive_missing = len(pred_keys - arb["keys"]) if arb["keys"] is not None else None
        archive_extra = len(arb["keys"] - pred_keys) if arb["keys"] is not None else None
        mode = a.mode if a.mode != "default" else "exactly_once (service default)"
        fig = {
            "command": " ".join(sys.argv),
            "started_utc": k["started"],
            "machine": machine(),
            "mode": mode,
            "model": a.model,
            "stages": "two processes: emogate serve --stage infer and emogate serve --stage archive",
            "config": {
                "archive.roll_rows": a.roll_rows, "archive.roll_age_ms": a.roll_age_ms,
                "everything else": "service defaults (batch 64 / 50 ms, 2 in flight, "
                                   "transactions of up to 8 batches / 100 ms, librdkafka defaults)",
            },
            "calibration": k["calibration"],
            "load": {
                "fraction_of_max": a.load if a.rate is None else None,
                "paced_records_per_s": round(self.rate, 2),
                "minutes": a.minutes,
                "records_planned": k["count"],
                "records_in_input_topic": rb["inputs"],
                "producer_restarts": k["producer_restarts"],
                "warmup_s": k["warmup_s"],
                "producer_done_at_s": round(k["t_prod_end"], 1),
                "samples": len(samples),
                "sample_seconds": a.sample_seconds,
            },
            "faults": k["faults"],
            "rss": rss,
            "latency": {
                "histogram_p50_ms": ms(hist_p50),
                "histogram_p99_ms": ms(hist_p99),
                "histogram_p99_clear_windows_max_ms": max(clear_p99) if clear_p99 else None,
                "histogram_p99_clear_windows_median_ms": statistics.median(clear_p99) if clear_p99 else None,
                "readback_p50_ms": quantile(lat_all, 0.5),
                "readback_p99_ms": quantile(lat_all, 0.99),
                "readback_max_ms": lat_all[-1] if lat_all else None,
                "readback_p50_outside_faults_ms": quantile(lat_clear, 0.5),
                "readback_p99_outside_faults_ms": quantile(lat_clear, 0.99),
                "readback_max_outside_faults_ms": lat_clear[-1] if lat_clear else None,
                "note": "histogram: emogate_end_to_end_latency_seconds (input message timestamp to output "
                        "acknowledged; buckets 0.1/0.25/0.5/1/2.5 s, interpolated); read-back: the first "
                        "prediction of each input, processed_at minus the input record's timestamp",
            },
            "lag": {
                "infer_max": max(lag_vals) if lag_vals else None,
                "infer_max_outside_faults": max(clear_lag) if clear_lag else None,
                "infer_median_outside_faults": statistics.median(clear_lag) if clear_lag else None,
                "infer_at_producer_end": k["lag_at_end"],
                "archive_max": max(alag_vals) if alag_vals else None,
                "drained_after_producer_s": k["drain_s"],
            },
            "delivery": {
                "inputs": rb["inputs"],
                "answered_distinct": rb["answered_distinct"],
                "lost": rb["lost"],
                "duplicates": rb["duplicates"],
                "duplicates_outside_fault_windows": dups_outside,
                "answers_for_unknown_inputs": rb["unknown"],
                "input_offsets_low_high": rb["input_offsets"],
                "lost_inputs_first_50": rb["lost_refs"],
                "unknown_inputs_first_50": rb["unknown_refs"],
                "predictions_on_topics": len(pred_keys),
                "dead_letters": rb["dead_letters"],
                "decode_problems": rb["problems"][:10],
                "archive_rows": arb["rows"],
                "archive_distinct_rows": arb["distinct"],
                "archive_duplicate_rows": arb["rows"] - arb["distinct"] if arb["rows"] is not None else None,
                "archive_missing_predictions": archive_missing,
                "archive_rows_without_prediction": archive_extra,
                "archive_duckdb_count": arb["duckdb_count"],
                "archive_files": arb["files"],
            },
            "service": {
                "pids": k["pids"],
                "alive_at_end": k["alive_at_end"],
                "exit_status_after_sigterm": k["statuses"],
                "producer_renewals": total(mi, "emogate_producer_renewals_total"),
                "rewinds": total(mi, "emogate_rewinds_total"),
                "transactions_aborted": total(mi, "emogate_transactions_aborted_total"),
                "archive_write_errors": total(k["final_metrics"]["archive"], "emogate_archive_write_errors_total"),
            },
            "fault_windows_s": [[round(lo, 1), round(hi, 1)] for lo, hi in windows],
        }
        fails = []
        if rb["lost"]:
            fails.append(f"lost {rb['lost']}")
        if rb["unknown"] or rb["problems"]:
            fails.append("read-back problems")
        if archive_missing or (arb["rows"] or 0) - (arb["distinct"] or 0) or archive_extra:
            fails.append("archive rows missing, duplicated or unmatched")
        for proc, r in rss.items():
            if r["slope_mib_per_min"] is None or r["slope_mib_per_min"] >= a.max_slope:
                fails.append(f"{proc} RSS slope {r['slope_mib_per_min']} MiB/min")
        if k["lag_at_end"] is None or k["lag_at_end"] > 10 * self.rate or k["drain_s"] is None:
            fails.append(f"lag not bounded (at producer end {k['lag_at_end']}, drained {k['drain_s']})")
        if not all(k["alive_at_end"].values()) or any(v != 0 for v in k["statuses"].values()):
            fails.append(f"service process died or exited badly: {k['statuses']}")
        if dups_outside:
            fails.append(f"{dups_outside} duplicates outside the fault windows")
        for name, f in k["faults"].items():
            back = f.get("lag_back_after_restart_s", f.get("lag_back_after_fix_s"))
            if back is None:
                fails.append(f"{name}: lag never came back within {a.recovery_timeout} s")
        fig["criteria"] = {
            "lost == 0": rb["lost"] == 0,
            "archive: every prediction once": not (archive_missing or archive_extra
                                                   or (arb["rows"] or 0) - (arb["distinct"] or 0)),
            f"RSS slope < {a.max_slope} MiB/min (each process)": all(
                r["slope_mib_per_min"] is not None and r["slope_mib_per_min"] < a.max_slope for r in rss.values()),
            "lag bounded (< 10 s of input at the producer's end, 0 after the drain)":
                k["lag_at_end"] is not None and k["lag_at_end"] <= 10 * self.rate and k["drain_s"] is not None,
            "same processes throughout, exit 0 on SIGTERM": all(k["alive_at_end"].values())
                and all(v == 0 for v in k["statuses"].values()),
            "no duplicates outside the fault windows": dups_outside == 0,
            "failures": fails,
            "passed": not fails,
        }
        fig["events"] = self.events
        fig["latency_windows"] = window_p99(lat, t0, a.sample_seconds)
        return fig


class ServiceDied(RuntimeError):
    def __init__(self, s):
        super().__init__(f"emogate serve --stage {s.stage} (PID {s.pid}) exited with {s.proc.returncode}; see {s.log}")


def mib(kib):
    return round(kib / KIB, 2) if kib is not None else None


def ms(seconds):
    return round(seconds * 1000, 1) if seconds is not None else None


def rnd(t, base):
    return round(t - base, 1) if t is not None else None


def quantile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[i]


def lsq_slope(pts):
    if len(pts) < 3:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def window_p99(lat, t0, width):
    """[(window start s, answers, p99 ms)] by input timestamp."""
    groups = {}
    for ts, l in lat:
        groups.setdefault(int((ts / 1000.0 - t0) // width), []).append(l)
    out = []
    for w in sorted(groups):
        vals = sorted(groups[w])
        out.append([w * width, len(vals), quantile(vals, 0.99)])
    return out


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem = next(int(l.split()[1]) for l in f if l.startswith("MemTotal"))
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / KIB / KIB, 1)}


# --------------------------------------------------------------------------------------------
# read-back


def read_back(brokers, topics):
    """Every output record (read_committed) against the input topic's offsets."""
    sys.path.insert(0, HERE)
    from confluent_kafka import Consumer, TopicPartition

    from kafka_readback import decode_prediction, load_schema

    schema = load_schema(os.path.join(REPO, "schemas/emotion_prediction.avsc"))
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"soak-readback-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "logger": client_logger(),
    })
    inputs = 0
    expected = set()
    input_ends = {}
    for p in range(PARTITIONS):
        low, high = consumer.get_watermark_offsets(TopicPartition(topics["input"], p), timeout=30, cached=False)
        inputs += high - low
        input_ends[p] = [low, high]
        expected.update(f"{topics['input']}/{p}/{o}" for o in range(low, high))
    outs = [topics["accepted"], topics["rejected"], topics["dlq"]]
    ends = {}
    for t in outs:
        for p in range(PARTITIONS):
            ends[(t, p)] = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30, cached=False)[1]
    consumer.assign([TopicPartition(t, p, 0) for t in outs for p in range(PARTITIONS)])
    remaining = {k for k, v in ends.items() if v > 0}
    answers = Counter()
    first = {}  # input -> (processed_at, input timestamp)
    extra_times = []
    pred_keys = set()
    problems, dead_letters = [], 0
    last_msg = time.time()
    while remaining and time.time() - last_msg < 60:
        msg = consumer.poll(0.5)
        if msg is None:
            # read_committed stops at the last stable offset: end markers leave positions short
            for (t, p) in list(remaining):
                pos = consumer.position([TopicPartition(t, p)])[0].offset
                if pos >= 0 and pos >= ends[(t, p)] - 1 and time.time() - last_msg > 5:
                    remaining.discard((t, p))
            continue
        if msg.error():
            problems.append(str(msg.error()))
            continue
        last_msg = time.time()
        key = (msg.topic(), msg.partition())
        if msg.offset() + 1 >= ends[key]:
            remaining.discard(key)
        headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
        ref = headers.get("emogate.input", "?")
        answers[ref] += 1
        if "emogate.error" in headers:
            dead_letters += 1
            continue
        try:
            rec = decode_prediction(schema, msg.value())
        except Exception as e:  # noqa: BLE001 - reported as a problem
            problems.append(f"{msg.topic()}/{msg.partition()}/{msg.offset()}: {e}")
            continue
        pred_keys.add((msg.topic(), msg.partition(), msg.offset()))
        processed = to_ms(rec["processed_at"])
        stamp = to_ms(rec["timestamp"])
        if ref in first:
            extra_times.append(max(processed, first[ref][0]))
            if processed < first[ref][0]:
                first[ref] = (processed, stamp)
        else:
            first[ref] = (processed, stamp)
    consumer.close()
    answered_set = set(answers)
    lost_refs = sorted(expected - answered_set, key=ref_order)
    unknown_refs = sorted(answered_set - expected, key=ref_order)
    lost, unknown = len(lost_refs), len(unknown_refs)
    latency = [(stamp, processed - stamp) for processed, stamp in first.values()]
    return {
        "inputs": inputs,
        "answered_distinct": len(answered_set & expected),
        "lost": lost,
        "unknown": unknown,
        "duplicates": sum(n - 1 for n in answers.values() if n > 1),
        "duplicate_answer_times_ms": extra_times,
        "dead_letters": dead_letters,
        "prediction_keys": pred_keys,
        "latency_ms": latency,
        "problems": problems,
        "input_offsets": input_ends,
        "lost_refs": lost_refs[:50],
        "unknown_refs": unknown_refs[:50],
    }


def ref_order(ref):
    parts = ref.rsplit("/", 2)
    try:
        return (parts[0], int(parts[1]), int(parts[2]))
    except (IndexError, ValueError):
        return (ref, 0, 0)


def to_ms(v):
    if hasattr(v, "timestamp"):
        return int(round(v.timestamp() * 1000))
    return int(v)


def read_archive(root):
    """Archive rows keyed by output coordinates: pyarrow (through archive_readback's filesystem
    helper) and DuckDB's count as a second reader."""
    sys.path.insert(0, HERE)
    import duckdb
    import pyarrow.dataset as ds

    from archive_readback import filesystem

    if not os.path.isdir(root):
        return {"rows": 0, "distinct": 0, "keys": set(), "duckdb_count": 0, "files": 0}
    fs, base = filesystem(root, None)
    dataset = ds.dataset(base, filesystem=fs, format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["kafka_topic", "kafka_partition", "kafka_offset"])
    keys = list(zip(table["kafka_topic"].to_pylist(), table["kafka_partition"].to_pylist(),
                    table["kafka_offset"].to_pylist()))
    (count,), = duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{base}/**/*.parquet', hive_partitioning = true)").fetchall()
    return {"rows": len(keys), "distinct": len(set(keys)), "keys": set(keys), "duckdb_count": count,
            "files": len(dataset.files)}


# --------------------------------------------------------------------------------------------
# output


CSV_FIELDS = [
    "t_s", "unix", "phase", "rss_infer_mib", "rss_archive_mib", "rss_tansu_mib", "rss_moto_mib", "infer_alive",
    "archive_alive", "produced", "answered", "archive_rows", "infer_lag", "infer_lag_gauge", "archive_lag",
    "p99_window_ms", "window_answers", "infer_ready", "archive_ready", "producer_renewals", "rewinds",
    "transactions_aborted", "archive_write_errors", "archive_paused_partitions", "archive_buffered_rows",
    "loadavg_1m",
]


def write_outputs(fig, samples, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for s in samples:
            w.writerow({k: ("" if s.get(k) is None else s.get(k)) for k in CSV_FIELDS})
    with open(out + ".json", "w") as f:
        json.dump(fig, f, indent=1)
        f.write("\n")
    try:
        plot(fig, samples, out + ".png")
    except ImportError:
        print("matplotlib missing (pip install -r scripts/requirements-soak.txt): no PNG", file=sys.stderr)


def plot(fig, samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    f, ax = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for proc, colour in (("infer", "tab:blue"), ("archive", "tab:green")):
        ax[0].plot(t, [s[f"rss_{proc}_mib"] for s in samples], color=colour, label=f"serve --stage {proc}")
        r = fig["rss"][proc]
        if r["slope_mib_per_min"] is not None:
            ax[0].plot([], [], " ", label=f"  {proc}: slope {r['slope_mib_per_min']:+.3f} MiB/min after warm-up")
    ax[0].axvline(fig["load"]["warmup_s"] / 60, color="grey", ls=":", lw=1)
    ax[0].set_ylabel("RSS (MiB)")
    ax[0].legend(fontsize=8, loc="upper left")
    ax[1].plot(t, [s["infer_lag"] for s in samples], color="tab:blue", label="infer group, input topic")
    ax[1].plot(t, [s["archive_lag"] for s in samples], color="tab:green", label="archive group, output topics")
    ax[1].set_ylabel("consumer lag (records)")
    ax[1].set_yscale("symlog", linthresh=100)
    ax[1].legend(fontsize=8, loc="upper left")
    lw = fig["latency_windows"]
    ax[2].plot([w[0] / 60 for w in lw], [w[2] for w in lw], color="tab:purple", lw=1,
               label="p99 per 10 s (read-back, by input time)")
    ax[2].plot(t, [s["p99_window_ms"] for s in samples], color="tab:orange", lw=1, ls="--",
               label="p99 per sample interval (service histogram)")
    ax[2].set_yscale("log")
    ax[2].set_ylabel("end-to-end latency p99 (ms)")
    ax[2].set_xlabel("minutes since the producer started")
    ax[2].legend(fontsize=8, loc="upper left")
    for i, a in enumerate(ax):
        for (lo, hi), (label, colour) in zip(fig["fault_windows_s"], (("broker SIGKILL + restart", "red"),
                                                                      ("archive storage outage", "orange"))):
            a.axvspan(lo / 60, hi / 60, color=colour, alpha=0.15, label=f"{label} (until lag is back)" if i == 1 else None)
    ax[1].legend(fontsize=8, loc="upper left")
    ax[2].text(0.99, 0.02, "histogram values at 10 s mean >= 10 s (its last finite bucket)", transform=ax[2].transAxes,
               ha="right", va="bottom", fontsize=7, color="grey")
    d = fig["delivery"]
    f.suptitle(
        f"emogate soak: {fig['load']['minutes']} min at {fig['load']['paced_records_per_s']:.0f} records/s "
        f"({fig['mode']}), lost {d['lost']}, duplicates {d['duplicates']}",
        fontsize=10,
    )
    f.tight_layout()
    f.savefig(path, dpi=110)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_moto":
        moto_main(int(sys.argv[2]), sys.argv[3])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_plot":  # soak.py _plot OUT: the PNG again from OUT.json/.csv
        out = sys.argv[2]
        with open(out + ".json") as f:
            fig = json.load(f)
        with open(out + ".csv") as f:
            samples = [{k: (None if v == "" else (v if k == "phase" else float(v))) for k, v in row.items()}
                       for row in csv.DictReader(f)]
        plot(fig, samples, out + ".png")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emogate", default=os.path.join(REPO, "target/release/emogate"))
    ap.add_argument("--tansu", help="Tansu binary (default: .cache/tansu-libsql/bin/tansu, built with its libsql "
                                     "feature; with --storage s3: EMOGATE_TANSU or .cache/bin/tansu)")
    ap.add_argument("--storage", choices=["sqlite", "s3"], default="sqlite",
                    help="the broker's persistent storage: a SQLite file, or moto's S3 server")
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the paced load phase")
    ap.add_argument("--load", type=float, default=0.5, help="paced rate as a fraction of the measured maximum")
    ap.add_argument("--rate", type=float, help="paced rate in records/s (skips nothing; overrides --load)")
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--mode", default="at_least_once", choices=["default", "exactly_once", "at_least_once"],
                    help="delivery.mode of both processes (default: at_least_once; `default` leaves the "
                         "service default, exactly_once, which Tansu's SQLite engine refuses: EndTxn unsupported)")
    ap.add_argument("--calibrate-records", type=int, default=15000)
    ap.add_argument("--sample-seconds", type=float, default=10.0)
    ap.add_argument("--broker-down-seconds", type=float, default=3.0)
    ap.add_argument("--outage-seconds", type=float, default=60.0)
    ap.add_argument("--recovery-timeout", type=float, default=300.0)
    ap.add_argument("--drain-timeout", type=float, default=600.0)
    ap.add_argument("--roll-rows", type=int, default=10000)
    ap.add_argument("--roll-age-ms", type=int, default=10000)
    ap.add_argument("--max-slope", type=float, default=1.0, help="MiB/min")
    ap.add_argument("--work", help="work directory (default: a new one under /tmp, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, broker data, archive)")
    ap.add_argument("--out", default=os.path.join(REPO, "docs/results/soak"))
    args = ap.parse_args()
    args.emogate = os.path.abspath(args.emogate)
    if args.tansu is None:
        args.tansu = (os.path.join(REPO, ".cache/tansu-libsql/bin/tansu") if args.storage == "sqlite"
                      else os.environ.get("EMOGATE_TANSU", os.path.join(REPO, ".cache/bin/tansu")))
    args.tansu = os.path.abspath(args.tansu)
    args.out = os.path.abspath(args.out)
    own_work = args.work is None
    args.work = os.path.abspath(args.work or f"/tmp/emogate-soak-{time.strftime('%Y%m%d-%H%M%S')}")
    args.outage_seconds = min(args.outage_seconds, args.minutes * 60 / 6)
    soak = Soak(args)
    def interrupted(*_):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        fig = soak.run()
    except BaseException:
        soak.stop_sampling.set()
        soak.procs.kill_all()
        if soak.samples:
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out + ".partial.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
                w.writeheader()
                for s in soak.samples:
                    w.writerow({k: ("" if s.get(k) is None else s.get(k)) for k in CSV_FIELDS})
        print(f"soak aborted; work directory kept: {args.work}", file=sys.stderr)
        raise
    soak.procs.kill_all()
    fig["work_dir"] = args.work if args.keep or not own_work else None
    write_outputs(fig, soak.samples, args.out)
    c = fig["criteria"]
    print(json.dumps({k: fig[k] for k in ("load", "rss", "latency", "lag", "delivery", "faults")}, indent=1))
    print("soak " + ("PASSED" if c["passed"] else "FAILED: " + "; ".join(c["failures"])))
    if own_work and not args.keep:
        shutil.rmtree(os.path.join(args.work, "s3"), ignore_errors=True)
        shutil.rmtree(os.path.join(args.work, "broker"), ignore_errors=True)
        shutil.rmtree(os.path.join(args.work, "archive-volume"), ignore_errors=True)
        shutil.rmtree(os.path.join(args.work, "cal-archive"), ignore_errors=True)
        print(f"logs kept in {args.work}")
    return 0 if c["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
