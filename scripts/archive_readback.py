"""Reads an emogate Parquet archive back with independent readers and prints one JSON object.

Usage: archive_readback.py ROOT
       archive_readback.py s3://BUCKET/PREFIX --endpoint http://127.0.0.1:PORT

With an `s3://` root the archive is read from an S3 API (credentials from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, region AWS_REGION or us-east-1) through pyarrow's `S3FileSystem`;
DuckDB then queries the same pyarrow dataset (no httpfs extension needed), pandas reads
through the same filesystem. The output has the same shape.

The Rust integration tests (tests/archive_*.rs) compare this output with what they wrote:
- `files`: every file under ROOT with its Parquet metadata as pyarrow sees it (codecs,
  row groups, column chunks without min/max statistics (all-null chunks excepted),
  emogate key-value metadata); names not ending in `.parquet`
  (temporary files) are listed in `other_files`.
- `pyarrow`: the rows of `pyarrow.dataset` with hive partitioning (timestamps as epoch ms).
- `duckdb`: the rows of `read_parquet('ROOT/**/*.parquet', hive_partitioning = true)`, the
  column types DuckDB infers, and a count of rows whose `dt`/`hour` disagree with their own
  `processed_at` (must be 0).
- `pandas`: row count and dtypes of `pandas.read_parquet(ROOT)`.
Rows are sorted by (kafka_topic, kafka_partition, kafka_offset).
"""

import argparse
import json
import os
import sys

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

KEY = ["kafka_topic", "kafka_partition", "kafka_offset"]


def file_info(fs, root, rel):
    with fs.open_input_file(f"{root}/{rel}") as handle:
        meta = pq.ParquetFile(handle).metadata
    codecs, no_stats = set(), set()
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            codecs.add(col.compression)
            if not (col.is_stats_set and (col.statistics.has_min_max or col.statistics.null_count == rg.num_rows)):
                no_stats.add(col.path_in_schema)
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items() if k.startswith(b"emogate.")}
    return {
        "path": rel,
        "num_rows": meta.num_rows,
        "num_row_groups": meta.num_row_groups,
        "row_group_rows": [meta.row_group(g).num_rows for g in range(meta.num_row_groups)],
        "codecs": sorted(codecs),
        "columns_without_statistics": sorted(no_stats),
        "metadata": kv,
    }


def plain(table):
    """Timestamps → int64 epoch ms, everything else as Python values."""
    columns = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        elif pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        columns[name] = col
    rows = pa.table(columns).to_pylist()
    rows.sort(key=lambda r: tuple(r[k] for k in KEY))
    return rows


def filesystem(root, endpoint):
    """(pyarrow filesystem, root path inside it)."""
    if not root.startswith("s3://"):
        return pafs.LocalFileSystem(), os.path.abspath(root)
    s3 = pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http" if endpoint and endpoint.startswith("http://") else "https",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AWS_REGION", "us-east-1"),
    )
    return s3, root[len("s3://"):].rstrip("/")


def main(root, endpoint=None):
    fs, base = filesystem(root, endpoint)
    parquet, other = [], []
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base) + 1:]
        (parquet if info.base_name.endswith(".parquet") else other).append(rel)
    parquet.sort()
    out = {"files": [file_info(fs, base, rel) for rel in parquet], "other_files": sorted(other)}

    dataset = ds.dataset(base, filesystem=fs, format="parquet", partitioning="hive")
    table = dataset.to_table()
    out["pyarrow"] = {
        "schema": {f.name: str(f.type) for f in table.schema},
        "nullable": {f.name: f.nullable for f in table.schema},
        "rows": plain(table),
    }

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if isinstance(fs, pafs.LocalFileSystem):
        src = f"read_parquet('{base}/**/*.parquet', hive_partitioning = true)"
    else:
        # DuckDB scans the pyarrow dataset (hive partition columns included) in place.
        con.register("archive_dataset", dataset)
        src = "archive_dataset"
    types = {name: typ for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    cur = con.execute(
        f"SELECT * EXCLUDE (timestamp, processed_at, dt, hour), "
        f"epoch_ms(timestamp) AS timestamp, epoch_ms(processed_at) AS processed_at, "
        f"CAST(dt AS VARCHAR) AS dt, CAST(hour AS BIGINT) AS hour FROM {src} "
        f"ORDER BY kafka_topic, kafka_partition, kafka_offset"
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    (count, distinct), = con.execute(
        f"SELECT count(*), count(DISTINCT (kafka_topic, kafka_partition, kafka_offset)) FROM {src}"
    ).fetchall()
    (mismatches,), = con.execute(
        f"SELECT count(*) FROM {src} WHERE strftime(processed_at AT TIME ZONE 'UTC', '%Y-%m-%d') "
        f"<> CAST(dt AS VARCHAR) OR hour(processed_at AT TIME ZONE 'UTC') <> hour"
    ).fetchall()
    out["duckdb"] = {
        "types": types,
        "rows": rows,
        "count": count,
        "distinct_keys": distinct,
        "partition_mismatches": mismatches,
    }

    frame = pd.read_parquet(base, filesystem=fs)
    out["pandas"] = {"rows": len(frame), "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--endpoint", help="S3 endpoint URL for an s3:// root")
    args = parser.parse_args()
    main(args.root, args.endpoint)
